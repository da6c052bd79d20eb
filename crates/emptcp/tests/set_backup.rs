//! set_backup: MP_PRIO added to crafted packets at every hook, byte for byte against packets
//! built with it (checksums verified by emptcp-wire), the packets it must leave alone, and live:
//! a middle node makes the client treat its path-2 subflow as a backup, with a control run.

mod common;

use emptcp::policy::Action;
use emptcp::{Dataplane, Hook};
use emptcp_testbed::root_or_skip;
use emptcp_wire::mptcp::{
    DataSeq, Dss, DssMapping, MpCapable, MpCapableKeys, MpJoin, MpPrio, MptcpOption,
};
use emptcp_wire::packet::TcpFlags;
use emptcp_wire::tcp_opt::TcpOption;

use common::packets::*;

fn mp_prio(backup: bool) -> TcpOption {
    TcpOption::Mptcp(MptcpOption::MpPrio(MpPrio {
        backup,
        address_id: None,
        reserved: 0,
    }))
}

fn ts() -> TcpOption {
    TcpOption::Timestamps {
        value: 1,
        echo_reply: 2,
    }
}

fn set_backup(backup: bool, packets: u8) -> Action {
    Action::SetBackup { backup, packets }
}

fn prio_sent(dp: &Dataplane, hook: Hook) -> u64 {
    dp.counters(hook).unwrap().get("prio_sent")
}

fn edit_refused() -> usize {
    emptcp::OP_REASON_NAMES
        .iter()
        .position(|n| *n == "edit_refused")
        .unwrap()
}

/// Placement, with a quota no run exhausts: MP_PRIO goes into the first run of 3 NOPs, else to
/// the end of the area, which grows; a packet with payload takes it only into NOP room.
#[test]
fn adds_mp_prio_where_it_fits_and_leaves_the_rest_alone() {
    if !root_or_skip() {
        return;
    }
    // What came out with MP_PRIO added, for tshark.
    let mut prio_frames = Vec::new();
    let mut dp = Dataplane::load().expect("load entry programs");
    // 38 bytes of options: no room for 3 more.
    let full = vec![
        TcpOption::Nop,
        TcpOption::Nop,
        ts(),
        TcpOption::Mptcp(MptcpOption::Dss(Dss {
            data_ack: Some(DataSeq::Long(1)),
            mapping: Some(DssMapping {
                data_seq: DataSeq::Long(2),
                subflow_seq: 3,
                data_len: 4,
                checksum: None,
            }),
            data_fin: false,
            unused_bits: 0,
        })),
    ];
    for hook in Hook::ALL {
        for backup in [true, false] {
            let g = dp
                .load_generation(&counted_on_port_80(hook, set_backup(backup, 255)), &[])
                .unwrap();
            let sent_before = prio_sent(&dp, hook);
            let (mut runs, mut refused, mut added) = (0u64, 0u64, 0u64);
            for (base_name, base) in bases() {
                let payload = base_name.contains("payload");
                // (options, with MP_PRIO added, whether the area grows).
                let layouts: Vec<(Vec<TcpOption>, Vec<TcpOption>, bool)> = vec![
                    (vec![dss()], vec![dss(), mp_prio(backup)], true),
                    (
                        vec![TcpOption::Nop, TcpOption::Nop, ts(), dss()],
                        vec![TcpOption::Nop, TcpOption::Nop, ts(), dss(), mp_prio(backup)],
                        true,
                    ),
                    (
                        vec![dss(), TcpOption::Nop, TcpOption::Nop, TcpOption::Nop, ts()],
                        vec![dss(), mp_prio(backup), ts()],
                        false,
                    ),
                ];
                for (input, with_prio, grows) in layouts {
                    let input = base.clone().options(input).build().unwrap();
                    // A packet with payload is never grown: passed over, uncounted.
                    let carried = !(payload && grows);
                    let want = if carried {
                        added += 1;
                        base.clone().options(with_prio).build().unwrap()
                    } else {
                        input.clone()
                    };
                    let what = format!("{hook} backup={backup} {base_name} grows={grows}");
                    let r = g.test_run(&input).unwrap();
                    runs += 1;
                    assert_eq!(r.verdict, pass_verdict(hook == Hook::Xdp), "{what}");
                    check_same(&what, &r.packet, &want);
                    if carried {
                        prio_frames.push(r.packet);
                    }
                }
                // Left alone: no MPTCP option, the sender's own MP_PRIO, a SYN; no room
                // (counted on a packet without payload).
                let syn = TcpOption::Mptcp(MptcpOption::MpCapable(MpCapable {
                    version: 1,
                    flags: MpCapable::FLAG_HMAC_SHA256,
                    keys: MpCapableKeys::Sender(7),
                }));
                let join_ack = TcpOption::Mptcp(MptcpOption::MpJoin(MpJoin::Ack {
                    hmac: [7; 20],
                    reserved: 0,
                }));
                let capable_ack = TcpOption::Mptcp(MptcpOption::MpCapable(MpCapable {
                    version: 1,
                    flags: MpCapable::FLAG_HMAC_SHA256,
                    keys: MpCapableKeys::Both {
                        sender: 7,
                        receiver: 8,
                    },
                }));
                for (what, flags, opts) in [
                    ("plain TCP", TcpFlags::ACK, vec![ts()]),
                    ("own MP_PRIO", TcpFlags::ACK, vec![dss(), mp_prio(!backup)]),
                    ("SYN", TcpFlags::SYN, vec![syn.clone()]),
                    ("FIN", TcpFlags::FIN | TcpFlags::ACK, vec![dss()]),
                    ("RST", TcpFlags::RST | TcpFlags::ACK, vec![dss()]),
                    ("MP_JOIN third ACK", TcpFlags::ACK, vec![join_ack]),
                    ("MP_CAPABLE third ACK", TcpFlags::ACK, vec![capable_ack]),
                    ("no room", TcpFlags::ACK, full.clone()),
                ] {
                    let input = base.clone().flags(flags).options(opts).build().unwrap();
                    let r = g.test_run(&input).unwrap();
                    runs += 1;
                    refused += u64::from(what == "no room" && !payload);
                    assert_eq!(r.packet, input, "{hook} {base_name}: {what}: unchanged");
                }
            }
            let stats = g.op_stats(0).unwrap();
            assert_eq!(
                stats.iter().map(|s| s.hits).collect::<Vec<_>>(),
                vec![runs; 3],
                "{hook}: count, set_backup, count"
            );
            assert_eq!(
                stats[1].reasons[edit_refused()],
                refused,
                "{hook}: edit_refused"
            );
            assert_eq!(stats[1].reasons.iter().sum::<u64>(), refused, "{hook}");
            assert_eq!(
                prio_sent(&dp, hook) - sent_before,
                added,
                "{hook}: prio_sent"
            );
        }
    }
    // An independent decoder: good checksums, an MP_PRIO (subtype 5) in each.
    common::tshark::expect_subtypes(&prio_frames, Some(5), None, "MP_PRIO");
}

/// One policy picking every TCP packet, both directions.
fn everywhere(hook: Hook, action: Action) -> emptcp::policy::CompiledPolicy {
    use emptcp::policy::{ActionChain, Policy, PolicySet, SelectorChain};
    let mut actions = ActionChain::new();
    actions.add(action);
    PolicySet {
        selectors: SelectorChain::new(),
        policies: vec![Policy::new("all", actions)],
    }
    .compile(hook)
    .unwrap()
}

/// The quota: per subflow and direction, exactly N packets carry MP_PRIO under one generation,
/// then packets pass unchanged and uncounted; a data packet without NOP room neither carries it
/// nor uses the quota; a new generation starts afresh; B = 0 the same way.
#[test]
fn mp_prio_rides_n_packets_per_subflow_direction_and_generation() {
    if !root_or_skip() {
        return;
    }
    use emptcp_wire::packet::PacketBuilder;
    use std::net::Ipv4Addr;

    let mut dp = Dataplane::load().expect("load entry programs");
    let (client, server) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 9, 0, 1));
    let ack = |sport: u16, to_server: bool| {
        let (src, dst, sp, dp) = if to_server {
            (client, server, sport, 80)
        } else {
            (server, client, 80, sport)
        };
        PacketBuilder::ipv4(src, dst)
            .ports(sp, dp)
            .seq(1000)
            .ack(2000)
            .flags(TcpFlags::ACK)
    };
    for hook in Hook::ALL {
        for (backup, n) in [(true, 3u8), (false, 3), (true, 1), (false, 5)] {
            let policy = everywhere(hook, set_backup(backup, n));
            let mut expected_sent = 0;
            let sent_before = prio_sent(&dp, hook);
            // Two generations of the same policy: each has its own quota.
            for generation in 0..2 {
                let g = dp.load_generation(&policy, &[]).unwrap();
                // Two subflows, both directions, each its own quota.
                for (sport, to_server) in [(40000, true), (40000, false), (40001, true)] {
                    let what = format!(
                        "{hook} backup={backup} n={n} gen {generation} {sport} to_server={to_server}"
                    );
                    // Data without NOP room first: passed over, the quota kept for ACKs.
                    let data = ack(sport, to_server)
                        .options([dss()])
                        .payload(vec![9; 200])
                        .build()
                        .unwrap();
                    check_same(&what, &g.test_run(&data).unwrap().packet, &data);
                    for i in 0..usize::from(n) + 3 {
                        let input = ack(sport, to_server).options([dss()]).build().unwrap();
                        let want = if i < usize::from(n) {
                            expected_sent += 1;
                            ack(sport, to_server)
                                .options([dss(), mp_prio(backup)])
                                .build()
                                .unwrap()
                        } else {
                            input.clone()
                        };
                        let r = g.test_run(&input).unwrap();
                        check_same(&format!("{what} packet {i}"), &r.packet, &want);
                    }
                }
                // Spent quotas are no skips.
                let stats = g.op_stats(0).unwrap();
                assert_eq!(stats[0].reasons.iter().sum::<u64>(), 0, "{hook}: {stats:?}");
            }
            assert_eq!(
                prio_sent(&dp, hook) - sent_before,
                expected_sent,
                "{hook} backup={backup} n={n}: prio_sent"
            );
        }
    }
}

/// The client's addresses on path 1 and path 2.
const CLIENT: [&str; 2] = ["10.77.1.1", "10.77.2.1"];

/// What one live run measured.
struct LiveRun {
    /// Client->server payload bytes acknowledged on each path's subflows.
    path: [u64; 2],
    /// ... and on all subflows.
    total: u64,
    /// Subflows the client had on each path.
    subflows: [u64; 2],
    /// The client's `MPTcpExtMPPrioRx`.
    prio_rx: u64,
    /// The client's `TcpInCsumErrors`.
    client_csum_errors: u64,
    /// MP_PRIO the data plane inserted (`prio_sent` at tc-ingress).
    prio_sent: u64,
    /// Packets the set_backup operator ran on.
    hits: u64,
}

/// A transfer from the client, with `policy` at the router's tc-ingress of `iface`, or none.
fn live(label: &str, policy: Option<(emptcp::policy::CompiledPolicy, &str)>) -> LiveRun {
    live_with(label, policy, None)
}

/// [`live`] with every link's offloads set (`None`: veth's defaults).
fn live_with(
    label: &str,
    policy: Option<(emptcp::policy::CompiledPolicy, &str)>,
    offloads: Option<emptcp_testbed::Offloads>,
) -> LiveRun {
    use emptcp_testbed::presets;
    use emptcp_testbed::traffic::{self, SenderReport, TransferOpts};

    let opts = presets::TwoPathOpts {
        offloads,
        ..common::paced()
    };
    let tb = presets::two_path(label, opts).unwrap();
    let mut dp = Dataplane::load().unwrap();
    if let Some((compiled, iface)) = &policy {
        common::attach_router(&mut dp, &tb, Hook::TcIngress, &[iface], Some(compiled));
    }
    let before = tb.client.nstat().unwrap();
    let t = traffic::transfer(
        &tb.client,
        &tb.server,
        &TransferOpts::new(tb.server_addr(), 8 << 20),
    )
    .expect("transfer");
    assert!(t.sender.verified, "{label}: data verified");
    // A carrier may still be in flight when the transfer returns: wait (at most 3 s) until
    // the client has had what the data plane inserted.
    let prio_sent = prio_sent(&dp, Hook::TcIngress);
    let prio_rx = || {
        tb.client
            .nstat()
            .unwrap()
            .delta(&before)
            .get("MPTcpExtMPPrioRx")
    };
    for _ in 0..60 {
        if prio_rx() >= prio_sent {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let ops = common::chain0_ops(&dp);
    if policy.is_some() {
        eprintln!("{label}: ops {ops:?}");
    }
    let on_path = |i: usize| {
        let addr = CLIENT[i].parse().unwrap();
        let n = t
            .sender
            .subflows
            .iter()
            .filter(|sf| sf.local.map(|a| a.ip()) == Some(addr))
            .count() as u64;
        (t.sender.acked_payload_from(addr), n)
    };
    let (p1, p2) = (on_path(0), on_path(1));
    LiveRun {
        path: [p1.0, p2.0],
        subflows: [p1.1, p2.1],
        total: t
            .sender
            .subflows
            .iter()
            .map(SenderReport::acked_payload)
            .sum(),
        prio_rx: prio_rx(),
        client_csum_errors: tb
            .client
            .nstat()
            .unwrap()
            .delta(&before)
            .tcp_in_csum_errors(),
        prio_sent,
        hits: ops.last().map_or(0, |o| o.hits),
    }
}

/// Live, three runs of an 8 MiB upload on the two-path testbed:
/// - control (no policy): the client sends on both paths and receives no MP_PRIO;
/// - examples/policies/set_backup.toml (B = 1 on server->client packets of path 2, at the
///   router's r4 ingress): the client moves its traffic off path 2, and receives MP_PRIO (the
///   data plane inserts at most N = 3, the default, for its one path-2 subflow); once the
///   first took effect the subflow is idle, so fewer carriers may come before its end;
/// - B = 0 on server->client packets of path 1 (r3), a busy subflow whose ACKs offer thousands
///   of carriers: exactly N are inserted (and reach the client: at least one, at most N, as
///   its stack counts them), then packets pass unchanged; nothing moves (the subflow was
///   regular already).
#[test]
fn live_backup_subflow_gets_at_most_n_mp_prio_and_loses_its_traffic() {
    if !root_or_skip() {
        return;
    }
    use emptcp::policy::{
        ActionChain, Combine, Policy, PolicySet, Selector, SelectorChain, SelectorKind,
    };

    let n = u64::from(emptcp::policy::limits::SET_BACKUP_PACKETS_DEFAULT);
    let c = live("bkc", None);
    eprintln!(
        "control: paths carried {:?} of {} B, client MP_PRIO rx {}",
        c.path, c.total, c.prio_rx
    );
    for (i, bytes) in c.path.iter().enumerate() {
        assert!(
            bytes * 5 > c.total,
            "control: path {} carried only {bytes} of {} B",
            i + 1,
            c.total
        );
    }
    assert_eq!(c.prio_rx, 0);

    // The example names no interface: it compiles anywhere.
    let example = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/policies/set_backup.toml");
    let example = emptcp::policy_file::load(&example, &emptcp::policy_file::no_interfaces)
        .and_then(|f| f.compile(None))
        .unwrap();
    let r = live("bks", Some((example.clone(), "r4")));
    eprintln!(
        "set_backup: paths carried {:?} of {} B, subflows {:?}, MP_PRIO inserted {} (operator \
         hits {}), client MP_PRIO rx {}",
        r.path, r.total, r.subflows, r.prio_sent, r.hits, r.prio_rx
    );
    assert_eq!(r.subflows[1], 1, "one path-2 subflow");
    assert!(
        (1..=n).contains(&r.prio_sent),
        "MP_PRIO inserted: {}",
        r.prio_sent
    );
    // Received: at least one (the effect below needs it), never more than inserted. Not
    // "exactly": whether the client's stack reads an MP_PRIO it was sent is its business
    // (one run in about ten counted 2 of 3 on the busy subflow below); the data plane's
    // quota is checked exactly on crafted packets.
    assert!(
        (1..=r.prio_sent).contains(&r.prio_rx),
        "MP_PRIO the client received: {} of {}",
        r.prio_rx,
        r.prio_sent
    );
    assert!(
        r.path[1] * 20 < r.total,
        "path 2 still carried {} of {} B as a backup",
        r.path[1],
        r.total
    );
    // The same with every offload off (full checksums, no segmentation offload) and every one
    // on (CHECKSUM_PARTIAL, TSO/GSO, GRO): MP_PRIO rides pure ACKs, which TC can always grow.
    for (name, offloads) in [
        ("off", emptcp_testbed::Offloads::all_off()),
        ("on", emptcp_testbed::Offloads::all_on()),
    ] {
        let o = live_with(
            &format!("bko{name}"),
            Some((example.clone(), "r4")),
            Some(offloads),
        );
        eprintln!(
            "offloads {name}: paths carried {:?} of {} B, MP_PRIO inserted {}, client rx {}, \
             client TcpInCsumErrors {}",
            o.path, o.total, o.prio_sent, o.prio_rx, o.client_csum_errors
        );
        assert!((1..=o.prio_sent).contains(&o.prio_rx), "offloads {name}");
        assert!(
            o.path[1] * 20 < o.total,
            "offloads {name}: path 2 kept its traffic"
        );
        assert_eq!(o.client_csum_errors, 0, "offloads {name}");
    }

    let mut sc = SelectorChain::new();
    sc.add(SelectorKind::Dst, Combine::And);
    let mut actions = ActionChain::new();
    actions.add(set_backup(false, n as u8));
    let mut p = Policy::new("path1_regular", actions);
    p.select(0, Selector::Dst("10.77.1.0/24".parse().unwrap()));
    let regular = PolicySet {
        selectors: sc,
        policies: vec![p],
    }
    .compile(Hook::TcIngress)
    .unwrap();
    let r = live("bkr", Some((regular, "r3")));
    eprintln!(
        "B = 0 on path 1: paths carried {:?} of {} B, MP_PRIO inserted {} (operator hits {}), \
         client MP_PRIO rx {}",
        r.path, r.total, r.prio_sent, r.hits, r.prio_rx
    );
    assert_eq!(r.subflows[0], 1, "one path-1 subflow");
    assert_eq!(r.prio_sent, n, "MP_PRIO inserted");
    assert!(
        (1..=n).contains(&r.prio_rx),
        "MP_PRIO the client received: {} of {n}",
        r.prio_rx
    );
    assert!(r.hits > 20 * n, "only {} packets picked", r.hits);
    assert!(
        r.path[0] * 5 > r.total,
        "path 1 carried only {} B",
        r.path[0]
    );
}
