//! BPF_PROG_TEST_RUN tests of the helper library (bpf/include/emptcp/{ctx,csum,tcpopt,resize}.h)
//! through `bpf/tests/helpers_tcpopt.bpf.c`: packets built with emptcp-wire, outputs compared
//! byte for byte with the same packet built directly, checksums verified by emptcp-wire (and
//! once by tshark). Find, insert, remove and replace at every alignment, IPv4/IPv6/VLAN, with
//! and without payload, XDP and TC; malformed inputs refused with the packet unchanged; the
//! verified-instruction cost of each test program.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use emptcp_wire::mptcp::{AddAddr, MpPrio};
use emptcp_wire::packet::{ChecksumMode, PacketBuilder, ParsedPacket, TcpFlags, VlanTag};
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

// ---------------------------------------------------------------------------------------------
// remove / replace + commit
// ---------------------------------------------------------------------------------------------

/// `EMPTCP_TCPOPT_F_SHRINK` (tcpopt.h).
const F_SHRINK: u32 = 1;
/// MPTCP subtypes (RFC 8684 section 7.2), as tcpopt.h's `find` takes them.
const ADD_ADDR: i32 = 3;
const MP_PRIO: i32 = 5;
/// `enum emptcp_skip_reason` (skip.h).
const SKIP_MALFORMED: i32 = -1;
const SKIP_NOT_FOUND: i32 = -2;
const SKIP_NO_ROOM: i32 = -3;
const SKIP_CSUM_PARTIAL: i32 = -5;
const SKIP_INVAL: i32 = -9;
const SKIP_UNSUPPORTED: i32 = -10;

fn add_addr(id: u8, port: Option<u16>, hmac: Option<u64>) -> TcpOption {
    TcpOption::Mptcp(
        AddAddr {
            echo: hmac.is_none(),
            address_id: id,
            address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, id)),
            port,
            hmac,
            reserved: 0,
        }
        .into(),
    )
}

fn bytes_of(opts: &[TcpOption]) -> Vec<u8> {
    let mut v = Vec::new();
    for o in opts {
        o.write_to(&mut v).unwrap();
    }
    v
}

/// The area's bytes without its tail padding (trailing NOPs; tcpopt.h's placement rules).
fn strip_tail(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&1) {
        v.pop();
    }
    v
}

fn padded(mut v: Vec<u8>, len: usize) -> Vec<u8> {
    v.resize(len, 0);
    v
}

fn round4(n: usize) -> usize {
    n.next_multiple_of(4)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Edit {
    RemoveNop,
    RemoveShrink,
    /// Replace with `with`, flags.
    Replace(u32),
}

/// The option area after an edit of `target` between `before` and `after`, by the placement
/// rules of tcpopt.h, written as option lists (the expected packet is then built from them by
/// emptcp-wire, independently of the BPF code).
fn expected_area(
    before: &[TcpOption],
    target: &TcpOption,
    after: &[TcpOption],
    edit: Edit,
    with: Option<&TcpOption>,
) -> Vec<u8> {
    let old_len = bytes_of(std::slice::from_ref(target)).len();
    let orig_len = round4(bytes_of(before).len() + old_len + bytes_of(after).len());
    let (ins, flags) = match edit {
        Edit::RemoveNop => (Vec::new(), 0),
        Edit::RemoveShrink => (Vec::new(), F_SHRINK),
        Edit::Replace(f) => (bytes_of(std::slice::from_ref(with.unwrap())), f),
    };
    let in_place = ins.len() == old_len || (ins.len() < old_len && flags & F_SHRINK == 0);
    if in_place {
        // The rest of the old option becomes NOPs; nothing moves.
        let mut list: Vec<TcpOption> = before.to_vec();
        if let Some(w) = with.filter(|_| edit != Edit::RemoveNop) {
            list.push(w.clone());
        }
        list.extend(std::iter::repeat_n(TcpOption::Nop, old_len - ins.len()));
        list.extend(after.iter().cloned());
        return padded(bytes_of(&list), orig_len);
    }
    // Later options move; the tail padding of the area as it was (the target is a real
    // option, so only NOPs after it) is dropped.
    let mut list: Vec<TcpOption> = before.to_vec();
    if let Some(w) = with.filter(|_| edit != Edit::RemoveShrink) {
        list.push(w.clone());
    }
    let mut used = bytes_of(&list);
    used.extend(strip_tail(bytes_of(after)));
    let len = if flags & F_SHRINK != 0 {
        round4(used.len())
    } else {
        round4(used.len()).max(orig_len)
    };
    padded(used, len)
}

struct EditCase {
    name: &'static str,
    edit: Edit,
    with: Option<TcpOption>,
}

fn edit_cases() -> Vec<EditCase> {
    vec![
        EditCase {
            name: "remove nop",
            edit: Edit::RemoveNop,
            with: None,
        },
        EditCase {
            name: "remove shrink",
            edit: Edit::RemoveShrink,
            with: None,
        },
        EditCase {
            name: "replace same",
            edit: Edit::Replace(0),
            with: Some(add_addr(9, None, None)),
        },
        EditCase {
            name: "replace shorter nop",
            edit: Edit::Replace(0),
            with: Some(prio()),
        },
        EditCase {
            name: "replace shorter shrink",
            edit: Edit::Replace(F_SHRINK),
            with: Some(prio()),
        },
        EditCase {
            name: "replace longer",
            edit: Edit::Replace(0),
            with: Some(add_addr(9, Some(8080), Some(0x0102_0304_0506_0708))),
        },
        EditCase {
            name: "replace longer shrink",
            edit: Edit::Replace(F_SHRINK),
            with: Some(add_addr(9, Some(8080), Some(0x0102_0304_0506_0708))),
        },
    ]
}

/// Options before the target: it starts at 0, 1, 2, 3, 4 and 7 (odd, and 0..3 mod 4).
fn prefixes() -> Vec<Vec<TcpOption>> {
    vec![
        vec![],
        vec![TcpOption::Nop],
        vec![TcpOption::SackPermitted],
        vec![TcpOption::WindowScale(7)],
        vec![TcpOption::Mss(1460)],
        vec![TcpOption::Mss(1460), TcpOption::WindowScale(7)],
    ]
}

/// Options after the target: none, short, long, trailing NOPs (tail padding).
fn suffixes() -> Vec<Vec<TcpOption>> {
    vec![
        vec![],
        vec![TcpOption::SackPermitted],
        vec![TcpOption::Timestamps {
            value: 0x1122_3344,
            echo_reply: 0x5566_7788,
        }],
        vec![TcpOption::WindowScale(3), TcpOption::Nop, TcpOption::Nop],
    ]
}

fn edit_params(case: &EditCase) -> (String, Params) {
    let mut p = Params {
        kind: 30,
        subtype: ADD_ADDR,
        ..Default::default()
    };
    let prog = match case.edit {
        Edit::RemoveNop => "remove",
        Edit::RemoveShrink => {
            p.flags = F_SHRINK;
            "remove"
        }
        Edit::Replace(flags) => {
            p.flags = flags;
            p.opt = bytes_of(std::slice::from_ref(case.with.as_ref().unwrap()));
            p.len = p.opt.len() as u32;
            "replace"
        }
    };
    (prog.to_owned(), p)
}

#[test]
fn remove_and_replace_every_alignment_hook_and_family() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let obj = object();
    let payload: Vec<u8> = (0..64u8).collect();
    let bases: Vec<(&str, PacketBuilder)> = vec![
        ("ipv4", v4()),
        ("ipv6", v6()),
        ("vlan ipv4", v4().vlan(VlanTag::dot1q(100))),
        ("vlan ipv6", v6().vlan(VlanTag::dot1q(7))),
        ("ipv4 payload", v4().payload(payload.clone())),
        ("ipv6 payload", v6().payload(payload.clone())),
        (
            "vlan ipv4 payload",
            v4().vlan(VlanTag::dot1q(100)).payload(payload),
        ),
    ];
    let target = add_addr(1, None, None);
    let mut runs = 0;
    for (base_name, base) in &bases {
        for before in prefixes() {
            for after in suffixes() {
                let mut opts = before.clone();
                opts.push(target.clone());
                opts.extend(after.iter().cloned());
                let input = base.clone().options(opts.clone()).build().unwrap();
                let in_area = ParsedPacket::parse(&input).unwrap().option_area().to_vec();
                for case in edit_cases() {
                    let want_area =
                        expected_area(&before, &target, &after, case.edit, case.with.as_ref());
                    let resized = want_area.len() != in_area.len();
                    let want = base.clone().raw_options(want_area).build().unwrap();
                    let (prog, mut p) = edit_params(&case);
                    let has_payload = base_name.contains("payload");
                    // Tail resizes (no payload) leave CHECKSUM_NONE, which test_run's
                    // CHECKSUM_COMPLETE comparison reports as EBADMSG (see Params).
                    p.no_complete = resized && !has_payload;
                    for hook in HOOKS {
                        let what = format!(
                            "{base_name}, target at {}, {} after, {} {hook}",
                            bytes_of(&before).len(),
                            bytes_of(&after).len(),
                            case.name
                        );
                        let (o, out) = run(&obj, &format!("{hook}{prog}"), &p, &input);
                        runs += 1;
                        assert_eq!(o.parse, 0, "{what}: parse");
                        assert_eq!(o.ret, 0, "{what}: edit");
                        if hook == "t_" && resized && has_payload && base_name.contains("vlan") {
                            // In-band VLAN tag with payload at TC: refused (resize.h).
                            assert_eq!(o.commit, SKIP_UNSUPPORTED, "{what}: commit");
                            assert_eq!(out, input, "{what}: packet unchanged");
                            continue;
                        }
                        assert_eq!(o.commit, 0, "{what}: commit");
                        check_same(&what, &out, &want);
                    }
                }
            }
        }
    }
    eprintln!("{runs} remove/replace runs compared byte for byte");
}

#[test]
fn remove_keeps_other_mptcp_options_and_finds_by_subtype() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let obj = object();
    // Two MPTCP options; the ADD_ADDR is the second, at an odd offset (5).
    let opts = vec![
        TcpOption::Nop,
        TcpOption::Nop,
        prio(),
        add_addr(4, None, None),
        TcpOption::SackPermitted,
    ];
    let input = v4().options(opts).build().unwrap();
    let want = v4()
        .options(vec![
            TcpOption::Nop,
            TcpOption::Nop,
            prio(),
            TcpOption::SackPermitted,
        ])
        .build()
        .unwrap();
    for hook in HOOKS {
        let p = Params {
            kind: 30,
            subtype: ADD_ADDR,
            flags: F_SHRINK,
            no_complete: true,
            ..Default::default()
        };
        let (o, out) = run(&obj, &format!("{hook}remove"), &p, &input);
        assert_eq!((o.ret, o.commit), (0, 0), "{hook}");
        check_same(&format!("{hook} remove second mptcp option"), &out, &want);
        let parsed = ParsedPacket::parse(&out).unwrap();
        let subtypes: Vec<_> = parsed.mptcp_options().map(|m| m.subtype()).collect();
        assert_eq!(subtypes.len(), 1, "{hook}: MP_PRIO left");
    }
}

#[test]
fn remove_and_replace_refuse_malformed_and_leave_the_packet() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let obj = object();
    let mut target = Vec::new();
    add_addr(1, None, None).write_to(&mut target).unwrap();
    let with = |head: &[u8], tail: &[u8]| -> Vec<u8> {
        let mut v = head.to_vec();
        v.extend(&target);
        v.extend(tail);
        v
    };
    // (what, option area, params, expected return)
    let find = |flags: u32| Params {
        kind: 30,
        subtype: ADD_ADDR,
        flags,
        ..Default::default()
    };
    let at = |off: u32| Params {
        kind: 0,
        off,
        ..Default::default()
    };
    let replace = |len: u32, opt: Vec<u8>| Params {
        kind: 30,
        subtype: ADD_ADDR,
        len,
        opt,
        ..Default::default()
    };
    let long: Vec<u8> = bytes_of(&[add_addr(9, Some(8080), Some(1))]);
    let cases: Vec<(&str, Vec<u8>, &str, Params, i32)> = vec![
        (
            "length 1 before the target",
            with(&[1, 253, 1, 1], &[]),
            "remove",
            find(0),
            SKIP_MALFORMED,
        ),
        (
            "length 0 before the target",
            with(&[253, 0, 1, 1], &[]),
            "remove",
            find(F_SHRINK),
            SKIP_MALFORMED,
        ),
        (
            "option past the area before the target",
            with(&[253, 30, 1, 1], &[]),
            "replace",
            replace(3, prio_bytes()),
            SKIP_MALFORMED,
        ),
        (
            "target's length past the area",
            {
                let mut v = vec![1, 1, 1, 1];
                v.extend(&target[..6]);
                v[5] = 12; // ADD_ADDR claims 12 bytes, 6 are there (then EOL padding)
                v
            },
            "remove",
            find(F_SHRINK),
            SKIP_MALFORMED,
        ),
        (
            "no ADD_ADDR",
            bytes_of(&[TcpOption::Mss(1460), prio()]),
            "remove",
            find(0),
            SKIP_NOT_FOUND,
        ),
        (
            "ADD_ADDR after EOL is not found",
            with(&[2, 4, 5, 0xb4, 0], &[]),
            "remove",
            find(0),
            SKIP_NOT_FOUND,
        ),
        (
            "longer replacement past 40 bytes",
            with(
                &bytes_of(&vec![TcpOption::Mss(1460); 4]),
                &[1, 1, 4, 2, 3, 3, 7],
            ),
            "replace",
            replace(long.len() as u32, long.clone()),
            SKIP_NO_ROOM,
        ),
        (
            "replacement of length 0",
            with(&[], &[]),
            "replace",
            replace(0, vec![]),
            SKIP_INVAL,
        ),
        (
            "replacement over 40 bytes",
            with(&[], &[]),
            "replace",
            replace(41, vec![]),
            SKIP_INVAL,
        ),
        (
            "offset at a NOP",
            with(&[1], &[]),
            "remove",
            at(0),
            SKIP_INVAL,
        ),
        (
            "offset at EOL padding",
            with(&[], &[4, 2]),
            "remove",
            at(11),
            SKIP_INVAL,
        ),
        (
            "offset past the area",
            with(&[], &[]),
            "remove",
            at(8),
            SKIP_INVAL,
        ),
        ("offset 64", with(&[], &[]), "remove", at(64), SKIP_INVAL),
        (
            "offset 0x7fffffff",
            with(&[], &[]),
            "remove",
            at(0x7fff_ffff),
            SKIP_INVAL,
        ),
        (
            "offset 39 (its length byte would be past the area)",
            {
                let mut v = vec![1; 38];
                v.extend([253, 2]);
                v
            },
            "remove",
            at(39),
            SKIP_INVAL,
        ),
    ];
    for (what, area, prog, p, want) in cases {
        for base in [v4(), v6().vlan(VlanTag::dot1q(5))] {
            let input = base.raw_options(area.clone()).build().unwrap();
            for hook in HOOKS {
                let (o, out) = run(&obj, &format!("{hook}{prog}"), &p, &input);
                assert_eq!(o.parse, 0, "{what} {hook}: parse");
                assert_eq!(o.ret, want, "{what} {hook}");
                assert_eq!(o.commit, 0, "{what} {hook}: no commit");
                assert_eq!(out, input, "{what} {hook}: packet unchanged");
            }
        }
    }

    // TC, CHECKSUM_PARTIAL (mocked), payload: a shrink is refused at commit, packet unchanged;
    // removing with NOPs is still possible (no resize).
    let input = v4()
        .options(vec![TcpOption::Mss(1460), add_addr(1, None, None)])
        .payload(vec![9u8; 100])
        .build()
        .unwrap();
    let mut p = find(F_SHRINK);
    p.mock_partial = 1;
    let (o, out) = run(&obj, "t_remove", &p, &input);
    assert_eq!((o.ret, o.commit), (0, SKIP_CSUM_PARTIAL), "partial shrink");
    assert_eq!(out, input, "partial shrink: packet unchanged");
}

#[test]
fn tshark_agrees_on_checksums_and_subtypes() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let obj = object();
    // (output, expected MPTCP subtype of its only MPTCP option)
    let mut frames: Vec<(Vec<u8>, i32)> = Vec::new();
    let replace = |with: TcpOption, flags: u32| {
        let opt = bytes_of(&[with]);
        Params {
            kind: 30,
            subtype: ADD_ADDR,
            len: opt.len() as u32,
            opt,
            flags,
            no_complete: true,
            ..Default::default()
        }
    };
    let target = add_addr(1, None, None);
    for (base, payload) in [
        (v4(), false),
        (v6(), true),
        (v4().vlan(VlanTag::dot1q(3)), false),
    ] {
        let base = if payload {
            base.payload(b"tshark".to_vec())
        } else {
            base
        };
        let input = base
            .clone()
            .options(vec![TcpOption::WindowScale(7), target.clone()])
            .build()
            .unwrap();
        for hook in HOOKS {
            let (o, out) = run(
                &obj,
                &format!("{hook}replace"),
                &replace(prio(), F_SHRINK),
                &input,
            );
            assert_eq!((o.ret, o.commit), (0, 0));
            frames.push((out, MP_PRIO));
            let longer = add_addr(2, Some(443), Some(7));
            let (o, out) = run(&obj, &format!("{hook}replace"), &replace(longer, 0), &input);
            assert_eq!((o.ret, o.commit), (0, 0));
            frames.push((out, ADD_ADDR));
        }
    }
    // A control: a wrong checksum must read as Bad (0), so that "Good" means checked.
    let control = v4()
        .option(prio())
        .tcp_checksum(ChecksumMode::Wrong)
        .build()
        .unwrap();
    frames.push((control, MP_PRIO));
    let bytes: Vec<Vec<u8>> = frames.iter().map(|(f, _)| f.clone()).collect();
    let Some(lines) = common::tshark::fields(
        &bytes,
        &["tcp.checksum.status", "tcp.options.mptcp.subtype"],
    ) else {
        return;
    };
    let text = lines.join("\n");
    for (i, (line, (_, subtype))) in lines.iter().zip(&frames).enumerate() {
        let mut fields = line.split('\t');
        let status = fields.next().unwrap_or_default();
        let sub = fields.next().unwrap_or_default();
        let good = common::tshark::checksum_good(status);
        let (good, bad) = (good == Some(true), good == Some(false));
        if i + 1 == frames.len() {
            assert!(
                bad,
                "control frame: tshark checksum status {status:?}:\n{text}"
            );
        } else {
            assert!(
                good,
                "frame {i}: tshark checksum status {status:?}:\n{text}"
            );
        }
        assert_eq!(
            sub.parse::<i32>().ok(),
            Some(*subtype),
            "tshark subtype:\n{text}"
        );
    }
}

/// The verified-instruction cost of each test program (one helper each; see
/// helpers_tcpopt.bpf.c), printed, with a ceiling that catches a verifier blow-up.
#[test]
fn verified_instruction_counts() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    use std::os::fd::AsFd as _;
    use std::os::fd::AsRawFd as _;
    let obj = object();
    for prog in obj.progs() {
        let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of_val(&info) as u32;
        // SAFETY: info is a bpf_prog_info of len bytes, all array pointers null.
        let rc = unsafe {
            libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(
                prog.as_fd().as_raw_fd(),
                &mut info,
                &mut len,
            )
        };
        assert_eq!(rc, 0, "bpf_prog_get_info_by_fd");
        let name = prog.name().to_string_lossy().into_owned();
        eprintln!("{name}: {} verified instructions", info.verified_insns);
        assert!(
            info.verified_insns < 100_000,
            "{name}: {} verified instructions",
            info.verified_insns
        );
    }
}

#[test]
fn resize_grows_with_zeros_and_shrinks_any_bytes() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let obj = object();
    let area = bytes_of(&[
        TcpOption::Mss(1460),
        TcpOption::WindowScale(7),
        TcpOption::Nop,
        TcpOption::SackPermitted,
        TcpOption::Nop,
        TcpOption::Nop,
    ]);
    assert_eq!(area.len(), 12);
    for (base_name, base) in [
        ("ipv4", v4()),
        ("ipv6", v6()),
        ("ipv4 payload", v4().payload(vec![0xabu8; 33])),
        ("ipv6 payload", v6().payload(vec![0xcdu8; 33])),
    ] {
        let input = base.clone().raw_options(area.clone()).build().unwrap();
        let has_payload = base_name.contains("payload");
        for delta in [-8i32, -4, 4, 8, 28] {
            let new_len = (12 + delta) as usize;
            let want_area = if delta < 0 {
                area[..new_len].to_vec()
            } else {
                padded(area.clone(), new_len)
            };
            let want = base.clone().raw_options(want_area).build().unwrap();
            for hook in HOOKS {
                let what = format!("{base_name} resize {delta} {hook}");
                let p = Params {
                    delta,
                    no_complete: !has_payload,
                    ..Default::default()
                };
                let (o, out) = run(&obj, &format!("{hook}resize"), &p, &input);
                assert_eq!(o.ret, 0, "{what}");
                check_same(&what, &out, &want);
            }
        }
        for delta in [-16i32, 2, 32] {
            for hook in HOOKS {
                let p = Params {
                    delta,
                    ..Default::default()
                };
                let (o, out) = run(&obj, &format!("{hook}resize"), &p, &input);
                assert!(o.ret < 0, "{base_name} resize {delta} {hook}: refused");
                assert_eq!(out, input, "{base_name} resize {delta} {hook}: unchanged");
            }
        }
    }
}
