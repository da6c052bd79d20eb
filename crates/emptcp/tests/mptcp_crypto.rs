//! The MPTCP option readers (`bpf/include/emptcp/mptcp.h`) and the data-plane
//! SHA-256 (`bpf/include/emptcp/sha256.h`) against the emptcp-wire codec, with
//! BPF_PROG_TEST_RUN on `bpf/tests/mptcp_crypto.bpf.c`.
//!
//! Every packet is built with emptcp-wire; what the BPF readers decode must
//! equal what the codec parses from the same bytes, for every subtype and
//! length variant, IPv4 and IPv6 (and a VLAN tag), options at every
//! alignment, at XDP and at TC. Tokens and IDSNs from the BPF SHA-256 must
//! equal `emptcp_wire::crypto` (and independent vectors from Python's
//! hashlib). `sha256_cost_report` prints verified instructions and ns per hash
//! (`cargo test --test mptcp_crypto -- --nocapture sha256_cost_report`).
//!
//! The test object's result struct is read through its BTF, so this file
//! keeps no copy of the C layout.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use emptcp_testbed::root_or_skip;
use emptcp_wire::crypto::{idsn_from_key, token_from_key};
use emptcp_wire::mptcp::{
    AddAddr, DataSeq, Dss, DssMapping, MpCapable, MpCapableKeys, MpFail, MpFastclose, MpJoin,
    MpPrio, MpTcpRst, MptcpOption, MptcpVersion, RemoveAddr,
};
use emptcp_wire::packet::{PacketBuilder, ParsedPacket, TcpFlags, VlanTag};
use emptcp_wire::tcp_opt::TcpOption;
use libbpf_rs::btf::types::{Array, Struct};
use libbpf_rs::btf::{Btf, BtfKind, BtfType, HasSize, TypeId};
use libbpf_rs::{MapCore, MapFlags, Object, ProgramInput};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const OBJECT: &str = "tests/mptcp_crypto";
const IO_STRUCT: &str = "mptcp_test_io";
const IO_MAP_SUFFIX: &str = ".data.mptcp_io";
/// `MPTCP_TEST_READER_AUTO` of the test object.
const READER_AUTO: u32 = 0xff;
/// `enum emptcp_mptcp_error` of mptcp.h, negated as the readers return it.
const ERR_OFFSET: i64 = -1;
const ERR_TRUNCATED: i64 = -2;
const ERR_KIND: i64 = -3;
const ERR_SUBTYPE: i64 = -4;
const ERR_LENGTH: i64 = -5;
/// `EMPTCP_MPTCP_OFF_MAX` of mptcp.h.
const OFF_MAX: u32 = 0x7fff;
/// `EMPTCP_PARSE_TCP` of parse.h.
const PARSE_TCP: i64 = 0;
const AF_INET: u64 = 2;
const AF_INET6: u64 = 10;

// ---------------------------------------------------------------------------
// The test object and its I/O struct, laid out from BTF.

/// Byte offset and size of every field of the I/O struct, nested fields by
/// dotted name (`capable.sender_key`).
struct Layout {
    fields: HashMap<String, (usize, usize)>,
    size: usize,
}

fn type_size(btf: &Btf<'_>, id: TypeId) -> usize {
    let ty = btf
        .type_by_id::<BtfType<'_>>(id)
        .expect("btf type")
        .skip_mods_and_typedefs();
    match ty.kind() {
        BtfKind::Array => {
            let array = Array::try_from(ty).expect("array");
            array.capacity() * type_size(btf, array.ty())
        }
        BtfKind::Struct => Struct::try_from(ty).expect("struct").size(),
        BtfKind::Int => libbpf_rs::btf::types::Int::try_from(ty)
            .expect("int")
            .size(),
        BtfKind::Enum => libbpf_rs::btf::types::Enum::try_from(ty)
            .expect("enum")
            .size(),
        other => panic!("unexpected btf kind {other:?} in {IO_STRUCT}"),
    }
}

fn flatten(btf: &Btf<'_>, st: Struct<'_>, prefix: &str, base: usize, out: &mut Layout) {
    for member in st.iter() {
        let name = member
            .name
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bits = match member.attr {
            libbpf_rs::btf::types::MemberAttr::Normal { offset } => offset,
            libbpf_rs::btf::types::MemberAttr::BitField { .. } => {
                panic!("bitfield {name} in {IO_STRUCT}")
            }
        };
        let offset = base + bits as usize / 8;
        let full = format!("{prefix}{name}");
        let ty = btf
            .type_by_id::<BtfType<'_>>(member.ty)
            .expect("member type")
            .skip_mods_and_typedefs();
        if let Ok(inner) = Struct::try_from(ty) {
            flatten(btf, inner, &format!("{full}."), offset, out);
        }
        out.fields.insert(full, (offset, type_size(btf, member.ty)));
    }
}

impl Layout {
    fn from_object() -> Layout {
        let bytes = emptcp::testing::object_bytes(OBJECT).expect("embedded test object");
        let btf = Btf::from_raw("mptcp_crypto", bytes)
            .expect("parsing BTF")
            .expect("object has BTF");
        let st = btf
            .type_by_name::<Struct<'_>>(IO_STRUCT)
            .expect("struct mptcp_test_io in BTF");
        let mut layout = Layout {
            fields: HashMap::new(),
            size: st.size(),
        };
        flatten(&btf, st, "", 0, &mut layout);
        layout
    }

    fn field(&self, name: &str) -> (usize, usize) {
        *self
            .fields
            .get(name)
            .unwrap_or_else(|| panic!("no field {name} in {IO_STRUCT}"))
    }
}

/// The I/O struct after a run.
struct Io<'a> {
    bytes: Vec<u8>,
    layout: &'a Layout,
}

impl Io<'_> {
    /// An unsigned field of any width (host byte order, as the program wrote it).
    fn get(&self, name: &str) -> u64 {
        let (off, size) = self.layout.field(name);
        let b = &self.bytes[off..off + size];
        match size {
            1 => u64::from(b[0]),
            2 => u64::from(u16::from_ne_bytes(b.try_into().unwrap())),
            4 => u64::from(u32::from_ne_bytes(b.try_into().unwrap())),
            8 => u64::from_ne_bytes(b.try_into().unwrap()),
            _ => panic!("{name} is {size} bytes, not a number"),
        }
    }

    /// A signed 32-bit field.
    fn signed(&self, name: &str) -> i64 {
        let (off, size) = self.layout.field(name);
        assert_eq!(size, 4, "{name}");
        i64::from(i32::from_ne_bytes(
            self.bytes[off..off + 4].try_into().unwrap(),
        ))
    }

    fn bytes(&self, name: &str) -> &[u8] {
        let (off, size) = self.layout.field(name);
        &self.bytes[off..off + size]
    }
}

struct Harness {
    obj: Object,
    layout: Layout,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    Xdp,
    Tc,
}

impl Hook {
    const ALL: [Hook; 2] = [Hook::Xdp, Hook::Tc];

    fn read_prog(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp_mptcp_read",
            Hook::Tc => "tc_mptcp_read",
        }
    }
}

/// What a test puts into the I/O struct before a run.
#[derive(Clone, Copy, Debug)]
struct Input {
    opt_off: u32,
    reader: u32,
    key: u64,
}

impl Default for Input {
    fn default() -> Self {
        Input {
            opt_off: 0,
            reader: READER_AUTO,
            key: 0,
        }
    }
}

/// Size, verifier cost and code size of a loaded program.
#[derive(Debug, Clone, Copy)]
struct ProgInfo {
    verified_insns: u32,
    xlated_insns: u32,
    jited_bytes: u32,
}

impl Harness {
    fn load() -> Harness {
        let layout = Layout::from_object();
        let obj = emptcp::testing::load_object(OBJECT)
            .unwrap_or_else(|e| panic!("loading {OBJECT}: {e:#}"));
        let h = Harness { obj, layout };
        let value_size = h.io_map().value_size() as usize;
        assert_eq!(
            value_size, h.layout.size,
            "{IO_MAP_SUFFIX} must hold exactly struct {IO_STRUCT}"
        );
        h
    }

    fn io_map(&self) -> libbpf_rs::Map<'_> {
        self.obj
            .maps()
            .find(|m| m.name().to_string_lossy().ends_with(IO_MAP_SUFFIX))
            .unwrap_or_else(|| {
                let names: Vec<_> = self.obj.maps().map(|m| m.name().to_owned()).collect();
                panic!("no map *{IO_MAP_SUFFIX} in {names:?}")
            })
    }

    fn prog(&self, name: &str) -> libbpf_rs::ProgramMut<'_> {
        self.obj
            .progs_mut()
            .find(|p| p.name() == name)
            .unwrap_or_else(|| panic!("no program {name}"))
    }

    fn write_input(&self, input: Input) {
        let mut bytes = vec![0u8; self.layout.size];
        let mut put = |name: &str, value: u64| {
            let (off, size) = self.layout.field(name);
            bytes[off..off + size].copy_from_slice(&value.to_ne_bytes()[..size]);
        };
        put("opt_off", input.opt_off.into());
        put("reader", input.reader.into());
        put("key", input.key);
        self.io_map()
            .update(&0u32.to_ne_bytes(), &bytes, MapFlags::ANY)
            .expect("writing the test input");
    }

    fn read_io(&self) -> Io<'_> {
        let bytes = self
            .io_map()
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .expect("reading the test output")
            .expect("array element 0");
        Io {
            bytes,
            layout: &self.layout,
        }
    }

    /// One run of `prog` on `frame` with `input`; the I/O struct afterwards.
    fn run(&self, prog: &str, frame: &[u8], input: Input) -> Io<'_> {
        self.write_input(input);
        let out = self
            .prog(prog)
            .test_run(ProgramInput {
                data_in: Some(frame),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("test run of {prog}: {e:#}"));
        let io = self.read_io();
        assert_eq!(
            io.get("runs"),
            1,
            "{prog} ran once (return {})",
            out.return_value
        );
        io
    }

    /// Average run time of `prog` over `repeat` runs in the kernel.
    fn time(&self, prog: &str, frame: &[u8], repeat: u32) -> Duration {
        self.prog(prog)
            .test_run(ProgramInput {
                data_in: Some(frame),
                repeat,
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("timed run of {prog}: {e:#}"))
            .duration
    }

    fn info(&self, prog: &str) -> ProgInfo {
        let prog = self.prog(prog);
        let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of_val(&info) as u32;
        // SAFETY: info is a bpf_prog_info of len bytes; the kernel writes at
        // most len bytes and leaves the (null) array pointers alone.
        let rc = unsafe {
            libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(
                prog.as_fd().as_raw_fd(),
                &mut info,
                &mut len,
            )
        };
        assert_eq!(rc, 0, "bpf_prog_get_info_by_fd");
        ProgInfo {
            verified_insns: info.verified_insns,
            xlated_insns: info.xlated_prog_len / 8,
            jited_bytes: info.jited_prog_len,
        }
    }
}

// ---------------------------------------------------------------------------
// Packets.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Net {
    V4,
    V6,
    V4Vlan,
}

impl Net {
    const ALL: [Net; 3] = [Net::V4, Net::V6, Net::V4Vlan];

    fn builder(self) -> PacketBuilder {
        let b = match self {
            Net::V4 | Net::V4Vlan => {
                PacketBuilder::ipv4(Ipv4Addr::new(10, 0, 1, 1), Ipv4Addr::new(10, 0, 2, 1))
            }
            Net::V6 => PacketBuilder::ipv6(
                Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
                Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1),
            ),
        };
        let b = if self == Net::V4Vlan {
            b.vlan(VlanTag::dot1q(42))
        } else {
            b
        };
        b.ports(40000, 80).seq(1000).ack(2000).flags(TcpFlags::ACK)
    }
}

/// A frame whose TCP option area is `nops` NOPs and then `option`; returns the
/// frame and the option's offset from the frame start, as the codec locates it.
fn frame_with(net: Net, nops: usize, option: &[u8]) -> (Vec<u8>, u32) {
    let mut area = vec![1u8; nops];
    area.extend_from_slice(option);
    let frame = net.builder().raw_options(area).build().expect("building");
    let parsed = ParsedPacket::parse(&frame).expect("codec parses the frame");
    let off = parsed.offsets.tcp_options + nops;
    (frame, off as u32)
}

/// As [`frame_with`] for a well-formed option, and checks that the codec
/// finds exactly `option` at that offset.
fn frame_for(net: Net, nops: usize, option: &MptcpOption) -> (Vec<u8>, u32) {
    let bytes = option.to_bytes().expect("encodable option");
    let (frame, off) = frame_with(net, nops, &bytes);
    let parsed = ParsedPacket::parse(&frame).unwrap();
    let located = parsed
        .options()
        .expect("codec parses the options")
        .iter()
        .find(|o| o.offset == nops)
        .expect("an option at the offset")
        .clone();
    assert_eq!(located.option, TcpOption::Mptcp(option.clone()));
    (frame, off)
}

/// NOP counts that put the option at every alignment (mod 8) that fits.
fn nop_counts(option_len: usize) -> impl Iterator<Item = usize> {
    (0..8).filter(move |n| n + option_len <= 40)
}

// ---------------------------------------------------------------------------
// What the readers must produce, from the codec's values.

/// Numeric fields the program must have written, and byte fields.
#[derive(Default, Debug)]
struct Expected {
    numbers: Vec<(String, u64)>,
    bytes: Vec<(String, Vec<u8>)>,
    /// `Some(subtype)` when no reader exists (the program returns 1).
    no_reader: Option<u8>,
}

impl Expected {
    fn n(&mut self, name: &str, value: impl Into<u64>) -> &mut Self {
        self.numbers.push((name.to_owned(), value.into()));
        self
    }

    fn b(&mut self, name: &str, value: Vec<u8>) -> &mut Self {
        self.bytes.push((name.to_owned(), value));
        self
    }
}

fn padded<const N: usize>(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; N];
    out[..bytes.len()].copy_from_slice(bytes);
    out
}

fn expected(option: &MptcpOption) -> Expected {
    let mut e = Expected::default();
    let len = option.wire_len() as u64;
    match option {
        MptcpOption::MpCapable(c) => {
            let (sender, receiver, data_len, checksum) = match c.keys {
                MpCapableKeys::None => (None, None, 0, None),
                MpCapableKeys::Sender(s) => (Some(s), None, 0, None),
                MpCapableKeys::Both { sender, receiver } => (Some(sender), Some(receiver), 0, None),
                MpCapableKeys::WithData {
                    sender,
                    receiver,
                    data_len,
                    checksum,
                } => (Some(sender), Some(receiver), data_len, checksum),
            };
            e.n("capable.version", c.version)
                .n("capable.flags", c.flags)
                .n("capable.len", len)
                .n("capable.sender_key", sender.unwrap_or(0))
                .n("capable.receiver_key", receiver.unwrap_or(0))
                .n("capable.data_len", data_len)
                .n("capable.checksum", checksum.unwrap_or(0))
                .n("capable.has_checksum", checksum.is_some() as u8)
                .n(
                    "hashes",
                    sender.is_some() as u64 + receiver.is_some() as u64,
                )
                .n("sha_rc", 0u64);
            // The token and IDSN of each key the option carries: the data-plane
            // SHA-256 against the codec's.
            for (which, key) in [("sender_hash", sender), ("receiver_hash", receiver)] {
                let (token, idsn) = key.map_or((0, 0), |k| (token_from_key(k), idsn_from_key(k)));
                e.n(&format!("{which}.token"), token)
                    .n(&format!("{which}.idsn"), idsn);
            }
        }
        MptcpOption::MpJoin(j) => match *j {
            MpJoin::Syn {
                backup,
                address_id,
                token,
                random,
                reserved,
            } => {
                e.n("join.form", 1u8)
                    .n("join.backup", backup as u8)
                    .n("join.address_id", address_id)
                    .n("join.token", token)
                    .n("join.nonce", random)
                    .n("join.thmac", 0u64)
                    .n("join.low_bits", reserved << 1 | backup as u8)
                    .b("join.hmac", vec![0; 20]);
            }
            MpJoin::SynAck {
                backup,
                address_id,
                hmac,
                random,
                reserved,
            } => {
                e.n("join.form", 2u8)
                    .n("join.backup", backup as u8)
                    .n("join.address_id", address_id)
                    .n("join.token", 0u32)
                    .n("join.nonce", random)
                    .n("join.thmac", hmac)
                    .n("join.low_bits", reserved << 1 | backup as u8)
                    .b("join.hmac", vec![0; 20]);
            }
            MpJoin::Ack { hmac, reserved } => {
                e.n("join.form", 3u8)
                    .n("join.backup", 0u8)
                    .n("join.address_id", 0u8)
                    .n("join.token", 0u32)
                    .n("join.nonce", 0u32)
                    .n("join.thmac", 0u64)
                    .n("join.low_bits", (reserved >> 8) as u8)
                    .b("join.hmac", hmac.to_vec());
            }
        },
        MptcpOption::Dss(d) => {
            let seq_len = |s: DataSeq| match s {
                DataSeq::Short(_) => 4u8,
                DataSeq::Long(_) => 8,
            };
            let m = d.mapping;
            e.n("dss.flags", d.flags())
                .n("dss.len", len)
                .n("dss.ack_len", d.data_ack.map_or(0, seq_len))
                .n("dss.data_ack", d.data_ack.map_or(0, DataSeq::value))
                .n("dss.dsn_len", m.map_or(0, |m| seq_len(m.data_seq)))
                .n("dss.dsn", m.map_or(0, |m| m.data_seq.value()))
                .n("dss.subflow_seq", m.map_or(0, |m| m.subflow_seq))
                .n("dss.data_len", m.map_or(0, |m| m.data_len))
                .n("dss.checksum", m.and_then(|m| m.checksum).unwrap_or(0))
                .n(
                    "dss.has_checksum",
                    m.is_some_and(|m| m.checksum.is_some()) as u8,
                )
                .n("dss.data_fin", d.data_fin as u8);
        }
        MptcpOption::AddAddr(a) => {
            let (family, addr) = match a.address {
                IpAddr::V4(v4) => (AF_INET, padded::<16>(&v4.octets())),
                IpAddr::V6(v6) => (AF_INET6, v6.octets().to_vec()),
            };
            e.n("add_addr.family", family)
                .n("add_addr.len", len)
                .n("add_addr.address_id", a.address_id)
                .n("add_addr.echo", a.echo as u8)
                .n("add_addr.low_bits", a.reserved << 1 | a.echo as u8)
                .n("add_addr.has_port", a.port.is_some() as u8)
                .n("add_addr.port", a.port.unwrap_or(0))
                .n("add_addr.has_hmac", a.hmac.is_some() as u8)
                .n("add_addr.hmac", a.hmac.unwrap_or(0))
                .b("add_addr.addr", addr);
        }
        MptcpOption::RemoveAddr(r) => {
            e.n("rm_addr.count", r.address_ids.len() as u64)
                .n("rm_addr.len", len)
                .n("rm_addr.low_bits", r.reserved)
                .b("rm_addr.ids", padded::<37>(&r.address_ids));
        }
        MptcpOption::MpPrio(p) => {
            e.n("prio.backup", p.backup as u8)
                .n("prio.has_address_id", p.address_id.is_some() as u8)
                .n("prio.address_id", p.address_id.unwrap_or(0))
                .n("prio.len", len)
                .n("prio.low_bits", p.reserved << 1 | p.backup as u8);
        }
        MptcpOption::MpFail(f) => {
            e.n("fail.dsn", f.data_seq)
                .n("fail.reserved", f.reserved)
                .n("fail.len", len);
        }
        MptcpOption::MpFastclose(f) => {
            e.n("fastclose.receiver_key", f.receiver_key)
                .n("fastclose.reserved", f.reserved)
                .n("fastclose.len", len);
        }
        MptcpOption::MpTcpRst(r) => {
            e.n("tcprst.flags", r.flags)
                .n("tcprst.reason", r.reason)
                .n("tcprst.transient", r.transient() as u8)
                .n("tcprst.len", len);
        }
        MptcpOption::Unknown { subtype, .. } => e.no_reader = Some(*subtype),
        MptcpOption::AddAddrV0(_) => panic!("v0 ADD_ADDR is not generated here"),
    }
    e
}

/// Runs the reader on `option` in one frame and checks every field; returns
/// a description of the first mismatch.
fn check_option(
    h: &Harness,
    hook: Hook,
    net: Net,
    nops: usize,
    option: &MptcpOption,
) -> Result<(), String> {
    let (frame, off) = frame_for(net, nops, option);
    let io = h.run(
        hook.read_prog(),
        &frame,
        Input {
            opt_off: off,
            ..Default::default()
        },
    );
    let ctx = || format!("{hook:?} {net:?} nops={nops} off={off} {option:?}");
    let subtype = option.subtype();
    if io.signed("parse_rc") != PARSE_TCP {
        return Err(format!("parse_rc {} for {}", io.signed("parse_rc"), ctx()));
    }
    if io.get("parse_subtypes") & (1 << subtype) == 0 {
        return Err(format!(
            "parser's subtype mask {:#x} lacks {subtype} for {}",
            io.get("parse_subtypes"),
            ctx()
        ));
    }
    if io.signed("subtype") != i64::from(subtype) {
        return Err(format!("subtype {} for {}", io.signed("subtype"), ctx()));
    }
    let want = expected(option);
    let rc = io.signed("rc");
    if want.no_reader.is_some() {
        return if rc == 1 {
            Ok(())
        } else {
            Err(format!("rc {rc} for an option without reader, {}", ctx()))
        };
    }
    if rc != 0 {
        return Err(format!("rc {rc} for {}", ctx()));
    }
    for (name, value) in &want.numbers {
        let got = io.get(name);
        if got != *value {
            return Err(format!("{name}: bpf {got:#x}, codec {value:#x}; {}", ctx()));
        }
    }
    for (name, value) in &want.bytes {
        let got = io.bytes(name);
        if got != value.as_slice() {
            return Err(format!(
                "{name}: bpf {got:02x?}, codec {value:02x?}; {}",
                ctx()
            ));
        }
    }
    Ok(())
}

/// A deterministic pseudo-random sequence (splitmix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Every subtype in every length variant, with values from `rng`.
fn every_variant(rng: &mut SplitMix) -> Vec<MptcpOption> {
    let mut v: Vec<MptcpOption> = Vec::new();
    let mut r = || rng.next();
    // MP_CAPABLE: 4, 12, 20, 22, 24; v0 and v1.
    for version in [0u8, 1] {
        let flags = r() as u8;
        let keys = [
            MpCapableKeys::None,
            MpCapableKeys::Sender(r()),
            MpCapableKeys::Both {
                sender: r(),
                receiver: r(),
            },
            MpCapableKeys::WithData {
                sender: r(),
                receiver: r(),
                data_len: r() as u16,
                checksum: None,
            },
            MpCapableKeys::WithData {
                sender: r(),
                receiver: r(),
                data_len: r() as u16,
                checksum: Some(r() as u16),
            },
        ];
        for keys in keys {
            v.push(
                MpCapable {
                    version,
                    flags,
                    keys,
                }
                .into(),
            );
        }
    }
    // MP_JOIN: SYN, SYN/ACK, ACK; backup on and off.
    for backup in [false, true] {
        v.push(
            MpJoin::Syn {
                backup,
                address_id: r() as u8,
                token: r() as u32,
                random: r() as u32,
                reserved: (r() & 7) as u8,
            }
            .into(),
        );
        v.push(
            MpJoin::SynAck {
                backup,
                address_id: r() as u8,
                hmac: r(),
                random: r() as u32,
                reserved: (r() & 7) as u8,
            }
            .into(),
        );
    }
    let mut hmac = [0u8; 20];
    hmac.iter_mut().for_each(|b| *b = r() as u8);
    v.push(
        MpJoin::Ack {
            hmac,
            reserved: (r() & 0xfff) as u16,
        }
        .into(),
    );
    // DSS: Data ACK none/4/8 x mapping none/4/8 x checksum x DATA_FIN.
    let acks = [
        None,
        Some(DataSeq::Short(r() as u32)),
        Some(DataSeq::Long(r())),
    ];
    let dsns = [
        None,
        Some(DataSeq::Short(r() as u32)),
        Some(DataSeq::Long(r())),
    ];
    for data_ack in acks {
        for dsn in dsns {
            for checksum in [None, Some(r() as u16)] {
                if dsn.is_none() && checksum.is_some() {
                    continue;
                }
                for data_fin in [false, true] {
                    v.push(
                        Dss {
                            data_ack,
                            mapping: dsn.map(|data_seq| DssMapping {
                                data_seq,
                                subflow_seq: r() as u32,
                                data_len: r() as u16,
                                checksum,
                            }),
                            data_fin,
                            unused_bits: 0,
                        }
                        .into(),
                    );
                }
            }
        }
    }
    // ADD_ADDR: v4/v6 x port x HMAC x echo.
    for v6 in [false, true] {
        for port in [None, Some(r() as u16)] {
            for hmac in [None, Some(r())] {
                for echo in [false, true] {
                    let address = if v6 {
                        IpAddr::V6(Ipv6Addr::from(u128::from(r()) << 64 | u128::from(r())))
                    } else {
                        IpAddr::V4(Ipv4Addr::from(r() as u32))
                    };
                    v.push(
                        AddAddr {
                            echo,
                            address_id: r() as u8,
                            address,
                            port,
                            hmac,
                            reserved: (r() & 7) as u8,
                        }
                        .into(),
                    );
                }
            }
        }
    }
    // REMOVE_ADDR: 1..=37 ids.
    for n in 1..=37 {
        v.push(
            RemoveAddr {
                address_ids: (0..n).map(|_| r() as u8).collect(),
                reserved: (r() & 0xf) as u8,
            }
            .into(),
        );
    }
    // MP_PRIO: 3 and 4 bytes.
    for backup in [false, true] {
        for address_id in [None, Some(r() as u8)] {
            v.push(
                MpPrio {
                    backup,
                    address_id,
                    reserved: (r() & 7) as u8,
                }
                .into(),
            );
        }
    }
    v.push(
        MpFail {
            data_seq: r(),
            reserved: (r() & 0xfff) as u16,
        }
        .into(),
    );
    v.push(
        MpFastclose {
            receiver_key: r(),
            reserved: (r() & 0xfff) as u16,
        }
        .into(),
    );
    for flags in 0..16 {
        v.push(
            MpTcpRst {
                flags,
                reason: r() as u8,
            }
            .into(),
        );
    }
    v.push(MptcpOption::Unknown {
        subtype: 0xf,
        low_bits: 3,
        data: vec![1, 2, 3],
    });
    v
}

// ---------------------------------------------------------------------------
// Tests.

#[test]
fn every_subtype_and_length_at_every_alignment() {
    if !root_or_skip() {
        return;
    }
    let h = Harness::load();
    let mut rng = SplitMix(0x5eed_0001);
    let options = every_variant(&mut rng);
    let mut runs = 0;
    for option in &options {
        for nops in nop_counts(option.wire_len()) {
            for net in Net::ALL {
                for hook in Hook::ALL {
                    check_option(&h, hook, net, nops, option).unwrap_or_else(|e| panic!("{e}"));
                    runs += 1;
                }
            }
        }
    }
    eprintln!(
        "{} options, {runs} runs: all fields equal the codec's",
        options.len()
    );
}

#[test]
fn random_options_equal_the_codec() {
    if !root_or_skip() {
        return;
    }
    let h = Harness::load();
    let strategy = (
        emptcp_wire::strategy::mptcp_option(MptcpVersion::V1)
            .prop_filter("fits the option area", |o| o.wire_len() <= 40),
        0usize..8,
        prop_oneof![Just(Net::V4), Just(Net::V6), Just(Net::V4Vlan)],
        prop_oneof![Just(Hook::Xdp), Just(Hook::Tc)],
    );
    let mut runner = TestRunner::new(Config {
        cases: 2000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |(option, nops, net, hook)| {
            let nops = nops.min(40 - option.wire_len());
            check_option(&h, hook, net, nops, &option).map_err(TestCaseError::fail)
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// SHA-256 of 8 bytes from Python's hashlib, independent of the codec:
/// `hashlib.sha256(key.to_bytes(8, "big")).hexdigest()`.
const KNOWN: [(u64, &str); 4] = [
    (
        0,
        "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc",
    ),
    (
        0x0123_4567_89ab_cdef,
        "55c53f5d490297900cefa825d0c8e8e9532ee8a118abe7d8570762cd38be9818",
    ),
    (
        u64::MAX,
        "12a3ae445661ce5dee78d0650d33362dec29c4f82af05e7e57fb595bbbacf0ca",
    ),
    (
        0x8000_0000_0000_0001,
        "52cc849fffcb8aeaf2e8aff5a4a3ca37052e4f90002902f20788c9f7e1b0e202",
    ),
];

fn hex_u64(hex: &str) -> u64 {
    u64::from_str_radix(hex, 16).unwrap()
}

const SHA_PROGS: [&str; 3] = ["xdp_sha256", "tc_sha256", "xdp_sha256_inline"];

fn frame64() -> Vec<u8> {
    Net::V4.builder().build().unwrap()
}

/// (token, IDSN) of `key` as the data plane's SHA-256 program `prog` derives them.
fn data_plane_hash(h: &Harness, prog: &str, frame: &[u8], key: u64) -> (u64, u64) {
    let io = h.run(
        prog,
        frame,
        Input {
            key,
            ..Default::default()
        },
    );
    assert_eq!(io.signed("sha_rc"), 0, "{prog} key {key:#018x}");
    (io.get("key_hash.token"), io.get("key_hash.idsn"))
}

#[test]
fn sha256_known_vectors() {
    if !root_or_skip() {
        return;
    }
    let h = Harness::load();
    let frame = frame64();
    for (key, digest) in KNOWN {
        let token = hex_u64(&digest[..8]) as u32;
        let idsn = hex_u64(&digest[48..]);
        assert_eq!((token_from_key(key), idsn_from_key(key)), (token, idsn));
        for prog in SHA_PROGS {
            assert_eq!(
                data_plane_hash(&h, prog, &frame, key),
                (u64::from(token), idsn),
                "{prog} key {key:#018x}"
            );
        }
    }
}

#[test]
fn sha256_tokens_and_idsns_equal_the_codec_for_1000_keys() {
    if !root_or_skip() {
        return;
    }
    let h = Harness::load();
    let frame = frame64();
    let mut rng = SplitMix(0x70ce_75ee_d000_0001);
    for i in 0..1000 {
        // Also keys with few bits set, where a byte-order slip would show.
        let key = match i % 4 {
            0 => rng.next() & 0xff << (8 * (i / 4 % 8)),
            _ => rng.next(),
        };
        let prog = SHA_PROGS[i % SHA_PROGS.len()];
        let (token, idsn) = data_plane_hash(&h, prog, &frame, key);
        assert_eq!(
            token,
            u64::from(token_from_key(key)),
            "{prog} token of {key:#018x}"
        );
        assert_eq!(idsn, idsn_from_key(key), "{prog} idsn of {key:#018x}");
    }
}

#[test]
fn mp_capable_packets_yield_the_codec_tokens() {
    if !root_or_skip() {
        return;
    }
    let h = Harness::load();
    let mut rng = SplitMix(0xcafe_f00d);
    for i in 0..300 {
        let keys = match i % 4 {
            0 => MpCapableKeys::Sender(rng.next()),
            1 => MpCapableKeys::Both {
                sender: rng.next(),
                receiver: rng.next(),
            },
            2 => MpCapableKeys::WithData {
                sender: rng.next(),
                receiver: rng.next(),
                data_len: rng.next() as u16,
                checksum: None,
            },
            _ => MpCapableKeys::WithData {
                sender: rng.next(),
                receiver: rng.next(),
                data_len: rng.next() as u16,
                checksum: Some(rng.next() as u16),
            },
        };
        let option: MptcpOption = MpCapable {
            version: 1,
            flags: MpCapable::FLAG_HMAC_SHA256,
            keys,
        }
        .into();
        let net = Net::ALL[i % 3];
        let hook = Hook::ALL[i / 3 % 2];
        let nops = i % 8;
        check_option(&h, hook, net, nops.min(40 - option.wire_len()), &option)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Raw option bytes (kind, length, subtype byte, rest zero-filled up to
/// `fill` bytes in the packet).
fn raw(len: u8, subtype_byte: u8, fill: usize) -> Vec<u8> {
    let mut v = vec![30, len, subtype_byte];
    v.resize(fill.max(3), 0xa5);
    v
}

#[test]
fn malformed_lengths_are_refused() {
    if !root_or_skip() {
        return;
    }
    let h = Harness::load();
    // (subtype byte, lengths the subtype does not allow)
    let cases: [(u8, &[u8]); 9] = [
        (0x01, &[0, 1, 2, 3, 5, 8, 11, 13, 19, 21, 23, 25, 36]), // MP_CAPABLE
        (0x10, &[0, 3, 4, 8, 11, 13, 15, 17, 20, 23, 25]),       // MP_JOIN
        (
            0x30,
            &[0, 3, 4, 7, 9, 11, 12, 15, 17, 19, 21, 23, 26, 29, 31, 38],
        ), // ADD_ADDR
        (0x40, &[0, 2, 3]),                                      // REMOVE_ADDR
        (0x50, &[0, 2, 5, 6, 12]),                               // MP_PRIO
        (0x60, &[0, 4, 11, 13, 20]),                             // MP_FAIL
        (0x70, &[0, 4, 8, 11, 13]),                              // MP_FASTCLOSE
        (0x80, &[0, 3, 5, 12]),                                  // MP_TCPRST
        (0x20, &[0, 3, 5, 6, 8, 12, 41]),                        // DSS, no flags
    ];
    for (subtype_byte, lengths) in cases {
        for &len in lengths {
            for net in [Net::V4, Net::V6] {
                for nops in [0, 1, 2, 3] {
                    // Enough bytes in the packet that only the length is wrong.
                    let opt = raw(len, subtype_byte, 36 - nops);
                    let (frame, off) = frame_with(net, nops, &opt);
                    for hook in Hook::ALL {
                        let io = h.run(
                            hook.read_prog(),
                            &frame,
                            Input {
                                opt_off: off,
                                reader: u32::from(subtype_byte >> 4),
                                ..Default::default()
                            },
                        );
                        assert_eq!(
                            io.signed("rc"),
                            ERR_LENGTH,
                            "subtype byte {subtype_byte:#04x} length {len} {hook:?} {net:?} nops {nops}"
                        );
                    }
                }
            }
        }
    }
    // DSS: lengths that disagree with the flags (A a M m set in turn).
    let dss_cases: [(u8, &[u8]); 5] = [
        (0x01, &[4, 6, 10, 12]),      // A: 8 only
        (0x03, &[4, 8, 10, 14]),      // A a: 12 only
        (0x04, &[4, 12, 15, 18]),     // M: 14 or 16
        (0x0c, &[4, 14, 16, 19, 22]), // M m: 18 or 20
        (0x0f, &[4, 18, 20, 24, 30]), // A a M m: 26 or 28
    ];
    for (flags, lengths) in dss_cases {
        for &len in lengths {
            let mut opt = raw(len, 0x20, 36);
            opt[3] = flags;
            let (frame, off) = frame_with(Net::V4, 0, &opt);
            for hook in Hook::ALL {
                let io = h.run(
                    hook.read_prog(),
                    &frame,
                    Input {
                        opt_off: off,
                        ..Default::default()
                    },
                );
                assert_eq!(
                    io.signed("rc"),
                    ERR_LENGTH,
                    "dss flags {flags:#x} len {len}"
                );
            }
        }
    }
}

#[test]
fn truncated_options_offsets_kinds_and_subtypes_are_refused() {
    if !root_or_skip() {
        return;
    }
    let h = Harness::load();
    let mut rng = SplitMix(0x7a11);
    let options = every_variant(&mut rng);
    // An option cut anywhere by the packet's end: TRUNCATED, never a read
    // past data_end; the whole option: decoded.
    for option in options
        .iter()
        .filter(|o| !matches!(o, MptcpOption::Unknown { .. }))
    {
        let len = option.wire_len();
        for net in [Net::V4, Net::V6] {
            let (frame, off) = frame_for(net, (40 - len).min(3), option);
            for keep in 0..=len {
                let cut = &frame[..off as usize + keep];
                for hook in Hook::ALL {
                    let io = h.run(
                        hook.read_prog(),
                        cut,
                        Input {
                            opt_off: off,
                            reader: u32::from(option.subtype()),
                            ..Default::default()
                        },
                    );
                    let want = if keep == len { 0 } else { ERR_TRUNCATED };
                    assert_eq!(
                        io.signed("rc"),
                        want,
                        "{option:?} cut to {keep} of {len} bytes, {hook:?} {net:?}"
                    );
                }
            }
        }
    }

    let join: MptcpOption = MpJoin::Syn {
        backup: false,
        address_id: 1,
        token: 0x1234_5678,
        random: 9,
        reserved: 0,
    }
    .into();
    let (frame, off) = frame_for(Net::V4, 2, &join);
    let run = |opt_off: u32, reader: u32, hook: Hook| {
        h.run(
            hook.read_prog(),
            &frame,
            Input {
                opt_off,
                reader,
                ..Default::default()
            },
        )
        .signed("rc")
    };
    for hook in Hook::ALL {
        // Offsets past the limit, and past the packet.
        assert_eq!(run(OFF_MAX + 1, 1, hook), ERR_OFFSET);
        assert_eq!(run(u32::MAX, 1, hook), ERR_OFFSET);
        assert_eq!(run(OFF_MAX, 1, hook), ERR_TRUNCATED);
        assert_eq!(run(frame.len() as u32, 1, hook), ERR_TRUNCATED);
        assert_eq!(run(frame.len() as u32 - 2, 1, hook), ERR_TRUNCATED);
        // A NOP before the option, the TCP header: not kind 30.
        assert_eq!(run(off - 1, 1, hook), ERR_KIND);
        assert_eq!(run(off - 22, 1, hook), ERR_KIND);
        // Every other reader refuses an MP_JOIN.
        for reader in [0, 2, 3, 4, 5, 6, 7, 8] {
            assert_eq!(run(off, reader, hook), ERR_SUBTYPE, "reader {reader}");
        }
        assert_eq!(run(off, 1, hook), 0);
    }
}

#[test]
fn sha256_cost_report() {
    if !root_or_skip() {
        return;
    }
    let h = Harness::load();
    let frame = frame64();
    let progs = [
        "xdp_sha256_base",
        "xdp_sha256",
        "xdp_sha256_inline",
        "xdp_sha256_x8",
        "tc_sha256",
        "xdp_mptcp_read",
        "tc_mptcp_read",
        "xdp_mptcp_readers",
    ];
    eprintln!("program              verified insns  xlated insns  jited bytes");
    for prog in progs {
        let info = h.info(prog);
        eprintln!(
            "{prog:<20} {:>14}  {:>12}  {:>11}",
            info.verified_insns, info.xlated_insns, info.jited_bytes
        );
        assert!(info.verified_insns < 100_000, "{prog}: {info:?}");
    }

    // The programs take their key from the I/O map: a key the compiler
    // cannot fold. Interleaved rounds, median per program.
    h.write_input(Input {
        key: 0x0123_4567_89ab_cdef,
        ..Default::default()
    });
    const REPEAT: u32 = 100_000;
    const ROUNDS: usize = 7;
    let timed = [
        "xdp_sha256_base",
        "xdp_sha256",
        "xdp_sha256_inline",
        "xdp_sha256_x8",
        "tc_sha256",
    ];
    let mut samples: HashMap<&str, Vec<u128>> = HashMap::new();
    for _ in 0..ROUNDS {
        for prog in timed {
            let ns = h.time(prog, &frame, REPEAT).as_nanos();
            samples.entry(prog).or_default().push(ns);
        }
    }
    let median = |prog: &str| {
        let mut v = samples[prog].clone();
        v.sort_unstable();
        v[v.len() / 2]
    };
    eprintln!("\nns per run, median of {ROUNDS} x {REPEAT} (min-max):");
    for prog in timed {
        let v = &samples[prog];
        eprintln!(
            "{prog:<20} {:>5} ({}-{})",
            median(prog),
            v.iter().min().unwrap(),
            v.iter().max().unwrap()
        );
    }
    let base = median("xdp_sha256_base") as i128;
    let global = median("xdp_sha256") as i128;
    let x8 = median("xdp_sha256_x8") as i128;
    eprintln!(
        "one hash, global fn (xdp_sha256 - base): {} ns; inline: {} ns; \
         marginal hash in a loop ((x8 - xdp_sha256) / 7): {} ns",
        global - base,
        median("xdp_sha256_inline") as i128 - base,
        (x8 - global) / 7
    );
    // The timed runs still compute the right thing.
    let io = h.read_io();
    assert_eq!(
        io.get("key_hash.token"),
        u64::from(token_from_key(0x0123_4567_89ab_cdef))
    );
}
