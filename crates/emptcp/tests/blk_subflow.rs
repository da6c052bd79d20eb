//! The built-in blk_subflow actor on crafted packets at every hook: every ADD_ADDR goes (IPv4
//! and IPv6, echo or with HMAC, one or two in a segment, at any alignment), every other option
//! stays; the output equals byte for byte the packet built without them (or with NOPs where TC
//! cannot resize), checksums verified by emptcp-wire. With refuse_joins, MP_JOIN SYNs are
//! dropped; the control: the same SYN passes without it, and a join's SYN/ACK always passes.
//! Live, on real kernel MPTCP with control runs: examples/policies/blk_subflow.toml (no
//! ADD_ADDR reaches the client, no join the server) and examples/policies/drop.toml (joins
//! refused at XDP).

mod common;

use std::net::{IpAddr, Ipv4Addr};

use emptcp::policy::{Action, ActionChain, Policy, PolicySet, SelectorChain};
use emptcp::{Dataplane, Hook};
use emptcp_testbed::root_or_skip;
use emptcp_wire::mptcp::{AddAddr, MpJoin, MptcpOption};
use emptcp_wire::packet::{PacketBuilder, TcpFlags};
use emptcp_wire::tcp_opt::TcpOption;

use common::packets::*;

const TC_ACT_SHOT: u32 = 2;
const XDP_DROP: u32 = 1;

fn add_addr_v6(id: u8, hmac: Option<u64>) -> TcpOption {
    TcpOption::Mptcp(MptcpOption::AddAddr(AddAddr {
        echo: hmac.is_none(),
        address_id: id,
        address: IpAddr::V6(format!("2001:db8::{id}").parse().unwrap()),
        port: Some(8080),
        hmac,
        reserved: 0,
    }))
}

fn pass(hook: Hook) -> u32 {
    pass_verdict(hook == Hook::Xdp)
}

#[test]
fn strips_every_add_addr_and_nothing_else() {
    if !root_or_skip() {
        return;
    }
    let mut dp = Dataplane::load().expect("load entry programs");
    // What came out with ADD_ADDRs stripped, for tshark.
    let mut stripped = Vec::new();
    for hook in Hook::ALL {
        let g = dp
            .load_generation(
                &counted_on_port_80(
                    hook,
                    Action::BlkSubflow {
                        refuse_joins: false,
                    },
                ),
                &[],
            )
            .unwrap();
        // (name, the ADD_ADDRs of the packet): one, or two of both families.
        let sets: Vec<(&str, Vec<TcpOption>)> = vec![
            ("v4 echo", vec![add_addr(1, None)]),
            ("v4 hmac", vec![add_addr(2, Some(0x0102_0304_0506_0708))]),
            ("v6 port echo", vec![add_addr_v6(3, None)]),
            ("v4 + v6", vec![add_addr(4, None), add_addr_v6(5, None)]),
        ];
        let mut runs = 0u64;
        for (base_name, base) in bases() {
            let fallback = hook != Hook::Xdp && base_name == "vlan ipv4 payload";
            for (before, after) in layouts() {
                for (set_name, set) in &sets {
                    let room: usize = before.iter().chain(&after).chain(set).map(len_of).sum();
                    if room > 40 {
                        continue;
                    }
                    let (input, want) = stripped_pair(&base, &before, set, &after, fallback);
                    let what = format!(
                        "{hook} {base_name} {set_name} at {}",
                        before.iter().map(len_of).sum::<usize>()
                    );
                    let r = g.test_run(&input).unwrap();
                    runs += 1;
                    assert_eq!(r.verdict, pass(hook), "{what}: verdict");
                    check_same(&what, &r.packet, &want);
                    stripped.push(r.packet);
                }
            }
            // Without ADD_ADDR: unchanged, not counted as refused.
            let input = base.clone().options(vec![prio(), dss()]).build().unwrap();
            let r = g.test_run(&input).unwrap();
            runs += 1;
            assert_eq!(
                r.packet, input,
                "{hook} {base_name}: no ADD_ADDR, unchanged"
            );
        }
        let stats = g.op_stats(0).unwrap();
        let hits: Vec<u64> = stats.iter().map(|s| s.hits).collect();
        assert_eq!(hits, vec![runs; 3], "{hook}: count, blk_subflow, count");
        assert_eq!(
            stats[1].reasons,
            [0; emptcp::policy::limits::OP_REASONS],
            "{hook}: reasons"
        );
    }
    // An independent decoder: good checksums, no ADD_ADDR (subtype 3) left.
    common::tshark::expect_subtypes(&stripped, None, Some(3), "stripped");
}

/// After a handshake conntrack saw (both keys), a lone ADD_ADDR (Linux's pure ACK) becomes a DSS with the
/// receiver's first data ACK (IDSN + 1): stripped to nothing, it would make a client that is not
/// yet fully established fall back to TCP. An ADD_ADDR too short to hold the DSS is removed.
#[test]
fn a_lone_add_addr_becomes_an_old_data_ack() {
    use emptcp_wire::crypto::idsn_from_key;
    use emptcp_wire::mptcp::{DataSeq, Dss, MpCapable, MpCapableKeys};

    if !root_or_skip() {
        return;
    }
    const KEY_CLIENT: u64 = 0x1111_2222_3333_4444;
    const KEY_SERVER: u64 = 0x5555_6666_7777_8888;
    let capable = |keys| {
        TcpOption::Mptcp(MptcpOption::MpCapable(MpCapable {
            version: 1,
            flags: MpCapable::FLAG_HMAC_SHA256,
            keys,
        }))
    };
    let mut dp = Dataplane::load().unwrap();
    // Conntrack is shared by the hooks: one connection (client port, keys) each.
    for (hook, port) in [(Hook::Xdp, 40000u16), (Hook::TcIngress, 40001)] {
        let (key_client, key_server) = (KEY_CLIENT ^ u64::from(port), KEY_SERVER ^ u64::from(port));
        let pkt = |from_client: bool, flags: TcpFlags, options: Vec<TcpOption>| {
            let (c, s) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 9, 0, 1));
            let b = if from_client {
                PacketBuilder::ipv4(c, s).ports(port, 80)
            } else {
                PacketBuilder::ipv4(s, c).ports(80, port)
            };
            b.flags(flags).options(options).build().unwrap()
        };
        let mut ac = ActionChain::new();
        ac.add(Action::BlkSubflow {
            refuse_joins: false,
        });
        let compiled = PolicySet {
            selectors: SelectorChain::new(),
            policies: vec![Policy::new("blk", ac)],
        }
        .compile(hook)
        .unwrap();
        let g = dp.load_generation(&compiled, &[]).unwrap();
        let ts = TcpOption::Timestamps {
            value: 7,
            echo_reply: 8,
        };
        let lone = |add: TcpOption| {
            pkt(
                false,
                TcpFlags::ACK,
                vec![TcpOption::Nop, TcpOption::Nop, ts.clone(), add],
            )
        };
        // Before the handshake conntrack knows no IDSN: only removed.
        let before = g.test_run(&lone(add_addr(1, Some(0xabcd)))).unwrap();
        check_same(
            &format!("{hook}: unknown connection"),
            &before.packet,
            &pkt(
                false,
                TcpFlags::ACK,
                vec![TcpOption::Nop, TcpOption::Nop, ts.clone()],
            ),
        );
        for p in [
            pkt(true, TcpFlags::SYN, vec![capable(MpCapableKeys::None)]),
            pkt(
                false,
                TcpFlags::SYN | TcpFlags::ACK,
                vec![capable(MpCapableKeys::Sender(key_server))],
            ),
        ] {
            g.test_run(&p).unwrap();
        }
        // The server's key is known, the client's (the receiver's) not yet: only removed, no
        // guessed data ACK.
        let half = g.test_run(&lone(add_addr(1, Some(0xabcd)))).unwrap();
        check_same(
            &format!("{hook}: client key unknown"),
            &half.packet,
            &pkt(
                false,
                TcpFlags::ACK,
                vec![TcpOption::Nop, TcpOption::Nop, ts.clone()],
            ),
        );
        g.test_run(&pkt(
            true,
            TcpFlags::ACK,
            vec![capable(MpCapableKeys::Both {
                sender: key_client,
                receiver: key_server,
            })],
        ))
        .unwrap();
        let dss = TcpOption::Mptcp(MptcpOption::Dss(Dss {
            data_ack: Some(DataSeq::Long(idsn_from_key(key_client).wrapping_add(1))),
            mapping: None,
            data_fin: false,
            unused_bits: 0,
        }));
        for (what, add, want) in [
            (
                "v4 with HMAC",
                add_addr(1, Some(0xabcd)),
                vec![TcpOption::Nop, TcpOption::Nop, ts.clone(), dss.clone()],
            ),
            (
                "v6 echo with port",
                add_addr_v6(2, None),
                vec![TcpOption::Nop, TcpOption::Nop, ts.clone(), dss.clone()],
            ),
            // 8 bytes: no room for the 12-byte DSS.
            (
                "v4 echo",
                add_addr(3, None),
                vec![TcpOption::Nop, TcpOption::Nop, ts.clone()],
            ),
        ] {
            let r = g.test_run(&lone(add)).unwrap();
            check_same(
                &format!("{hook} {what}"),
                &r.packet,
                &pkt(false, TcpFlags::ACK, want),
            );
        }
        // With a DSS beside it, the ADD_ADDR only goes.
        let r = g
            .test_run(&pkt(
                false,
                TcpFlags::ACK,
                vec![dss.clone(), add_addr(4, Some(1))],
            ))
            .unwrap();
        check_same(
            &format!("{hook}: beside a DSS"),
            &r.packet,
            &pkt(false, TcpFlags::ACK, vec![dss.clone()]),
        );
    }
}

fn join_syn(flags: TcpFlags) -> Vec<u8> {
    let join = if flags.contains(TcpFlags::ACK) {
        MpJoin::SynAck {
            backup: false,
            address_id: 1,
            hmac: 0x1122_3344_5566_7788,
            random: 7,
            reserved: 0,
        }
    } else {
        MpJoin::Syn {
            backup: false,
            address_id: 1,
            token: 0xdead_beef,
            random: 7,
            reserved: 0,
        }
    };
    PacketBuilder::ipv4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 9, 0, 1))
        .ports(40000, 80)
        .seq(1000)
        .flags(flags)
        .options(vec![
            TcpOption::Mss(1460),
            TcpOption::Mptcp(MptcpOption::MpJoin(join)),
        ])
        .build()
        .unwrap()
}

#[test]
fn refuse_joins_drops_join_syns_only() {
    if !root_or_skip() {
        return;
    }
    let mut dp = Dataplane::load().expect("load entry programs");
    for hook in Hook::ALL {
        let drop = if hook == Hook::Xdp {
            XDP_DROP
        } else {
            TC_ACT_SHOT
        };
        let syn = join_syn(TcpFlags::SYN);
        let syn_ack = join_syn(TcpFlags::SYN | TcpFlags::ACK);
        for refuse in [false, true] {
            let g = dp
                .load_generation(
                    &counted_on_port_80(
                        hook,
                        Action::BlkSubflow {
                            refuse_joins: refuse,
                        },
                    ),
                    &[],
                )
                .unwrap();
            let r = g.test_run(&syn).unwrap();
            let want = if refuse { drop } else { pass(hook) };
            assert_eq!(r.verdict, want, "{hook} refuse_joins={refuse}: join SYN");
            if !refuse {
                assert_eq!(r.packet, syn, "{hook}: join SYN unchanged");
            }
            let r = g.test_run(&syn_ack).unwrap();
            assert_eq!(
                r.verdict,
                pass(hook),
                "{hook} refuse_joins={refuse}: SYN/ACK"
            );
            assert_eq!(r.packet, syn_ack, "{hook}: SYN/ACK unchanged");
        }
    }
}

/// What the client learned and the server accepted during one transfer on the two-path testbed
/// whose server announces 10.77.4.1 (a signal endpoint): the client's `MPTcpExtAddAddr` and the
/// server's `MPTcpExtMPJoinSynRx`, and the operator counters of the first two chains of the
/// example policy file `example` (when given) at the router's `ifaces` (its own hook).
fn live(
    label: &str,
    ifaces: &[&str],
    example: Option<&str>,
) -> (u64, u64, [Vec<emptcp::OpStats>; 2]) {
    live_with(label, ifaces, example, None)
}

/// [`live`] with the links' offloads set; also checks that neither end counted a bad TCP
/// checksum or MPTCP data checksum.
fn live_with(
    label: &str,
    ifaces: &[&str],
    example: Option<&str>,
    offloads: Option<emptcp_testbed::Offloads>,
) -> (u64, u64, [Vec<emptcp::OpStats>; 2]) {
    let tb = common::announcing_two_path_with(label, offloads);
    let mut dp = Dataplane::load().unwrap();
    let policy = example.map(|name| common::example_policy(&tb, name));
    let hook = policy.as_ref().map_or(Hook::TcIngress, |p| p.hook());
    common::attach_router(&mut dp, &tb, hook, ifaces, policy.as_ref());
    let common::MeasuredTransfer { client, server, .. } =
        common::measured_transfer(&tb, label, 4 << 20);
    for (end, c) in [("client", &client), ("server", &server)] {
        assert_eq!(c.tcp_in_csum_errors(), 0, "{label}: {end} TcpInCsumErrors");
        assert_eq!(
            c.get("MPTcpExtDataCsumErr"),
            0,
            "{label}: {end} DataCsumErr"
        );
    }
    (
        client.get("MPTcpExtAddAddr"),
        server.get("MPTcpExtMPJoinSynRx"),
        [common::chain_ops(&dp, 0), common::chain_ops(&dp, 1)],
    )
}

#[test]
fn live_add_addr_never_reaches_the_client() {
    if !root_or_skip() {
        return;
    }
    // Control: the client learns the server's second address.
    let (add_addr, _, _) = live("blkc", &["r1", "r3"], None);
    eprintln!("control: client received {add_addr} ADD_ADDR");
    assert!(add_addr > 0, "control: no ADD_ADDR reached the client");

    // Server->client packets enter the router on r3 (path 1): policy no_add_addr. On r1 too:
    // the DSS that replaces a lone ADD_ADDR needs the client's key, which conntrack learns
    // from the client's third ACK (without it the ADD_ADDR is only removed, and the client
    // falls back to TCP: seen here).
    let (add_addr, _, [ops, _]) = live("blks", &["r1", "r3"], Some("blk_subflow.toml"));
    eprintln!("stripped: client received {add_addr} ADD_ADDR, ops {ops:?}");
    assert_eq!(add_addr, 0, "an ADD_ADDR reached the client");
    // count, blk_subflow on r1 (no server packets there) then on r3.
    let r3_blk = ops[3];
    assert!(r3_blk.hits > 0, "{ops:?}");
    assert_eq!(r3_blk.reasons.iter().sum::<u64>(), 0, "{r3_blk:?}");

    // The same with every offload off (full checksums, no GSO) and every one on (CHECKSUM_PARTIAL,
    // TSO/GSO, GRO): the ADD_ADDR rides pure ACKs, which TC can always edit.
    for (name, offloads) in [
        ("off", emptcp_testbed::Offloads::all_off()),
        ("on", emptcp_testbed::Offloads::all_on()),
    ] {
        let label = format!("blko{name}");
        let (add_addr, _, [ops, _]) = live_with(
            &label,
            &["r1", "r3"],
            Some("blk_subflow.toml"),
            Some(offloads),
        );
        eprintln!("offloads {name}: client received {add_addr} ADD_ADDR, ops {ops:?}");
        assert_eq!(
            add_addr, 0,
            "offloads {name}: an ADD_ADDR reached the client"
        );
        assert!(
            ops[3].hits > 0 && ops[3].reasons.iter().sum::<u64>() == 0,
            "{ops:?}"
        );
    }
}

#[test]
fn live_join_syns_are_refused() {
    if !root_or_skip() {
        return;
    }
    // Client->server packets of path 2 enter the router on r2, the join's SYN among them:
    // policy no_joins_from_path2.
    let (_, joins, _) = live("blkjc", &["r2"], None);
    eprintln!("control: server received {joins} MP_JOIN SYN");
    assert!(joins > 0, "control: no join reached the server");
    let (_, joins, [_, ops]) = live("blkjr", &["r2"], Some("blk_subflow.toml"));
    eprintln!("refused: server received {joins} MP_JOIN SYN, ops {ops:?}");
    assert_eq!(joins, 0, "a join's SYN reached the server");
    assert!(ops[1].hits > 0);
}

/// examples/policies/drop.toml: the same refusal at XDP, by dropping MP_JOIN SYNs.
#[test]
fn live_drop_example_refuses_joins_at_xdp() {
    if !root_or_skip() {
        return;
    }
    let (_, joins, _) = live("dropc", &["r2"], None);
    assert!(joins > 0, "control: no join reached the server");
    let (_, joins, [ops, _]) = live("dropj", &["r2"], Some("drop.toml"));
    eprintln!("drop.toml at xdp: server received {joins} MP_JOIN SYN, ops {ops:?}");
    assert_eq!(joins, 0, "a join's SYN reached the server");
    // count, drop: every join SYN (and its retransmissions) counted once by each.
    assert!(ops[0].hits > 0 && ops[1].hits == ops[0].hits, "{ops:?}");
}
