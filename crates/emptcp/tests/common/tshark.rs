//! tshark's reading of crafted frames: an independent decoder of checksums and MPTCP options.

/// Writes `frames` (Ethernet) to a pcap file and returns tshark's `-T fields` lines for
/// `fields`, one per frame (tab-separated, several values of a field comma-separated), with
/// TCP checksum verification on. `None` when tshark is not installed (an error with CI=true).
pub fn fields(frames: &[Vec<u8>], fields: &[&str]) -> Option<Vec<String>> {
    if std::process::Command::new("tshark")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true"),
            "tshark is missing (CI=true): install tshark"
        );
        eprintln!("tshark not found: tshark check skipped");
        return None;
    }
    let path = std::env::temp_dir().join(format!(
        "emptcp-tshark-{}-{:?}.pcap",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut pcap = Vec::new();
    // pcap global header: magic, v2.4, zone 0, sigfigs 0, snaplen 65535, LINKTYPE_ETHERNET.
    pcap.extend(0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend(2u16.to_le_bytes());
    pcap.extend(4u16.to_le_bytes());
    for w in [0u32, 0, 65535, 1] {
        pcap.extend(w.to_le_bytes());
    }
    for (i, f) in frames.iter().enumerate() {
        for w in [i as u32, 0, f.len() as u32, f.len() as u32] {
            pcap.extend(w.to_le_bytes());
        }
        pcap.extend(f);
    }
    std::fs::write(&path, &pcap).unwrap();
    let mut cmd = std::process::Command::new("tshark");
    cmd.arg("-r")
        .arg(&path)
        .args(["-o", "tcp.check_checksum:TRUE", "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("running tshark");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), frames.len(), "tshark output:\n{lines:#?}");
    Some(lines)
}

/// Whether a `tcp.checksum.status` value reads "Good" (tshark prints PROTO_CHECKSUM_E_GOOD as
/// 1) or "Bad" (0).
pub fn checksum_good(status: &str) -> Option<bool> {
    match status {
        "1" => Some(true),
        "0" => Some(false),
        s if s.eq_ignore_ascii_case("good") => Some(true),
        s if s.eq_ignore_ascii_case("bad") => Some(false),
        _ => None,
    }
}

/// Every frame has a good TCP checksum and, in tshark's reading, an MPTCP ADD_ADDR (subtype 3)
/// that is no echo and carries an HMAC.
pub fn expect_add_addr(frames: &[Vec<u8>]) {
    let Some(lines) = fields(
        frames,
        &[
            "tcp.checksum.status",
            "tcp.options.mptcp.subtype",
            "tcp.options.mptcp.echo",
            "tcp.options.mptcp.addaddrtrunchmac",
        ],
    ) else {
        return;
    };
    for (i, line) in lines.iter().enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 4, "frame {i}: {line}");
        assert_eq!(
            checksum_good(f[0]),
            Some(true),
            "frame {i}: checksum: {line}"
        );
        assert!(
            f[1].split(',').any(|s| s == "3"),
            "frame {i}: no ADD_ADDR: {line}"
        );
        assert_eq!(f[2], "0", "frame {i}: echo: {line}");
        assert!(!f[3].is_empty(), "frame {i}: no HMAC: {line}");
    }
    eprintln!(
        "tshark: {} frames, good checksums, ADD_ADDR with HMAC",
        lines.len()
    );
}

/// Every frame has a good TCP checksum and, in tshark's reading, MPTCP options of which one has
/// subtype `present` (when given) and none subtype `absent` (when given). `what` names the
/// frames in messages.
pub fn expect_subtypes(frames: &[Vec<u8>], present: Option<u8>, absent: Option<u8>, what: &str) {
    let Some(lines) = fields(
        frames,
        &["tcp.checksum.status", "tcp.options.mptcp.subtype"],
    ) else {
        return;
    };
    for (i, line) in lines.iter().enumerate() {
        let (status, subtypes) = line.split_once('\t').unwrap_or((line, ""));
        let subtypes: Vec<&str> = subtypes.split(',').filter(|s| !s.is_empty()).collect();
        assert_eq!(
            checksum_good(status),
            Some(true),
            "{what} {i}: checksum: {line}"
        );
        if let Some(p) = present {
            assert!(
                subtypes.contains(&p.to_string().as_str()),
                "{what} {i}: no subtype {p}: {line}"
            );
        }
        if let Some(a) = absent {
            assert!(
                !subtypes.contains(&a.to_string().as_str()),
                "{what} {i}: subtype {a}: {line}"
            );
        }
    }
    eprintln!(
        "tshark: {} {what} frames, good checksums, MPTCP subtypes as expected",
        lines.len()
    );
}
