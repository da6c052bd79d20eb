//! BPF_PROG_TEST_RUN tests of the helper library (bpf/include/emptcp/{ctx,csum,tcpopt,resize}.h)
//! through `bpf/tests/helpers_tcpopt.bpf.c`: packets built with emptcp-wire, outputs compared
//! byte for byte with the same packet built directly, checksums verified by emptcp-wire.

use std::net::{Ipv4Addr, Ipv6Addr};

use emptcp_wire::mptcp::MpPrio;
use emptcp_wire::packet::{PacketBuilder, ParsedPacket, TcpFlags, VlanTag};
use emptcp_wire::tcp_opt::TcpOption;
use libbpf_rs::{MapCore, MapFlags, Object, ProgramInput};

/// `BPF_F_TEST_SKB_CHECKSUM_COMPLETE` (uapi bpf.h: 1U << 2): the kernel computes skb->csum
/// before the run and fails the run with EBADMSG if it no longer matches after.
const CSUM_COMPLETE: u32 = 1 << 2;

#[derive(Default, Clone)]
struct Params {
    kind: u32,
    subtype: i32,
    off: u32,
    len: u32,
    flags: u32,
    mtu_ifindex: u32,
    delta: i32,
    mock_partial: u32,
    opt: Vec<u8>,
    /// TC only: run without BPF_F_TEST_SKB_CHECKSUM_COMPLETE. Growing at the tail
    /// (bpf_skb_change_tail) turns CHECKSUM_COMPLETE into CHECKSUM_NONE
    /// (__skb_grow_rcsum), which is right for the stack (it verifies in software) but which
    /// test_run's final skb->csum comparison reports as EBADMSG.
    no_complete: bool,
}

#[derive(Debug, Clone, Copy)]
struct Outcome {
    parse: i32,
    ret: i32,
    commit: i32,
}

impl Params {
    fn bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(96);
        for x in [
            0u32,
            self.kind,
            self.subtype as u32,
            self.off,
            self.len,
            self.flags,
            self.mtu_ifindex,
            self.delta as u32,
            self.mock_partial,
            0,
        ] {
            v.extend(x.to_ne_bytes());
        }
        let mut opt = self.opt.clone();
        opt.resize(40, 0);
        v.extend(opt);
        v.resize(96, 0);
        v
    }
}

fn run(obj: &Object, prog: &str, p: &Params, pkt: &[u8]) -> (Outcome, Vec<u8>) {
    let io = obj
        .maps()
        .find(|m| m.name() == ".data.io")
        .expect("map .data.io");
    io.update(&0u32.to_ne_bytes(), &p.bytes(), MapFlags::ANY)
        .expect("writing io");
    let prog = obj
        .progs_mut()
        .find(|x| x.name() == prog)
        .unwrap_or_else(|| panic!("no program {prog}"));
    let mut out = vec![0u8; pkt.len() + 128];
    let input = ProgramInput {
        data_in: Some(pkt),
        data_out: Some(&mut out),
        flags: if prog.name().to_string_lossy().starts_with("t_") && !p.no_complete {
            CSUM_COMPLETE
        } else {
            0
        },
        ..Default::default()
    };
    let res = prog.test_run(input).expect("test run");
    let len = res.data.as_ref().map_or(0, |d| d.len());
    out.truncate(len);
    let r = io
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .expect("reading io")
        .expect("io value");
    let i = |at: usize| i32::from_ne_bytes(r[at..at + 4].try_into().unwrap());
    (
        Outcome {
            parse: i(80),
            ret: i(84),
            commit: i(88),
        },
        out,
    )
}

fn object() -> Object {
    emptcp::testing::load_object("tests/helpers_tcpopt").expect("loading helpers_tcpopt")
}

fn prio() -> TcpOption {
    TcpOption::Mptcp(
        MpPrio {
            backup: true,
            address_id: None,
            reserved: 0,
        }
        .into(),
    )
}

fn prio_bytes() -> Vec<u8> {
    let mut v = Vec::new();
    prio().write_to(&mut v).unwrap();
    v
}

fn v4() -> PacketBuilder {
    PacketBuilder::ipv4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))
        .ports(40000, 80)
        .seq(1000)
        .ack(2000)
        .flags(TcpFlags::ACK)
}

fn v6() -> PacketBuilder {
    PacketBuilder::ipv6(
        "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
        "2001:db8::2".parse().unwrap(),
    )
    .ports(40000, 80)
    .seq(1000)
    .ack(2000)
    .flags(TcpFlags::ACK)
}

fn check_same(what: &str, got: &[u8], want: &[u8]) {
    let parsed =
        ParsedPacket::parse(got).unwrap_or_else(|e| panic!("{what}: output unparsable: {e}"));
    parsed
        .verify_checksums()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got, want, "{what}: output differs from the expected packet");
}

/// Every hook variant (XDP, TC with CHECKSUM_COMPLETE) of one operation.
const HOOKS: [&str; 2] = ["x_", "t_"];

#[test]
fn insert_mp_prio_grows_or_uses_padding_every_alignment() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let obj = object();
    // (leading options, where the MP_PRIO lands): the tail starts at 0, 1, 2, 3 mod 4, with and
    // without room, IPv4/IPv6, VLAN, IPv4 options.
    let layouts: Vec<Vec<TcpOption>> = vec![
        vec![],                                     // empty area: grow 0 -> 4
        vec![TcpOption::Mss(1460)],                 // tail at 4: grow 4 -> 8
        vec![TcpOption::WindowScale(7)],            // tail at 3 (odd), room 1: grow
        vec![TcpOption::SackPermitted],             // tail at 2, room 2: grow
        vec![TcpOption::Mss(1460), TcpOption::Nop], // trailing NOP joins the tail at 4
        vec![
            TcpOption::Mss(1460),
            TcpOption::SackPermitted,
            TcpOption::WindowScale(7),
        ], // tail 9
        vec![
            TcpOption::Mss(1460),
            TcpOption::Nop,
            TcpOption::WindowScale(7),
            TcpOption::Nop,
            TcpOption::Nop,
            TcpOption::Nop,
            TcpOption::Nop,
            TcpOption::SackPermitted,
        ], // NOP run
    ];
    let bases: Vec<(&str, PacketBuilder)> = vec![
        ("ipv4", v4()),
        ("ipv6", v6()),
        ("vlan ipv4", v4().vlan(VlanTag::dot1q(100))),
        ("ipv4 options", v4().ipv4_options(vec![1, 1, 1, 0])),
    ];
    for (base_name, base) in &bases {
        for (i, opts) in layouts.iter().enumerate() {
            let input = base.clone().options(opts.clone()).build().unwrap();
            // The expected placement, per the rules in tcpopt.h.
            let mut area = Vec::new();
            for o in opts {
                o.write_to(&mut area).unwrap();
            }
            let nop_run = area.windows(3).position(|w| w == [1, 1, 1]).filter(|at| {
                // interior: followed by a real option
                area.get(at + 3..)
                    .is_some_and(|rest| rest.iter().any(|&b| b > 1))
            });
            let mut want_area = area.clone();
            match nop_run {
                Some(at) => want_area[at..at + 3].copy_from_slice(&prio_bytes()),
                None => {
                    let tail = area.len() - area.iter().rev().take_while(|&&b| b == 1).count();
                    want_area.truncate(tail);
                    want_area.extend(prio_bytes());
                }
            }
            let want = base.clone().raw_options(want_area).build().unwrap();
            for hook in HOOKS {
                let what = format!("{base_name} layout {i} {hook}insert");
                let p = Params {
                    len: 3,
                    opt: prio_bytes(),
                    no_complete: true,
                    ..Default::default()
                };
                let (o, out) = run(&obj, &format!("{hook}insert"), &p, &input);
                assert_eq!(o.parse, 0, "{what}: parse");
                assert!(o.ret >= 0, "{what}: insert returned {}", o.ret);
                assert_eq!(o.commit, 0, "{what}: commit");
                check_same(&what, &out, &want);
            }
        }
    }
}

#[test]
fn insert_refused_at_40_bytes() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let obj = object();
    // 38 bytes of options + 2 EOL: no room for 3, and growth would exceed 40.
    let mut opts = vec![TcpOption::Mss(1460); 9];
    opts.push(TcpOption::SackPermitted);
    let input = v4().options(opts).build().unwrap();
    for hook in HOOKS {
        let p = Params {
            len: 3,
            opt: prio_bytes(),
            ..Default::default()
        };
        let (o, out) = run(&obj, &format!("{hook}insert"), &p, &input);
        assert_eq!(o.ret, -3, "{hook}: EMPTCP_SKIP_NO_ROOM");
        assert_eq!(out, input, "{hook}: packet unchanged");
    }
}

#[test]
fn insert_with_payload_and_mtu() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let obj = object();
    let payload: Vec<u8> = (0..200u8).collect();
    let input = v4()
        .option(TcpOption::Mss(1460))
        .payload(payload.clone())
        .build()
        .unwrap();
    let want = v4()
        .option(TcpOption::Mss(1460))
        .option(prio())
        .payload(payload.clone())
        .build()
        .unwrap();
    for hook in HOOKS {
        let p = Params {
            len: 3,
            opt: prio_bytes(),
            ..Default::default()
        };
        let (o, out) = run(&obj, &format!("{hook}insert"), &p, &input);
        assert_eq!((o.ret, o.commit), (4, 0), "{hook}");
        check_same(&format!("{hook} payload grow"), &out, &want);
    }
    // CHECKSUM_PARTIAL with payload at TC: refused (forced through the test mock).
    let p = Params {
        len: 3,
        opt: prio_bytes(),
        mock_partial: 1,
        ..Default::default()
    };
    let (o, out) = run(&obj, "t_insert", &p, &input);
    assert_eq!(o.commit, -5, "EMPTCP_SKIP_CSUM_PARTIAL");
    assert_eq!(out, input);

    // MTU: a device with an MTU below 65536 in this namespace; a packet exactly at its MTU
    // cannot grow.
    let Some((ifindex, mtu)) = small_mtu_device() else {
        eprintln!("no device with a small MTU: MTU case skipped");
        return;
    };
    let full = v4()
        .option(TcpOption::Mss(1460))
        .payload(vec![7u8; mtu as usize - 44])
        .build()
        .unwrap();
    for hook in HOOKS {
        let p = Params {
            len: 3,
            opt: prio_bytes(),
            mtu_ifindex: ifindex,
            ..Default::default()
        };
        let (o, out) = run(&obj, &format!("{hook}insert"), &p, &full);
        assert_eq!(o.commit, -4, "{hook}: EMPTCP_SKIP_MTU");
        assert_eq!(out, full);
    }
}

fn small_mtu_device() -> Option<(u32, u32)> {
    for e in std::fs::read_dir("/sys/class/net").ok()?.flatten() {
        let read = |f: &str| -> Option<u32> {
            std::fs::read_to_string(e.path().join(f))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        if let (Some(mtu), Some(ifindex)) = (read("mtu"), read("ifindex"))
            && (576..=9000).contains(&mtu)
        {
            return Some((ifindex, mtu));
        }
    }
    None
}

#[test]
fn byte_checksum_updates_at_every_parity() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let obj = object();
    // 12 bytes of unknown-kind option data to overwrite at offsets 1..=4 (odd and even).
    let data = vec![0x11u8; 10];
    let base = || {
        v4().option(TcpOption::Unknown {
            kind: 253,
            data: data.clone(),
        })
    };
    let input = base().build().unwrap();
    for off in 2..=5u32 {
        let new = [0xa5u8, 0x5a, 0xc3, 0x3c];
        let mut area = vec![253, 12];
        area.extend(&data);
        area[off as usize..off as usize + 4].copy_from_slice(&new);
        let want = v4().raw_options(area).build().unwrap();
        for hook in HOOKS {
            let p = Params {
                off,
                opt: new.to_vec(),
                ..Default::default()
            };
            let (o, out) = run(&obj, &format!("{hook}bytes"), &p, &input);
            assert_eq!(o.ret, 0, "{hook} off {off}");
            check_same(&format!("{hook} bytes at {off}"), &out, &want);
        }
    }
}

#[test]
fn find_mptcp_by_subtype() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let obj = object();
    let input = v4()
        .option(TcpOption::Nop)
        .option(TcpOption::WindowScale(7))
        .option(prio())
        .build()
        .unwrap();
    for hook in HOOKS {
        let p = Params {
            kind: 30,
            subtype: 5,
            ..Default::default()
        };
        let (o, _) = run(&obj, &format!("{hook}find"), &p, &input);
        assert_eq!(o.ret, 4, "{hook}: MP_PRIO at offset 4");
        let p = Params {
            kind: 30,
            subtype: 2,
            ..Default::default()
        };
        let (o, _) = run(&obj, &format!("{hook}find"), &p, &input);
        assert_eq!(o.ret, -2, "{hook}: no DSS");
    }
}
