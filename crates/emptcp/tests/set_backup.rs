//! set_backup: MP_PRIO added to crafted packets at every hook, byte for byte against packets
//! built with it (checksums verified by emptcp-wire), the packets it must leave alone, and live:
//! a middle node makes the client treat its path-2 subflow as a backup, with a control run.

mod common;

use emptcp::policy::Action;
use emptcp::{Dataplane, Hook};
use emptcp_testbed::root_or_skip;
use emptcp_wire::mptcp::{DataSeq, Dss, DssMapping, MpCapable, MpCapableKeys, MpPrio, MptcpOption};
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

#[test]
fn adds_mp_prio_where_it_fits_and_leaves_the_rest_alone() {
    if !root_or_skip() {
        return;
    }
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
                .load_generation(&counted_on_port_80(hook, Action::SetBackup { backup }), &[])
                .unwrap();
            let (mut runs, mut refused) = (0u64, 0u64);
            for (base_name, base) in bases() {
                // TC cannot grow this one (resize.h): it passes unchanged, counted.
                let no_resize = hook != Hook::Xdp && base_name == "vlan ipv4 payload";
                // (options, with MP_PRIO added, whether the area grows): MP_PRIO goes into the
                // first run of 3 NOPs, else to the end.
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
                for (input, added, grows) in layouts {
                    let input = base.clone().options(input).build().unwrap();
                    let want = if no_resize && grows {
                        refused += 1;
                        input.clone()
                    } else {
                        base.clone().options(added).build().unwrap()
                    };
                    let what = format!("{hook} backup={backup} {base_name}");
                    let r = g.test_run(&input).unwrap();
                    runs += 1;
                    assert_eq!(r.verdict, pass_verdict(hook == Hook::Xdp), "{what}");
                    check_same(&what, &r.packet, &want);
                }
                // Left alone: no MPTCP option, the sender's own MP_PRIO, a SYN; no room.
                let syn = TcpOption::Mptcp(MptcpOption::MpCapable(MpCapable {
                    version: 1,
                    flags: MpCapable::FLAG_HMAC_SHA256,
                    keys: MpCapableKeys::Sender(7),
                }));
                for (what, flags, opts) in [
                    ("plain TCP", TcpFlags::ACK, vec![ts()]),
                    ("own MP_PRIO", TcpFlags::ACK, vec![dss(), mp_prio(!backup)]),
                    ("SYN", TcpFlags::SYN, vec![syn]),
                    ("no room", TcpFlags::ACK, full.clone()),
                ] {
                    let input = base.clone().flags(flags).options(opts).build().unwrap();
                    let r = g.test_run(&input).unwrap();
                    runs += 1;
                    refused += u64::from(what == "no room");
                    assert_eq!(r.packet, input, "{hook} {base_name}: {what}: unchanged");
                }
            }
            let stats = g.op_stats(0).unwrap();
            assert_eq!(
                stats.iter().map(|s| s.hits).collect::<Vec<_>>(),
                vec![runs; 3],
                "{hook}: count, set_backup, count"
            );
            let edit_refused = emptcp::OP_REASON_NAMES
                .iter()
                .position(|n| *n == "edit_refused")
                .unwrap();
            assert_eq!(
                stats[1].reasons[edit_refused], refused,
                "{hook}: edit_refused"
            );
        }
    }
}

/// Client->server payload bytes acknowledged on the path-2 subflow and in all, and the client's
/// `MPTcpExtMPPrioRx`, with or without examples/policies/set_backup.toml (set_backup on
/// server->client packets of path 2, which enter the router on r4).
fn live(label: &str, set_backup: bool) -> (u64, u64, u64) {
    use emptcp_testbed::presets;
    use emptcp_testbed::traffic::{self, SenderReport, TransferOpts};

    let tb = presets::two_path(label, common::paced()).unwrap();
    let mut dp = Dataplane::load().unwrap();
    let policy = set_backup.then(|| common::example_policy(&tb, "set_backup.toml"));
    common::attach_router(&mut dp, &tb, Hook::TcIngress, &["r4"], policy.as_ref());
    let before = tb.client.nstat().unwrap();
    let t = traffic::transfer(
        &tb.client,
        &tb.server,
        &TransferOpts::new(tb.server_addr(), 8 << 20),
    )
    .expect("transfer");
    assert!(t.sender.verified, "{label}: data verified");
    let prio_rx = tb
        .client
        .nstat()
        .unwrap()
        .delta(&before)
        .get("MPTcpExtMPPrioRx");
    let path2: u64 = t.sender.acked_payload_from("10.77.2.1".parse().unwrap());
    let total = t
        .sender
        .subflows
        .iter()
        .map(SenderReport::acked_payload)
        .sum();
    if set_backup {
        let ops = common::chain0_ops(&dp);
        eprintln!("set_backup ops: {ops:?}");
        assert!(ops[1].hits > 0);
    }
    (path2, total, prio_rx)
}

#[test]
fn live_path2_becomes_a_backup_subflow() {
    if !root_or_skip() {
        return;
    }
    let (path2, total, prio_rx) = live("bkc", false);
    eprintln!("control: path 2 carried {path2} of {total} B, client MP_PRIO rx {prio_rx}");
    assert!(
        path2 * 5 > total,
        "control: path 2 carried only {path2} of {total} B"
    );
    assert_eq!(prio_rx, 0);

    let (path2, total, prio_rx) = live("bks", true);
    eprintln!("set_backup: path 2 carried {path2} of {total} B, client MP_PRIO rx {prio_rx}");
    assert!(prio_rx > 0, "no MP_PRIO reached the client");
    assert!(
        path2 * 20 < total,
        "path 2 still carried {path2} of {total} B as a backup"
    );
}
