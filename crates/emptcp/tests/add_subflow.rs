//! blk_subflow keeps the ADD_ADDRs it strips; add_subflow puts one back, once.
//!
//! Crafted, at every hook (BPF_PROG_TEST_RUN, outputs byte for byte against packets built with
//! emptcp-wire, every checksum verified): after an MPTCP handshake conntrack saw, the server's
//! ADD_ADDR (IPv4 and IPv6, with and without port, with HMAC) is stripped and kept (an echo is
//! not; a retransmission overwrites the slot); the client's data arms add_subflow; the next
//! server packet with room carries the kept option (at the tail, or in place of a pure ACK's DSS
//! when only that makes room); packets without room, and at TC packets with payload that would
//! have to grow, are left alone and counted; later packets never get it again ("once"), and
//! client->server packets never do (direction). The outputs are also decoded by tshark.
//!
//! Live, on real kernel MPTCP (examples/policies/add_subflow.toml): the server announces a
//! second address, blk_subflow strips it, add_subflow after 1 MiB of the client's data puts it
//! back; the client makes exactly one join to it, which carries data; the control run with
//! blk_subflow alone makes no join.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use emptcp::events::{AddSubflowOutcome, Event, EventReader};
use emptcp::policy::{
    Action, ActionChain, Combine, CompiledPolicy, Policy, PolicySet, Selector, SelectorChain,
    SelectorKind,
};
use emptcp::{Dataplane, Hook, KeptState};
use emptcp_testbed::root_or_skip;
use emptcp_wire::crypto::idsn_from_key;
use emptcp_wire::mptcp::{
    AddAddr, DataSeq, Dss, DssMapping, MpCapable, MpCapableKeys, MptcpOption,
};
use emptcp_wire::packet::{PacketBuilder, TcpFlags};
use emptcp_wire::tcp_opt::TcpOption;

use common::packets::{check_same, len_of, pass_verdict};

const NOTHING_KEPT: usize = 8;
const EDIT_REFUSED: usize = 7;

/// Client and server of one crafted connection.
struct Conn {
    v6: bool,
    port: u16,
    key_client: u64,
    key_server: u64,
}

impl Conn {
    fn new(v6: bool, port: u16) -> Conn {
        Conn {
            v6,
            port,
            key_client: 0x1111_2222_3333_4444 ^ u64::from(port),
            key_server: 0x5555_6666_7777_8888 ^ u64::from(port),
        }
    }

    fn builder(&self, from_client: bool) -> PacketBuilder {
        let b = if self.v6 {
            let (c, s): (Ipv6Addr, Ipv6Addr) = (
                "2001:db8::1".parse().unwrap(),
                "2001:db8:9::1".parse().unwrap(),
            );
            if from_client {
                PacketBuilder::ipv6(c, s)
            } else {
                PacketBuilder::ipv6(s, c)
            }
        } else {
            let (c, s) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 9, 0, 1));
            if from_client {
                PacketBuilder::ipv4(c, s)
            } else {
                PacketBuilder::ipv4(s, c)
            }
        };
        let b = if from_client {
            b.ports(self.port, 80)
        } else {
            b.ports(80, self.port)
        };
        b.seq(1000).ack(2000)
    }

    fn pkt(&self, from_client: bool, options: Vec<TcpOption>, payload: usize) -> Vec<u8> {
        let flags = if payload > 0 {
            TcpFlags::ACK | TcpFlags::PSH
        } else {
            TcpFlags::ACK
        };
        self.builder(from_client)
            .flags(flags)
            .options(options)
            .payload(vec![0x5a; payload])
            .build()
            .unwrap()
    }

    fn handshake(&self) -> Vec<Vec<u8>> {
        let capable = |keys| {
            TcpOption::Mptcp(MptcpOption::MpCapable(MpCapable {
                version: 1,
                flags: MpCapable::FLAG_HMAC_SHA256,
                keys,
            }))
        };
        vec![
            self.builder(true)
                .flags(TcpFlags::SYN)
                .option(capable(MpCapableKeys::None))
                .build()
                .unwrap(),
            self.builder(false)
                .flags(TcpFlags::SYN | TcpFlags::ACK)
                .option(capable(MpCapableKeys::Sender(self.key_server)))
                .build()
                .unwrap(),
            // The third ACK: the client's first packet of the add_subflow policy, with
            // nothing kept yet.
            self.pkt(
                true,
                vec![capable(MpCapableKeys::Both {
                    sender: self.key_client,
                    receiver: self.key_server,
                })],
                0,
            ),
        ]
    }

    /// The server's DSS carrying only a data ACK (Linux's pure ACK).
    fn server_ack(&self) -> TcpOption {
        TcpOption::Mptcp(MptcpOption::Dss(Dss {
            data_ack: Some(DataSeq::Long(
                idsn_from_key(self.key_client).wrapping_add(1),
            )),
            mapping: None,
            data_fin: false,
            unused_bits: 0,
        }))
    }

    /// A DSS with a data ACK and a mapping of `len` bytes.
    fn data_dss(&self, client: bool, len: u16) -> TcpOption {
        let (own, peer) = if client {
            (self.key_client, self.key_server)
        } else {
            (self.key_server, self.key_client)
        };
        TcpOption::Mptcp(MptcpOption::Dss(Dss {
            data_ack: Some(DataSeq::Long(idsn_from_key(peer).wrapping_add(1))),
            mapping: Some(DssMapping {
                data_seq: DataSeq::Long(idsn_from_key(own).wrapping_add(1)),
                subflow_seq: 1,
                data_len: len,
                checksum: None,
            }),
            data_fin: false,
            unused_bits: 0,
        }))
    }
}

fn ts() -> TcpOption {
    TcpOption::Timestamps {
        value: 7,
        echo_reply: 8,
    }
}

fn announce(address: IpAddr, id: u8, port: Option<u16>, hmac: Option<u64>) -> TcpOption {
    TcpOption::Mptcp(MptcpOption::AddAddr(AddAddr {
        echo: hmac.is_none(),
        address_id: id,
        address,
        port,
        hmac,
        reserved: 0,
    }))
}

fn bytes_of(o: &TcpOption) -> Vec<u8> {
    let mut v = Vec::new();
    o.write_to(&mut v).unwrap();
    v
}

/// blk_subflow on the server's packets (src 10.9.0.0/16, 2001:db8:9::/48), add_subflow on
/// the client's (src 10.0.0.0/16, 2001:db8::/48): chains 0 and 1.
fn policy(hook: Hook) -> CompiledPolicy {
    let mut sc = SelectorChain::new();
    sc.add(SelectorKind::Src, Combine::Or);
    let mut policies = Vec::new();
    for (name, prefixes, action) in [
        (
            "hide",
            ["10.9.0.0/16", "2001:db8:9::/48"],
            Action::BlkSubflow {
                refuse_joins: false,
            },
        ),
        (
            "reveal",
            ["10.0.0.0/16", "2001:db8::/48"],
            Action::AddSubflow,
        ),
    ] {
        for (i, prefix) in prefixes.iter().enumerate() {
            let mut actions = ActionChain::new();
            actions.add(action);
            let mut p = Policy::new(format!("{name}{i}"), actions);
            p.select(0, Selector::Src(prefix.parse().unwrap()));
            policies.push(p);
        }
    }
    PolicySet {
        selectors: sc,
        policies,
    }
    .compile(hook)
    .unwrap()
}

/// One ADD_ADDR form: the announced option and the server packet that finally carries it
/// (options before, options expected after).
struct Form {
    name: &'static str,
    /// The options before the ADD_ADDR when the server announces it alone.
    prefix: Vec<TcpOption>,
    add: TcpOption,
    carrier: Vec<TcpOption>,
    carried: Vec<TcpOption>,
}

fn forms(c: &Conn) -> Vec<Form> {
    let v4: IpAddr = Ipv4Addr::new(10, 9, 4, 1).into();
    let v6: IpAddr = "2001:db8:9:4::1".parse::<Ipv6Addr>().unwrap().into();
    let pure_ack = vec![TcpOption::Nop, TcpOption::Nop, ts(), c.server_ack()];
    let add = |address, id, port| {
        announce(
            address,
            id,
            port,
            Some(0x0102_0304_0506_0700 | u64::from(id)),
        )
    };
    let v4_16 = add(v4, 1, None);
    let v4_18 = add(v4, 2, Some(8080));
    let v6_28 = add(v6, 3, None);
    let v6_30 = add(v6, 4, Some(8443));
    vec![
        // 24 + 16 = 40: at the tail, beside the data ACK.
        Form {
            name: "v4 hmac",
            prefix: vec![TcpOption::Nop, TcpOption::Nop, ts()],
            carrier: pure_ack.clone(),
            carried: [pure_ack.clone(), vec![v4_16.clone()]].concat(),
            add: v4_16,
        },
        // 24 + 18 > 40: in place of the DSS, as Linux sends it.
        Form {
            name: "v4 port hmac",
            prefix: vec![TcpOption::Nop, TcpOption::Nop, ts()],
            carrier: pure_ack.clone(),
            carried: vec![TcpOption::Nop, TcpOption::Nop, ts(), v4_18.clone()],
            add: v4_18,
        },
        Form {
            name: "v6 hmac",
            prefix: vec![TcpOption::Nop, TcpOption::Nop, ts()],
            carrier: pure_ack.clone(),
            carried: vec![TcpOption::Nop, TcpOption::Nop, ts(), v6_28.clone()],
            add: v6_28,
        },
        // Without timestamps: 12 + 30 > 40, the DSS gives way.
        Form {
            name: "v6 port hmac",
            prefix: vec![],
            carrier: vec![c.server_ack()],
            carried: vec![v6_30.clone()],
            add: v6_30,
        },
    ]
}

fn run(g: &emptcp::Generation, what: &str, input: &[u8], want: &[u8], hook: Hook) -> Vec<u8> {
    let r = g.test_run(input).unwrap();
    assert_eq!(
        r.verdict,
        pass_verdict(hook == Hook::Xdp),
        "{what}: verdict"
    );
    check_same(what, &r.packet, want);
    r.packet
}

#[test]
fn kept_add_addr_goes_back_once_into_a_packet_with_room() {
    if !root_or_skip() {
        return;
    }
    let mut dp = Dataplane::load().unwrap();
    let mut carried_frames = Vec::new();
    let mut port = 41000u16;
    for hook in Hook::ALL {
        let g = dp.load_generation(&policy(hook), &[]).unwrap();
        let mut expected_refused = 0u64;
        let mut expected_nothing_kept = 0u64;
        let mut triggers = 0u64;
        for v6 in [false, true] {
            for form_idx in 0..4 {
                port += 1;
                let c = Conn::new(v6, port);
                let f = forms(&c).swap_remove(form_idx);
                let what = |step: &str| {
                    format!(
                        "{hook} {} conn, {}: {step}",
                        if v6 { "v6" } else { "v4" },
                        f.name
                    )
                };
                for p in c.handshake() {
                    g.test_run(&p).unwrap();
                }
                // The SYN (connection unknown yet) and the third ACK fired it, nothing kept.
                triggers += 2;
                expected_nothing_kept += 2;
                let with = |o: Option<&TcpOption>| {
                    c.pkt(false, f.prefix.iter().chain(o).cloned().collect(), 0)
                };
                let lone = |add: &TcpOption| with(Some(add));
                // The stripped lone ADD_ADDR becomes the old data ACK (blk_subflow.rs).
                let stripped = with(Some(&c.server_ack()));
                let token = |dp: &Dataplane| {
                    dp.connections()
                        .unwrap()
                        .into_iter()
                        .find(|k| k.subflows.iter().any(|s| s.initiator.port() == port))
                        .map(|k| k.token_listener)
                        .expect("conntrack knows the connection")
                };
                let conn = token(&dp);
                let kept = |dp: &Dataplane| {
                    dp.kept_add_addrs()
                        .unwrap()
                        .into_iter()
                        .filter(|k| k.connection == conn)
                        .collect::<Vec<_>>()
                };
                // An echo is stripped and not kept.
                let echo = announce(Ipv4Addr::new(10, 0, 4, 1).into(), 9, None, None);
                run(&g, &what("echo"), &lone(&echo), &with(None), hook);
                assert!(
                    kept(&dp).is_empty(),
                    "{}: {:?}",
                    what("echo kept"),
                    kept(&dp)
                );
                // Announced twice (a retransmission): stripped both times, one slot.
                for _ in 0..2 {
                    run(&g, &what("announce"), &lone(&f.add), &stripped, hook);
                }
                let k = kept(&dp);
                assert_eq!(k.len(), 1, "{}", what("kept"));
                assert!(
                    k[0].by_listener && !k[0].armed && k[0].state == KeptState::Kept,
                    "{k:?}"
                );
                assert_eq!(k[0].option, bytes_of(&f.add), "{}", what("kept bytes"));
                assert_eq!(k[0].times_kept, 2, "{}", what("retransmission"));
                // Not armed yet: a carrier passes unchanged.
                let carrier = c.pkt(false, f.carrier.clone(), 0);
                run(&g, &what("before arming"), &carrier, &carrier, hook);
                // The client's data arms it; client->server packets never carry it.
                let data = c.pkt(
                    true,
                    vec![TcpOption::Nop, TcpOption::Nop, ts(), c.data_dss(true, 100)],
                    100,
                );
                run(&g, &what("client data"), &data, &data, hook);
                triggers += 1;
                assert!(kept(&dp)[0].armed, "{}", what("armed"));
                // No room: a full option area with payload.
                let full = c.pkt(
                    false,
                    vec![TcpOption::Nop, TcpOption::Nop, ts(), c.data_dss(false, 50)],
                    50,
                );
                run(&g, &what("no room"), &full, &full, hook);
                expected_refused += 1;
                // Room by growing a packet with payload: XDP does, TC does not (its rule).
                if f.name == "v4 hmac" {
                    let roomy = c.pkt(
                        false,
                        vec![TcpOption::Nop, TcpOption::Nop, ts(), c.server_ack()],
                        50,
                    );
                    if hook == Hook::Xdp {
                        let want = c.pkt(
                            false,
                            [
                                vec![TcpOption::Nop, TcpOption::Nop, ts(), c.server_ack()],
                                vec![f.add.clone()],
                            ]
                            .concat(),
                            50,
                        );
                        carried_frames.push(run(&g, &what("payload carrier"), &roomy, &want, hook));
                    } else {
                        run(&g, &what("payload carrier at TC"), &roomy, &roomy, hook);
                        expected_refused += 1;
                    }
                }
                if !(hook == Hook::Xdp && f.name == "v4 hmac") {
                    let want = c.pkt(false, f.carried.clone(), 0);
                    assert!(f.carried.iter().map(len_of).sum::<usize>() <= 40);
                    carried_frames.push(run(&g, &what("carried"), &carrier, &want, hook));
                }
                let k = kept(&dp);
                assert_eq!(k[0].state, KeptState::Done, "{}: {k:?}", what("done"));
                // Once: neither another carrier, nor arming again, nor a retransmission change it.
                run(&g, &what("once"), &carrier, &carrier, hook);
                run(&g, &what("client data again"), &data, &data, hook);
                triggers += 1;
                run(
                    &g,
                    &what("retransmitted after"),
                    &lone(&f.add),
                    &stripped,
                    hook,
                );
                run(&g, &what("once more"), &carrier, &carrier, hook);
                assert_eq!(
                    kept(&dp)[0].times_kept,
                    2,
                    "{}",
                    what("not kept after done")
                );
            }
        }
        let ops = g.op_stats(1).unwrap();
        eprintln!("{hook}: add_subflow {:?}", ops[0]);
        assert_eq!(ops[0].hits, triggers, "{hook}: triggers");
        assert_eq!(
            ops[0].reasons[NOTHING_KEPT], expected_nothing_kept,
            "{hook}: nothing_kept"
        );
        assert_eq!(
            ops[0].reasons[EDIT_REFUSED], expected_refused,
            "{hook}: edit_refused"
        );
        let counters = dp.counters(hook).unwrap();
        assert_eq!(counters.get("addr_carried"), 8, "{hook}: addr_carried");
        assert_eq!(counters.get("addr_kept"), 16, "{hook}: addr_kept");
        assert_eq!(counters.get("addr_store_full"), 0, "{hook}");
    }
    // Every connection: nothing kept at its third ACK, a skipped carrier, and the carry.
    let events = EventReader::new(&dp.events_map().unwrap())
        .unwrap()
        .drain()
        .unwrap();
    let count = |o: AddSubflowOutcome| {
        events
            .iter()
            .filter(|e| matches!(e, Event::AddSubflow { outcome, .. } if *outcome == o))
            .count()
    };
    assert_eq!(count(AddSubflowOutcome::NothingKept), 24, "{events:?}");
    assert_eq!(count(AddSubflowOutcome::NoRoom), 24, "{events:?}");
    assert_eq!(count(AddSubflowOutcome::Carried), 24, "{events:?}");
    common::tshark::expect_add_addr(&carried_frames);
}

/// What one transfer on the two-path testbed did, the server announcing 10.77.4.1 (a signal
/// endpoint) and the client without endpoints of its own (so that any join goes to the
/// announced address), with examples/policies/`example` on the router's r1 and r3.
struct Live {
    /// Client `MPTcpExtAddAddr`: ADD_ADDRs received (valid HMAC, not echoes).
    add_addr_rx: u64,
    /// Server `MPTcpExtMPJoinSynRx`.
    join_syn_rx: u64,
    /// Payload bytes the server acknowledged on subflows to 10.77.4.1.
    join_bytes: u64,
    /// Counters of the add_subflow operators (chain 1, operator 0), r1 then r3.
    add_subflow_ops: Vec<emptcp::OpStats>,
    counters: emptcp::EntryCounters,
    kept: Vec<emptcp::KeptAddAddr>,
    carried_events: usize,
}

fn live(label: &str, example: &str) -> Live {
    live_with(label, example, None)
}

/// [`live`] with every link's offloads set; also checks that neither end counted a bad TCP
/// checksum or MPTCP data checksum.
fn live_with(label: &str, example: &str, offloads: Option<emptcp_testbed::Offloads>) -> Live {
    use emptcp_testbed::traffic::SenderReport;

    let announced: IpAddr = common::ANNOUNCED.parse().unwrap();
    let tb = common::announcing_two_path_with(label, offloads);
    tb.client.ip(["mptcp", "endpoint", "flush"]).unwrap();
    let mut dp = Dataplane::load().unwrap();
    let policy = common::example_policy(&tb, example);
    common::attach_router(&mut dp, &tb, policy.hook(), &["r1", "r3"], Some(&policy));
    let events_map = dp.events_map().unwrap();
    let mut events = EventReader::new(&events_map).unwrap();
    let common::MeasuredTransfer {
        report: t,
        client,
        server,
    } = common::measured_transfer(&tb, label, 16 << 20);
    eprintln!("{label}: {}", t.sender.subflow_summary());
    for (end, c) in [("client", &client), ("server", &server)] {
        assert_eq!(c.tcp_in_csum_errors(), 0, "{label}: {end} TcpInCsumErrors");
        assert_eq!(
            c.get("MPTcpExtDataCsumErr"),
            0,
            "{label}: {end} DataCsumErr"
        );
    }
    let carried_events = events
        .drain()
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::AddSubflow {
                    outcome: AddSubflowOutcome::Carried,
                    ..
                }
            )
        })
        .count();
    Live {
        add_addr_rx: client.get("MPTcpExtAddAddr"),
        join_syn_rx: server.get("MPTcpExtMPJoinSynRx"),
        join_bytes: t
            .sender
            .subflows
            .iter()
            .filter(|sf| sf.remote.map(|a| a.ip()) == Some(announced))
            .map(SenderReport::acked_payload)
            .sum(),
        add_subflow_ops: common::chain_ops(&dp, 1),
        counters: dp.counters(policy.hook()).unwrap(),
        kept: dp.kept_add_addrs().unwrap(),
        carried_events,
    }
}

#[test]
fn live_the_kept_add_addr_opens_one_subflow_after_a_mebibyte() {
    if !root_or_skip() {
        return;
    }
    // Control: blk_subflow alone. The ADD_ADDR is kept, never put back: no join.
    let c = live("addsc", "blk_subflow.toml");
    eprintln!(
        "blk_subflow alone: client ADD_ADDR {}, server join SYNs {}, kept {:?}",
        c.add_addr_rx, c.join_syn_rx, c.kept
    );
    assert_eq!((c.add_addr_rx, c.join_syn_rx), (0, 0), "control");
    assert_eq!(c.kept.len(), 1, "control: the ADD_ADDR kept: {:?}", c.kept);
    assert_eq!(c.kept[0].state, KeptState::Kept);

    let l = live("adds", "add_subflow.toml");
    let skipped: u64 = l.add_subflow_ops.iter().flat_map(|o| o.reasons).sum();
    let acted: u64 =
        l.add_subflow_ops.iter().map(|o| o.hits).sum::<u64>() + l.counters.get("addr_carried");
    eprintln!(
        "add_subflow: client ADD_ADDR {}, server join SYNs {}, join carried {} B; \
         add_subflow ops (r1, r3) {:?}; kept {}, carried {}, skipped {skipped} of {acted}; \
         carried events {}; kept {:?}",
        l.add_addr_rx,
        l.join_syn_rx,
        l.join_bytes,
        l.add_subflow_ops,
        l.counters.get("addr_kept"),
        l.counters.get("addr_carried"),
        l.carried_events,
        l.kept,
    );
    assert_eq!(l.add_addr_rx, 1, "the client learned the address once");
    assert_eq!(l.join_syn_rx, 1, "exactly one join");
    assert!(l.join_bytes > 0, "the join carried no data");
    assert_eq!(l.counters.get("addr_carried"), 1);
    assert_eq!(l.carried_events, 1);
    assert!(
        skipped * 100 <= acted,
        "more than 1% skipped: {skipped} of {acted}: {:?}",
        l.add_subflow_ops
    );
    assert_eq!(l.kept.len(), 1);
    assert_eq!(l.kept[0].state, KeptState::Done);

    // Every offload off (full checksums, no GSO) and every one on (CHECKSUM_PARTIAL, TSO/GSO,
    // GRO): the carrier is a server packet without payload, which TC can always grow.
    for (name, offloads) in [
        ("off", emptcp_testbed::Offloads::all_off()),
        ("on", emptcp_testbed::Offloads::all_on()),
    ] {
        let l = live_with(&format!("addso{name}"), "add_subflow.toml", Some(offloads));
        eprintln!(
            "offloads {name}: client ADD_ADDR {}, server join SYNs {}, join carried {} B",
            l.add_addr_rx, l.join_syn_rx, l.join_bytes
        );
        assert_eq!((l.add_addr_rx, l.join_syn_rx), (1, 1), "offloads {name}");
        assert!(
            l.join_bytes > 0,
            "offloads {name}: the join carried no data"
        );
    }
}

/// "Once" across CPUs: for each of 300 connections with a kept, armed ADD_ADDR, two threads
/// pinned to two CPUs run the same carrier packet at the same moment; exactly one output carries
/// the ADD_ADDR.
#[test]
fn once_holds_across_cpus() {
    if !root_or_skip() {
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true"),
            "once_holds_across_cpus needs 2 CPUs (CI=true)"
        );
        eprintln!("one CPU: nothing runs concurrently, test skipped");
        return;
    }
    const CONNECTIONS: u16 = 300;
    let hook = Hook::TcIngress;
    let mut dp = Dataplane::load().unwrap();
    let g = dp.load_generation(&policy(hook), &[]).unwrap();
    let mut carriers = Vec::new();
    for i in 0..CONNECTIONS {
        let c = Conn::new(false, 43000 + i);
        let f = forms(&c).swap_remove(0);
        let prep = [
            c.handshake(),
            vec![
                c.pkt(false, [f.prefix.clone(), vec![f.add.clone()]].concat(), 0),
                c.pkt(true, vec![c.data_dss(true, 100)], 100),
            ],
        ]
        .concat();
        for p in prep {
            g.test_run(&p).unwrap();
        }
        carriers.push((
            c.pkt(false, f.carrier.clone(), 0),
            c.pkt(false, f.carried.clone(), 0),
        ));
    }
    let barrier = std::sync::Barrier::new(2);
    let outputs: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
        let runners: Vec<_> = (0..2)
            .map(|cpu| {
                let (g, barrier, carriers) = (&g, &barrier, &carriers);
                s.spawn(move || {
                    emptcp::bench::pin_to_cpu(cpu).unwrap();
                    carriers
                        .iter()
                        .map(|(carrier, _)| {
                            barrier.wait();
                            g.test_run(carrier).unwrap().packet
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        runners.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for (i, (carrier, carried)) in carriers.iter().enumerate() {
        let got = [&outputs[0][i], &outputs[1][i]];
        let n_carried = got.iter().filter(|p| **p == carried).count();
        let n_unchanged = got.iter().filter(|p| **p == carrier).count();
        assert_eq!(
            (n_carried, n_unchanged),
            (1, 1),
            "connection {i}: carried {n_carried} times"
        );
    }
    assert_eq!(
        dp.counters(hook).unwrap().get("addr_carried"),
        u64::from(CONNECTIONS)
    );
}
