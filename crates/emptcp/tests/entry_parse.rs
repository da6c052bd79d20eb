//! The entry programs' one-pass parser on crafted packets (BPF_PROG_TEST_RUN):
//! what each packet is counted as, which flow it is accounted to, and that
//! the packet leaves unchanged. Packets are built with emptcp-wire.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use emptcp::{Dataplane, EntryCounters, Hook};
use emptcp_testbed::root_or_skip;
use emptcp_wire::packet::{IpHeader, Ipv6Extension, PacketBuilder, TcpFlags, VlanTag};
use emptcp_wire::tcp_opt::TcpOption;

use common::packets::dss;

const XDP_PASS: u32 = 2;
const TC_ACT_UNSPEC: u32 = -1i32 as u32;

/// How the entry must classify a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Mptcp,
    PlainTcp,
    NotTcp,
    Fragment,
    Malformed,
}

fn v4() -> PacketBuilder {
    PacketBuilder::ipv4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))
        .ports(40000, 80)
        .flags(TcpFlags::ACK)
}

fn v6() -> PacketBuilder {
    PacketBuilder::ipv6("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())
        .ports(40000, 80)
        .flags(TcpFlags::ACK)
}

fn build(b: PacketBuilder) -> Vec<u8> {
    b.build().expect("test packet builds")
}

/// Runs `packet` through every hook's entry and checks the verdict, the
/// unchanged bytes and the counter that moved.
fn check(dp: &Dataplane, name: &str, packet: &[u8], class: Class) {
    check_hooks(dp, name, packet, class, &Hook::ALL);
}

fn check_hooks(dp: &Dataplane, name: &str, packet: &[u8], class: Class, hooks: &[Hook]) {
    for &hook in hooks {
        let before = dp.counters(hook).unwrap();
        let run = dp.test_run(hook, packet).unwrap_or_else(|e| {
            panic!(
                "{name} at {hook}: {e:#} ({:?})",
                std::error::Error::source(&e)
            )
        });
        let after = dp.counters(hook).unwrap();
        let expected_verdict = if hook == Hook::Xdp {
            XDP_PASS
        } else {
            TC_ACT_UNSPEC
        };
        assert_eq!(run.verdict, expected_verdict, "{name} at {hook}: verdict");
        assert_eq!(
            run.packet, packet,
            "{name} at {hook}: the entry must not change the packet"
        );
        let moved = |c: &str| after.get(c) - before.get(c);
        assert_eq!(
            moved("seen"),
            1,
            "{name} at {hook}: {}",
            diff(&before, &after)
        );
        let expect = |c: &str, on: bool| {
            assert_eq!(
                moved(c),
                on as u64,
                "{name} at {hook}: counter {c}: {}",
                diff(&before, &after)
            )
        };
        expect("tcp", matches!(class, Class::Mptcp | Class::PlainTcp));
        expect("mptcp", class == Class::Mptcp);
        expect("not_tcp", class == Class::NotTcp);
        expect("fragment", class == Class::Fragment);
        expect("malformed", class == Class::Malformed);
        // Test-run skbs are linear: a packet cut short is malformed, and
        // there is nothing to pull (tc_pull.rs has paged skbs).
        expect("paged", false);
        expect("pulled", false);
    }
}

fn diff(before: &EntryCounters, after: &EntryCounters) -> String {
    let moved: Vec<String> = after
        .0
        .iter()
        .filter(|(k, v)| **v != before.get(k))
        .map(|(k, v)| format!("{k}+{}", v - before.get(k)))
        .collect();
    format!("moved: [{}]", moved.join(", "))
}

fn with_dataplane(f: impl FnOnce(&Dataplane)) {
    if !root_or_skip() {
        return;
    }
    // Flows accounted: the tests read per-flow traffic. No quick pass: the
    // packets share flows, and each must be walked (tests/quick_pass.rs).
    let accounted = emptcp::LoadOptions {
        account_flows: true,
        quick_pass: false,
        ..Default::default()
    };
    f(&Dataplane::load_with(&accounted).expect("load entry programs"));
}

#[test]
fn ipv4_and_ipv6_tcp_with_and_without_mptcp() {
    with_dataplane(|dp| {
        check(dp, "v4 dss", &build(v4().option(dss())), Class::Mptcp);
        check(
            dp,
            "v4 plain",
            &build(v4().option(TcpOption::Mss(1460))),
            Class::PlainTcp,
        );
        check(dp, "v4 no options", &build(v4()), Class::PlainTcp);
        check(
            dp,
            "v6 dss",
            &build(v6().option(dss()).payload(vec![7; 100])),
            Class::Mptcp,
        );
        check(dp, "v6 plain", &build(v6()), Class::PlainTcp);
    });
}

#[test]
fn vlan_tags() {
    with_dataplane(|dp| {
        check(
            dp,
            "1 tag",
            &build(v4().vlan(VlanTag::dot1q(10)).option(dss())),
            Class::Mptcp,
        );
        let qinq = v6()
            .vlan(VlanTag::dot1ad(100))
            .vlan(VlanTag::dot1q(10))
            .option(dss());
        check(dp, "QinQ", &build(qinq), Class::Mptcp);
        // A third tag is beyond what the parser walks: not ours, passed.
        let three = v4()
            .vlan(VlanTag::dot1ad(1))
            .vlan(VlanTag::dot1q(2))
            .vlan(VlanTag::dot1q(3))
            .option(dss());
        if let Ok(p) = three.build() {
            check(dp, "3 tags", &p, Class::NotTcp);
        }
    });
}

#[test]
fn ipv4_options_of_every_length() {
    with_dataplane(|dp| {
        for words in 0..=10usize {
            // NOPs (type 1) then EOL: any IHL from 5 to 15.
            let mut opts = vec![1u8; words * 4];
            if let Some(last) = opts.last_mut() {
                *last = 0;
            }
            let p = build(v4().ipv4_options(opts).option(dss()));
            check(dp, &format!("IHL {}", 5 + words), &p, Class::Mptcp);
        }
    });
}

#[test]
fn ipv6_extension_headers() {
    with_dataplane(|dp| {
        let hbh = Ipv6Extension::hop_by_hop_padded(&[]);
        let dst = Ipv6Extension::destination_options_padded(&[]);
        let rt = Ipv6Extension::Routing {
            routing_type: 4,
            segments_left: 0,
            data: vec![0; 4],
        };
        let frag = |offset: u16, more: bool| Ipv6Extension::Fragment {
            fragment_offset: offset,
            more_fragments: more,
            identification: 9,
            reserved: 0,
            reserved_bits: 0,
        };
        let chain = |exts: Vec<Ipv6Extension>| {
            let mut b = v6().option(dss());
            for e in exts {
                b = b.ipv6_extension(e);
            }
            build(b)
        };
        check(dp, "hop-by-hop", &chain(vec![hbh.clone()]), Class::Mptcp);
        check(
            dp,
            "hbh+rt+dst",
            &chain(vec![hbh.clone(), rt.clone(), dst.clone()]),
            Class::Mptcp,
        );
        check(
            dp,
            "dst+rt+dst",
            &chain(vec![dst.clone(), rt.clone(), dst.clone()]),
            Class::Mptcp,
        );
        check(
            dp,
            "atomic fragment",
            &chain(vec![frag(0, false)]),
            Class::Mptcp,
        );
        check(
            dp,
            "first fragment",
            &chain(vec![frag(0, true)]),
            Class::Fragment,
        );
        check(
            dp,
            "later fragment",
            &chain(vec![frag(185, false)]),
            Class::Fragment,
        );
        let six = vec![
            hbh.clone(),
            dst.clone(),
            rt.clone(),
            dst.clone(),
            dst.clone(),
            dst.clone(),
        ];
        check(dp, "6 headers", &chain(six), Class::Mptcp);
        let seven = vec![
            hbh,
            dst.clone(),
            rt,
            dst.clone(),
            dst.clone(),
            dst.clone(),
            dst,
        ];
        check(
            dp,
            "7 headers: beyond the walk",
            &chain(seven),
            Class::Malformed,
        );
    });
}

#[test]
fn non_tcp_and_fragments_pass_untouched() {
    with_dataplane(|dp| {
        let mut udp = build(v4());
        udp[14 + 9] = 17; // protocol: the parser must leave before reading L4
        check(dp, "v4 udp", &udp, Class::NotTcp);
        let mut arp = build(v4());
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        check(dp, "arp", &arp, Class::NotTcp);
        let mut icmp6 = build(v6());
        icmp6[14 + 6] = 58;
        check(dp, "v6 icmp", &icmp6, Class::NotTcp);
        let frag = |flags_fragment: u16| {
            let mut b = v4().option(dss());
            if let IpHeader::V4(h) = &mut b.ip {
                h.flags_fragment = flags_fragment;
            }
            build(b)
        };
        check(dp, "v4 first fragment", &frag(0x2000), Class::Fragment);
        check(dp, "v4 later fragment", &frag(100), Class::Fragment);
        check(dp, "v4 DF only", &frag(0x4000), Class::Mptcp);
    });
}

#[test]
fn option_walk_at_every_alignment_and_on_malformed_options() {
    with_dataplane(|dp| {
        let dss_bytes = {
            let mut v = Vec::new();
            dss().write_to(&mut v).unwrap();
            v
        };
        // The MPTCP option after 0..=3 NOPs, and after a timestamp.
        for nops in 0..=3 {
            let mut area = vec![1u8; nops];
            area.extend(&dss_bytes);
            check(
                dp,
                &format!("{nops} NOPs first"),
                &build(v4().raw_options(area)),
                Class::Mptcp,
            );
        }
        let mut area = vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        area.extend(&dss_bytes);
        check(
            dp,
            "after timestamps",
            &build(v4().raw_options(area)),
            Class::Mptcp,
        );
        // 32 NOPs then an 8-byte MPTCP option (DSS with a 4-byte data ack)
        // ending at byte 40: the whole area is walked.
        assert_eq!(dss_bytes.len(), 8);
        let mut area = vec![1u8; 32];
        area.extend(&dss_bytes);
        check(
            dp,
            "MPTCP at offset 32",
            &build(v4().raw_options(area)),
            Class::Mptcp,
        );

        // Malformed lengths end the walk: an MPTCP option after them is not
        // seen, and the packet still passes as TCP.
        for (name, bad) in [
            ("len 0", [254u8, 0]),
            ("len 1", [254, 1]),
            ("past end", [254, 40]),
        ] {
            let mut area = bad.to_vec();
            area.extend(&dss_bytes);
            check(dp, name, &build(v4().raw_options(area)), Class::PlainTcp);
        }
        // EOL ends the list: what follows is padding.
        let mut area = vec![0u8];
        area.extend(&dss_bytes);
        check(
            dp,
            "after EOL",
            &build(v4().raw_options(area)),
            Class::PlainTcp,
        );
        // The MPTCP option before a malformed one is seen.
        let mut area = dss_bytes.clone();
        area.extend([254, 0]);
        check(
            dp,
            "malformed after MPTCP",
            &build(v4().raw_options(area)),
            Class::Mptcp,
        );
    });
}

#[test]
fn truncated_packets_never_read_past_the_end() {
    with_dataplane(|dp| {
        let full = build(v6().option(dss()).payload(vec![1; 20]));
        // Cut inside every header: Ethernet (< 14 is refused by test_run),
        // IPv6, TCP, options. Nothing may be counted as TCP.
        let l4 = 14 + 40;
        for len in [15, 30, 53] {
            // The kernel builds no test skb without a whole IP header
            // (EINVAL), so only XDP sees these.
            assert!(dp.test_run(Hook::TcIngress, &full[..len]).is_err());
            check_hooks(
                dp,
                &format!("cut at {len}"),
                &full[..len],
                Class::Malformed,
                &[Hook::Xdp],
            );
        }
        for len in [l4, l4 + 10, l4 + 19] {
            check(dp, &format!("cut at {len}"), &full[..len], Class::Malformed);
        }
        // Cut inside the option area: the TCP header says 32 bytes.
        check(dp, "cut in options", &full[..l4 + 22], Class::Malformed);
        // Control: the whole packet is MPTCP at every hook.
        check(dp, "whole", &full, Class::Mptcp);
    });
}

#[test]
fn flows_are_keyed_by_addresses_and_ports() {
    with_dataplane(|dp| {
        let a = build(v4().ports(1111, 2222).option(dss()).payload(vec![0; 100]));
        let b = build(
            v6().ports(3333, 4444)
                .vlan(VlanTag::dot1q(5))
                .payload(vec![0; 10]),
        );
        dp.test_run(Hook::TcEgress, &a).unwrap();
        dp.test_run(Hook::TcEgress, &a).unwrap();
        dp.test_run(Hook::Xdp, &b).unwrap();
        let flows = dp.flow_stats().unwrap();
        let find = |hook: Hook, sport: u16| {
            flows
                .iter()
                .find(|(k, _)| k.hook == Some(hook) && k.sport == sport)
                .cloned()
        };
        let (ka, sa) = find(Hook::TcEgress, 1111).expect("v4 flow accounted");
        assert_eq!(ka.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(ka.dst, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(ka.dport, 2222);
        assert_eq!((sa.packets, sa.payload_bytes), (2, 200));
        assert_eq!(sa.bytes, 2 * (a.len() as u64 - 14));
        let (kb, sb) = find(Hook::Xdp, 3333).expect("v6 flow accounted");
        assert_eq!(kb.src, "fd00::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(kb.dport, 4444);
        assert_eq!((sb.packets, sb.payload_bytes), (1, 10));
    });
}
