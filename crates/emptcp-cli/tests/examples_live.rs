//! Every example policy file not already applied live by the library's tests
//! (crates/emptcp/tests/*_live.rs, blk_subflow.rs, set_backup.rs, ...),
//! applied with `emptcp apply` to a live attachment on the two-path testbed,
//! with real kernel MPTCP, and its effect checked; each with a control.

mod common;

use std::path::{Path, PathBuf};

use common::{PinDir, json, netns_name, run, tempdir};
use emptcp_testbed::presets::{self, TwoPath};
use emptcp_testbed::traffic::{self, TransferOpts, TransferReport};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/policies")
        .join(name)
}

fn paced(label: &str) -> TwoPath {
    let opts = presets::TwoPathOpts {
        rate_limit: [Some(emptcp_testbed::RateLimit::htb_mbit(50)); 2],
        ..Default::default()
    };
    presets::two_path(label, opts).expect("two-path testbed")
}

/// Attaches at `hook` on each router interface and applies `file` there.
fn attach_and_apply(tb: &TwoPath, pins: &Path, hook: &str, ifaces: &[&str], file: &Path) {
    let ns = netns_name(&tb.router);
    for iface in ifaces {
        run(pins, Some(&ns), &["attach", iface, "--hook", hook], 0);
        run(
            pins,
            Some(&ns),
            &["apply", "-f", file.to_str().unwrap(), iface],
            0,
        );
    }
}

fn transfer(tb: &TwoPath, opts: TransferOpts) -> TransferReport {
    let t = traffic::transfer(&tb.client, &tb.server, &opts.expect_subflows_with_data(2))
        .expect("verified MPTCP transfer");
    assert!(t.sender.verified);
    t
}

/// Packets each policy won at `iface`, from `emptcp show --json`.
fn hits(pins: &Path, iface: &str) -> std::collections::BTreeMap<String, u64> {
    let show = json(pins, None, &["show"]);
    let att = show["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["iface"] == iface)
        .unwrap_or_else(|| panic!("no attachment on {iface}: {show:#}"))
        .clone();
    att["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["packets"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Hits of operator `position` of `policy` at `iface`, from `emptcp stats`.
fn op_hits(pins: &Path, iface: &str, policy: &str, position: u64) -> u64 {
    let stats = json(pins, None, &["stats"]);
    stats["operators"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["iface"] == iface && o["policy"] == policy && o["position"] == position)
        .map(|o| o["hits"].as_u64().unwrap())
        .sum()
}

#[test]
fn count_example_counts_each_path_on_its_link() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let tb = paced("excount");
    let pins = PinDir::new("excount");
    attach_and_apply(
        &tb,
        &pins.0,
        "tc-ingress",
        &["r1", "r2"],
        &example("count.toml"),
    );
    transfer(&tb, TransferOpts::new(tb.server_addr(), 4 << 20).port(5201));
    let (r1, r2) = (hits(&pins.0, "r1"), hits(&pins.0, "r2"));
    eprintln!("r1 {r1:?}\nr2 {r2:?}");
    assert!(r1["path1_iperf"] > 0 && r2["path2_iperf"] > 0);
    assert_eq!(r1["path2_iperf"] + r2["path1_iperf"], 0);
    // Control: traffic to another port falls to `other`.
    transfer(&tb, TransferOpts::new(tb.server_addr(), 1 << 20).port(5202));
    let (r1b, r2b) = (hits(&pins.0, "r1"), hits(&pins.0, "r2"));
    assert_eq!(r1b["path1_iperf"], r1["path1_iperf"], "{r1b:?}");
    assert!(r1b["other"] > 0 && r2b["other"] > 0, "{r1b:?} {r2b:?}");
}

#[test]
fn set_mark_example_moves_path2_by_policy_routing() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let tb = paced("exmark");
    let pins = PinDir::new("exmark");
    // Marked packets (2) go to the server over r3, ahead of the rule that
    // sends whatever enters on r2 out of r4.
    tb.router
        .ip([
            "route",
            "add",
            "10.77.3.0/24",
            "via",
            "10.77.3.1",
            "dev",
            "r3",
            "table",
            "103",
        ])
        .unwrap();
    tb.router
        .ip(["rule", "add", "pref", "10", "fwmark", "2", "table", "103"])
        .unwrap();
    let tx = |tb: &TwoPath| ["r3", "r4"].map(|i| tb.router.iface_counters(i).unwrap().tx_bytes);
    const BYTES: u64 = 8 << 20;

    // Control: attached with no policies, path 2 leaves by r4.
    let ns = netns_name(&tb.router);
    for iface in ["r1", "r2"] {
        run(
            &pins.0,
            Some(&ns),
            &["attach", iface, "--hook", "tc-ingress"],
            0,
        );
    }
    let before = tx(&tb);
    let t = transfer(&tb, TransferOpts::new(tb.server_addr(), BYTES));
    let path2 = t.sender.acked_payload_from("10.77.2.1".parse().unwrap());
    let r4 = tx(&tb)[1] - before[1];
    assert!(
        path2 > 0 && r4 >= path2,
        "control: r4 {r4} B, path 2 {path2} B"
    );

    for iface in ["r1", "r2"] {
        let f = example("set_mark.toml");
        run(
            &pins.0,
            Some(&ns),
            &["apply", "-f", f.to_str().unwrap(), iface],
            0,
        );
    }
    let before = tx(&tb);
    let t = transfer(&tb, TransferOpts::new(tb.server_addr(), BYTES));
    let after = tx(&tb);
    let path2 = t.sender.acked_payload_from("10.77.2.1".parse().unwrap());
    let (r3, r4) = (after[0] - before[0], after[1] - before[1]);
    let h = hits(&pins.0, "r2");
    eprintln!("r3 {r3} B, r4 {r4} B, path 2 {path2} B, hits on r2 {h:?}");
    assert!(path2 > 0);
    assert!(r3 >= BYTES, "r3 carried {r3} of {BYTES} B");
    assert!(r4 < path2 / 100, "r4 still carried {r4} B");
    assert_eq!(h["joins"], 1, "{h:?}");
    assert!(h["mark_path2"] > 0, "{h:?}");
}

/// The largest window (scaled by the shift its SYN/ACK announced) among the
/// server's pure ACKs (the packets the example selects) captured on the
/// client's path-1 interface.
fn max_window_to_client(tb: &TwoPath, opts: TransferOpts) -> (u64, usize) {
    use emptcp_wire::packet::ParsedPacket;
    use emptcp_wire::tcp_opt::TcpOption;
    let pcap = std::env::temp_dir().join(format!("emptcp-exrate-{}.pcap", std::process::id()));
    let capture = tb
        .client
        .capture("c1", "tcp and src host 10.77.3.1", &pcap)
        .unwrap();
    transfer(tb, opts);
    capture.finish().unwrap();
    let file = std::fs::File::open(&pcap).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(file).unwrap();
    let (mut shift, mut max, mut n) = (0u32, 0u64, 0usize);
    while let Some(frame) = reader.next_packet() {
        let p = ParsedPacket::parse_capture(&frame.unwrap().data).unwrap();
        let window = u64::from(p.tcp.window);
        if p.tcp.flags.0 & 0x02 != 0 {
            // The SYN/ACK announces the shift of the windows after it.
            shift = p
                .options()
                .unwrap()
                .iter()
                .find_map(|o| match o.option {
                    TcpOption::WindowScale(s) => Some(u32::from(s)),
                    _ => None,
                })
                .unwrap_or(0);
        } else if p.tcp.flags.0 == 0x10 && p.payload().is_empty() {
            max = max.max(window << shift);
            n += 1;
        }
    }
    std::fs::remove_file(&pcap).ok();
    (max, n)
}

#[test]
fn rate_limit_example_clamps_path1_windows() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let tb = paced("exrate");
    let pins = PinDir::new("exrate");
    const CAP: u64 = 8 << 10; // the example's cap
    let opts = TransferOpts::new(tb.server_addr(), 8 << 20);
    // Control: attached, no policies: the server's windows exceed the cap.
    let ns = netns_name(&tb.router);
    run(
        &pins.0,
        Some(&ns),
        &["attach", "r3", "--hook", "tc-ingress"],
        0,
    );
    let (control, _) = max_window_to_client(&tb, opts);
    let f = example("rate_limit.toml");
    run(
        &pins.0,
        Some(&ns),
        &["apply", "-f", f.to_str().unwrap(), "r3"],
        0,
    );
    let (clamped, frames) = max_window_to_client(&tb, opts);
    let clamp = op_hits(&pins.0, "r3", "clamp_path1_acks", 1);
    eprintln!(
        "largest window to the client on path 1: control {control} B, clamped {clamped} B over {frames} packets; rate_limit ran {clamp} times"
    );
    assert!(
        control > CAP,
        "control windows {control} never exceed the cap"
    );
    assert!(frames > 100, "only {frames} packets captured");
    assert!(
        clamped <= CAP,
        "a window of {clamped} B passed the {CAP} B cap"
    );
    assert!(clamp > 0);
    let stats = json(&pins.0, None, &["stats"]);
    for op in stats["operators"].as_array().unwrap() {
        assert!(op["skipped"].as_object().unwrap().is_empty(), "{op}");
    }
}

#[test]
fn path_management_example_sees_sequence_and_subflow_index() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let tb = paced("expm");
    let pins = PinDir::new("expm");
    attach_and_apply(
        &tb,
        &pins.0,
        "tc-ingress",
        &["r1", "r2"],
        &example("path_management.toml"),
    );
    transfer(&tb, TransferOpts::new(tb.server_addr(), 8 << 20));
    let (r1, r2) = (hits(&pins.0, "r1"), hits(&pins.0, "r2"));
    eprintln!("r1 {r1:?}\nr2 {r2:?}");
    // The initial subflow runs on path 1 (r1), the join on path 2 (r2).
    assert!(r1["bulk_after_1MiB"] > 0, "{r1:?}");
    assert!(r1["first_64KiB_of_data"] > 0, "{r1:?}");
    assert_eq!(r2["bulk_after_1MiB"], 0, "{r2:?}");
    assert!(r2["second_subflow"] > 0, "{r2:?}");
    assert_eq!(r1["second_subflow"], 0, "{r1:?}");
    // Its token is made up: that policy never matches.
    assert_eq!(r1["one_connection"] + r2["one_connection"], 0);
    let conns = json(&pins.0, None, &["conns"]);
    assert_eq!(conns.as_array().unwrap().len(), 1, "{conns:#}");
}

#[test]
fn plugin_example_marks_only_af11_packets() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let tb = paced("explug");
    let pins = PinDir::new("explug");
    // The example beside the plugin object it names, as its comment builds.
    let dir = tempdir("explug");
    std::fs::copy(example("plugin.toml"), dir.join("plugin.toml")).unwrap();
    let object = emptcp::testing::object_bytes("plugins/match_dscp").unwrap();
    std::fs::write(dir.join("match_dscp.bpf.o"), object).unwrap();
    attach_and_apply(&tb, &pins.0, "tc-egress", &["r3"], &dir.join("plugin.toml"));
    let policy = "af11_to_server";

    // Control: default DSCP; count runs, the plugin stops the chain.
    transfer(&tb, TransferOpts::new(tb.server_addr(), 2 << 20));
    let (count0, mark0) = (
        op_hits(&pins.0, "r3", policy, 0),
        op_hits(&pins.0, "r3", policy, 2),
    );
    assert!(count0 > 0);
    assert_eq!(mark0, 0, "set_mark ran on non-AF11 packets");

    // AF11 (DSCP 10): every packet to the server on r3 gets the mark.
    transfer(
        &tb,
        TransferOpts::new(tb.server_addr(), 2 << 20).tos(10 << 2),
    );
    let (count1, mark1) = (
        op_hits(&pins.0, "r3", policy, 0),
        op_hits(&pins.0, "r3", policy, 2),
    );
    eprintln!("count {count0} then {count1}; set_mark {mark0} then {mark1}");
    assert!(count1 > count0);
    assert_eq!(
        mark1,
        count1 - count0,
        "set_mark on every AF11 packet and no other"
    );
}
