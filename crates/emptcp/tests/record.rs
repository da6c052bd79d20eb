//! record: per-subflow packets, bytes, RTT from TCP timestamps and data
//! progress, on a crafted exchange and live.

use std::net::{Ipv4Addr, SocketAddr};

use emptcp::policy::{Action, ActionChain, Policy, PolicySet, SelectorChain};
use emptcp::{Dataplane, Hook};
use emptcp_testbed::root_or_skip;
use emptcp_wire::crypto::idsn_from_key;
use emptcp_wire::mptcp::{DataSeq, Dss, DssMapping, MpCapable, MpCapableKeys, MptcpOption};
use emptcp_wire::packet::{PacketBuilder, TcpFlags};
use emptcp_wire::tcp_opt::TcpOption;

mod common;

const KEY_A: u64 = 0x1111_2222_3333_4444;
const KEY_B: u64 = 0x5555_6666_7777_8888;

fn record_everything(hook: Hook) -> emptcp::policy::CompiledPolicy {
    let mut ac = ActionChain::new();
    ac.add(Action::Record);
    PolicySet {
        selectors: SelectorChain::new(),
        policies: vec![Policy::new("record", ac)],
    }
    .compile(hook)
    .unwrap()
}

fn ts(val: u32, ecr: u32) -> TcpOption {
    TcpOption::Timestamps {
        value: val,
        echo_reply: ecr,
    }
}

fn capable(keys: MpCapableKeys) -> TcpOption {
    TcpOption::Mptcp(MptcpOption::MpCapable(MpCapable {
        version: 1,
        flags: MpCapable::FLAG_HMAC_SHA256,
        keys,
    }))
}

fn pkt(from_client: bool, flags: TcpFlags, options: Vec<TcpOption>, payload: usize) -> Vec<u8> {
    let (c, s) = (
        (Ipv4Addr::new(10, 0, 0, 1), 40000),
        (Ipv4Addr::new(10, 9, 0, 1), 80),
    );
    let (src, dst) = if from_client { (c, s) } else { (s, c) };
    PacketBuilder::ipv4(src.0, dst.0)
        .ports(src.1, dst.1)
        .flags(flags)
        .options(options)
        .payload(vec![1; payload])
        .build()
        .unwrap()
}

#[test]
fn crafted_exchange_gives_bytes_rtt_samples_and_data_progress() {
    if !root_or_skip() {
        return;
    }
    let mut dp = Dataplane::load().unwrap();
    let g = dp
        .load_generation(&record_everything(Hook::TcIngress), &[])
        .unwrap();
    let run = |p: Vec<u8>| {
        g.test_run(&p).unwrap();
    };
    // Handshake (tracking learns the IDSNs from the keys).
    run(pkt(
        true,
        TcpFlags::SYN,
        vec![capable(MpCapableKeys::None), ts(100, 0)],
        0,
    ));
    run(pkt(
        false,
        TcpFlags::SYN | TcpFlags::ACK,
        vec![capable(MpCapableKeys::Sender(KEY_B)), ts(500, 100)],
        0,
    ));
    run(pkt(
        true,
        TcpFlags::ACK,
        vec![
            capable(MpCapableKeys::Both {
                sender: KEY_A,
                receiver: KEY_B,
            }),
            ts(101, 500),
        ],
        0,
    ));
    // The client sends 1000 data bytes at data offset 0 and then 1000 more;
    // the server acknowledges 2000 bytes of the client's stream.
    let idsn_a = idsn_from_key(KEY_A);
    let idsn_b = idsn_from_key(KEY_B);
    let data = |dsn: u64, tsval: u32| {
        let dss = TcpOption::Mptcp(MptcpOption::Dss(Dss {
            data_ack: Some(DataSeq::Long(idsn_b.wrapping_add(1))),
            mapping: Some(DssMapping {
                data_seq: DataSeq::Long(dsn),
                subflow_seq: 1,
                data_len: 1000,
                checksum: None,
            }),
            data_fin: false,
            unused_bits: 0,
        }));
        vec![dss, ts(tsval, 500)]
    };
    run(pkt(
        true,
        TcpFlags::ACK,
        data(idsn_a.wrapping_add(1), 102),
        1000,
    ));
    run(pkt(
        true,
        TcpFlags::ACK,
        data(idsn_a.wrapping_add(1001), 103),
        1000,
    ));
    let ack = TcpOption::Mptcp(MptcpOption::Dss(Dss {
        data_ack: Some(DataSeq::Long(idsn_a.wrapping_add(2001))),
        mapping: None,
        data_fin: false,
        unused_bits: 0,
    }));
    run(pkt(false, TcpFlags::ACK, vec![ack, ts(501, 103)], 0));

    let recs = dp.records().unwrap();
    assert_eq!(recs.len(), 1, "{recs:?}");
    let r = &recs[0];
    let (client, server) = if r.lo.from == SocketAddr::from(([10, 0, 0, 1], 40000)) {
        (&r.lo, &r.hi)
    } else {
        (&r.hi, &r.lo)
    };
    assert_eq!((client.packets, client.payload_bytes), (4, 2000));
    assert_eq!((server.packets, server.payload_bytes), (2, 0));
    // Client TSvals 100 (echoed by the SYN/ACK) and 103 (echoed by the last
    // ACK) gave samples; the server's 500 was echoed by the third ACK.
    assert_eq!(client.rtt_samples, 2, "{r:?}");
    assert_eq!(server.rtt_samples, 1, "{r:?}");
    assert!(client.srtt_us.is_some() && server.srtt_us.is_some());
    assert_eq!(client.data_sent, 2000);
    assert_eq!(server.data_acked, 2000);
    assert_eq!(client.data_acked, 0);
}

/// Live: examples/policies/record.toml on both directions of path 1 at the
/// router (client-side and server-side ingress) measures the subflow's bytes as the kernel counted
/// them, RTT samples, and the data the server acknowledged.
#[test]
fn live_record_matches_the_kernels_counts() {
    use emptcp_testbed::presets;
    use emptcp_testbed::traffic::{self, SenderReport, TransferOpts};

    if !root_or_skip() {
        return;
    }
    let tb = presets::two_path("rec", common::paced()).unwrap();
    let mut dp = Dataplane::load().unwrap();
    let compiled = common::example_policy(&tb, "record.toml");
    common::attach_router(
        &mut dp,
        &tb,
        Hook::TcIngress,
        &["r1", "r3"],
        Some(&compiled),
    );
    let t = traffic::transfer(
        &tb.client,
        &tb.server,
        &TransferOpts::new(tb.server_addr(), 8 << 20).expect_subflows_with_data(2),
    )
    .unwrap();
    let sf = t
        .sender
        .subflows
        .iter()
        .find(|s| s.local.map(|a| a.ip()) == Some("10.77.1.1".parse().unwrap()))
        .expect("path-1 subflow");
    let recs = dp.records().unwrap();
    let r = recs
        .iter()
        .find(|r| Some(r.lo.from) == sf.local || Some(r.hi.from) == sf.local)
        .unwrap_or_else(|| panic!("no record of {:?}: {recs:?}", sf.local));
    let client = if Some(r.lo.from) == sf.local {
        &r.lo
    } else {
        &r.hi
    };
    let server = if Some(r.lo.from) == sf.local {
        &r.hi
    } else {
        &r.lo
    };
    let acked = SenderReport::acked_payload(sf);
    eprintln!(
        "path 1: {r:?}; kernel: acked {acked}, sent {}",
        sf.bytes_sent
    );
    assert!(client.payload_bytes >= acked && client.payload_bytes <= sf.bytes_sent);
    assert!(client.rtt_samples > 0 && client.srtt_us.is_some());
    assert!(server.packets > 0);
    // DATA_ACKs on path 1 acknowledge data of the whole connection: the
    // payload, the testbed's small header before it, and the DATA_FIN.
    assert!(server.data_acked >= t.sender.bytes && server.data_acked <= t.sender.bytes + 64);
}
