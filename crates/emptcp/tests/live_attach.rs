//! The entry programs on real interfaces: tcx attachment on a middle node
//! carrying real kernel MPTCP, and detach leaving the device as it was.

use emptcp::netns::NetnsGuard;
use emptcp::{Dataplane, Hook};
use emptcp_testbed::presets::{self, TwoPath, TwoPathOpts};
use emptcp_testbed::traffic::{self, SenderReport, TransferOpts};
use emptcp_testbed::{Family, Host};

use emptcp_testbed::root_or_skip as require_root;

/// What `tc` and `ip` show of a device: it must be the same before attach
/// and after detach.
fn device_state(host: &Host, iface: &str) -> String {
    let qdisc = host
        .tc(["qdisc", "show", "dev", iface])
        .expect("tc qdisc show");
    let ingress = host
        .tc(["filter", "show", "dev", iface, "ingress"])
        .unwrap_or_default();
    let egress = host
        .tc(["filter", "show", "dev", iface, "egress"])
        .unwrap_or_default();
    let link = host
        .ip(["-d", "link", "show", "dev", iface])
        .expect("ip link show");
    // Counters and the link's own flags are not ours to compare; the
    // attachment points (qdiscs, filters, xdp) are.
    let link: Vec<&str> = link
        .lines()
        .filter(|l| l.contains("xdp") || l.contains("prog"))
        .collect();
    format!("{qdisc}\n{ingress}\n{egress}\n{}", link.join("\n"))
}

fn attach_router(dp: &mut Dataplane, tb: &TwoPath, hook: Hook, ifaces: &[&str]) {
    let _in_router = NetnsGuard::enter(&tb.router.netns_path()).expect("enter router netns");
    for iface in ifaces {
        let ifindex = tb.router_ifindex(iface).unwrap();
        dp.attach(hook, ifindex)
            .unwrap_or_else(|e| panic!("attach {hook} on {iface}: {e:#}"));
    }
}

fn live_tc_ingress(family: Family) {
    if !require_root() {
        return;
    }
    let tb = presets::two_path(
        "live",
        TwoPathOpts {
            family,
            ..Default::default()
        },
    )
    .unwrap();
    let before = [
        device_state(&tb.router, "r1"),
        device_state(&tb.router, "r2"),
    ];

    let mut dp = Dataplane::load().expect("load");
    attach_router(&mut dp, &tb, Hook::TcIngress, &["r1", "r2"]);
    let bytes = 8 << 20;
    let t = traffic::transfer(
        &tb.client,
        &tb.server,
        &TransferOpts::new(tb.server_addr(), bytes).expect_subflows_with_data(2),
    )
    .expect("transfer through emptcp");
    assert!(t.sender.verified);

    // Every client->server payload byte of each subflow crossed r1 or r2
    // ingress exactly once, so emptcp's count equals what the server acked
    // (retransmissions aside, which both count).
    let flows = dp.flow_stats().unwrap();
    for sf in &t.sender.subflows {
        let seen: u64 = flows
            .iter()
            .filter(|(k, _)| {
                k.hook == Some(Hook::TcIngress)
                    && Some(std::net::SocketAddr::new(k.src, k.sport)) == sf.local
                    && Some(std::net::SocketAddr::new(k.dst, k.dport)) == sf.remote
            })
            .map(|(_, s)| s.payload_bytes)
            .sum();
        let acked = SenderReport::acked_payload(sf);
        assert!(acked > 0, "subflow {sf:?} carried no data");
        assert!(
            seen >= acked && seen <= sf.bytes_sent,
            "emptcp saw {seen} payload bytes on {:?}, the server acked {acked}, the client sent {}",
            sf.local,
            sf.bytes_sent
        );
    }
    let c = dp.counters(Hook::TcIngress).unwrap();
    assert!(
        c.get("mptcp") > 0 && c.get("tcp") >= c.get("mptcp"),
        "{c:?}"
    );
    assert_eq!(c.get("malformed"), 0, "{c:?}");
    assert_eq!(c.get("flow_map_full"), 0, "{c:?}");

    // Detach: the devices are as before, and traffic no longer reaches the
    // program (the attached run above is this check's control).
    assert!(
        dp.detach(Hook::TcIngress, tb.router_ifindex("r1").unwrap())
            .unwrap()
    );
    assert!(
        dp.detach(Hook::TcIngress, tb.router_ifindex("r2").unwrap())
            .unwrap()
    );
    assert!(
        !dp.detach(Hook::TcIngress, tb.router_ifindex("r2").unwrap())
            .unwrap()
    );
    let after = [
        device_state(&tb.router, "r1"),
        device_state(&tb.router, "r2"),
    ];
    assert_eq!(before, after);
    let seen_before = dp.counters(Hook::TcIngress).unwrap().get("seen");
    traffic::transfer(
        &tb.client,
        &tb.server,
        &TransferOpts::new(tb.server_addr(), 1 << 20),
    )
    .expect("transfer after detach");
    assert_eq!(
        dp.counters(Hook::TcIngress).unwrap().get("seen"),
        seen_before
    );
}

#[test]
fn tcx_ingress_sees_every_subflow_ipv4() {
    live_tc_ingress(Family::V4);
}

#[test]
fn tcx_ingress_sees_every_subflow_ipv6() {
    live_tc_ingress(Family::V6);
}

#[test]
fn entry_programs_load_within_verifier_budget() {
    if !require_root() {
        return;
    }
    let dp = Dataplane::load().expect("load");
    eprintln!(
        "load (open, relocate, verify 3 programs): {:?}",
        dp.load_time()
    );
    for hook in Hook::ALL {
        let info = dp.program_info(hook).unwrap();
        eprintln!(
            "{}: {} verified insns, {} xlated insns, {} JIT bytes",
            info.name, info.verified_insns, info.xlated_insns, info.jited_bytes
        );
        assert!(info.verified_insns > 0 && info.verified_insns < 1_000_000);
    }
}
