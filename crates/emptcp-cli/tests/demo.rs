//! The README's demo, run as a user runs it, judged from its JSON output.

use std::process::Command;

fn demo(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_emptcp"))
        .arg("demo")
        .args(args)
        .arg("--json")
        .output()
        .expect("running emptcp demo");
    assert!(
        out.status.success(),
        "emptcp demo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("demo prints JSON")
}

fn check(report: &serde_json::Value, bytes: u64) {
    assert_eq!(report["verified"], true);
    assert_eq!(report["bytes"], bytes);
    let subflows = report["subflows"].as_array().unwrap();
    assert!(subflows.len() >= 2, "{report:#}");
    for sf in subflows {
        let acked = sf["acked_bytes"].as_u64().unwrap();
        assert!(acked > 0, "{sf}");
        // emptcp on the router saw every payload byte the server acked.
        assert!(
            sf["emptcp_payload_bytes"].as_u64().unwrap() >= acked,
            "{sf}"
        );
    }
    let (_, counters) = (
        &report["emptcp_counters"][0][0],
        &report["emptcp_counters"][0][1],
    );
    assert_eq!(counters["missing_chain"], 0);
    let policies = report["policies"].as_array().unwrap();
    let hits: u64 = policies
        .iter()
        .map(|p| p["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(hits, counters["matched"].as_u64().unwrap(), "{report:#}");
    for name in ["path1", "path2"] {
        let p = policies.iter().find(|p| p["name"] == name).unwrap();
        assert!(p["packets"].as_u64().unwrap() > 0, "{p}");
    }
}

#[test]
fn demo_ipv4_tc_ingress() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    // Rate-limited paths (the default): an unlimited 4 MiB transfer can end
    // before the join carries data, which the demo reports as an error.
    check(&demo(&["--bytes", "4M"]), 4 << 20);
}

#[test]
fn demo_ipv6_tc_egress() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    check(
        &demo(&["--bytes", "4M", "--ipv6", "--hook", "tc-egress"]),
        4 << 20,
    );
}

#[test]
fn bad_arguments_are_refused_with_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_emptcp"))
        .args(["demo", "--bytes", "lots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a size"));
    let out = Command::new(env!("CARGO_BIN_EXE_emptcp"))
        .args(["demo", "--hook", "sideways"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown hook"));
}
