//! Packets around an ADD_ADDR, for the actors that strip it (the strip_add_addr plugin,
//! blk_subflow), and the byte-for-byte check of their output.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use emptcp::Hook;
use emptcp::policy::{
    Action, ActionChain, Combine, CompiledPolicy, Policy, PolicySet, Selector, SelectorChain,
    SelectorKind,
};
use emptcp_wire::mptcp::{AddAddr, DataSeq, Dss, MpPrio, MptcpOption};
use emptcp_wire::packet::{PacketBuilder, ParsedPacket, TcpFlags, VlanTag};
use emptcp_wire::tcp_opt::TcpOption;

pub const TC_ACT_UNSPEC: u32 = -1i32 as u32;
pub const XDP_PASS: u32 = 2;

pub fn add_addr(id: u8, hmac: Option<u64>) -> TcpOption {
    TcpOption::Mptcp(MptcpOption::AddAddr(AddAddr {
        echo: hmac.is_none(),
        address_id: id,
        address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, id)),
        port: None,
        hmac,
        reserved: 0,
    }))
}

pub fn dss() -> TcpOption {
    TcpOption::Mptcp(MptcpOption::Dss(Dss {
        data_ack: Some(DataSeq::Short(1)),
        mapping: None,
        data_fin: false,
        unused_bits: 0,
    }))
}

pub fn prio() -> TcpOption {
    TcpOption::Mptcp(MptcpOption::MpPrio(MpPrio {
        backup: true,
        address_id: None,
        reserved: 0,
    }))
}

pub fn len_of(o: &TcpOption) -> usize {
    let mut v = Vec::new();
    o.write_to(&mut v).unwrap();
    v.len()
}

/// Packets to 10.9.0.1:80 / [2001:db8::9]:80 (the policy's port), as ingress sees them.
pub fn bases() -> Vec<(&'static str, PacketBuilder)> {
    let v4 = || {
        PacketBuilder::ipv4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 9, 0, 1))
            .ports(40000, 80)
            .seq(1000)
            .ack(2000)
            .flags(TcpFlags::ACK)
    };
    let v6 = || {
        PacketBuilder::ipv6(
            "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
            "2001:db8::9".parse().unwrap(),
        )
        .ports(40000, 80)
        .seq(1000)
        .ack(2000)
        .flags(TcpFlags::ACK)
    };
    vec![
        ("ipv4", v4()),
        ("ipv6", v6()),
        ("vlan ipv4", v4().vlan(VlanTag::dot1q(10))),
        ("ipv4 payload", v4().payload(vec![0x5a; 100])),
        ("ipv6 payload", v6().payload(vec![0xa5; 77])),
        // TC cannot resize it (resize.h): the plugin falls back to NOPs there.
        (
            "vlan ipv4 payload",
            v4().vlan(VlanTag::dot1q(10)).payload(vec![1; 20]),
        ),
    ]
}

/// (leading options, trailing options) around the ADD_ADDR: it starts at 0, 3 (odd), 12, and
/// other MPTCP options stay.
pub fn layouts() -> Vec<(Vec<TcpOption>, Vec<TcpOption>)> {
    vec![
        (vec![], vec![]),
        (
            vec![TcpOption::WindowScale(7)],
            vec![TcpOption::SackPermitted],
        ),
        (
            vec![
                TcpOption::Nop,
                TcpOption::Nop,
                TcpOption::Timestamps {
                    value: 1,
                    echo_reply: 2,
                },
            ],
            vec![dss()],
        ),
        (vec![prio()], vec![TcpOption::Mss(1400)]),
    ]
}

pub fn check_same(what: &str, got: &[u8], want: &[u8]) {
    let parsed =
        ParsedPacket::parse(got).unwrap_or_else(|e| panic!("{what}: output unparsable: {e}"));
    parsed
        .verify_checksums()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got, want, "{what}: output differs from the expected packet");
}

/// The packet `base` with `removed` between `before` and `after`, and the packet an actor that
/// strips `removed` should make of it: without it, or with NOPs in its place when `nops`.
pub fn stripped_pair(
    base: &PacketBuilder,
    before: &[TcpOption],
    removed: &[TcpOption],
    after: &[TcpOption],
    nops: bool,
) -> (Vec<u8>, Vec<u8>) {
    let input = base
        .clone()
        .options(
            before
                .iter()
                .chain(removed)
                .chain(after)
                .cloned()
                .collect::<Vec<_>>(),
        )
        .build()
        .unwrap();
    let mut kept = before.to_vec();
    if nops {
        let gone = removed.iter().map(len_of).sum();
        kept.extend(std::iter::repeat_n(TcpOption::Nop, gone));
    }
    kept.extend_from_slice(after);
    (input, base.clone().options(kept).build().unwrap())
}

/// The verdict of a packet that went on: `XDP_PASS`, or `TC_ACT_UNSPEC` at TC.
pub fn pass_verdict(xdp: bool) -> u32 {
    if xdp { XDP_PASS } else { TC_ACT_UNSPEC }
}

/// One policy, `actions` on TCP port 80 of 10.9.0.1 ([`bases`]: local at ingress and XDP,
/// remote at egress).
pub fn on_port_80(hook: Hook, actions: ActionChain) -> PolicySet {
    let mut p = Policy::new("port80", actions);
    let mut sc = SelectorChain::new();
    sc.add(SelectorKind::Port, Combine::And);
    let port = if hook == Hook::TcEgress {
        Selector::Port {
            local: None,
            remote: Some(80),
        }
    } else {
        Selector::Port {
            local: Some(80),
            remote: None,
        }
    };
    p.select(0, port);
    PolicySet {
        selectors: sc,
        policies: vec![p],
    }
}

/// count, `action`, count on TCP port 80 ([`on_port_80`]), compiled for `hook`.
pub fn counted_on_port_80(hook: Hook, action: Action) -> CompiledPolicy {
    let mut actions = ActionChain::new();
    actions.add(Action::Count).add(action).add(Action::Count);
    on_port_80(hook, actions).compile(hook).unwrap()
}
