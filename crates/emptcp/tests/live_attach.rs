//! The entry programs on real interfaces: tcx attachment on a middle node
//! carrying real kernel MPTCP, and detach leaving the device as it was.

mod common;

use emptcp::{Dataplane, Hook};
use emptcp_testbed::presets::{self, TwoPath, TwoPathOpts};
use emptcp_testbed::traffic::{self, SenderReport, TransferOpts};
use emptcp_testbed::{Family, Host, RateLimit};

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
    common::attach_router(dp, tb, hook, ifaces, None);
}

fn live_tc_ingress(family: Family) {
    if !require_root() {
        return;
    }
    let tb = presets::two_path(
        "live",
        TwoPathOpts {
            family,
            ..common::paced()
        },
    )
    .unwrap();
    let before = [
        device_state(&tb.router, "r1"),
        device_state(&tb.router, "r2"),
    ];

    let mut dp = Dataplane::load_with(&emptcp::LoadOptions {
        account_flows: true,
        ..Default::default()
    })
    .expect("load");
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

/// Generations swapped back and forth while MPTCP traffic flows: no byte is
/// lost or corrupted, every packet found its chain, and both generations
/// really ran (each counted packets).
#[test]
fn generations_swap_under_live_traffic() {
    use emptcp::policy::{
        Action, ActionChain, Combine, Policy, PolicySet, Selector, SelectorChain, SelectorKind,
    };

    if !require_root() {
        return;
    }
    // Rate-limited so that the transfer lasts about a second.
    let opts = TwoPathOpts {
        rate_limit: [
            Some(RateLimit::htb_mbit(100)),
            Some(RateLimit::htb_mbit(100)),
        ],
        ..Default::default()
    };
    let tb = presets::two_path("swap", opts).unwrap();
    let mut dp = Dataplane::load().expect("load");
    attach_router(&mut dp, &tb, Hook::TcIngress, &["r1", "r2"]);
    let ifindices = [
        tb.router_ifindex("r1").unwrap(),
        tb.router_ifindex("r2").unwrap(),
    ];

    let policy = |mark: u32| {
        let mut sc = SelectorChain::new();
        sc.add(SelectorKind::Dst, Combine::And);
        let mut ac = ActionChain::new();
        ac.add(Action::Count).add(Action::SetMark(mark));
        let mut p = Policy::new(format!("to_server_{mark}"), ac);
        p.select(0, Selector::Dst("10.77.3.1".parse().unwrap()));
        PolicySet {
            selectors: sc,
            policies: vec![p],
        }
        .compile(Hook::TcIngress)
        .unwrap()
    };
    let (a, b) = (policy(1), policy(2));

    // Two generations per interface, applied in turn: each apply hands back
    // the one it replaced, which becomes the next to apply.
    let mut spare = Vec::new();
    for &ifindex in &ifindices {
        let first = dp.load_generation(&a, &[]).expect("load generation");
        assert!(dp.apply(ifindex, first).expect("apply").is_none());
        spare.push(dp.load_generation(&b, &[]).expect("load generation"));
    }
    let bytes = 16 << 20;
    let mut swaps = 0u32;
    let t = std::thread::scope(|s| {
        let transfer = s.spawn(|| {
            traffic::transfer(
                &tb.client,
                &tb.server,
                &TransferOpts::new(tb.server_addr(), bytes).expect_subflows_with_data(2),
            )
        });
        while !transfer.is_finished() {
            for (i, &ifindex) in ifindices.iter().enumerate() {
                let next = spare.remove(i);
                let old = dp
                    .apply(ifindex, next)
                    .expect("apply")
                    .expect("a generation ran");
                spare.insert(i, old);
            }
            swaps += 1;
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        transfer.join().expect("transfer thread")
    })
    .expect("transfer across generation swaps");
    assert!(t.sender.verified && t.receiver.sha256 == t.sender.sha256);
    assert!(
        swaps >= 4,
        "only {swaps} swaps happened during the transfer"
    );

    let c = common::settled_counters(&dp, Hook::TcIngress);
    assert_eq!(c.get("missing_chain"), 0, "{c:?}");
    let mut hits_by_mark = [0u64; 2];
    let live: Vec<&emptcp::Generation> = dp
        .attachments()
        .iter()
        .filter_map(|a| a.generation())
        .collect();
    for g in spare.iter().chain(live) {
        for (name, hits) in g.policy_hits().unwrap() {
            hits_by_mark[usize::from(name.ends_with('2'))] += hits;
        }
    }
    eprintln!("{swaps} swaps; packets per generation kind: {hits_by_mark:?}; counters {c:?}");
    assert!(hits_by_mark.iter().all(|&h| h > 0), "{hits_by_mark:?}");
    // Every packet ran under exactly one generation: the generations' hits
    // add up to the packets the entry counted as matched, and every TCP
    // packet (all of them go to the server here) matched.
    assert_eq!(hits_by_mark[0] + hits_by_mark[1], c.get("matched"));
    assert_eq!(c.get("matched"), c.get("tcp"));
}
