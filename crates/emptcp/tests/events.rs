//! get_connect and get_subflow: events on crafted handshakes and on real
//! kernel MPTCP, checked against the codec's and the kernel's tokens.

mod common;

use std::net::{Ipv4Addr, SocketAddr};

use emptcp::events::{Event, EventReader};
use emptcp::policy::{Action, ActionChain, Policy, PolicySet, SelectorChain};
use emptcp::{Dataplane, Hook};
use emptcp_testbed::root_or_skip;
use emptcp_wire::crypto::token_from_key;
use emptcp_wire::mptcp::{MpCapable, MpCapableKeys, MpJoin, MptcpOption};
use emptcp_wire::packet::{PacketBuilder, TcpFlags};
use emptcp_wire::tcp_opt::TcpOption;

const KEY_A: u64 = 0x0102_0304_0506_0708;
const KEY_B: u64 = 0xa1a2_a3a4_a5a6_a7a8;

/// Every TCP packet: get_connect then get_subflow.
fn events_policy(hook: Hook) -> emptcp::policy::CompiledPolicy {
    let mut ac = ActionChain::new();
    ac.add(Action::GetConnect).add(Action::GetSubflow);
    PolicySet {
        selectors: SelectorChain::new(),
        policies: vec![Policy::new("events", ac)],
    }
    .compile(hook)
    .unwrap()
}

fn pkt(src: ([u8; 4], u16), dst: ([u8; 4], u16), flags: TcpFlags, opt: MptcpOption) -> Vec<u8> {
    PacketBuilder::ipv4(Ipv4Addr::from(src.0), Ipv4Addr::from(dst.0))
        .ports(src.1, dst.1)
        .flags(flags)
        .option(TcpOption::Mptcp(opt))
        .build()
        .unwrap()
}

fn capable(keys: MpCapableKeys) -> MptcpOption {
    MptcpOption::MpCapable(MpCapable {
        version: 1,
        flags: MpCapable::FLAG_HMAC_SHA256,
        keys,
    })
}

#[test]
fn crafted_handshake_gives_connection_and_subflow_events() {
    if !root_or_skip() {
        return;
    }
    let mut dp = Dataplane::load().unwrap();
    let g = dp.load_generation(&events_policy(Hook::Xdp), &[]).unwrap();
    let map = dp.events_map().unwrap();
    let mut reader = EventReader::new(&map).unwrap();
    let (c, s) = (([10, 0, 0, 1], 40000), ([10, 9, 0, 1], 80));
    let join = MptcpOption::MpJoin(MpJoin::Syn {
        backup: true,
        address_id: 2,
        token: token_from_key(KEY_B),
        random: 42,
        reserved: 0,
    });
    for p in [
        pkt(c, s, TcpFlags::SYN, capable(MpCapableKeys::None)),
        pkt(
            s,
            c,
            TcpFlags::SYN | TcpFlags::ACK,
            capable(MpCapableKeys::Sender(KEY_B)),
        ),
        pkt(
            c,
            s,
            TcpFlags::ACK,
            capable(MpCapableKeys::Both {
                sender: KEY_A,
                receiver: KEY_B,
            }),
        ),
        pkt(([10, 0, 1, 1], 40001), s, TcpFlags::SYN, join),
    ] {
        g.test_run(&p).unwrap();
    }
    let events = reader.drain().unwrap();
    assert_eq!(
        events.len(),
        4,
        "{events:#?} ops {:?} counters {:?}",
        g.op_stats(0).unwrap(),
        dp.counters(Hook::Xdp).unwrap()
    );
    let conn = token_from_key(KEY_B);
    match &events[0] {
        Event::Subflow {
            at, join: false, ..
        } => {
            assert_eq!(at.src, SocketAddr::from(([10, 0, 0, 1], 40000)));
            assert_eq!(at.subflow_index, Some(0));
        }
        e => panic!("first: {e:?}"),
    }
    match &events[1] {
        Event::Connection {
            sender_key,
            sender_token,
            receiver_key: None,
            at,
            ..
        } => {
            assert_eq!((*sender_key, *sender_token), (KEY_B, conn));
            assert_eq!(at.connection, Some(conn), "tracking knew it by then");
        }
        e => panic!("second: {e:?}"),
    }
    match &events[2] {
        Event::Connection {
            sender_token,
            receiver_token,
            ..
        } => {
            assert_eq!(
                (*sender_token, *receiver_token),
                (token_from_key(KEY_A), Some(conn))
            );
        }
        e => panic!("third: {e:?}"),
    }
    match &events[3] {
        Event::Subflow {
            at,
            join: true,
            join_token,
            join_nonce,
            address_id,
            backup,
        } => {
            assert_eq!(
                (*join_token, *join_nonce, *address_id, *backup),
                (Some(conn), Some(42), Some(2), true)
            );
            assert_eq!((at.connection, at.subflow_index), (Some(conn), Some(1)));
        }
        e => panic!("fourth: {e:?}"),
    }
    assert_eq!(dp.counters(Hook::Xdp).unwrap().get("events_lost"), 0);
    assert_eq!(reader.undecodable(), 0);
    // A data packet reports nothing.
    g.test_run(
        &PacketBuilder::ipv4([10, 0, 0, 1].into(), [10, 9, 0, 1].into())
            .ports(40000, 80)
            .build()
            .unwrap(),
    )
    .unwrap();
    assert!(reader.drain().unwrap().is_empty());
}

#[test]
fn live_events_carry_the_kernels_tokens() {
    use emptcp_testbed::presets;
    use emptcp_testbed::traffic::{self, TransferOpts};

    if !root_or_skip() {
        return;
    }
    let tb = presets::two_path("events", common::paced()).unwrap();
    let mut dp = Dataplane::load().unwrap();
    // examples/policies/events.toml: at XDP, on handshake packets only.
    let compiled = common::example_policy(&tb, "events.toml");
    common::attach_router(
        &mut dp,
        &tb,
        compiled.hook(),
        &["r1", "r2"],
        Some(&compiled),
    );
    let map = dp.events_map().unwrap();
    let mut reader = EventReader::new(&map).unwrap();
    let t = traffic::transfer(
        &tb.client,
        &tb.server,
        &TransferOpts::new(tb.server_addr(), 4 << 20).expect_subflows_with_data(2),
    )
    .unwrap();
    let events = reader.drain().unwrap();
    let client_token = t.sender.mptcp.token;
    // The client's third ACK: its key's token is the kernel's.
    let conn = events
        .iter()
        .find_map(|e| match e {
            Event::Connection {
                sender_token,
                receiver_token: Some(server),
                ..
            } if *sender_token == client_token => Some(*server),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no connection event with token {client_token:#x}: {events:#?}"));
    // One subflow event per subflow: the MP_CAPABLE SYN (index 0; the
    // connection is not known yet when it passes) and the join (index 1)
    // carrying the server's token.
    type Seen = (bool, Option<u8>, Option<u32>, Option<u32>);
    let subflows: Vec<Seen> = events
        .iter()
        .filter_map(|e| match e {
            Event::Subflow {
                join,
                at,
                join_token,
                ..
            } if at.connection == Some(conn) || at.src == t.sender.local => {
                Some((*join, at.subflow_index, *join_token, at.connection))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        subflows,
        vec![
            (false, Some(0), None, None),
            (true, Some(1), Some(conn), Some(conn))
        ],
        "{events:#?}"
    );
    assert_eq!(dp.counters(Hook::TcIngress).unwrap().get("events_lost"), 0);
}
