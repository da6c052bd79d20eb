//! Root-only integration tests: real namespaces, veths and MPTCP transfers.
//!
//! Every test builds its own testbed (unique names), so they run in parallel. Without root they
//! print "skipped" and pass, except under CI=true, where they fail.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;

use emptcp_testbed::presets::{TwoPath, TwoPathOpts, two_path};
use emptcp_testbed::traffic::{
    Receiver, ReceiverOpts, TrafficError, TransferOpts, TransferReport, transfer,
};
use emptcp_testbed::{
    DEFAULT_RECEIVE_BUFFER, Family, LinkEnd, LinkSpec, MptcpLimits, NAME_PREFIX, Offloads,
    RateLimit, Topology, root_or_skip,
};

/// Skips (returns true) when not root: these tests create namespaces.
/// Under CI=true a missing root fails instead.
fn skip() -> bool {
    !root_or_skip()
}

/// Namespaces of testbed `id` that `ip netns list` still shows.
fn netns_of(id: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let prefix = format!("{NAME_PREFIX}{id}-");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

fn mbit(bps: f64) -> f64 {
    bps / 1e6
}

/// Prints the numbers a human wants to see from a transfer.
fn summarize(what: &str, tp: &TwoPath, r: &TransferReport) {
    let per_path: Vec<String> = r
        .sender
        .subflows
        .iter()
        .map(|sf| {
            let path = sf.local.and_then(|a| tp.path_of_client_addr(a.ip()));
            format!(
                "path {:?}: {} B acked",
                path,
                sf.bytes_acked.saturating_sub(1)
            )
        })
        .collect();
    eprintln!(
        "{what}: {} B in {:.1} ms (FCT; connect {:.1} ms), {:.0} Mbit/s sender, {:.0} Mbit/s receiver; {}",
        r.sender.bytes,
        r.sender.fct_s * 1e3,
        r.sender.connect_s * 1e3,
        mbit(r.sender.throughput_bps),
        mbit(r.receiver.throughput_bps),
        per_path.join(", ")
    );
}

#[test]
fn builder_creates_and_teardown_removes_everything() {
    if skip() {
        return;
    }
    let tb = Topology::builder("tear")
        .host("a")
        .host("b")
        .link(
            LinkSpec::new(
                LinkEnd::new("a", "a0")
                    .addr("10.9.0.1/24")
                    .addr("fd09::1/64"),
                LinkEnd::new("b", "b0")
                    .addr("10.9.0.2/24")
                    .addr("fd09::2/64")
                    .rate_limit(RateLimit::tbf_mbit(10))
                    .offloads(Offloads {
                        tso: Some(false),
                        ..Default::default()
                    }),
            )
            .mtu(1400),
        )
        .sysctl("a", "net.mptcp.checksum_enabled", "1")
        .build()
        .unwrap();
    let id = tb.id().to_owned();
    assert_eq!(netns_of(&id).len(), 2, "both namespaces exist");
    let a = tb.host("a").unwrap();
    let b = tb.host("b").unwrap();
    assert_eq!(a.sysctl_get("net.mptcp.checksum_enabled").unwrap(), "1");
    assert_eq!(
        b.sysctl_get("net.mptcp.checksum_enabled").unwrap(),
        "0",
        "sysctls are per netns"
    );
    assert!(
        a.ip(["-6", "addr", "show", "dev", "a0"])
            .unwrap()
            .contains("fd09::1/64")
    );
    assert!(
        !a.ip(["-6", "addr", "show", "dev", "a0"])
            .unwrap()
            .contains("tentative"),
        "DAD is off"
    );
    assert!(a.ip(["link", "show", "a0"]).unwrap().contains("mtu 1400"));
    assert!(
        b.tc(["qdisc", "show", "dev", "b0"])
            .unwrap()
            .contains("tbf")
    );
    assert_eq!(b.offloads("b0").unwrap().tso, Some(false));
    assert_eq!(a.ifindex("lo").unwrap(), 1, "run() is inside the namespace");
    assert!(a.ifindex("b0").is_err(), "b0 lives in the other namespace");
    // v6 is usable at once (no DAD wait): a TCP connect across the link succeeds.
    let listener = b
        .run(|| std::net::TcpListener::bind("[fd09::2]:0"))
        .unwrap()
        .expect("bind on a fresh v6 address");
    let port = listener.local_addr().unwrap().port();
    a.run(move || {
        std::net::TcpStream::connect_timeout(
            &format!("[fd09::2]:{port}").parse().unwrap(),
            std::time::Duration::from_secs(5),
        )
    })
    .unwrap()
    .expect("connect over v6 right after setup");
    drop(listener);
    tb.teardown().unwrap();
    assert!(
        netns_of(&id).is_empty(),
        "namespaces left: {:?}",
        netns_of(&id)
    );
}

#[test]
fn panic_in_test_still_tears_down() {
    if skip() {
        return;
    }
    let mut id = String::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let tp = two_path("panic", TwoPathOpts::default()).unwrap();
        id = tp.testbed.id().to_owned();
        assert_eq!(netns_of(&id).len(), 3);
        // A panic inside a host thread propagates to the caller, then unwinds past the testbed.
        tp.client.run(|| panic!("deliberate")).unwrap();
    }));
    assert!(result.is_err(), "the closure panicked");
    assert!(!id.is_empty());
    assert!(
        netns_of(&id).is_empty(),
        "namespaces left after panic: {:?}",
        netns_of(&id)
    );
}

#[test]
fn invalid_topology_fails_and_leaves_nothing() {
    if skip() {
        return;
    }
    let err = Topology::builder("bad")
        .host("a")
        .link(LinkSpec::new(
            LinkEnd::new("a", "x0").addr("10.1.1.1/33"),
            LinkEnd::new("a", "x1"),
        ))
        .build()
        .unwrap_err();
    assert!(format!("{err:#}").contains("prefix length"), "{err:#}");
    // A failure while building (bad route) tears down what was created.
    let before: Vec<String> = netns_of(&std::process::id().to_string());
    let err = Topology::builder("bad2")
        .host("a")
        .route(
            "a",
            emptcp_testbed::Route::to("10.1.0.0/16").via("10.2.2.2"),
        )
        .build()
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("ip -n") && msg.contains("route add"),
        "error names the command: {msg}"
    );
    let after: Vec<String> = netns_of(&std::process::id().to_string());
    assert!(
        after.iter().all(|n| !n.contains("-bad2-")),
        "left: {after:?} (before {before:?})"
    );
}

fn two_path_transfer(family: Family) {
    let tp = two_path(
        &format!("{family:?}").to_lowercase(),
        TwoPathOpts {
            family,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(tp.router.sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
    let r2 = tp.router.iface_counters("r2").unwrap();
    let r4 = tp.router.iface_counters("r4").unwrap();
    let server_before = tp.server.nstat().unwrap();
    let opts = TransferOpts::new(tp.server_addr(), 20 << 20).expect_subflows_with_data(2);
    let report = transfer(&tp.client, &tp.server, &opts).unwrap();
    summarize(&format!("{family:?} unlimited"), &tp, &report);
    assert!(report.sender.verified);
    assert_eq!(report.receiver.bytes, 20 << 20);
    assert_eq!(report.receiver.sha256, report.sender.sha256);
    assert_eq!(report.sender.subflows.len(), 2);
    // The receiver read nothing before the join was in the connection
    // (ReceiverOpts::wait_subflows: docs/kernel-issues.md).
    assert_eq!(report.receiver.subflows_before_reading, 2);
    // Each subflow left from a different client address, i.e. took a different path.
    let mut paths: Vec<u8> = report
        .sender
        .subflows
        .iter()
        .filter_map(|sf| tp.path_of_client_addr(sf.local?.ip()))
        .collect();
    paths.sort();
    assert_eq!(paths, [1, 2]);
    // Path 2's subflow really went c2 -> r2 -> r4 (the iif rule), not over r3.
    let path2 = report
        .sender
        .subflows
        .iter()
        .find(|sf| tp.path_of_client_addr(sf.local.unwrap().ip()) == Some(2))
        .unwrap();
    let r2_rx = tp.router.iface_counters("r2").unwrap().delta(&r2).rx_bytes;
    let r4_tx = tp.router.iface_counters("r4").unwrap().delta(&r4).tx_bytes;
    assert!(
        r2_rx >= path2.bytes_sent && r4_tx >= path2.bytes_sent,
        "r2 rx {r2_rx}, r4 tx {r4_tx}"
    );
    let delta = tp.server.nstat().unwrap().delta(&server_before);
    assert!(
        delta.mp_join_syn_rx() > 0,
        "server counters: {:?}",
        delta.mptcp().nonzero()
    );
    assert_eq!(delta.tcp_in_csum_errors(), 0);
    assert_eq!(delta.mptcp_data_csum_err(), 0);
}

#[test]
fn two_path_ipv4_transfer_uses_both_paths() {
    if skip() {
        return;
    }
    two_path_transfer(Family::V4);
}

#[test]
fn two_path_ipv6_transfer_uses_both_paths() {
    if skip() {
        return;
    }
    two_path_transfer(Family::V6);
}

#[test]
fn htb_rate_limit_caps_throughput() {
    if skip() {
        return;
    }
    let per_path_mbit = 40;
    let opts = TwoPathOpts {
        rate_limit: [
            Some(RateLimit::htb_mbit(per_path_mbit)),
            Some(RateLimit::htb_mbit(per_path_mbit)),
        ],
        ..Default::default()
    };
    let tp = two_path("htb", opts).unwrap();
    assert!(
        tp.router
            .tc(["class", "show", "dev", "r3"])
            .unwrap()
            .contains("rate 40Mbit")
    );
    let report = transfer(
        &tp.client,
        &tp.server,
        &TransferOpts::new(tp.server_addr(), 8 << 20).expect_subflows_with_data(2),
    )
    .unwrap();
    summarize("HTB 2x40 Mbit/s", &tp, &report);
    let limit_bps = 2.0 * per_path_mbit as f64 * 1e6;
    // Only an upper bound: the machine is shared, so a lower bound would be flaky.
    assert!(
        report.receiver.throughput_bps < 1.5 * limit_bps,
        "{:.0} Mbit/s through a {:.0} Mbit/s limit",
        mbit(report.receiver.throughput_bps),
        mbit(limit_bps)
    );
}

#[test]
fn single_subflow_fails_the_two_subflow_expectation() {
    if skip() {
        return;
    }
    // Control: the same topology with the client's subflow limit at 0 opens no second subflow.
    let opts = TwoPathOpts {
        client_limits: MptcpLimits {
            subflows: 0,
            add_addr_accepted: 0,
        },
        ..Default::default()
    };
    let tp = two_path("single", opts).unwrap();
    let plain = transfer(
        &tp.client,
        &tp.server,
        &TransferOpts::new(tp.server_addr(), 4 << 20),
    )
    .unwrap();
    assert_eq!(plain.sender.subflows_with_data, 1);
    assert_eq!(plain.sender.mptcp.extra_subflows, 0);
    let err = transfer(
        &tp.client,
        &tp.server,
        &TransferOpts::new(tp.server_addr(), 4 << 20).expect_subflows_with_data(2),
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    eprintln!("expected failure: {msg}");
    match err.downcast_ref::<TrafficError>() {
        Some(TrafficError::TooFewSubflowsWithData {
            expected: 2,
            got: 1,
            ..
        }) => {}
        other => panic!("wrong error {other:?}: {msg}"),
    }
    assert!(
        msg.contains("expected at least 2 subflows carrying data"),
        "{msg}"
    );
}

#[test]
fn checksums_and_offloads_off() {
    if skip() {
        return;
    }
    let opts = TwoPathOpts {
        checksum: Some(true),
        offloads: Some(Offloads::all_off()),
        ..Default::default()
    };
    let tp = two_path("csum", opts).unwrap();
    let r1 = tp.router.offloads("r1").unwrap();
    assert_eq!(
        (r1.tso, r1.gso, r1.gro, r1.tx_checksum),
        (Some(false), Some(false), Some(false), Some(false))
    );
    let before = tp.server.nstat().unwrap();
    let report = transfer(
        &tp.client,
        &tp.server,
        &TransferOpts::new(tp.server_addr(), 8 << 20).expect_subflows_with_data(2),
    )
    .unwrap();
    summarize("checksums on, offloads off", &tp, &report);
    assert!(report.sender.mptcp.csum_enabled, "DSS checksums negotiated");
    let delta = tp.server.nstat().unwrap().delta(&before);
    assert_eq!(delta.tcp_in_csum_errors(), 0);
    assert_eq!(delta.mptcp_data_csum_err(), 0);
}

#[test]
fn capture_on_router_records_mptcp() {
    if skip() {
        return;
    }
    let tp = two_path("pcap", TwoPathOpts::default()).unwrap();
    let dir = std::env::temp_dir().join(format!(
        "emtb-pcap-{}-{}",
        std::process::id(),
        tp.testbed.id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("r2.pcap");
    let cap = tp.router.capture("r2", "tcp", &path).unwrap();
    // No subflow expectation: a short transfer may finish before the join carries data; the
    // join SYN itself is what this test looks for.
    transfer(
        &tp.client,
        &tp.server,
        &TransferOpts::new(tp.server_addr(), 4 << 20),
    )
    .unwrap();
    let summary = cap.finish().unwrap();
    eprintln!("capture: {summary:?}");
    assert!(summary.packets_captured.unwrap_or(0) > 0);
    // tshark sees the MP_JOIN SYN of path 2 in a complete pcap.
    let out = Command::new("timeout")
        .args(["30", "tshark", "-n", "-r"])
        .arg(&path)
        .args([
            "-Y",
            "tcp.options.mptcp.subtype == 1",
            "-T",
            "fields",
            "-e",
            "ip.src",
        ])
        .output()
        .unwrap();
    let joins = String::from_utf8_lossy(&out.stdout);
    assert!(
        joins.contains("10.77.2.1"),
        "tshark: {joins} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn nstat_matches_the_nstat_tool() {
    if skip() {
        return;
    }
    let tp = two_path("nstat", TwoPathOpts::default()).unwrap();
    transfer(
        &tp.client,
        &tp.server,
        &TransferOpts::new(tp.server_addr(), 1 << 20),
    )
    .unwrap();
    let ours = tp.server.nstat().unwrap();
    let out = tp
        .server
        .exec(
            "nstat",
            ["-asz", "TcpPassiveOpens", "MPTcpExtMPCapableSYNRX"],
        )
        .unwrap();
    for line in out.stdout.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(ours.get(f[0]).to_string(), f[1], "{}", f[0]);
    }
    assert!(ours.get("MPTcpExtMPCapableSYNRX") >= 1);
}

#[test]
fn enter_guard_restores_the_namespace() {
    if skip() {
        return;
    }
    let tb = Topology::builder("enter")
        .host("a")
        .link(LinkSpec::new(
            LinkEnd::new("a", "a0"),
            LinkEnd::new("a", "a1"),
        ))
        .build()
        .unwrap();
    let a = tb.host("a").unwrap();
    let outside = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    {
        let _guard = a.enter().unwrap();
        assert_ne!(
            std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
            outside
        );
        assert!(nix::net::if_::if_nametoindex("a1").is_ok());
    }
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        outside
    );
    let spawned = a
        .spawn(|| nix::net::if_::if_nametoindex("a0").is_ok())
        .unwrap();
    assert!(spawned.join().unwrap().unwrap());
}

#[test]
fn reap_stale_deletes_only_dead_owners() {
    if skip() {
        return;
    }
    // 4000000000 is above any pid_max, so its owner is certainly gone.
    let dead = format!("{NAME_PREFIX}4000000000-{}-reap-x", std::process::id());
    let status = Command::new("ip")
        .args(["netns", "add", &dead])
        .status()
        .unwrap();
    assert!(status.success());
    let tb = Topology::builder("alive").host("a").build().unwrap();
    let deleted = emptcp_testbed::reap_stale().unwrap();
    assert!(deleted.contains(&dead), "deleted {deleted:?}");
    assert_eq!(
        netns_of(tb.id()).len(),
        1,
        "a live process's namespace stays"
    );
}

/// A receiver that no client ever reaches stops when asked (and when
/// dropped): its accept loop wakes up to look at the stop flag.
#[test]
fn receiver_without_a_client_stops() {
    if skip() {
        return;
    }
    let tb = Topology::builder("rxstop").host("h").build().unwrap();
    let host = tb.host("h").unwrap();
    let rx = Receiver::start(host, ReceiverOpts::default()).unwrap();
    assert!(rx.stop().unwrap().is_empty());
    drop(Receiver::start(host, ReceiverOpts::default()).unwrap());
}

/// Hosts start sockets with the testbed's receive buffer (which keeps a
/// kernel MPTCP bug away, docs/kernel-issues.md), or the kernel's own when
/// asked: a new namespace inherits the initial namespace's `tcp_rmem`.
#[test]
fn hosts_start_sockets_with_the_testbed_receive_buffer() {
    if skip() {
        return;
    }
    let middle = |v: &str| -> u64 { v.split_whitespace().nth(1).unwrap().parse().unwrap() };
    let tb = Topology::builder("rcvbuf").host("h").build().unwrap();
    let rmem = tb
        .host("h")
        .unwrap()
        .sysctl_get("net.ipv4.tcp_rmem")
        .unwrap();
    assert_eq!(middle(&rmem), u64::from(DEFAULT_RECEIVE_BUFFER), "{rmem}");
    let max: u64 = rmem.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(max >= u64::from(DEFAULT_RECEIVE_BUFFER), "{rmem}");

    let kernel = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem").unwrap();
    let tb = Topology::builder("rcvbuf0")
        .receive_buffer(None)
        .host("h")
        .build()
        .unwrap();
    let rmem = tb
        .host("h")
        .unwrap()
        .sysctl_get("net.ipv4.tcp_rmem")
        .unwrap();
    assert_eq!(middle(&rmem), middle(&kernel), "{rmem} vs {kernel}");
}
