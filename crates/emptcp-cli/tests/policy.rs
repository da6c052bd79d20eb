//! `emptcp check` and `emptcp replay`, run as a user runs them. Replay needs
//! root (BPF_PROG_TEST_RUN) and tshark; its inputs are the real kernel MPTCP
//! captures of crates/emptcp-wire/tests/fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    root().join("crates/emptcp-wire/tests/fixtures").join(name)
}

fn emptcp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_emptcp"))
        .args(args)
        .output()
        .expect("running emptcp")
}

/// The scratch directory of the calling test (each test runs on a thread
/// named after it).
fn scratch_dir() -> PathBuf {
    let test = std::thread::current()
        .name()
        .unwrap_or("main")
        .replace("::", "-");
    std::env::temp_dir().join(format!("emptcp-cli-policy-{}-{test}", std::process::id()))
}

/// Removes the calling test's scratch directory when dropped (also on
/// panic): every test that writes files holds one.
struct Scratch;

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(scratch_dir());
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = scratch_dir();
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write(name: &str, text: &str) -> PathBuf {
    let p = scratch(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_accepts_every_example() {
    let dir = root().join("examples/policies");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = emptcp(&["check", "-f", path.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {stdout}{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(": valid for "), "{stdout}");
        n += 1;
    }
    assert!(n >= 9);
}

#[test]
fn check_summarises_as_json() {
    let path = root().join("examples/policies/multi_tenant.toml");
    let out = emptcp(&["check", "-f", path.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hook"], "tc-ingress");
    assert_eq!(v["policies"], 3);
    assert_eq!(v["rules"], 3);
    assert_eq!(v["chains"], 2);
    assert_eq!(v["policy"][0]["name"], "tenant_joins");
    assert_eq!(v["policy"][0]["line"], 28);
}

#[test]
fn check_refuses_bad_files_with_file_line_and_field() {
    let _scratch = Scratch;
    let cases = [
        (
            "[[selector]]\nkind = \"src\"\n[[policy]]\nname = \"p\"\nselect = { src = \"10.0.0.1/8\" }\n",
            None,
            ":5: field 'policy[0].select.src': 10.0.0.1/8 has host bits set",
        ),
        (
            "hook = \"xdp\"\n[[policy]]\nname = \"p\"\nactions = [{ set_mark = 1 }]\n",
            None,
            ":4: field 'policy[0].actions[0]': actor set_mark does not work at xdp",
        ),
        (
            "hook = \"tc-egress\"\n",
            Some("xdp"),
            ":1: field 'hook': the file is for tc-egress, but xdp was asked for",
        ),
        ("", None, ": no hook: add hook = \"tc-ingress\""),
        ("hook = [\n", None, ":1: bad TOML: unclosed array"),
    ];
    for (i, (text, hook, expected)) in cases.iter().enumerate() {
        let path = write(&format!("bad{i}.toml"), text);
        let mut args = vec!["check", "-f", path.to_str().unwrap()];
        if let Some(h) = hook {
            args.extend(["--hook", h]);
        }
        let out = emptcp(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {stderr}");
        let want = format!("emptcp: {}{expected}", path.display());
        assert!(
            stderr.starts_with(&want),
            "{text:?}:\n{stderr}\nwanted {want}"
        );
    }
    // An empty file is a valid, empty set.
    let path = write("empty.toml", "");
    let out = emptcp(&["check", "-f", path.to_str().unwrap(), "--hook", "xdp"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 policies"));
}

/// tcp.checksum.status of every frame: 0 bad, 1 good, 2 unverified.
fn checksum_statuses(pcap: &Path) -> Vec<u8> {
    let out = Command::new("tshark")
        .args([
            "-r",
            pcap.to_str().unwrap(),
            "-o",
            "tcp.check_checksum:TRUE",
        ])
        .args(["-T", "fields", "-e", "tcp.checksum.status"])
        .output()
        .expect("tshark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap_or(9))
        .collect()
}

fn replay(policy: &Path, input: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "replay",
        "--policy",
        policy.to_str().unwrap(),
        "--in",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    args.extend(extra);
    let o = emptcp(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn frames(pcap: &Path) -> Vec<(Duration, u32, Vec<u8>)> {
    let mut r = PcapReader::new(std::fs::File::open(pcap).unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        out.push((p.timestamp, p.orig_len, p.data.into_owned()));
    }
    out
}

fn can_replay() -> bool {
    if !emptcp_testbed::root_or_skip() {
        return false;
    }
    assert!(
        Command::new("tshark").arg("-v").output().is_ok(),
        "tshark is needed (cargo xtask setup installs it)"
    );
    true
}

const COUNT_ALL: &str =
    "hook = \"tc-ingress\"\n[[policy]]\nname = \"all\"\nactions = [\"count\"]\n";

#[test]
fn replay_counts_every_packet_of_an_untruncated_capture_and_keeps_checksums_good() {
    let _scratch = Scratch;
    if !can_replay() {
        return;
    }
    let policy = write("count_all.toml", COUNT_ALL);
    let input = fixture("checksum_v4.pcap");
    let out = scratch("count_all.pcap");
    let r = replay(&policy, &input, &out, &[]);
    let n = frames(&input).len() as u64;
    assert_eq!(r["packets"]["read"], n);
    assert_eq!(r["packets"]["run"], n);
    assert_eq!(r["packets"]["written"], n);
    assert_eq!(r["policies"][0]["packets"], n);
    assert_eq!(r["chains"][0]["operators"][0]["hits"], n);
    assert_eq!(r["entry_counters"]["matched"], n);
    // Connection tracking ran across packets: one connection, two subflows.
    assert_eq!(r["entry_counters"]["ct_connection"], 1);
    assert_eq!(r["entry_counters"]["ct_subflow"], 2);
    // count changes nothing: the output is the input.
    assert_eq!(frames(&out), frames(&input));
    let st = checksum_statuses(&out);
    assert_eq!(st.len() as u64, n);
    assert!(st.iter().all(|s| *s == 1), "{st:?}");
}

#[test]
fn replay_rate_limit_clamps_acks_with_good_checksums_and_passes_truncated_frames() {
    let _scratch = Scratch;
    if !can_replay() {
        return;
    }
    let policy = write(
        "clamp.toml",
        "hook = \"tc-ingress\"\n[[selector]]\nkind = \"packet_type\"\n[[policy]]\n\
         name = \"acks\"\nselect = { packet_type = \"pure_ack\" }\n\
         actions = [\"count\", { rate_limit = 3000 }]\n",
    );
    let input = fixture("basic_v4.pcap");
    let out = scratch("clamp.pcap");
    let r = replay(&policy, &input, &out, &[]);
    let before = frames(&input);
    let after = frames(&out);
    assert_eq!(after.len(), before.len(), "nothing dropped");
    let truncated = before.iter().filter(|f| (f.2.len() as u32) < f.1).count() as u64;
    assert!(truncated > 0);
    assert_eq!(r["packets"]["truncated_not_run"], truncated);
    assert_eq!(r["packets"]["run"], before.len() as u64 - truncated);
    let hits = r["chains"][0]["operators"][1]["hits"].as_u64().unwrap();
    assert!(hits > 100, "{r:#}");
    // Changed frames are ACKs whose window went down; all others are equal.
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(changed > 100, "{changed}");
    let st = checksum_statuses(&out);
    assert_eq!(st.len(), after.len());
    assert_eq!(st.iter().filter(|s| **s == 0).count(), 0, "no bad checksum");
    assert_eq!(
        st.iter().filter(|s| **s == 1).count() as u64,
        before.len() as u64 - truncated,
        "every whole frame verifies"
    );
}

#[test]
fn replay_drop_leaves_dropped_packets_out() {
    let _scratch = Scratch;
    if !can_replay() {
        return;
    }
    let policy = root().join("examples/policies/drop.toml");
    let input = fixture("basic_v4.pcap");
    let out = scratch("drop.pcap");
    let r = replay(&policy, &input, &out, &[]);
    let dropped = r["packets"]["dropped"].as_u64().unwrap();
    assert_eq!(dropped, 1, "one MP_JOIN SYN: {r:#}");
    assert_eq!(frames(&out).len() as u64, frames(&input).len() as u64 - 1);
    let joins = Command::new("tshark")
        .args([
            "-r",
            out.to_str().unwrap(),
            "-Y",
            "mptcp.subtype == 1 && tcp.flags.ack == 0",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&joins.stdout).trim().is_empty());
}

#[test]
fn replay_with_local_runs_only_the_hooks_direction() {
    let _scratch = Scratch;
    if !can_replay() {
        return;
    }
    let policy = write("count_all_local.toml", COUNT_ALL);
    let input = fixture("checksum_v4.pcap");
    let out = scratch("local.pcap");
    // At tc-ingress with the server local, only client->server packets run.
    let r = replay(&policy, &input, &out, &["--local", "10.77.3.0/24"]);
    let n = frames(&input).len() as u64;
    let run = r["packets"]["run"].as_u64().unwrap();
    let other = r["packets"]["other_direction_not_run"].as_u64().unwrap();
    assert!(run > 0 && other > 0, "{r:#}");
    assert_eq!(run + other, n);
    assert_eq!(r["policies"][0]["packets"], run);
    assert_eq!(frames(&out).len() as u64, n);
}

/// The Ethernet capture rewritten with another link layer (the headers a
/// Linux `any` capture has), or as pcapng.
fn relink(input: &Path, out: &Path, kind: &str) {
    let src = frames(input);
    let file = std::fs::File::create(out).unwrap();
    let cooked = |eth: &[u8]| -> Vec<u8> {
        let (mac_src, proto, payload) = (&eth[6..12], &eth[12..14], &eth[14..]);
        let mut h = Vec::new();
        if kind == "sll" {
            h.extend_from_slice(&[0, 0, 0, 1, 0, 6]);
            h.extend_from_slice(mac_src);
            h.extend_from_slice(&[0, 0]);
            h.extend_from_slice(proto);
        } else {
            h.extend_from_slice(proto);
            h.extend_from_slice(&[0, 0, 0, 0, 0, 3, 0, 1, 0, 6]);
            h.extend_from_slice(mac_src);
            h.extend_from_slice(&[0, 0]);
        }
        h.extend_from_slice(payload);
        h
    };
    match kind {
        "pcapng" => {
            let mut w = PcapNgWriter::new(file).unwrap();
            w.write_pcapng_block(InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: 65535,
                options: vec![],
            })
            .unwrap();
            for (ts, len, data) in &src {
                w.write_pcapng_block(EnhancedPacketBlock {
                    interface_id: 0,
                    timestamp: *ts,
                    original_len: *len,
                    data: std::borrow::Cow::Borrowed(&data[..]),
                    options: vec![],
                })
                .unwrap();
            }
        }
        _ => {
            let header = PcapHeader {
                datalink: if kind == "sll" {
                    DataLink::LINUX_SLL
                } else {
                    DataLink::LINUX_SLL2
                },
                ..Default::default()
            };
            let mut w = PcapWriter::with_header(file, header).unwrap();
            for (ts, len, data) in &src {
                let c = cooked(data);
                let extra = c.len() as u32 - data.len() as u32;
                w.write_packet(&PcapPacket::new(*ts, len + extra, &c))
                    .unwrap();
            }
        }
    }
}

#[test]
fn replay_reads_pcapng_and_linux_cooked_captures() {
    let _scratch = Scratch;
    if !can_replay() {
        return;
    }
    let policy = write(
        "clamp_all.toml",
        "hook = \"tc-ingress\"\n[[policy]]\nname = \"all\"\n\
         actions = [\"count\", { rate_limit = 3000 }]\n",
    );
    let input = fixture("checksum_v4.pcap");
    let reference = scratch("ref.pcap");
    replay(&policy, &input, &reference, &[]);
    let want: Vec<Vec<u8>> = frames(&reference)
        .into_iter()
        .map(|f| f.2[14..].to_vec())
        .collect();
    for kind in ["pcapng", "sll", "sll2"] {
        let relinked = scratch(&format!("in.{kind}"));
        relink(&input, &relinked, kind);
        let out = scratch(&format!("out-{kind}.pcap"));
        let r = replay(&policy, &relinked, &out, &[]);
        assert_eq!(r["packets"]["run"], want.len() as u64, "{kind}: {r:#}");
        let got: Vec<Vec<u8>> = frames(&out)
            .into_iter()
            .map(|f| f.2[14..].to_vec())
            .collect();
        assert!(
            got == want,
            "{kind}: the IP packets differ from the Ethernet run's"
        );
        let st = checksum_statuses(&out);
        assert!(st.iter().all(|s| *s == 1), "{kind}: {st:?}");
    }
}
