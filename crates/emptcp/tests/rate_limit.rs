//! rate_limit on crafted packets, byte for byte with every checksum
//! recomputed, at XDP and both TC hooks.

use std::net::Ipv4Addr;

use emptcp::policy::{
    Action, ActionChain, Combine, Policy, PolicySet, Selector, SelectorChain, SelectorKind,
};
use emptcp::{Dataplane, Generation, Hook};
use emptcp_testbed::root_or_skip;
use emptcp_wire::mptcp::{MpCapable, MpCapableKeys, MptcpOption};
use emptcp_wire::packet::{PacketBuilder, ParsedPacket, TcpFlags};
use emptcp_wire::tcp_opt::TcpOption;

const CAP: u32 = 64_000;
const WSCALE: u8 = 7;

fn packet(flags: TcpFlags, window: u16, syn_options: bool) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 9, 0, 1))
        .ports(40000, 80)
        .flags(flags)
        .seq(100)
        .window(window)
        .payload(vec![7; 32]);
    if syn_options {
        b = b.options([
            TcpOption::Mss(1460),
            TcpOption::Nop,
            TcpOption::WindowScale(WSCALE),
            TcpOption::Mptcp(MptcpOption::MpCapable(MpCapable {
                version: 1,
                flags: MpCapable::FLAG_HMAC_SHA256,
                keys: MpCapableKeys::None,
            })),
        ]);
    }
    b.build().unwrap()
}

fn generation(dp: &mut Dataplane, hook: Hook) -> Generation {
    let mut sc = SelectorChain::new();
    sc.add(SelectorKind::Port, Combine::And);
    let mut ac = ActionChain::new();
    ac.add(Action::RateLimit { window_bytes: CAP });
    let mut p = Policy::new("clamp", ac);
    // The server's port is remote at egress, local at ingress: match either.
    let port = if hook == Hook::TcEgress {
        Selector::Port {
            local: Some(40000),
            remote: None,
        }
    } else {
        Selector::Port {
            local: Some(80),
            remote: None,
        }
    };
    p.select(0, port);
    let compiled = PolicySet {
        selectors: sc,
        policies: vec![p],
    }
    .compile(hook)
    .unwrap();
    dp.load_generation(&compiled, &[]).unwrap()
}

fn assert_valid(bytes: &[u8], what: &str) {
    let parsed = ParsedPacket::parse(bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
    parsed
        .verify_checksums()
        .unwrap_or_else(|e| panic!("{what}: checksums: {e}"));
}

#[test]
fn clamps_scaled_windows_never_raises_and_keeps_checksums_right() {
    if !root_or_skip() {
        return;
    }
    for hook in Hook::ALL {
        let mut dp = Dataplane::load().unwrap();
        let g = generation(&mut dp, hook);

        // Before the sender's SYN is seen the scale is unknown: untouched.
        let early = packet(TcpFlags::ACK, 1000, false);
        assert_eq!(g.test_run(&early).unwrap().packet, early, "{hook}");
        let reasons = g.op_stats(0).unwrap()[0].reasons;
        assert_eq!(
            reasons[4], 1,
            "{hook}: counted as wscale unknown: {reasons:?}"
        );

        // The SYN (window scale 7) teaches the tracker; a SYN's own window
        // is unscaled and, with no ACK flag, means nothing: untouched.
        let syn = packet(TcpFlags::SYN, 65535, true);
        assert_eq!(g.test_run(&syn).unwrap().packet, syn, "{hook}");

        // 1000 << 7 = 128000 bytes > 64000: clamped to 64000 >> 7 = 500.
        let out = g
            .test_run(&packet(TcpFlags::ACK, 1000, false))
            .unwrap()
            .packet;
        assert_eq!(
            out,
            packet(TcpFlags::ACK, 500, false),
            "{hook}: clamped, byte for byte"
        );
        assert_valid(&out, &format!("{hook} clamped"));

        // 400 << 7 = 51200 bytes <= 64000: never raised.
        let small = packet(TcpFlags::ACK, 400, false);
        assert_eq!(
            g.test_run(&small).unwrap().packet,
            small,
            "{hook}: not raised"
        );

        // A SYN/ACK's window is unscaled: 65535 bytes > 64000 -> 64000.
        let synack = packet(TcpFlags::SYN | TcpFlags::ACK, 65535, true);
        let out = g.test_run(&synack).unwrap().packet;
        assert_eq!(
            out,
            packet(TcpFlags::SYN | TcpFlags::ACK, 64000, true),
            "{hook}: SYN/ACK"
        );
        assert_valid(&out, &format!("{hook} SYN/ACK"));

        // Every window value at the edge, checksums recomputed each time.
        for window in [0u16, 1, 499, 500, 501, 0x8000, 0xffff] {
            let out = g
                .test_run(&packet(TcpFlags::ACK, window, false))
                .unwrap()
                .packet;
            let expected = if u32::from(window) << WSCALE > CAP {
                500
            } else {
                window
            };
            assert_eq!(
                out,
                packet(TcpFlags::ACK, expected, false),
                "{hook}: window {window}"
            );
            assert_valid(&out, &format!("{hook} window {window}"));
        }
    }
}
