//! redirect: a middle node puts a subflow on another link (the paper's
//! multi-tenant use case), live on real kernel MPTCP at TC and at XDP, with a
//! control run; at XDP also on crafted frames in the router's namespace (MAC
//! addresses from the FIB byte for byte, failures passed and counted).

mod common;

use emptcp::{Dataplane, Hook};
use emptcp_testbed::presets;
use emptcp_testbed::root_or_skip;
use emptcp_testbed::traffic::{self, TransferOpts};

const BYTES: u64 = 16 << 20;

/// Bytes the router sent out of r3 and r4 during a transfer, and the bytes
/// the server acknowledged on the path-2 subflow; with or without a policy
/// that redirects path 2's client->server packets (arriving on r2) out of r3.
fn run(redirect: bool) -> (u64, u64, u64, Vec<emptcp::OpStats>) {
    run_with("redir", redirect.then_some("redirect.toml"), None)
}

/// `run` with `example` (redirect.toml at TC ingress, redirect_xdp.toml at XDP: count, then
/// redirect out of r3, for 10.77.2.0/24) on r2, if given, and every link's offloads set (`None`:
/// veth's defaults).
fn run_with(
    label: &str,
    example: Option<&str>,
    offloads: Option<emptcp_testbed::Offloads>,
) -> (u64, u64, u64, Vec<emptcp::OpStats>) {
    let opts = presets::TwoPathOpts {
        offloads,
        ..common::paced()
    };
    let tb = presets::two_path(label, opts).unwrap();
    let policy = example.map(|name| common::example_policy(&tb, name));
    let hook = policy.as_ref().map_or(Hook::TcIngress, |p| p.hook());
    if hook == Hook::Xdp {
        // A veth takes XDP-redirected frames only with NAPI on: GRO on the receiving end of
        // r3. And a frame from a veth may carry only the pseudo-header sum (CHECKSUM_PARTIAL:
        // tx checksum offload), which an XDP redirect does not complete: the server then
        // counts a checksum error and drops it (seen: the join's SYN never arrived). Frames
        // from a wire always carry their checksum; here the client's c2 sends them so.
        let gro = emptcp_testbed::Offloads {
            gro: Some(true),
            ..Default::default()
        };
        tb.server.set_offloads("s3", &gro).unwrap();
        let full_checksums = emptcp_testbed::Offloads {
            tx_checksum: Some(false),
            ..Default::default()
        };
        tb.client.set_offloads("c2", &full_checksums).unwrap();
    }
    let mut dp = Dataplane::load().unwrap();
    common::attach_router(&mut dp, &tb, hook, &["r2"], policy.as_ref());
    let before = common::server_side_tx(&tb);
    let t = traffic::transfer(
        &tb.client,
        &tb.server,
        &TransferOpts::new(tb.server_addr(), BYTES).expect_subflows_with_data(2),
    )
    .expect("transfer with path 2 redirected");
    assert!(t.sender.verified);
    let after = common::server_side_tx(&tb);
    let path2: u64 = t.sender.acked_payload_from("10.77.2.1".parse().unwrap());
    let ops = common::chain0_ops(&dp);
    (after[0] - before[0], after[1] - before[1], path2, ops)
}

#[test]
fn redirect_puts_the_path2_subflow_on_the_path1_link() {
    if !root_or_skip() {
        return;
    }
    // Control: path 2's data leaves through r4.
    let (r3, r4, path2, _) = run(false);
    eprintln!("control: r3 {r3} B, r4 {r4} B, path-2 subflow {path2} B");
    assert!(
        path2 > 0 && r4 >= path2,
        "control: r4 carried {r4} of path 2's {path2} bytes"
    );

    let (r3, r4, path2, ops) = run(true);
    eprintln!("redirected: r3 {r3} B, r4 {r4} B, path-2 subflow {path2} B, ops {ops:?}");
    assert!(path2 > 0, "the path-2 subflow still carried data");
    // Everything the client sent crossed r3; r4 saw none of path 2's data.
    assert!(r3 >= BYTES, "r3 carried {r3} of {BYTES} bytes");
    assert!(r4 < path2 / 100, "r4 still carried {r4} bytes");
    let (count, redirect) = (ops[0], ops[1]);
    assert!(redirect.hits > 0 && redirect.hits == count.hits);
    assert_eq!(redirect.reasons.iter().sum::<u64>(), 0, "{redirect:?}");

    // Every offload off (full checksums, no segmentation offload) and every one on
    // (CHECKSUM_PARTIAL, TSO/GSO, GRO): bpf_redirect_neigh moves skbs as they are.
    for (name, offloads) in [
        ("off", emptcp_testbed::Offloads::all_off()),
        ("on", emptcp_testbed::Offloads::all_on()),
    ] {
        let (r3, r4, path2, ops) = run_with(
            &format!("redo{name}"),
            Some("redirect.toml"),
            Some(offloads),
        );
        eprintln!("offloads {name}: r3 {r3} B, r4 {r4} B, path-2 subflow {path2} B, ops {ops:?}");
        assert!(
            path2 > 0 && r3 >= BYTES && r4 < path2 / 100,
            "offloads {name}"
        );
        assert_eq!(
            ops[1].reasons.iter().sum::<u64>(),
            0,
            "offloads {name}: {ops:?}"
        );
    }
}

#[test]
fn xdp_redirect_puts_the_path2_subflow_on_the_path1_link() {
    if !root_or_skip() {
        return;
    }
    // Control: path 2's data leaves through r4.
    let (_, r4, path2, _) = run_with("xredc", None, None);
    assert!(
        path2 > 0 && r4 >= path2,
        "control: r4 carried {r4} of path 2's {path2} bytes"
    );
    let (_, r4, path2, ops) = run_with("xredir", Some("redirect_xdp.toml"), None);
    eprintln!("redirected at XDP: r4 {r4} B, path-2 subflow {path2} B, ops {ops:?}");
    // The path-2 subflow carried data, none of it through r4: it left by r3, the only other
    // link to the server (XDP-redirected frames do not count in r3's own tx counters).
    assert!(path2 > 0, "the path-2 subflow still carried data");
    assert!(r4 < path2 / 100, "r4 still carried {r4} bytes");
    let (count, redirect) = (ops[0], ops[1]);
    let failed = redirect.reasons.iter().sum::<u64>();
    assert!(redirect.hits > 0 && redirect.hits == count.hits);
    assert!(
        failed * 100 <= redirect.hits,
        "more than 1% not redirected: {redirect:?}"
    );
}

/// The MAC address of `iface` in `host`'s namespace (`ip -br link`).
fn mac_of(host: &emptcp_testbed::Host, iface: &str) -> [u8; 6] {
    let out = host.ip(["-br", "link", "show", "dev", iface]).unwrap();
    let text = out.split_whitespace().nth(2).expect("ip -br link: a MAC");
    let mut mac = [0u8; 6];
    for (b, part) in mac.iter_mut().zip(text.split(':')) {
        *b = u8::from_str_radix(part, 16).unwrap();
    }
    mac
}

/// At XDP, on crafted frames in the router's namespace (BPF_PROG_TEST_RUN looks the FIB up
/// there): path 2's packets (IPv4 and IPv6) leave by r3 with r3's MAC as source and the
/// server's s3 (its neighbour entry) as destination, byte for byte; a target link without a
/// route to the destination, and a destination without a neighbour there, leave the frame
/// unchanged and count as redirect_failed.
#[test]
fn xdp_redirect_takes_the_macs_from_the_fib() {
    use emptcp::policy::{
        Action, ActionChain, Combine, Policy, PolicySet, Selector, SelectorChain, SelectorKind,
    };
    use emptcp_wire::packet::{PacketBuilder, TcpFlags};
    use std::net::IpAddr;

    const XDP_PASS: u32 = 2;
    const XDP_REDIRECT: u32 = 4;
    if !root_or_skip() {
        return;
    }
    let tb = presets::two_path("xredf", Default::default()).unwrap();
    let (r3_mac, s3_mac) = (mac_of(&tb.router, "r3"), mac_of(&tb.server, "s3"));
    for addr in ["10.77.3.1", "fd77:3::1"] {
        let mac = s3_mac.map(|b| format!("{b:02x}")).join(":");
        tb.router
            .ip([
                "neigh",
                "replace",
                addr,
                "lladdr",
                &mac,
                "dev",
                "r3",
                "nud",
                "permanent",
            ])
            .unwrap();
    }
    let (r1, r3) = (
        tb.router_ifindex("r1").unwrap(),
        tb.router_ifindex("r3").unwrap(),
    );
    let mut sc = SelectorChain::new();
    sc.add(SelectorKind::Src, Combine::Or);
    let mut policies = Vec::new();
    for (name, src, ifindex) in [
        ("path2_v4", "10.77.2.0/24", r3),
        ("path2_v6", "fd77:2::/64", r3),
        // r1 has no route to the server: the lookup through it fails.
        ("path1_to_r1", "10.77.1.0/24", r1),
    ] {
        let mut actions = ActionChain::new();
        actions.add(Action::Redirect { ifindex });
        let mut p = Policy::new(name, actions);
        p.select(0, Selector::Src(src.parse().unwrap()));
        policies.push(p);
    }
    let compiled = PolicySet {
        selectors: sc,
        policies,
    }
    .compile(Hook::Xdp)
    .unwrap();
    let mut dp = Dataplane::load().unwrap();
    let g = dp.load_generation(&compiled, &[]).unwrap();
    let frame = |src: &str, dst: &str, macs: ([u8; 6], [u8; 6])| {
        let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let b = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s, d),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s, d),
            _ => unreachable!(),
        };
        b.macs(macs.0, macs.1)
            .ports(40000, 5201)
            .flags(TcpFlags::ACK)
            .payload(vec![7; 64])
            .build()
            .unwrap()
    };
    let arriving = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let _in_router = emptcp::netns::NetnsGuard::enter(&tb.router.netns_path()).unwrap();
    let mut failed = 0;
    for (src, dst, redirected) in [
        ("10.77.2.1", "10.77.3.1", true),
        ("fd77:2::1", "fd77:3::1", true),
        // No neighbour entry for .99 on r3.
        ("10.77.2.1", "10.77.3.99", false),
        ("10.77.1.1", "10.77.3.1", false),
    ] {
        let input = frame(src, dst, arriving);
        let r = g.test_run(&input).unwrap();
        if redirected {
            assert_eq!(r.verdict, XDP_REDIRECT, "{src} -> {dst}");
            common::packets::check_same(
                &format!("{src} -> {dst}"),
                &r.packet,
                &frame(src, dst, (r3_mac, s3_mac)),
            );
        } else {
            failed += 1;
            assert_eq!((r.verdict, &r.packet), (XDP_PASS, &input), "{src} -> {dst}");
        }
    }
    // Chain 0: redirect to r3 (both path-2 policies), chain 1: to r1.
    let redirect_failed = emptcp::OP_REASON_NAMES
        .iter()
        .position(|n| *n == "redirect_failed")
        .unwrap();
    let reasons: u64 = [0, 1]
        .iter()
        .map(|&c| g.op_stats(c).unwrap()[0].reasons[redirect_failed])
        .sum();
    assert_eq!(reasons, failed, "redirect_failed");
}
