//! Connection tracking on crafted handshakes (BPF_PROG_TEST_RUN), the
//! `connection` and `sequence` selectors built on it, and live on real
//! kernel MPTCP: tokens derived in the data plane equal the codec's and the
//! kernel's, and every join finds its connection.

mod common;

use std::net::{Ipv4Addr, SocketAddr};

use emptcp::policy::{
    Action, ActionChain, Combine, Policy, PolicySet, Selector, SelectorChain, SelectorKind, Stream,
};
use emptcp::{Dataplane, Hook};
use emptcp_testbed::root_or_skip;
use emptcp_wire::crypto::{idsn_from_key, token_from_key};
use emptcp_wire::mptcp::{
    DataSeq, Dss, DssMapping, MpCapable, MpCapableKeys, MpFastclose, MpJoin, MptcpOption,
};
use emptcp_wire::packet::{PacketBuilder, TcpFlags};
use emptcp_wire::tcp_opt::TcpOption;

const KEY_A: u64 = 0x1122_3344_5566_7788; // the initiator's (client's) key
const KEY_B: u64 = 0x99aa_bbcc_ddee_ff01; // the listener's (server's) key
const CLIENT: [u8; 4] = [10, 0, 0, 1];
const CLIENT2: [u8; 4] = [10, 0, 1, 1];
const SERVER: [u8; 4] = [10, 9, 0, 1];

fn capable(keys: MpCapableKeys) -> TcpOption {
    TcpOption::Mptcp(MptcpOption::MpCapable(MpCapable {
        version: 1,
        flags: MpCapable::FLAG_HMAC_SHA256,
        keys,
    }))
}

fn join_syn(token: u32) -> TcpOption {
    TcpOption::Mptcp(MptcpOption::MpJoin(MpJoin::Syn {
        backup: false,
        address_id: 2,
        token,
        random: 42,
        reserved: 0,
    }))
}

#[allow(clippy::too_many_arguments)]
fn packet(
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    flags: TcpFlags,
    seq: u32,
    option: Option<TcpOption>,
    payload: usize,
) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(Ipv4Addr::from(src.0), Ipv4Addr::from(dst.0))
        .ports(src.1, dst.1)
        .flags(flags)
        .seq(seq)
        .payload(vec![0xab; payload]);
    if let Some(o) = option {
        b = b.option(o);
    }
    b.build().unwrap()
}

fn run(dp: &Dataplane, p: &[u8]) {
    dp.test_run(Hook::Xdp, p).expect("test run");
}

/// SYN, SYN/ACK, third ACK of the MP_CAPABLE subflow client:40000 -> server:80.
fn handshake(dp: &Dataplane) {
    let (c, s) = ((CLIENT, 40000), (SERVER, 80));
    run(
        dp,
        &packet(
            c,
            s,
            TcpFlags::SYN,
            1000,
            Some(capable(MpCapableKeys::None)),
            0,
        ),
    );
    run(
        dp,
        &packet(
            s,
            c,
            TcpFlags::SYN | TcpFlags::ACK,
            5000,
            Some(capable(MpCapableKeys::Sender(KEY_B))),
            0,
        ),
    );
    let both = MpCapableKeys::Both {
        sender: KEY_A,
        receiver: KEY_B,
    };
    run(
        dp,
        &packet(c, s, TcpFlags::ACK, 1001, Some(capable(both)), 0),
    );
}

#[test]
fn handshakes_teach_tokens_idsns_and_subflow_order() {
    if !root_or_skip() {
        return;
    }
    let dp = Dataplane::load().unwrap();
    let c0 = dp.counters(Hook::Xdp).unwrap();
    handshake(&dp);
    let conns = dp.connections().unwrap();
    let conn = conns
        .iter()
        .find(|c| c.token_listener == token_from_key(KEY_B))
        .expect("learned");
    assert_eq!(conn.token_initiator, Some(token_from_key(KEY_A)));
    assert_eq!(
        (conn.key_listener, conn.key_initiator),
        (KEY_B, Some(KEY_A))
    );
    assert_eq!(conn.subflows.len(), 1);
    let sf0 = &conn.subflows[0];
    assert_eq!(sf0.index, Some(0));
    assert!(!sf0.join);
    assert_eq!(sf0.initiator, SocketAddr::from((CLIENT, 40000)));
    assert_eq!((sf0.isn_initiator, sf0.isn_responder), (1000, 5000));

    // Joins carry the listener's token; they are indexed in SYN order, and a
    // retransmitted SYN is not a new subflow.
    let token = token_from_key(KEY_B);
    let s = (SERVER, 80);
    let first_join = packet(
        (CLIENT2, 40001),
        s,
        TcpFlags::SYN,
        7000,
        Some(join_syn(token)),
        0,
    );
    run(&dp, &first_join);
    run(&dp, &first_join); // its retransmission
    run(
        &dp,
        &packet(
            (CLIENT, 40002),
            s,
            TcpFlags::SYN,
            9000,
            Some(join_syn(token)),
            0,
        ),
    );
    // A join naming a token nobody has is counted, not linked.
    run(
        &dp,
        &packet(
            (CLIENT, 40003),
            s,
            TcpFlags::SYN,
            9,
            Some(join_syn(0x0bad_cafe)),
            0,
        ),
    );

    let conns = dp.connections().unwrap();
    let conn = conns.iter().find(|c| c.token_listener == token).unwrap();
    let order: Vec<(u16, Option<u8>, bool)> = conn
        .subflows
        .iter()
        .map(|s| (s.initiator.port(), s.index, s.join))
        .collect();
    assert_eq!(
        order,
        vec![
            (40000, Some(0), false),
            (40001, Some(1), true),
            (40002, Some(2), true)
        ]
    );
    let unlinked = conns
        .iter()
        .find(|c| c.token_listener == 0)
        .expect("unknown join kept apart");
    assert_eq!(unlinked.subflows[0].index, None);

    let c1 = dp.counters(Hook::Xdp).unwrap();
    let moved = |n: &str| c1.get(n) - c0.get(n);
    assert_eq!(
        (
            moved("ct_connection"),
            moved("ct_subflow"),
            moved("ct_join_unknown"),
            moved("ct_full")
        ),
        (1, 4, 1, 0)
    );

    // RST forgets a subflow; MP_FASTCLOSE forgets the connection's tokens.
    run(
        &dp,
        &packet((CLIENT2, 40001), s, TcpFlags::RST, 7001, None, 0),
    );
    let fastclose = TcpOption::Mptcp(MptcpOption::MpFastclose(MpFastclose {
        receiver_key: KEY_B,
        reserved: 0,
    }));
    run(
        &dp,
        &packet((CLIENT, 40000), s, TcpFlags::ACK, 1001, Some(fastclose), 0),
    );
    let conns = dp.connections().unwrap();
    let left: Vec<u16> = conns
        .iter()
        .filter(|c| c.token_listener == token)
        .flat_map(|c| c.subflows.iter().map(|s| s.initiator.port()))
        .collect();
    assert_eq!(left, vec![40002], "{conns:#?}");
    assert!(
        !conns
            .iter()
            .any(|c| c.token_listener == token && c.key_listener == KEY_B)
    );
    // A join after the fast close no longer finds the connection.
    let before = dp.counters(Hook::Xdp).unwrap().get("ct_join_unknown");
    run(
        &dp,
        &packet(
            (CLIENT, 40009),
            s,
            TcpFlags::SYN,
            1,
            Some(join_syn(token)),
            0,
        ),
    );
    assert_eq!(
        dp.counters(Hook::Xdp).unwrap().get("ct_join_unknown"),
        before + 1
    );
}

fn one_policy(kind: SelectorKind, value: Selector, action: Action) -> PolicySet {
    let mut sc = SelectorChain::new();
    sc.add(kind, Combine::And);
    let mut ac = ActionChain::new();
    ac.add(action);
    let mut p = Policy::new("p", ac);
    p.select(0, value);
    PolicySet {
        selectors: sc,
        policies: vec![p],
    }
}

#[test]
fn connection_selector_picks_a_subflow_by_token_and_index() {
    if !root_or_skip() {
        return;
    }
    let mut dp = Dataplane::load().unwrap();
    handshake(&dp);
    let s = (SERVER, 80);
    run(
        &dp,
        &packet(
            (CLIENT2, 40001),
            s,
            TcpFlags::SYN,
            7000,
            Some(join_syn(token_from_key(KEY_B))),
            0,
        ),
    );
    for token in [token_from_key(KEY_A), token_from_key(KEY_B)] {
        let set = one_policy(
            SelectorKind::Connection,
            Selector::Connection {
                token: Some(token),
                subflow_index: Some(1),
            },
            Action::Drop,
        );
        let g = dp
            .load_generation(&set.compile(Hook::Xdp).unwrap(), &[])
            .unwrap();
        let on_join = packet((CLIENT2, 40001), s, TcpFlags::ACK, 7001, None, 100);
        let on_first = packet((CLIENT, 40000), s, TcpFlags::ACK, 1001, None, 100);
        assert_eq!(
            g.test_run(&on_join).unwrap().verdict,
            1,
            "token {token:#x}: XDP_DROP"
        );
        assert_eq!(
            g.test_run(&on_first).unwrap().verdict,
            2,
            "token {token:#x}: XDP_PASS"
        );
    }
    // A token no connection has matches nothing.
    let set = one_policy(
        SelectorKind::Connection,
        Selector::Connection {
            token: Some(1),
            subflow_index: None,
        },
        Action::Drop,
    );
    let g = dp
        .load_generation(&set.compile(Hook::Xdp).unwrap(), &[])
        .unwrap();
    assert_eq!(
        g.test_run(&packet((CLIENT2, 40001), s, TcpFlags::ACK, 7001, None, 1))
            .unwrap()
            .verdict,
        2
    );
}

#[test]
fn sequence_selector_measures_subflow_and_data_offsets() {
    if !root_or_skip() {
        return;
    }
    let mut dp = Dataplane::load().unwrap();
    handshake(&dp);
    let (c, s) = ((CLIENT, 40000), (SERVER, 80));
    let idsn_a = idsn_from_key(KEY_A);
    let dss = |dsn: u64| {
        Some(TcpOption::Mptcp(MptcpOption::Dss(Dss {
            data_ack: None,
            mapping: Some(DssMapping {
                data_seq: DataSeq::Long(dsn),
                subflow_seq: 1,
                data_len: 100,
                checksum: None,
            }),
            data_fin: false,
            unused_bits: 0,
        })))
    };
    // Subflow bytes [1000, 2000) of the client's stream: seq = ISN + 1 + offset.
    let set = one_policy(
        SelectorKind::Sequence,
        Selector::Sequence {
            stream: Stream::Subflow,
            start: 1000,
            end: 2000,
        },
        Action::Drop,
    );
    let g = dp
        .load_generation(&set.compile(Hook::Xdp).unwrap(), &[])
        .unwrap();
    for (offset, verdict) in [(0u32, 2), (999, 2), (1000, 1), (1999, 1), (2000, 2)] {
        let p = packet(c, s, TcpFlags::ACK, 1001 + offset, None, 10);
        assert_eq!(
            g.test_run(&p).unwrap().verdict,
            verdict,
            "subflow offset {offset}"
        );
    }
    // Data bytes from 1 MiB on: DSN = IDSN + 1 + offset, DSS packets only.
    let set = one_policy(
        SelectorKind::Sequence,
        Selector::Sequence {
            stream: Stream::Data,
            start: 1 << 20,
            end: u64::MAX,
        },
        Action::Drop,
    );
    let g = dp
        .load_generation(&set.compile(Hook::Xdp).unwrap(), &[])
        .unwrap();
    for (offset, verdict) in [(0u64, 2), ((1 << 20) - 1, 2), (1 << 20, 1), (5 << 30, 1)] {
        let p = packet(
            c,
            s,
            TcpFlags::ACK,
            1001,
            dss(idsn_a.wrapping_add(1 + offset)),
            10,
        );
        assert_eq!(
            g.test_run(&p).unwrap().verdict,
            verdict,
            "data offset {offset}"
        );
    }
    // No mapping: no data sequence, no match.
    assert_eq!(
        g.test_run(&packet(c, s, TcpFlags::ACK, 1001, None, 10))
            .unwrap()
            .verdict,
        2
    );
}

/// Live: the tracker on the middle node learns the kernel's connection from
/// the client->server direction alone, its tokens are the kernel's, and a
/// policy on the second subflow (index 1) sees exactly that subflow.
#[test]
fn live_tokens_match_the_kernel_and_joins_find_their_connection() {
    use emptcp_testbed::presets;
    use emptcp_testbed::traffic::{self, TransferOpts};

    if !root_or_skip() {
        return;
    }
    let tb = presets::two_path("ct", common::paced()).unwrap();
    let mut dp = Dataplane::load_with(&emptcp::LoadOptions {
        account_flows: true,
        ..Default::default()
    })
    .unwrap();
    let set = one_policy(
        SelectorKind::Connection,
        Selector::Connection {
            token: None,
            subflow_index: Some(1),
        },
        Action::Count,
    );
    let compiled = set.compile(Hook::TcIngress).unwrap();
    common::attach_router(
        &mut dp,
        &tb,
        Hook::TcIngress,
        &["r1", "r2"],
        Some(&compiled),
    );
    let t = traffic::transfer(
        &tb.client,
        &tb.server,
        &TransferOpts::new(tb.server_addr(), 8 << 20).expect_subflows_with_data(2),
    )
    .unwrap();
    let c = dp.counters(Hook::TcIngress).unwrap();
    assert_eq!(c.get("ct_join_unknown"), 0, "{c:?}");
    assert!(
        c.get("ct_connection") >= 1 && c.get("ct_subflow") >= 2,
        "{c:?}"
    );

    // The client's MPTCP_INFO token is the initiator's.
    let client_token = t.sender.mptcp.token;
    let conns = dp.connections().unwrap();
    let conn = conns
        .iter()
        .find(|c| c.token_initiator == Some(client_token))
        .unwrap_or_else(|| {
            panic!("no tracked connection with token {client_token:#x}: {conns:#?}")
        });
    assert_eq!(conn.token_listener, token_from_key(conn.key_listener));
    assert_eq!(Some(client_token), conn.key_initiator.map(token_from_key));

    // The index-1 subflow is the join over path 2, and the policy counted
    // exactly the packets emptcp saw of it (at r2's ingress).
    let join = conn
        .subflows
        .iter()
        .find(|s| s.index == Some(1))
        .expect("join tracked");
    assert!(join.join);
    let flows = dp.flow_stats().unwrap();
    let join_packets: u64 = flows
        .iter()
        .filter(|(k, _)| SocketAddr::new(k.src, k.sport) == join.initiator)
        .map(|(_, s)| s.packets)
        .sum();
    let hits: u64 = dp
        .attachments()
        .iter()
        .filter_map(|a| a.generation())
        .map(|g| g.policy_hits().unwrap()[0].1)
        .sum();
    assert!(join_packets > 0);
    assert_eq!(hits, join_packets);
}

/// An MPTCP SYN answered by a SYN/ACK without MP_CAPABLE is plain TCP (RFC 8684 section 3.1), a
/// join answered without MP_JOIN a refused join: the tracker forgets the subflow and counts
/// `ct_fallback`. Control: the same SYN answered with MP_CAPABLE stays tracked.
#[test]
fn a_syn_ack_without_mptcp_forgets_the_subflow() {
    if !root_or_skip() {
        return;
    }
    let dp = Dataplane::load().unwrap();
    let s = (SERVER, 80);
    let tracked_ports = |dp: &Dataplane| -> Vec<u16> {
        let mut v: Vec<u16> = dp
            .connections()
            .unwrap()
            .iter()
            .flat_map(|c| c.subflows.iter().map(|sf| sf.initiator.port()))
            .collect();
        v.sort();
        v
    };
    let fallbacks = |dp: &Dataplane| dp.counters(Hook::Xdp).unwrap().get("ct_fallback");

    // Control: answered with MP_CAPABLE.
    handshake(&dp);
    assert_eq!(tracked_ports(&dp), vec![40000]);
    assert_eq!(fallbacks(&dp), 0);

    // An MPTCP SYN answered as plain TCP.
    let c = (CLIENT, 41000);
    let syn = packet(
        c,
        s,
        TcpFlags::SYN,
        7,
        Some(capable(MpCapableKeys::None)),
        0,
    );
    run(&dp, &syn);
    assert_eq!(tracked_ports(&dp), vec![40000, 41000]);
    run(
        &dp,
        &packet(s, c, TcpFlags::SYN | TcpFlags::ACK, 9, None, 0),
    );
    assert_eq!(
        tracked_ports(&dp),
        vec![40000],
        "fallback subflow still tracked"
    );
    assert_eq!(fallbacks(&dp), 1);

    // A join of the tracked connection, refused: its SYN/ACK carries no MP_JOIN.
    let token = dp.connections().unwrap()[0].token_listener;
    let j = (CLIENT2, 42000);
    run(
        &dp,
        &packet(j, s, TcpFlags::SYN, 11, Some(join_syn(token)), 0),
    );
    assert_eq!(tracked_ports(&dp), vec![40000, 42000]);
    run(
        &dp,
        &packet(s, j, TcpFlags::SYN | TcpFlags::ACK, 13, None, 0),
    );
    assert_eq!(
        tracked_ports(&dp),
        vec![40000],
        "refused join still tracked"
    );
    assert_eq!(fallbacks(&dp), 2);
}
