//! The quick pass (bpf/lib/memo.h, docs/engine.md): packets of flows no rule
//! selects pass on their headers, options not walked, once the full path has
//! seen a packet of the flow that connection tracking had no use for. On
//! crafted packets (BPF_PROG_TEST_RUN), each claim with its control.
//!
//! The memo is per CPU: every test pins its thread, so that consecutive runs
//! share one CPU's slots.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use emptcp::policy::{
    Action, ActionChain, Combine, Policy, PolicySet, Selector, SelectorChain, SelectorKind,
};
use emptcp::{Dataplane, EntryCounters, Generation, Hook, LoadOptions};
use emptcp_testbed::root_or_skip;
use emptcp_wire::mptcp::{DataSeq, Dss, DssMapping, MpCapable, MpCapableKeys, MpFail, MptcpOption};
use emptcp_wire::packet::{PacketBuilder, TcpFlags};
use emptcp_wire::tcp_opt::TcpOption;

use common::packets::dss;

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [10, 9, 0, 1];

fn pinned() -> bool {
    if !root_or_skip() {
        return false;
    }
    emptcp::bench::pin_to_current_cpu().expect("pin");
    true
}

fn capable(keys: MpCapableKeys) -> TcpOption {
    TcpOption::Mptcp(MptcpOption::MpCapable(MpCapable {
        version: 1,
        flags: MpCapable::FLAG_HMAC_SHA256,
        keys,
    }))
}

/// A packet from `src`:`sport` to `dst`:80 with 100 bytes of payload.
fn packet(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    flags: TcpFlags,
    option: Option<TcpOption>,
) -> Vec<u8> {
    let b = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s, d),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s, d),
        _ => unreachable!("one family per packet"),
    };
    let mut b = b.ports(sport, 80).flags(flags).payload(vec![0x5a; 100]);
    if let Some(o) = option {
        b = b.option(o);
    }
    b.build().unwrap()
}

fn v4(sport: u16, flags: TcpFlags, option: Option<TcpOption>) -> Vec<u8> {
    packet(
        Ipv4Addr::from(CLIENT).into(),
        Ipv4Addr::from(SERVER).into(),
        sport,
        flags,
        option,
    )
}

/// How a run was counted.
#[derive(Debug, PartialEq, Eq)]
enum Path {
    /// Options walked (the full path).
    Walked,
    /// The quick pass.
    Quick,
}

fn moved(before: &EntryCounters, after: &EntryCounters, name: &str) -> u64 {
    after.get(name) - before.get(name)
}

/// Runs `p` through `run` and says which path counted it (and the counters
/// before and after); a quick packet must leave unchanged.
fn path_of(
    dp: &Dataplane,
    hook: Hook,
    p: &[u8],
    run: impl Fn(&[u8]) -> emptcp::TestRun,
) -> (Path, EntryCounters, EntryCounters) {
    let before = dp.counters(hook).unwrap();
    let out = run(p);
    let after = dp.counters(hook).unwrap();
    assert_eq!(moved(&before, &after, "seen"), 1);
    assert_eq!(moved(&before, &after, "tcp"), 1, "a TCP packet");
    let quick = moved(&before, &after, "quick_tcp") + moved(&before, &after, "quick_mptcp");
    if quick == 1 {
        assert_eq!(out.packet, p, "the quick pass never changes a packet");
        assert_eq!(moved(&before, &after, "no_policy"), 1);
        assert_eq!(moved(&before, &after, "mptcp"), 0, "not looked at");
        (Path::Quick, before, after)
    } else {
        assert_eq!(quick, 0);
        (Path::Walked, before, after)
    }
}

fn gen0_path(dp: &Dataplane, hook: Hook, p: &[u8]) -> Path {
    path_of(dp, hook, p, |p| dp.test_run(hook, p).unwrap()).0
}

fn gen_path(dp: &Dataplane, g: &Generation, p: &[u8]) -> Path {
    path_of(dp, g.policy().hook(), p, |p| g.test_run(p).unwrap()).0
}

#[test]
fn the_second_packet_of_a_flow_takes_the_quick_pass_at_every_hook() {
    if !pinned() {
        return;
    }
    let dp = Dataplane::load().unwrap();
    let v6 = |sport, option| {
        packet(
            "fd00::1".parse().unwrap(),
            "fd00::9".parse().unwrap(),
            sport,
            TcpFlags::ACK,
            option,
        )
    };
    for hook in Hook::ALL {
        for (what, p, counter) in [
            (
                "v4 dss",
                v4(41000, TcpFlags::ACK, Some(dss())),
                "quick_mptcp",
            ),
            ("v4 plain", v4(41001, TcpFlags::ACK, None), "quick_tcp"),
            ("v6 dss", v6(41002, Some(dss())), "quick_mptcp"),
            ("v6 plain", v6(41003, None), "quick_tcp"),
        ] {
            assert_eq!(
                gen0_path(&dp, hook, &p),
                Path::Walked,
                "{what} at {hook}: first"
            );
            let (path, before, after) = path_of(&dp, hook, &p, |p| dp.test_run(hook, p).unwrap());
            assert_eq!(path, Path::Quick, "{what} at {hook}: second");
            assert_eq!(moved(&before, &after, counter), 1, "{what} at {hook}");
        }
    }
    // Keys compare whole: a flow differing in one port, one address byte or
    // the direction is walked. Control: the flow itself is quick.
    let hook = Hook::TcIngress;
    let known = v4(42000, TcpFlags::ACK, Some(dss()));
    gen0_path(&dp, hook, &known);
    assert_eq!(gen0_path(&dp, hook, &known), Path::Quick);
    for (what, p) in [
        ("other port", v4(42001, TcpFlags::ACK, Some(dss()))),
        (
            "other address",
            packet(
                Ipv4Addr::new(10, 0, 0, 2).into(),
                Ipv4Addr::from(SERVER).into(),
                42000,
                TcpFlags::ACK,
                Some(dss()),
            ),
        ),
        (
            "reverse direction",
            PacketBuilder::ipv4(Ipv4Addr::from(SERVER), Ipv4Addr::from(CLIENT))
                .ports(80, 42000)
                .flags(TcpFlags::ACK)
                .option(dss())
                .build()
                .unwrap(),
        ),
    ] {
        assert_eq!(gen0_path(&dp, hook, &p), Path::Walked, "{what}");
    }
}

#[test]
fn syn_fin_rst_are_always_walked_and_so_is_the_packet_after() {
    if !pinned() {
        return;
    }
    let dp = Dataplane::load().unwrap();
    let hook = Hook::Xdp;
    let ack = v4(43000, TcpFlags::ACK, Some(dss()));
    gen0_path(&dp, hook, &ack);
    assert_eq!(gen0_path(&dp, hook, &ack), Path::Quick, "control");
    for flags in [
        TcpFlags::SYN,
        TcpFlags::SYN | TcpFlags::ACK,
        TcpFlags::FIN | TcpFlags::ACK,
        TcpFlags::RST,
        TcpFlags::RST | TcpFlags::ACK,
    ] {
        let p = v4(43000, flags, Some(dss()));
        assert_eq!(gen0_path(&dp, hook, &p), Path::Walked, "{flags:?}");
        assert_eq!(gen0_path(&dp, hook, &p), Path::Walked, "{flags:?} again");
        assert_eq!(
            gen0_path(&dp, hook, &ack),
            Path::Walked,
            "the ACK after {flags:?}"
        );
        assert_eq!(
            gen0_path(&dp, hook, &ack),
            Path::Quick,
            "and the one after that"
        );
    }
}

/// An MPTCP handshake as one hook sees it (both directions): every packet
/// connection tracking learns from is walked, the connection is learned,
/// and the subflow's data packets then take the quick pass. Control: the
/// same with the quick pass off learns the same and walks everything.
#[test]
fn handshakes_are_learned_before_their_flows_turn_quick() {
    if !pinned() {
        return;
    }
    for quick_pass in [true, false] {
        let dp = Dataplane::load_with(&LoadOptions {
            quick_pass,
            ..Default::default()
        })
        .unwrap();
        let hook = Hook::Xdp;
        let (c, s) = (Ipv4Addr::from(CLIENT), Ipv4Addr::from(SERVER));
        let to_server = |flags, option| packet(c.into(), s.into(), 44000, flags, option);
        let to_client = |flags, option| {
            PacketBuilder::ipv4(s, c)
                .ports(80, 44000)
                .flags(flags)
                .option(option)
                .build()
                .unwrap()
        };
        let (k_a, k_b) = (0x1122_3344_5566_7788, 0x99aa_bbcc_ddee_ff01);
        let both = MpCapableKeys::Both {
            sender: k_a,
            receiver: k_b,
        };
        let steps = [
            to_server(TcpFlags::SYN, Some(capable(MpCapableKeys::None))),
            to_client(
                TcpFlags::SYN | TcpFlags::ACK,
                capable(MpCapableKeys::Sender(k_b)),
            ),
            to_server(TcpFlags::ACK, Some(capable(both))),
            // The third ACK's retransmission (the client repeats MP_CAPABLE
            // until its data is acknowledged): still walked, since the
            // packet before it carried a handshake option.
            to_server(TcpFlags::ACK, Some(capable(both))),
        ];
        for (i, p) in steps.iter().enumerate() {
            assert_eq!(gen0_path(&dp, hook, p), Path::Walked, "handshake step {i}");
        }
        let learned = dp.counters(hook).unwrap().get("ct_connection");
        assert!(learned >= 1, "the connection's tokens were derived");
        let data = to_server(TcpFlags::ACK, Some(dss()));
        let reply = to_client(TcpFlags::ACK, dss());
        assert_eq!(gen0_path(&dp, hook, &data), Path::Walked);
        assert_eq!(gen0_path(&dp, hook, &reply), Path::Walked);
        let expected = if quick_pass {
            Path::Quick
        } else {
            Path::Walked
        };
        for _ in 0..3 {
            assert_eq!(
                gen0_path(&dp, hook, &data),
                expected,
                "quick_pass {quick_pass}"
            );
            assert_eq!(
                gen0_path(&dp, hook, &reply),
                expected,
                "quick_pass {quick_pass}"
            );
        }
        // Teardown is seen either way: both FINs forget the subflow.
        let closed = dp.counters(hook).unwrap().get("ct_closed");
        gen0_path(
            &dp,
            hook,
            &to_server(TcpFlags::FIN | TcpFlags::ACK, Some(dss())),
        );
        gen0_path(&dp, hook, &to_client(TcpFlags::FIN | TcpFlags::ACK, dss()));
        assert_eq!(dp.counters(hook).unwrap().get("ct_closed"), closed + 1);
    }
}

fn chain(actions: &[Action]) -> ActionChain {
    let mut c = ActionChain::new();
    for a in actions {
        c.add(*a);
    }
    c
}

/// One policy: `selector` of `kind` -> `actions`.
fn one_policy(kind: SelectorKind, selector: Selector, actions: &[Action]) -> PolicySet {
    let mut sc = SelectorChain::new();
    sc.add(kind, Combine::And);
    let mut p = Policy::new("picked", chain(actions));
    p.select(0, selector);
    PolicySet {
        selectors: sc,
        policies: vec![p],
    }
}

fn local_port(port: u16) -> Selector {
    Selector::Port {
        local: Some(port),
        remote: None,
    }
}

/// Local port `port` (the server's, at tc-ingress) -> `action`.
fn on_port(port: u16, action: Action) -> PolicySet {
    one_policy(SelectorKind::Port, local_port(port), &[action])
}

/// An ACK with a DSS from the client's port `sport` to the server's `dport`.
fn v4_to(sport: u16, dport: u16) -> Vec<u8> {
    PacketBuilder::ipv4(Ipv4Addr::from(CLIENT), Ipv4Addr::from(SERVER))
        .ports(sport, dport)
        .flags(TcpFlags::ACK)
        .option(dss())
        .build()
        .unwrap()
}

fn load(dp: &mut Dataplane, set: &PolicySet, hook: Hook) -> Generation {
    dp.load_generation(&set.compile(hook).unwrap(), &[])
        .unwrap()
}

#[test]
fn flows_a_rule_selects_never_take_the_quick_pass() {
    if !pinned() {
        return;
    }
    let mut dp = Dataplane::load().unwrap();
    let hook = Hook::TcIngress;
    // Local port 80 at TC ingress: the server port of these packets.
    let g = load(&mut dp, &on_port(80, Action::SetMark(7)), hook);
    let picked = v4(45000, TcpFlags::ACK, Some(dss()));
    for i in 0..3 {
        let before = dp.counters(hook).unwrap();
        let out = g.test_run(&picked).unwrap();
        let after = dp.counters(hook).unwrap();
        assert_eq!(moved(&before, &after, "matched"), 1, "run {i}");
        assert_eq!(out.mark, Some(7), "run {i}");
    }
    // Control: a flow to another port, in the same generation.
    let other = v4_to(45001, 8080);
    assert_eq!(gen_path(&dp, &g, &other), Path::Walked);
    assert_eq!(gen_path(&dp, &g, &other), Path::Quick);
}

/// A new generation does not inherit the last one's quick flows: its rules
/// apply from the first packet.
#[test]
fn a_new_generation_ends_the_quick_pass() {
    if !pinned() {
        return;
    }
    let mut dp = Dataplane::load().unwrap();
    let hook = Hook::TcIngress;
    let old = load(&mut dp, &on_port(443, Action::SetMark(7)), hook);
    let p = v4(46000, TcpFlags::ACK, Some(dss()));
    gen_path(&dp, &old, &p);
    assert_eq!(
        gen_path(&dp, &old, &p),
        Path::Quick,
        "control: quick under the old rules"
    );
    let new = load(&mut dp, &on_port(80, Action::SetMark(7)), hook);
    let before = dp.counters(hook).unwrap();
    let out = new.test_run(&p).unwrap();
    let after = dp.counters(hook).unwrap();
    assert_eq!(moved(&before, &after, "matched"), 1);
    assert_eq!(out.mark, Some(7));
}

/// Generations whose rules read connection tracking (the memo is tagged
/// with the subflow's tracking version, looked up per packet) or that carry
/// kept ADD_ADDRs in any packet (add_subflow) walk every packet. Control: a
/// port-only generation.
#[test]
fn conntrack_and_add_subflow_generations_walk_every_packet() {
    if !pinned() {
        return;
    }
    let mut dp = Dataplane::load().unwrap();
    let hook = Hook::TcIngress;
    let p = v4(47000, TcpFlags::ACK, Some(dss()));
    let cases = [
        (
            "connection",
            one_policy(
                SelectorKind::Connection,
                Selector::Connection {
                    token: Some(0x1234_5678),
                    subflow_index: None,
                },
                &[Action::SetMark(7)],
            ),
            Path::Walked,
        ),
        (
            "add_subflow",
            on_port(443, Action::AddSubflow),
            Path::Walked,
        ),
        (
            "control: port",
            on_port(443, Action::SetMark(7)),
            Path::Quick,
        ),
    ];
    for (what, set, expected) in cases {
        let g = load(&mut dp, &set, hook);
        gen_path(&dp, &g, &p);
        assert_eq!(gen_path(&dp, &g, &p), expected, "{what}");
        assert_eq!(gen_path(&dp, &g, &p), expected, "{what}");
    }
}

/// With flows accounted, quick packets still count in their flow.
#[test]
fn accounted_flows_count_quick_packets() {
    if !pinned() {
        return;
    }
    let dp = Dataplane::load_with(&LoadOptions {
        account_flows: true,
        ..Default::default()
    })
    .unwrap();
    let hook = Hook::Xdp;
    let p = v4(48000, TcpFlags::ACK, Some(dss()));
    let paths: Vec<Path> = (0..4).map(|_| gen0_path(&dp, hook, &p)).collect();
    assert_eq!(paths, [Path::Walked, Path::Quick, Path::Quick, Path::Quick]);
    let flows = dp.flow_stats().unwrap();
    let (_, stats) = flows
        .iter()
        .find(|(k, _)| k.sport == 48000)
        .expect("the flow is accounted");
    assert_eq!(stats.packets, 4);
    assert_eq!(stats.bytes, 4 * (p.len() as u64 - 14));
}

/// More quick flows than memo slots: every slot a flow the rule selects
/// hashes to is likely held by a quick flow, and only the whole-key compare
/// keeps the quick pass from passing it. Each selected flow is matched on
/// its first packet.
#[test]
fn colliding_slots_never_pass_a_flow_a_rule_selects() {
    if !pinned() {
        return;
    }
    const FLOWS: u16 = 20_000; // the memo has 16,384 slots per CPU
    let mut dp = Dataplane::load().unwrap();
    let hook = Hook::TcIngress;
    let g = load(&mut dp, &on_port(80, Action::SetMark(7)), hook);
    let before = dp.counters(hook).unwrap();
    for sport in 10_000..10_000 + FLOWS {
        let p = v4_to(sport, 8080);
        g.test_run(&p).unwrap();
        g.test_run(&p).unwrap();
    }
    let filled = dp.counters(hook).unwrap();
    // Control: the unselected flows did take the quick pass (each second
    // packet, unless a later flow took its slot in between: none here).
    assert_eq!(
        moved(&before, &filled, "quick_mptcp"),
        u64::from(FLOWS),
        "every unselected flow's second packet was quick"
    );
    for sport in 10_000..10_000 + FLOWS {
        let out = g.test_run(&v4_to(sport, 80)).unwrap();
        assert_eq!(out.mark, Some(7), "flow {sport}->80 must be matched");
    }
    let after = dp.counters(hook).unwrap();
    assert_eq!(moved(&filled, &after, "matched"), u64::from(FLOWS));
    assert_eq!(moved(&filled, &after, "quick_mptcp"), 0);
}

/// Live, real kernel MPTCP through the router with no policies, tc-ingress
/// on its client-side links (the client->server direction, from which the
/// tracker learns a connection alone; with both directions, both FINs would
/// forget the subflows before they could be read): with the quick pass,
/// most packets take it, and connection tracking still learns the kernel's
/// connection (its tokens) and both subflows. Control: the quick pass off, no packet takes it and
/// the tracker learns the same.
#[test]
fn live_quick_pass_keeps_connection_tracking_whole() {
    use emptcp_testbed::presets;
    use emptcp_testbed::traffic::{self, TransferOpts};
    use emptcp_wire::crypto::token_from_key;

    if !root_or_skip() {
        return;
    }
    for quick_pass in [true, false] {
        let tb = presets::two_path("qp", common::paced()).unwrap();
        let mut dp = Dataplane::load_with(&LoadOptions {
            quick_pass,
            ..Default::default()
        })
        .unwrap();
        common::attach_router(&mut dp, &tb, Hook::TcIngress, &["r1", "r2"], None);
        let t = traffic::transfer(
            &tb.client,
            &tb.server,
            &TransferOpts::new(tb.server_addr(), 8 << 20).expect_subflows_with_data(2),
        )
        .unwrap();
        let c = dp.counters(Hook::TcIngress).unwrap();
        let quick = c.get("quick_tcp") + c.get("quick_mptcp");
        eprintln!(
            "quick_pass {quick_pass}: {quick} of {} TCP packets took the quick pass; {} skbs \
             with data in fragments, {} pulled",
            c.get("tcp"),
            c.get("paged"),
            c.get("pulled")
        );
        // A TCP socket's GSO segments carry their payload in fragments and
        // every header in the linear part: nothing to pull (each pull of a
        // cloned skb is a new head and a copy).
        assert!(
            c.get("paged") > 0,
            "control: the transfer's data skbs are paged"
        );
        assert_eq!(c.get("pulled"), 0, "{c:?}");
        if quick_pass {
            assert!(
                quick * 10 >= c.get("tcp") * 9,
                "most packets take the quick pass: {c:?}"
            );
        } else {
            assert_eq!(quick, 0, "{c:?}");
        }
        assert_eq!(c.get("ct_join_unknown"), 0, "{c:?}");
        assert!(c.get("ct_subflow") >= 2, "both subflows learned: {c:?}");
        let client_token = t.sender.mptcp.token;
        let conns = dp.connections().unwrap();
        let conn = conns
            .iter()
            .find(|c| c.token_initiator == Some(client_token))
            .unwrap_or_else(|| panic!("quick_pass {quick_pass}: no connection {client_token:#x}"));
        assert_eq!(conn.token_listener, token_from_key(conn.key_listener));
        assert!(
            conn.subflows.iter().any(|s| s.index == Some(1) && s.join),
            "quick_pass {quick_pass}: the join is tracked: {conn:#?}"
        );
    }
}

/// A Linux-style data packet of client:`sport` -> server:80: NOP NOP
/// timestamps, then `dss`, then 100 bytes; `extra` options after the DSS.
fn linux_data(sport: u16, tsval: u32, dss: Dss, extra: &[TcpOption]) -> Vec<u8> {
    let mut options = vec![
        TcpOption::Nop,
        TcpOption::Nop,
        TcpOption::Timestamps {
            value: tsval,
            echo_reply: 1,
        },
        TcpOption::Mptcp(MptcpOption::Dss(dss)),
    ];
    options.extend_from_slice(extra);
    PacketBuilder::ipv4(Ipv4Addr::from(CLIENT), Ipv4Addr::from(SERVER))
        .ports(sport, 80)
        .flags(TcpFlags::ACK)
        .options(options)
        .payload(vec![0x5a; 100])
        .build()
        .unwrap()
}

fn mapping(dsn: u32, data_len: u16) -> Dss {
    Dss {
        data_ack: Some(DataSeq::Short(7)),
        mapping: Some(DssMapping {
            data_seq: DataSeq::Short(dsn),
            subflow_seq: 1,
            data_len,
            checksum: None,
        }),
        data_fin: false,
        unused_bits: 0,
    }
}

/// The quick pass asks each packet for the option layout of the flow's
/// last walked packet (data offset, first option word, DSS place, kind,
/// length, subtype and flags) and, for a mapping, a data-level length that
/// is not 0. Option values may differ (control: new timestamps, sequence
/// numbers and lengths stay quick); anything connection tracking could
/// read is walked: an infinite mapping (and learned from: ct_fallback_late),
/// an MP_FAIL beside the DSS, other DSS flags, no options at all.
#[test]
fn a_packet_laid_out_differently_takes_the_full_path() {
    if !pinned() {
        return;
    }
    let dp = Dataplane::load().unwrap();
    let hook = Hook::Xdp;
    let (c, s) = (Ipv4Addr::from(CLIENT), Ipv4Addr::from(SERVER));
    let sport = 49000;
    let (k_a, k_b) = (0x0102_0304_0506_0708, 0x1112_1314_1516_1718);
    let handshake = [
        packet(
            c.into(),
            s.into(),
            sport,
            TcpFlags::SYN,
            Some(capable(MpCapableKeys::None)),
        ),
        PacketBuilder::ipv4(s, c)
            .ports(80, sport)
            .flags(TcpFlags::SYN | TcpFlags::ACK)
            .option(capable(MpCapableKeys::Sender(k_b)))
            .build()
            .unwrap(),
        packet(
            c.into(),
            s.into(),
            sport,
            TcpFlags::ACK,
            Some(capable(MpCapableKeys::Both {
                sender: k_a,
                receiver: k_b,
            })),
        ),
    ];
    for p in &handshake {
        assert_eq!(gen0_path(&dp, hook, p), Path::Walked);
    }
    let data = |i: u32, len| linux_data(sport, 1000 + i, mapping(i * 1400, len), &[]);
    assert_eq!(gen0_path(&dp, hook, &data(0, 1400)), Path::Walked);
    for i in 1..4 {
        assert_eq!(
            gen0_path(&dp, hook, &data(i, 1400 - i as u16)),
            Path::Quick,
            "values differ"
        );
    }
    let mp_fail = TcpOption::Mptcp(MptcpOption::MpFail(MpFail {
        data_seq: 5,
        reserved: 0,
    }));
    let ack_only = |i: u32| Dss {
        data_ack: Some(DataSeq::Short(9 + i)),
        mapping: None,
        data_fin: false,
        unused_bits: 0,
    };
    for (what, p) in [
        (
            "a DSS without mapping",
            linux_data(sport, 2001, ack_only(0), &[]),
        ),
        ("no options", v4(sport, TcpFlags::ACK, None)),
    ] {
        // Each after a quick packet of the usual layout (control).
        gen0_path(&dp, hook, &data(5, 1400));
        assert_eq!(
            gen0_path(&dp, hook, &data(6, 1400)),
            Path::Quick,
            "control before {what}"
        );
        assert_eq!(gen0_path(&dp, hook, &p), Path::Walked, "{what}");
    }
    gen0_path(&dp, hook, &data(7, 1400));
    assert_eq!(gen0_path(&dp, hook, &data(8, 1400)), Path::Quick, "control");
    let late = dp.counters(hook).unwrap().get("ct_fallback_late");
    assert_eq!(
        gen0_path(&dp, hook, &data(9, 0)),
        Path::Walked,
        "infinite mapping"
    );
    assert_eq!(
        dp.counters(hook).unwrap().get("ct_fallback_late"),
        late + 1,
        "the tracker saw the fallback"
    );
    // Pure Data ACKs (the reverse direction's usual layout) turn quick, and
    // one that carries an MP_FAIL as well is walked.
    gen0_path(&dp, hook, &linux_data(sport, 3000, ack_only(1), &[]));
    assert_eq!(
        gen0_path(&dp, hook, &linux_data(sport, 3001, ack_only(2), &[])),
        Path::Quick,
        "control: data ACKs"
    );
    assert_eq!(
        gen0_path(&dp, hook, &linux_data(sport, 3002, ack_only(3), &[mp_fail])),
        Path::Walked,
        "an MP_FAIL beside the DSS"
    );
}
