//! An actor plugin in the middle of a chain: `bpf/plugins/strip_add_addr.bpf.c` removes MPTCP
//! ADD_ADDR options through the helper library (tcpopt.h). Chain: count, plugin(0), count; the
//! output is compared byte for byte with the packet built directly with emptcp-wire (without
//! the ADD_ADDR, or with NOPs in its place), and its checksums are verified by emptcp-wire.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use emptcp::plugin::PluginSpec;
use emptcp::policy::{
    Action, ActionChain, Combine, Policy, PolicySet, Selector, SelectorChain, SelectorKind,
};
use emptcp::{Dataplane, Hook};
use emptcp_testbed::root_or_skip;
use emptcp_wire::mptcp::{AddAddr, DataSeq, Dss, MpPrio, MptcpOption};
use emptcp_wire::packet::{PacketBuilder, ParsedPacket, TcpFlags, VlanTag};
use emptcp_wire::tcp_opt::TcpOption;

const TC_ACT_UNSPEC: u32 = -1i32 as u32;
const XDP_PASS: u32 = 2;

fn add_addr(id: u8, hmac: Option<u64>) -> TcpOption {
    TcpOption::Mptcp(MptcpOption::AddAddr(AddAddr {
        echo: hmac.is_none(),
        address_id: id,
        address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, id)),
        port: None,
        hmac,
        reserved: 0,
    }))
}

fn dss() -> TcpOption {
    TcpOption::Mptcp(MptcpOption::Dss(Dss {
        data_ack: Some(DataSeq::Short(1)),
        mapping: None,
        data_fin: false,
        unused_bits: 0,
    }))
}

fn prio() -> TcpOption {
    TcpOption::Mptcp(MptcpOption::MpPrio(MpPrio {
        backup: true,
        address_id: None,
        reserved: 0,
    }))
}

fn len_of(o: &TcpOption) -> usize {
    let mut v = Vec::new();
    o.write_to(&mut v).unwrap();
    v.len()
}

/// Packets to 10.9.0.1:80 / [2001:db8::9]:80 (the policy's port), as ingress sees them.
fn bases() -> Vec<(&'static str, PacketBuilder)> {
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
fn layouts() -> Vec<(Vec<TcpOption>, Vec<TcpOption>)> {
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

fn check_same(what: &str, got: &[u8], want: &[u8]) {
    let parsed =
        ParsedPacket::parse(got).unwrap_or_else(|e| panic!("{what}: output unparsable: {e}"));
    parsed
        .verify_checksums()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got, want, "{what}: output differs from the expected packet");
}

#[test]
fn strip_add_addr_in_the_middle_of_a_chain() {
    if !root_or_skip() {
        return;
    }
    let mut dp = Dataplane::load().expect("load entry programs");
    let object = emptcp::testing::object_bytes("plugins/strip_add_addr").expect("plugin built");
    for hook in [Hook::TcIngress, Hook::Xdp] {
        let program = if hook == Hook::Xdp {
            "strip_add_addr_xdp"
        } else {
            "strip_add_addr_tc"
        };
        // .rodata of the plugin: strip_add_addr_cfg { nop }.
        for nop in [false, true] {
            let plugin =
                PluginSpec::new("strip_add_addr", object, program).rodata(vec![u8::from(nop)]);
            let mut actions = ActionChain::new();
            actions
                .add(Action::Count)
                .add(Action::Plugin(0))
                .add(Action::Count);
            let mut p = Policy::new("strip", actions);
            let mut sc = SelectorChain::new();
            sc.add(SelectorKind::Port, Combine::And);
            p.select(
                0,
                Selector::Port {
                    local: Some(80),
                    remote: None,
                },
            );
            let compiled = PolicySet {
                selectors: sc,
                policies: vec![p],
            }
            .compile(hook)
            .unwrap();
            let g = dp
                .load_generation(&compiled, &[&plugin])
                .expect("generation with plugin");
            let mut runs = 0u64;
            for (base_name, base) in bases() {
                for (before, after) in layouts() {
                    let target = add_addr(1, None);
                    let mut opts = before.clone();
                    opts.push(target.clone());
                    opts.extend(after.iter().cloned());
                    let input = base.clone().options(opts).build().unwrap();
                    let mut kept = before.clone();
                    let fallback = hook != Hook::Xdp && base_name == "vlan ipv4 payload";
                    if nop || fallback {
                        kept.extend(std::iter::repeat_n(TcpOption::Nop, len_of(&target)));
                    }
                    kept.extend(after.iter().cloned());
                    let want = base.clone().options(kept).build().unwrap();
                    let what = format!(
                        "{hook} nop={nop} {base_name}, ADD_ADDR at {}",
                        before.iter().map(len_of).sum::<usize>()
                    );
                    let r = g.test_run(&input).unwrap();
                    runs += 1;
                    let pass = if hook == Hook::Xdp {
                        XDP_PASS
                    } else {
                        TC_ACT_UNSPEC
                    };
                    assert_eq!(r.verdict, pass, "{what}: verdict");
                    check_same(&what, &r.packet, &want);
                }
            }
            // Without ADD_ADDR (and with a long one, HMAC included): unchanged / removed.
            for (base_name, base) in bases() {
                let input = base.clone().options(vec![prio(), dss()]).build().unwrap();
                let r = g.test_run(&input).unwrap();
                runs += 1;
                assert_eq!(
                    r.packet, input,
                    "{hook} {base_name}: no ADD_ADDR, unchanged"
                );
                let long = add_addr(2, Some(0x1122_3344_5566_7788));
                let input = base
                    .clone()
                    .options(vec![TcpOption::Mss(1460), long.clone(), dss()])
                    .build()
                    .unwrap();
                let mut kept = vec![TcpOption::Mss(1460)];
                let fallback = hook != Hook::Xdp && base_name == "vlan ipv4 payload";
                if nop || fallback {
                    kept.extend(std::iter::repeat_n(TcpOption::Nop, len_of(&long)));
                }
                kept.push(dss());
                let want = base.clone().options(kept).build().unwrap();
                let r = g.test_run(&input).unwrap();
                runs += 1;
                check_same(
                    &format!("{hook} nop={nop} {base_name}: HMAC ADD_ADDR"),
                    &r.packet,
                    &want,
                );
            }
            let stats = g.op_stats(0).unwrap();
            let hits: Vec<u64> = stats.iter().map(|s| s.hits).collect();
            assert_eq!(
                hits,
                vec![runs; 3],
                "{hook} nop={nop}: count, plugin, count"
            );
        }
    }
}
