//! The benchmark's code works: every case of `emptcp::bench` is built and
//! its correctness check passes (the chain ran and did its work), with tiny
//! repeat counts and small flow and policy counts. No timing is asserted:
//! timed assertions are flaky on a shared VM; docs/benchmarks.md has the
//! figures.

use emptcp::Hook;
use emptcp::bench::{self, BenchOptions, PublishTarget};
use emptcp_testbed::{LinkEnd, LinkSpec, Topology, root_or_skip};
use emptcp_wire::mptcp::MptcpOption;
use emptcp_wire::packet::ParsedPacket;

#[test]
fn every_benchmark_case_passes_its_check() {
    if !root_or_skip() {
        return;
    }
    let tb = Topology::builder("bsmoke")
        .host("b")
        .link(LinkSpec::new(
            LinkEnd::new("b", "bs0"),
            LinkEnd::new("b", "bs1"),
        ))
        .build()
        .expect("publish namespace");
    let host = tb.host("b").unwrap();
    let opts = BenchOptions {
        repeat: 10,
        runs: 1,
        cpu: None,
        flow_counts: vec![1_000],
        policies: 100,
        publish_rounds: 2,
        publish_target: Some(PublishTarget {
            netns: host.netns_path(),
            ifindex: host.ifindex("bs0").unwrap(),
        }),
    };
    let report = bench::run(&opts).expect("benchmark ran and every check passed");

    let cases: Vec<(Hook, &str)> = report
        .cases
        .iter()
        .map(|c| (c.hook, c.case.as_str()))
        .collect();
    for hook in [Hook::Xdp, Hook::TcIngress] {
        for case in [
            "chain 1",
            "chain 2",
            "chain 4",
            "chain 8",
            "chain 16",
            "non-TCP",
            "TCP, no match",
            "chain 8, 1k flows, accounted",
            "chain 2, 100 policies",
        ] {
            assert!(
                cases.contains(&(hook, case)),
                "{hook} {case} missing: {cases:?}"
            );
        }
    }
    for c in &report.cases {
        assert_eq!(c.emptcp.samples.len(), 1, "{} {}", c.hook, c.case);
        assert!(!c.checked.is_empty());
    }
    assert_eq!(report.components.len(), 7);
    assert_eq!(report.publish.len(), 2);
    assert!(report.publish.iter().all(|p| p.apply_us.is_some()));
    // 2 hooks x (1 empty + 1 generation 0 + 9 cases x 2 engines) + 7 probes
    // + 2 hooks x 2 publish rounds.
    assert_eq!(report.checks_passed, 2 * (1 + 1 + 18) + 7 + 4);
    assert!(report.to_markdown().contains("| chain 8 |"));
}

/// The benchmark's hand-built packets are what they claim (checked with the
/// project's own packet parser).
#[test]
fn benchmark_packets_parse() {
    let tcp = bench::tcp_packet([10, 0, 0, 2].into(), 40008, [10, 9, 0, 1].into(), 80);
    assert_eq!(tcp.len(), 66);
    let p = ParsedPacket::parse(&tcp).expect("valid TCP packet");
    assert_eq!((p.tcp.src_port, p.tcp.dst_port), (40008, 80));
    p.verify_checksums().expect("checksums");
    let opts: Vec<&MptcpOption> = p.mptcp_options().collect();
    assert!(matches!(opts[..], [MptcpOption::Dss(_)]), "{opts:?}");
    let udp = bench::non_tcp_packet(&tcp);
    assert_eq!(udp[23], 17);
}
