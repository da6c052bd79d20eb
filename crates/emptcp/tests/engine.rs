//! The policy engine on crafted packets (BPF_PROG_TEST_RUN) and live: which
//! policy wins, what its chain does, counters, generations.

use std::net::{Ipv4Addr, SocketAddr};

mod common;

use emptcp::policy::{
    Action, ActionChain, Combine, PacketType, Policy, PolicySet, Prefix, Selector, SelectorChain,
    SelectorKind,
};
use emptcp::{Dataplane, Generation, Hook};
use emptcp_testbed::root_or_skip;
use emptcp_wire::mptcp::{DataSeq, Dss, MpJoin, MptcpOption};
use emptcp_wire::packet::{PacketBuilder, TcpFlags};
use emptcp_wire::tcp_opt::TcpOption;

const TC_ACT_SHOT: u32 = 2;
const TC_ACT_UNSPEC: u32 = -1i32 as u32;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// A client->server packet as the server side's ingress sees it: the
/// destination (10.9.0.1:80) is local.
fn pkt(
    src: [u8; 4],
    sport: u16,
    flags: TcpFlags,
    option: Option<TcpOption>,
    payload: usize,
) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(Ipv4Addr::from(src), Ipv4Addr::new(10, 9, 0, 1))
        .ports(sport, 80)
        .flags(flags)
        .payload(vec![0x55; payload]);
    if let Some(o) = option {
        b = b.option(o);
    }
    b.build().unwrap()
}

fn dss() -> Option<TcpOption> {
    Some(TcpOption::Mptcp(MptcpOption::Dss(Dss {
        data_ack: Some(DataSeq::Short(1)),
        mapping: None,
        data_fin: false,
        unused_bits: 0,
    })))
}

fn join_syn() -> Option<TcpOption> {
    Some(TcpOption::Mptcp(MptcpOption::MpJoin(MpJoin::Syn {
        backup: false,
        address_id: 2,
        token: 0xdead_beef,
        random: 7,
        reserved: 0,
    })))
}

fn chain(actions: &[Action]) -> ActionChain {
    let mut c = ActionChain::new();
    for a in actions {
        c.add(*a);
    }
    c
}

fn load(dp: &mut Dataplane, set: &PolicySet, hook: Hook) -> Generation {
    let compiled = set.compile(hook).expect("policy compiles");
    dp.load_generation(&compiled, &[])
        .expect("generation loads")
}

fn with_dataplane(f: impl FnOnce(&mut Dataplane)) {
    if root_or_skip() {
        f(&mut Dataplane::load().expect("load entry programs"));
    }
}

/// src prefix AND port, two policies with overlap and priorities.
fn overlapping_set() -> PolicySet {
    let mut sc = SelectorChain::new();
    sc.add(SelectorKind::Src, Combine::And)
        .add(SelectorKind::Port, Combine::And);
    let mut wide = Policy::new("wide", chain(&[Action::Count, Action::SetMark(1)]));
    wide.select(0, Selector::Src("10.0.0.0/8".parse().unwrap()));
    let mut narrow = Policy::new("narrow", chain(&[Action::SetMark(2)]));
    narrow
        .select(0, Selector::Src("10.1.0.0/16".parse().unwrap()))
        .select(
            1,
            Selector::Port {
                local: Some(80),
                remote: None,
            },
        )
        .priority(5);
    let mut blocked = Policy::new(
        "blocked",
        chain(&[Action::Count, Action::Drop, Action::SetMark(9)]),
    );
    blocked.select(0, Selector::Src("10.1.2.3".parse().unwrap()));
    PolicySet {
        selectors: sc,
        policies: vec![wide, narrow, blocked],
    }
}

#[test]
fn the_highest_priority_matching_policy_runs_its_chain() {
    with_dataplane(|dp| {
        let g = load(dp, &overlapping_set(), Hook::TcIngress);
        let run = |src: [u8; 4], sport| {
            g.test_run(&pkt(src, sport, TcpFlags::ACK, dss(), 10))
                .unwrap()
        };

        // 10.1.x.x to local port 80: narrow (priority 5) beats wide.
        let r = run([10, 1, 7, 7], 1000);
        assert_eq!((r.verdict, r.mark), (TC_ACT_UNSPEC, Some(2)));
        // Only wide matches.
        let r = run([10, 2, 7, 7], 1001);
        assert_eq!((r.verdict, r.mark), (TC_ACT_UNSPEC, Some(1)));
        // blocked (10.1.2.3/32) has priority 0 like wide but comes later in
        // the set, and narrow's priority 5 beats both: not dropped.
        let r = run([10, 1, 2, 3], 1002);
        assert_eq!((r.verdict, r.mark), (TC_ACT_UNSPEC, Some(2)));
        // Nothing matches 192.168/16: passes, no mark, counted as no_policy.
        let before = dp.counters(Hook::TcIngress).unwrap().get("no_policy");
        let r = run([192, 168, 0, 1], 1003);
        assert_eq!((r.verdict, r.mark), (TC_ACT_UNSPEC, Some(0)));
        assert_eq!(
            dp.counters(Hook::TcIngress).unwrap().get("no_policy"),
            before + 1
        );
        // Every packet left with its bytes unchanged.
        let p = pkt([10, 2, 7, 7], 1001, TcpFlags::ACK, dss(), 10);
        assert_eq!(g.test_run(&p).unwrap().packet, p);

        let hits = g.policy_hits().unwrap();
        assert_eq!(
            hits,
            vec![
                ("wide".into(), 2),
                ("narrow".into(), 2),
                ("blocked".into(), 0)
            ]
        );
        assert_eq!(
            dp.counters(Hook::TcIngress).unwrap().get("missing_chain"),
            0
        );
    });
}

#[test]
fn a_drop_ends_the_chain_and_counters_say_how_far_it_ran() {
    with_dataplane(|dp| {
        let mut set = overlapping_set();
        set.policies[2].priority(10); // blocked now wins for 10.1.2.3
        for hook in [Hook::TcIngress, Hook::Xdp] {
            let mut set = set.clone();
            if hook == Hook::Xdp {
                // set_mark is TC-only: the compiler refuses it at XDP.
                assert!(set.compile(hook).is_err());
                for p in &mut set.policies {
                    let kept: Vec<Action> = p
                        .actions
                        .actions()
                        .iter()
                        .copied()
                        .filter(|a| !matches!(a, Action::SetMark(_)))
                        .collect();
                    p.actions = chain(&kept);
                }
            }
            let g = load(dp, &set, hook);
            let r = g
                .test_run(&pkt([10, 1, 2, 3], 2000, TcpFlags::ACK, dss(), 0))
                .unwrap();
            let drop = if hook == Hook::Xdp {
                XDP_DROP
            } else {
                TC_ACT_SHOT
            };
            assert_eq!(r.verdict, drop, "{hook}");
            let chain = g.policy().chain_of(2).unwrap();
            let hits: Vec<u64> = g.op_stats(chain).unwrap().iter().map(|s| s.hits).collect();
            // count and drop ran; the set_mark after drop did not (TC).
            let expected: &[u64] = if hook == Hook::Xdp {
                &[1, 1]
            } else {
                &[1, 1, 0]
            };
            assert_eq!(hits, expected, "{hook}");
            let pass = if hook == Hook::Xdp {
                XDP_PASS
            } else {
                TC_ACT_UNSPEC
            };
            let r = g
                .test_run(&pkt([10, 2, 0, 1], 2001, TcpFlags::ACK, dss(), 0))
                .unwrap();
            assert_eq!(r.verdict, pass);
        }
    });
}

#[test]
fn packet_type_picks_mptcp_join_syns_only() {
    with_dataplane(|dp| {
        let mut sc = SelectorChain::new();
        sc.add(SelectorKind::PacketType, Combine::And);
        let mut refuse = Policy::new("refuse_joins", chain(&[Action::Drop]));
        refuse.select(0, Selector::PacketType(vec![PacketType::MpJoinSyn]));
        let g = load(
            dp,
            &PolicySet {
                selectors: sc,
                policies: vec![refuse],
            },
            Hook::Xdp,
        );
        let syn = pkt([10, 0, 0, 1], 3000, TcpFlags::SYN, join_syn(), 0);
        let synack = pkt(
            [10, 0, 0, 1],
            3001,
            TcpFlags::SYN | TcpFlags::ACK,
            join_syn(),
            0,
        );
        let data = pkt([10, 0, 0, 1], 3002, TcpFlags::ACK, dss(), 100);
        let plain_syn = pkt([10, 0, 0, 1], 3003, TcpFlags::SYN, None, 0);
        assert_eq!(g.test_run(&syn).unwrap().verdict, XDP_DROP);
        assert_eq!(g.test_run(&synack).unwrap().verdict, XDP_PASS);
        assert_eq!(g.test_run(&data).unwrap().verdict, XDP_PASS);
        assert_eq!(g.test_run(&plain_syn).unwrap().verdict, XDP_PASS);
        // Per-packet test on a remembered flow: same flow, data then a SYN.
        let same_flow_syn = pkt([10, 0, 0, 1], 3002, TcpFlags::SYN, join_syn(), 0);
        assert_eq!(g.test_run(&same_flow_syn).unwrap().verdict, XDP_DROP);
    });
}

#[test]
fn ipv6_prefixes_and_subflow_4_tuples() {
    with_dataplane(|dp| {
        let mut sc = SelectorChain::new();
        sc.add(SelectorKind::Subflow, Combine::Or)
            .add(SelectorKind::IpPair, Combine::Or);
        let mut exact = Policy::new("exact", chain(&[Action::SetMark(10)]));
        exact.select(
            0,
            Selector::Subflow {
                local: "[fd00:9::1]:80".parse().unwrap(),
                remote: "[fd00:1::5]:4000".parse().unwrap(),
            },
        );
        exact.priority(1);
        let mut pair = Policy::new("pair", chain(&[Action::SetMark(20)]));
        pair.select(
            1,
            Selector::IpPair {
                local: "fd00:9::/32".parse().unwrap(),
                remote: "fd00:1::/32".parse().unwrap(),
            },
        );
        let g = load(
            dp,
            &PolicySet {
                selectors: sc,
                policies: vec![exact, pair],
            },
            Hook::TcIngress,
        );
        let v6 = |sport: u16, src: &str| {
            PacketBuilder::ipv6(src.parse().unwrap(), "fd00:9::1".parse().unwrap())
                .ports(sport, 80)
                .flags(TcpFlags::ACK)
                .option(dss().unwrap())
                .build()
                .unwrap()
        };
        assert_eq!(g.test_run(&v6(4001, "fd00:1::5")).unwrap().mark, Some(20));
        assert_eq!(g.test_run(&v6(4000, "fd00:1::5")).unwrap().mark, Some(10));
        assert_eq!(
            g.test_run(&v6(4000, "fd00:1:ffff::5")).unwrap().mark,
            Some(20)
        );
        assert_eq!(g.test_run(&v6(4000, "fd00:2::5")).unwrap().mark, Some(0));
        // The same addresses over IPv4 never match an IPv6 rule.
        assert_eq!(
            g.test_run(&pkt([10, 9, 0, 1], 4000, TcpFlags::ACK, dss(), 0))
                .unwrap()
                .mark,
            Some(0)
        );
    });
}

#[test]
fn a_new_generation_reclassifies_remembered_flows() {
    with_dataplane(|dp| {
        let policy =
            |mark| common::packets::on_port_80(Hook::TcIngress, chain(&[Action::SetMark(mark)]));
        let g1 = load(dp, &policy(1), Hook::TcIngress);
        let g2 = load(dp, &policy(2), Hook::TcIngress);
        assert!(g2.number() > g1.number());
        let p = pkt([10, 0, 0, 1], 5000, TcpFlags::ACK, dss(), 0);
        // The flow entry (and its memo) is shared: each generation must use
        // its own rules, however the runs interleave.
        for _ in 0..3 {
            assert_eq!(g1.test_run(&p).unwrap().mark, Some(1));
            assert_eq!(g2.test_run(&p).unwrap().mark, Some(2));
        }
    });
}

/// The rule memo is a direct-mapped cache of 16,384 slots per CPU: 40,000
/// flows must share slots, each evicting others. Whatever the order, every
/// packet gets its own flow's rule: here, the mark of the /9 its source is
/// in, over two passes (the second meets slots that other flows took).
#[test]
fn flows_sharing_memo_slots_keep_their_own_rules() {
    with_dataplane(|dp| {
        let mut sc = SelectorChain::new();
        sc.add(SelectorKind::Src, Combine::And);
        let mut low = Policy::new("low", chain(&[Action::SetMark(1)]));
        low.select(0, Selector::Src("10.0.0.0/9".parse().unwrap()));
        let mut high = Policy::new("high", chain(&[Action::SetMark(2)]));
        high.select(0, Selector::Src("10.128.0.0/9".parse().unwrap()));
        let set = PolicySet {
            selectors: sc,
            policies: vec![low, high],
        };
        let g = load(dp, &set, Hook::TcIngress);
        let flow = |i: u32| -> ([u8; 4], u16, u32) {
            // Spread over both halves; ports vary too.
            let x = i.wrapping_mul(2_654_435_761);
            let src = [10, (x >> 24) as u8, (x >> 16) as u8, x as u8];
            (
                src,
                1024 + (i % 50_000) as u16,
                if src[1] >= 128 { 2 } else { 1 },
            )
        };
        const FLOWS: u32 = 40_000;
        for pass in 0..2 {
            for i in 0..FLOWS {
                let (src, sport, mark) = flow(i);
                let r = g
                    .test_run(&pkt(src, sport, TcpFlags::ACK, None, 0))
                    .unwrap();
                assert_eq!(
                    r.mark,
                    Some(mark),
                    "pass {pass}, flow {i} from {src:?}:{sport}"
                );
            }
        }
        let hits: u64 = g.policy_hits().unwrap().iter().map(|(_, n)| n).sum();
        assert_eq!(hits, 2 * u64::from(FLOWS));
    });
}

#[test]
fn chains_of_sixteen_operators_run_every_operator() {
    with_dataplane(|dp| {
        let mut sc = SelectorChain::new();
        for _ in 0..8 {
            sc.add(SelectorKind::Port, Combine::And);
        }
        let mut ops = vec![Action::Count; 15];
        ops.push(Action::SetMark(16));
        let mut p = Policy::new("long", chain(&ops));
        for stage in 0..8 {
            p.select(
                stage,
                Selector::Port {
                    local: Some(80),
                    remote: None,
                },
            );
        }
        let g = load(
            dp,
            &PolicySet {
                selectors: sc,
                policies: vec![p],
            },
            Hook::TcEgress,
        );
        // At egress the source is local: port 80 is the sport.
        let p = PacketBuilder::ipv4(Ipv4Addr::new(10, 9, 0, 1), Ipv4Addr::new(10, 0, 0, 1))
            .ports(80, 6000)
            .flags(TcpFlags::ACK)
            .build()
            .unwrap();
        assert_eq!(g.test_run(&p).unwrap().mark, Some(16));
        let hits: Vec<u64> = g.op_stats(0).unwrap().iter().map(|s| s.hits).collect();
        assert_eq!(hits, vec![1; 16]);
        let info = g.program_info().unwrap();
        eprintln!(
            "16-operator generation: {} verified insns, {} xlated, loaded in {:?}",
            info.verified_insns,
            info.xlated_insns,
            g.load_time()
        );
    });
}

#[test]
fn ten_thousand_subflow_policies_load_and_match() {
    with_dataplane(|dp| {
        let mut sc = SelectorChain::new();
        sc.add(SelectorKind::Subflow, Combine::And);
        let policies: Vec<Policy> = (0..10_000u32)
            .map(|i| {
                let mut p = Policy::new(
                    format!("sf{i}"),
                    chain(&[Action::SetMark(if i == 9_999 { 2 } else { 1 })]),
                );
                let remote = SocketAddr::new([10, 0, (i >> 8) as u8, i as u8].into(), 7000);
                p.select(
                    0,
                    Selector::Subflow {
                        local: "10.9.0.1:80".parse().unwrap(),
                        remote,
                    },
                );
                p
            })
            .collect();
        let g = load(
            dp,
            &PolicySet {
                selectors: sc,
                policies,
            },
            Hook::TcIngress,
        );
        let last = pkt([10, 0, 39, 15], 7000, TcpFlags::ACK, dss(), 0); // i = 9999
        assert_eq!(g.test_run(&last).unwrap().mark, Some(2));
        let first = pkt([10, 0, 0, 0], 7000, TcpFlags::ACK, dss(), 0);
        assert_eq!(g.test_run(&first).unwrap().mark, Some(1));
        let other_port = pkt([10, 0, 0, 0], 7001, TcpFlags::ACK, dss(), 0);
        assert_eq!(g.test_run(&other_port).unwrap().mark, Some(0));
        eprintln!("10k policies: generation loaded in {:?}", g.load_time());
    });
}

#[test]
fn prefix_validation_is_strict() {
    assert!(Prefix::new("10.0.0.1".parse().unwrap(), 24).is_err());
}

/// The example plugin selector (`bpf/plugins/match_dscp.bpf.c`) in the middle
/// of a chain: the chain resumes after it when it matches, and stops (the
/// packet passes, later operators do not run) when it does not.
#[test]
fn a_plugin_in_the_middle_of_a_chain() {
    use emptcp::plugin::PluginSpec;
    use emptcp_wire::packet::IpHeader;

    with_dataplane(|dp| {
        let object = emptcp::testing::object_bytes("plugins/match_dscp").expect("plugin built");
        for hook in [Hook::TcIngress, Hook::Xdp] {
            let program = if hook == Hook::Xdp {
                "match_dscp_xdp"
            } else {
                "match_dscp_tc"
            };
            // .rodata of the plugin: match_dscp_cfg { dscp: 10 }.
            let plugin = PluginSpec::new("match_dscp", object, program).rodata(vec![10]);
            let last = if hook == Hook::Xdp {
                Action::Drop
            } else {
                Action::SetMark(5)
            };
            let compiled =
                common::packets::on_port_80(hook, chain(&[Action::Count, Action::Plugin(0), last]))
                    .compile(hook)
                    .unwrap();
            let g = dp
                .load_generation(&compiled, &[&plugin])
                .expect("generation with plugin");
            let with_dscp = |dscp: u8, sport: u16| {
                let mut b =
                    PacketBuilder::ipv4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 9, 0, 1))
                        .ports(sport, 80)
                        .flags(TcpFlags::ACK);
                if let IpHeader::V4(h) = &mut b.ip {
                    h.dscp_ecn = dscp << 2;
                }
                b.build().unwrap()
            };
            let hit = g.test_run(&with_dscp(10, 8000)).unwrap();
            let miss = g.test_run(&with_dscp(0, 8001)).unwrap();
            if hook == Hook::Xdp {
                assert_eq!((hit.verdict, miss.verdict), (XDP_DROP, XDP_PASS));
            } else {
                assert_eq!((hit.mark, miss.mark), (Some(5), Some(0)));
            }
            let stats = g.op_stats(0).unwrap();
            let hits: Vec<u64> = stats.iter().map(|s| s.hits).collect();
            assert_eq!(hits, vec![2, 2, 1], "{hook}: count, plugin, last");
            assert_eq!(stats[1].reasons[1], 1, "{hook}: one plugin stop");
            // Without the plugin the generation cannot load.
            let err = dp.load_generation(&compiled, &[]).unwrap_err();
            assert!(err.to_string().contains("plugin slot 0"), "{err}");
        }
    });
}

/// Two generations running the same flow at the same time on two threads
/// (as during a swap, when packets on other CPUs still run the old program):
/// the flow's shared memo never leaks one generation's decision into the
/// other; each of 2 x 10,000 runs gives its own generation's output.
#[test]
fn concurrent_generations_never_mix_on_a_shared_flow() {
    if !root_or_skip() {
        return;
    }
    let mut dp = Dataplane::load().unwrap();
    let policy =
        |mark| common::packets::on_port_80(Hook::TcIngress, chain(&[Action::SetMark(mark)]));
    let generations = [
        load(&mut dp, &policy(1), Hook::TcIngress),
        load(&mut dp, &policy(2), Hook::TcIngress),
    ];
    let packet = pkt([10, 0, 0, 1], 9000, TcpFlags::ACK, dss(), 64);
    std::thread::scope(|s| {
        for (i, g) in generations.iter().enumerate() {
            let packet = &packet;
            // Each thread runs its own generation.
            let g: &Generation = g;
            s.spawn(move || {
                for run in 0..10_000 {
                    let r = g.test_run(packet).unwrap();
                    assert_eq!(
                        r.mark,
                        Some(i as u32 + 1),
                        "run {run} of generation {}",
                        i + 1
                    );
                    assert_eq!(r.packet, *packet);
                }
            });
        }
    });
    assert_eq!(
        dp.counters(Hook::TcIngress).unwrap().get("missing_chain"),
        0
    );
}

/// Every built-in actor in one chain, behind every selector kind, loads at
/// every hook: a guard against the verifier's limits (the entry and the
/// actors' subprograms share 512 bytes of stack; 1M instructions).
#[test]
fn every_operator_together_loads_at_every_hook() {
    use emptcp::policy::Stream;

    if !root_or_skip() {
        return;
    }
    let mut dp = Dataplane::load().unwrap();
    for hook in Hook::ALL {
        let mut sc = SelectorChain::new();
        for kind in [
            SelectorKind::Subflow,
            SelectorKind::IpPair,
            SelectorKind::Src,
            SelectorKind::Dst,
            SelectorKind::Port,
            SelectorKind::PacketType,
            SelectorKind::Sequence,
            SelectorKind::Connection,
        ] {
            sc.add(kind, Combine::And);
        }
        let mut actions = vec![
            Action::Count,
            Action::RateLimit {
                window_bytes: 65_536,
            },
            Action::RateLimitRate {
                bits_per_second: 20_000_000,
            },
            Action::Record,
            Action::GetConnect,
            Action::GetSubflow,
            Action::BlkSubflow { refuse_joins: true },
            Action::SetBackup {
                backup: true,
                packets: 3,
            },
            Action::AddSubflow,
        ];
        if hook != Hook::Xdp {
            actions.push(Action::SetMark(1));
        }
        actions.push(Action::Redirect { ifindex: 1 });
        actions.push(Action::Drop);
        let mut p = Policy::new("all", chain(&actions));
        p.select(
            0,
            Selector::Subflow {
                local: "10.0.0.1:1".parse().unwrap(),
                remote: "10.0.0.2:2".parse().unwrap(),
            },
        )
        .select(
            1,
            Selector::IpPair {
                local: "10.1.0.0/16".parse().unwrap(),
                remote: "10.2.0.0/16".parse().unwrap(),
            },
        )
        .select(2, Selector::Src("10.3.0.0/16".parse().unwrap()))
        .select(3, Selector::Dst("fd00::/8".parse().unwrap()))
        .select(
            4,
            Selector::Port {
                local: Some(80),
                remote: None,
            },
        )
        .select(5, Selector::PacketType(vec![PacketType::Data]))
        .select(
            6,
            Selector::Sequence {
                stream: Stream::Data,
                start: 0,
                end: 1 << 20,
            },
        )
        .select(
            7,
            Selector::Connection {
                token: Some(7),
                subflow_index: Some(1),
            },
        );
        let g = load(
            &mut dp,
            &PolicySet {
                selectors: sc,
                policies: vec![p],
            },
            hook,
        );
        let info = g.program_info().unwrap();
        eprintln!(
            "{hook}: every operator: {} verified insns, loaded in {:?}",
            info.verified_insns,
            g.load_time()
        );
    }
}
