//! `emptcp bench --transfer` works: a tiny configuration (1 round, one short
//! bulk transfer, 3 short flows) runs every variant, every correctness check
//! passes, and the report has every row. No timing is asserted: timed
//! assertions are flaky on a shared VM; docs/benchmarks.md has the figures.

use std::process::Command;

const VARIANTS: [&str; 5] = [
    "none",
    "generation0",
    "generation0-no-quick",
    "chain8",
    "accounted",
];

#[test]
fn every_transfer_variant_runs_and_passes_its_checks() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    // 32 MiB: long enough on unlimited veth paths for the join to carry data.
    let out = Command::new(env!("CARGO_BIN_EXE_emptcp"))
        .args(["bench", "--transfer", "--rounds", "1", "--seconds", "0"])
        .args([
            "--bulk-bytes",
            "32M",
            "--flows",
            "3",
            "--flow-bytes",
            "100K",
        ])
        .arg("--json")
        .output()
        .expect("running emptcp bench --transfer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench --transfer failed: {stderr}");
    // Progress on stderr, one line per variant and round, also with --json.
    assert!(stderr.contains("round 1/1, chain 8"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");

    let rows = report["rows"].as_array().expect("rows");
    let variants: Vec<&str> = rows
        .iter()
        .map(|r| r["variant"].as_str().unwrap())
        .collect();
    assert_eq!(variants, VARIANTS);
    for row in rows {
        let bulk = row["bulk"].as_array().unwrap();
        assert_eq!(bulk.len(), 1, "{row}");
        assert_eq!(bulk[0]["transfers"], 1, "{row}");
        assert_eq!(bulk[0]["bytes"], 32 << 20, "{row}");
        let flows = row["flows"].as_array().unwrap();
        assert_eq!(flows.len(), 1, "{row}");
        assert_eq!(flows[0]["fct_ms"].as_array().unwrap().len(), 3, "{row}");
        assert_eq!(row["bulk_ratio"]["samples"].as_array().unwrap().len(), 1);
        assert!(!row["checked"].as_str().unwrap().is_empty(), "{row}");
    }
    // Each variant checked before timing and after its one round.
    assert_eq!(report["checks_passed"], 2 * VARIANTS.len());
    let chain8 = rows[3]["checked"].as_str().unwrap();
    assert!(chain8.contains("= matched = each actor's hits"), "{chain8}");
    let no_quick = rows[2]["checked"].as_str().unwrap();
    assert!(no_quick.contains("quick 0"), "{no_quick}");
}
