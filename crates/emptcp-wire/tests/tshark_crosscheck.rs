//! Cross-check of the codec against Wireshark's MPTCP dissector on real kernel MPTCP traffic.
//!
//! The fixtures in `tests/fixtures/*.pcap` were captured from Linux MPTCP connections (see the
//! README there; `cargo run -p emptcp-testbed --example capture_fixtures -- DIR` makes them).
//! For every packet of every fixture this test
//!
//! - decodes the TCP options with [`tcp_opt::parse_located`] and asks `tshark` for every MPTCP
//!   field it decodes, then compares field by field (subtype, version, flags, keys, tokens,
//!   nonces, HMACs, address ids, addresses, ports, DSS numbers, lengths, checksums, ...);
//! - compares the TCP (and IPv4 header) checksum verdict of [`ParsedPacket`] with
//!   `tcp.checksum.status` (`ip.checksum.status`);
//! - recomputes from the captured keys and nonces what the kernel computed: tokens and IDSNs
//!   (also against Wireshark's own `mptcp.expected_token` / `mptcp.expected_idsn`), the MP_JOIN
//!   SYN/ACK and third-ACK HMACs, the ADD_ADDR HMAC, the DSS checksums over the mapped payload,
//!   and data sequence numbers and Data ACKs relative to the IDSN (against `mptcp.dss.dsn` /
//!   `mptcp.ack`; the first byte of each direction must be IDSN + 1, RFC 8684 section 3.3).
//!
//! Each fixture must contain the packet kinds it was made for (counted, never vacuous), and a
//! negative control checks that a flipped HMAC or checksum byte is caught.
//!
//! Without tshark the test is skipped with a message, unless `CI=true`, where it fails.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use emptcp_wire::checksum;
use emptcp_wire::crypto::{
    add_addr_hmac, idsn_from_key, join_hmac_64, join_hmac_160, token_from_key,
};
use emptcp_wire::mptcp::{
    AddAddr, DataSeq, Dss, MpCapable, MpCapableKeys, MpJoin, MptcpOption, MptcpVersion,
};
use emptcp_wire::packet::ParsedPacket;
use emptcp_wire::tcp_opt::{LocatedOption, TcpOption, parse_located};

/// Every fixture the generator makes; a missing file fails the test.
const FIXTURES: [&str; 14] = [
    "basic_v4",
    "basic_v6",
    "add_addr_v4",
    "add_addr_v6",
    "add_addr_port_v4",
    "add_addr_port_v6",
    "mp_prio_v4",
    "mp_prio_v6",
    "remove_addr_v4",
    "remove_addr_v6",
    "checksum_v4",
    "checksum_v6",
    "fastclose_v4",
    "fastclose_v6",
];

/// The per-option fields compared one to one with what tshark decodes, in any packet.
const OPTION_FIELDS: [&str; 43] = [
    "tcp.option_len",
    "tcp.options.mptcp.subtype",
    "tcp.options.mptcp.version",
    "tcp.options.mptcp.flags",
    "tcp.options.mptcp.reserved",
    "tcp.options.mptcp.backup.flag",
    "tcp.options.mptcp.checksumreq.flags",
    "tcp.options.mptcp.extensibility.flag",
    "tcp.options.mptcp.nomoresubflows.flag",
    "tcp.options.mptcp.sha1.flag",
    "tcp.options.mptcp.sha256.flag",
    "tcp.options.mptcp.reserved.flag",
    "tcp.options.mptcp.datafin.flag",
    "tcp.options.mptcp.dseqn8.flag",
    "tcp.options.mptcp.dseqnpresent.flag",
    "tcp.options.mptcp.dataack8.flag",
    "tcp.options.mptcp.dataackpresent.flag",
    "tcp.options.mptcp.flag_U.flag",
    "tcp.options.mptcp.flag_V.flag",
    "tcp.options.mptcp.flag_W.flag",
    "tcp.options.mptcp.flag_T.flag",
    "tcp.options.mptcp.rst_reason",
    "tcp.options.mptcp.addrid",
    "tcp.options.mptcp.sendkey",
    "tcp.options.mptcp.recvkey",
    "tcp.options.mptcp.recvtok",
    "tcp.options.mptcp.sendrand",
    "tcp.options.mptcp.sendtrunchmac",
    "tcp.options.mptcp.sendhmac",
    "tcp.options.mptcp.addaddrtrunchmac",
    "tcp.options.mptcp.rawdataack",
    "tcp.options.mptcp.rawdataseqno",
    "tcp.options.mptcp.subflowseqno",
    "tcp.options.mptcp.datalvllen",
    "tcp.options.mptcp.checksum",
    "tcp.options.mptcp.ipver",
    "tcp.options.mptcp.echo",
    "tcp.options.mptcp.ipv4",
    "tcp.options.mptcp.ipv6",
    "tcp.options.mptcp.port",
    "mptcp.rm_addr.count",
    // Wireshark hashes the sender's key of every MP_CAPABLE that carries one.
    "mptcp.expected_token",
    "mptcp.expected_idsn",
];

/// Fields read besides [`OPTION_FIELDS`].
const OTHER_FIELDS: [&str; 7] = [
    "frame.number",
    "frame.len",
    "frame.cap_len",
    "tcp.checksum.status",
    "ip.checksum.status",
    "mptcp.dss.dsn",
    "mptcp.ack",
];

const DSS_CHECKSUM_FIELD: &str = "tcp.options.mptcp.checksum";

// ---------------------------------------------------------------------------------------------
// Values and field lists

/// One field value, compared the same whichever way tshark prints it (decimal or 0x-hex).
#[derive(Clone, PartialEq, Eq)]
enum Value {
    Num(u128),
    Addr(IpAddr),
    Bytes(Vec<u8>),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Num(n) => write!(f, "{n}"),
            Value::Addr(a) => write!(f, "{a}"),
            Value::Bytes(b) => {
                for byte in b {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

fn num(n: impl Into<u128>) -> Value {
    Value::Num(n.into())
}

fn seq_value(seq: DataSeq) -> Value {
    num(seq.value())
}

/// The occurrences of each field in one packet, in option order.
#[derive(Debug, Default)]
struct Fields {
    values: BTreeMap<&'static str, Vec<Value>>,
    /// DSS checksums, kept apart: Wireshark 4.0 never shows them (it wants two bytes more than
    /// the option has), later versions might.
    dss_checksums: Vec<Value>,
}

impl Fields {
    fn push(&mut self, field: &'static str, value: Value) {
        self.values.entry(field).or_default().push(value);
    }

    fn get(&self, field: &str) -> &[Value] {
        self.values
            .get(field)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

fn bit(byte: u8, mask: u8) -> Value {
    num(u8::from(byte & mask != 0))
}

/// What Wireshark's dissector shows for `options`, derived from our decoding: the fields it
/// adds for each option, in order.
fn expected_fields(options: &[LocatedOption]) -> Result<Fields, String> {
    let mut f = Fields::default();
    macro_rules! put {
        ($name:literal, $value:expr) => {
            f.push(concat!("tcp.options.mptcp.", $name), $value)
        };
    }
    for located in options {
        match &located.option {
            TcpOption::Nop | TcpOption::EndOfList | TcpOption::Padding(_) => {}
            other => f.push("tcp.option_len", num(other.wire_len() as u64)),
        }
        let Some(option) = located.option.as_mptcp() else {
            continue;
        };
        put!("subtype", num(option.subtype()));
        match option {
            MptcpOption::MpCapable(c) => capable_fields(c, &mut f)?,
            MptcpOption::MpJoin(MpJoin::Syn {
                backup,
                address_id,
                token,
                random,
                reserved,
            }) => {
                // Wireshark's MP_JOIN "flags" is the whole third byte, subtype nibble included.
                put!("flags", num(0x10 | reserved << 1 | u8::from(*backup)));
                put!("backup.flag", num(u8::from(*backup)));
                put!("addrid", num(*address_id));
                put!("recvtok", num(*token));
                put!("sendrand", num(*random));
            }
            MptcpOption::MpJoin(MpJoin::SynAck {
                backup,
                address_id,
                hmac,
                random,
                reserved,
            }) => {
                put!("flags", num(0x10 | reserved << 1 | u8::from(*backup)));
                put!("backup.flag", num(u8::from(*backup)));
                put!("addrid", num(*address_id));
                put!("sendtrunchmac", num(*hmac));
                put!("sendrand", num(*random));
            }
            MptcpOption::MpJoin(MpJoin::Ack { hmac, reserved }) => {
                put!("reserved", num(*reserved));
                put!("sendhmac", Value::Bytes(hmac.to_vec()));
            }
            MptcpOption::Dss(dss) => dss_fields(dss, &mut f),
            MptcpOption::AddAddr(a) => {
                put!("echo", num(u8::from(a.echo)));
                put!("addrid", num(a.address_id));
                match a.address {
                    IpAddr::V4(_) => put!("ipv4", Value::Addr(a.address)),
                    IpAddr::V6(_) => put!("ipv6", Value::Addr(a.address)),
                }
                if let Some(port) = a.port {
                    put!("port", num(port));
                }
                if let Some(hmac) = a.hmac {
                    put!("addaddrtrunchmac", num(hmac));
                }
            }
            MptcpOption::RemoveAddr(r) => {
                for id in &r.address_ids {
                    put!("addrid", num(*id));
                }
                f.push("mptcp.rm_addr.count", num(r.address_ids.len() as u64));
            }
            MptcpOption::MpPrio(p) => {
                put!("flags", num(0x50 | p.reserved << 1 | u8::from(p.backup)));
                put!("backup.flag", num(u8::from(p.backup)));
                if let Some(id) = p.address_id {
                    put!("addrid", num(id));
                }
            }
            MptcpOption::MpFastclose(fc) => {
                put!("reserved", num(fc.reserved));
                put!("recvkey", num(fc.receiver_key));
            }
            MptcpOption::MpTcpRst(r) => {
                put!("flags", num(0x80 | r.flags));
                put!("flag_U.flag", bit(r.flags, 0x8));
                put!("flag_V.flag", bit(r.flags, 0x4));
                put!("flag_W.flag", bit(r.flags, 0x2));
                put!("flag_T.flag", bit(r.flags, 0x1));
                put!("rst_reason", num(r.reason));
            }
            other => {
                return Err(format!(
                    "{other:?}: no fixture was expected to hold this option; map its Wireshark \
                     fields here"
                ));
            }
        }
    }
    Ok(f)
}

fn capable_fields(c: &MpCapable, f: &mut Fields) -> Result<(), String> {
    macro_rules! put {
        ($name:literal, $value:expr) => {
            f.push(concat!("tcp.options.mptcp.", $name), $value)
        };
    }
    if c.version != 1 {
        return Err(format!("MP_CAPABLE version {} in a v1 fixture", c.version));
    }
    put!("version", num(c.version));
    put!("flags", num(c.flags));
    put!("checksumreq.flags", bit(c.flags, 0x80));
    put!("extensibility.flag", bit(c.flags, 0x40));
    put!("nomoresubflows.flag", bit(c.flags, 0x20));
    put!("sha256.flag", bit(c.flags, 0x01));
    put!("reserved.flag", num((c.flags & 0x3e) >> 1));
    if let Some(sender) = c.sender_key() {
        put!("sendkey", num(sender));
        f.push("mptcp.expected_token", num(token_from_key(sender)));
        f.push("mptcp.expected_idsn", num(idsn_from_key(sender)));
    }
    if let Some(receiver) = c.receiver_key() {
        put!("recvkey", num(receiver));
    }
    if let MpCapableKeys::WithData {
        data_len, checksum, ..
    } = c.keys
    {
        put!("datalvllen", num(data_len));
        if let Some(checksum) = checksum {
            put!("checksum", num(checksum));
        }
    }
    Ok(())
}

fn dss_fields(dss: &Dss, f: &mut Fields) {
    macro_rules! put {
        ($name:literal, $value:expr) => {
            f.push(concat!("tcp.options.mptcp.", $name), $value)
        };
    }
    // Wireshark shows the option's fourth byte: the low 8 of the 12 flag bits.
    let flags = (dss.flags() & 0xff) as u8;
    put!("flags", num(flags));
    put!("datafin.flag", bit(flags, 0x10));
    put!("dseqn8.flag", bit(flags, 0x08));
    put!("dseqnpresent.flag", bit(flags, 0x04));
    put!("dataack8.flag", bit(flags, 0x02));
    put!("dataackpresent.flag", bit(flags, 0x01));
    if let Some(ack) = dss.data_ack {
        put!("rawdataack", seq_value(ack));
    }
    if let Some(mapping) = &dss.mapping {
        put!("rawdataseqno", seq_value(mapping.data_seq));
        put!("subflowseqno", num(mapping.subflow_seq));
        put!("datalvllen", num(mapping.data_len));
        if let Some(checksum) = mapping.checksum {
            f.dss_checksums.push(num(checksum));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// tshark

/// Whether tshark runs; without it the test skips, except under CI.
fn tshark_available() -> bool {
    let works = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("tshark is not installed, and CI=true: the Wireshark cross-check must run");
        }
        eprintln!("SKIPPED tshark_crosscheck: tshark is not installed (apt install tshark)");
    }
    works
}

/// tshark's fields of one frame: field name -> occurrences, as printed.
type Row = HashMap<&'static str, Vec<String>>;

fn all_fields() -> Vec<&'static str> {
    OTHER_FIELDS.iter().chain(&OPTION_FIELDS).copied().collect()
}

/// Runs tshark over `path` and returns its fields per frame number.
fn tshark_rows(path: &Path) -> BTreeMap<u32, Row> {
    let fields = all_fields();
    let mut command = Command::new("tshark");
    command
        .args(["-n", "-r"])
        .arg(path)
        // Checksum verification is off by default; MPTCP analysis (keys, relative numbers) is
        // on by default but is spelled out so that a changed default cannot hide it.
        .args([
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
        ])
        .args(["-o", "mptcp.analyze_mptcp:TRUE"])
        .args(["-o", "mptcp.relative_sequence_numbers:TRUE"])
        .args(["-o", "tcp.analyze_sequence_numbers:TRUE"])
        .args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"])
        .args(["-E", "aggregator=,"]);
    for field in &fields {
        command.args(["-e", field]);
    }
    let output = command.output().expect("running tshark");
    assert!(
        output.status.success(),
        "tshark failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("tshark prints UTF-8");
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let columns: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            columns.len(),
            fields.len(),
            "tshark row with {} columns, asked for {}: {line}",
            columns.len(),
            fields.len()
        );
        let row: Row = fields
            .iter()
            .zip(columns)
            .map(|(field, column)| {
                let values = if column.is_empty() {
                    Vec::new()
                } else {
                    column.split(',').map(str::to_owned).collect()
                };
                (*field, values)
            })
            .collect();
        let number = row["frame.number"][0].parse().expect("frame number");
        rows.insert(number, row);
    }
    rows
}

/// Parses tshark's rendering of `field` into a [`Value`].
fn parse_value(field: &str, text: &str) -> Result<Value, String> {
    if field.ends_with(".ipv4") || field.ends_with(".ipv6") {
        return text
            .parse()
            .map(Value::Addr)
            .map_err(|e| format!("{field}: address {text:?}: {e}"));
    }
    if field.ends_with(".sendhmac") {
        let hex: String = text.chars().filter(|c| *c != ':').collect();
        return (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("?"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map(Value::Bytes)
            .map_err(|e| format!("{field}: bytes {text:?}: {e}"));
    }
    let parsed = match text {
        "True" => Ok(1),
        "False" => Ok(0),
        _ => match text.strip_prefix("0x") {
            Some(hex) => u128::from_str_radix(hex, 16),
            None => text.parse(),
        },
    };
    parsed
        .map(Value::Num)
        .map_err(|e| format!("{field}: number {text:?}: {e}"))
}

fn tshark_values(row: &Row, field: &str) -> Result<Vec<Value>, String> {
    row.get(field)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|text| parse_value(field, text))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// pcap and frames

struct Frame {
    number: u32,
    data: Vec<u8>,
    orig_len: u32,
}

/// Reads a classic pcap (either byte order, micro- or nanosecond) of Ethernet frames.
fn read_pcap(path: &Path) -> Vec<Frame> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() >= 24, "{}: no pcap header", path.display());
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => panic!("{}: not a classic pcap file", path.display()),
    };
    let word = |at: usize| {
        let w = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if little {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    assert_eq!(word(20), 1, "{}: link type is not Ethernet", path.display());
    let mut frames = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        assert!(
            at + 16 <= bytes.len(),
            "{}: cut record header",
            path.display()
        );
        let caplen = word(at + 8) as usize;
        let data = bytes
            .get(at + 16..at + 16 + caplen)
            .unwrap_or_else(|| panic!("{}: cut record at byte {at}", path.display()));
        frames.push(Frame {
            number: frames.len() as u32 + 1,
            data: data.to_vec(),
            orig_len: word(at + 12),
        });
        at += 16 + caplen;
    }
    frames
}

/// The layers of a frame, found by walking the headers; works on frames cut after the TCP
/// header, which [`ParsedPacket::parse`] (rightly) refuses.
struct Walked {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    flags: u8,
    /// The IPv4 header, for its checksum.
    ipv4_header: Option<std::ops::Range<usize>>,
    options: std::ops::Range<usize>,
    /// The TCP payload, `None` when the frame was cut short.
    payload: Option<std::ops::Range<usize>>,
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn walk(data: &[u8]) -> Result<Walked, String> {
    let byte = |at: usize| {
        data.get(at)
            .copied()
            .ok_or_else(|| format!("frame ends at {at}"))
    };
    let be16 = |at: usize| Ok::<_, String>(u16::from_be_bytes([byte(at)?, byte(at + 1)?]));
    let be32 = |at: usize| Ok::<_, String>(u32::from(be16(at)?) << 16 | u32::from(be16(at + 2)?));
    let l3 = 14;
    let (src_ip, dst_ip, l4, end, ipv4_header) = match be16(12)? {
        0x0800 => {
            let ihl = usize::from(byte(l3)? & 0x0f) * 4;
            if byte(l3 + 9)? != 6 {
                return Err("not TCP".into());
            }
            let src = Ipv4Addr::from(be32(l3 + 12)?);
            let dst = Ipv4Addr::from(be32(l3 + 16)?);
            let total = usize::from(be16(l3 + 2)?);
            (
                IpAddr::V4(src),
                IpAddr::V4(dst),
                l3 + ihl,
                l3 + total,
                Some(l3..l3 + ihl),
            )
        }
        0x86dd => {
            if byte(l3 + 6)? != 6 {
                return Err("IPv6 extension headers are not expected in the fixtures".into());
            }
            let addr = |at: usize| -> Result<Ipv6Addr, String> {
                let mut octets = [0u8; 16];
                for (i, o) in octets.iter_mut().enumerate() {
                    *o = byte(at + i)?;
                }
                Ok(Ipv6Addr::from(octets))
            };
            let payload = usize::from(be16(l3 + 4)?);
            (
                IpAddr::V6(addr(l3 + 8)?),
                IpAddr::V6(addr(l3 + 24)?),
                l3 + 40,
                l3 + 40 + payload,
                None,
            )
        }
        other => return Err(format!("EtherType {other:#06x}")),
    };
    let data_offset = usize::from(byte(l4 + 12)? >> 4) * 4;
    let options = l4 + 20..l4 + data_offset;
    if options.end > data.len() {
        return Err("frame cut inside the TCP header".into());
    }
    Ok(Walked {
        src: SocketAddr::new(src_ip, be16(l4)?),
        dst: SocketAddr::new(dst_ip, be16(l4 + 2)?),
        seq: be32(l4 + 4)?,
        flags: byte(l4 + 13)?,
        ipv4_header,
        payload: (end <= data.len()).then_some(options.end..end),
        options,
    })
}

// ---------------------------------------------------------------------------------------------
// What a fixture must contain

/// Counts of the packet kinds and checks seen in one fixture.
#[derive(Debug, Default)]
struct Counts(BTreeMap<&'static str, usize>);

impl Counts {
    fn add(&mut self, kind: &'static str) {
        *self.0.entry(kind).or_default() += 1;
    }

    fn get(&self, kind: &str) -> usize {
        self.0.get(kind).copied().unwrap_or(0)
    }
}

/// The kinds every fixture has: a connection with a joined second subflow.
const ALWAYS: [&str; 14] = [
    "mp_capable syn",
    "mp_capable syn/ack",
    "mp_capable ack (both keys)",
    "mp_join syn",
    "mp_join syn/ack",
    "mp_join ack",
    "dss mapping",
    "dss data ack",
    "checked token (mp_join syn)",
    "checked join hmac 64",
    "checked join hmac 160",
    "checked expected_token/idsn vs wireshark",
    "checked relative dsn/ack vs wireshark",
    "checked tcp checksum (whole frame)",
];

/// What a fixture is for: kinds that must occur at least once, by fixture name.
fn required(fixture: &str) -> Vec<&'static str> {
    let mut kinds = ALWAYS.to_vec();
    let base = fixture
        .strip_suffix("_v4")
        .or_else(|| fixture.strip_suffix("_v6"))
        .unwrap_or(fixture);
    kinds.extend(match base {
        "basic" => vec![
            "mp_capable with data-level length",
            "dss data_fin",
            "checked first dsn = idsn + 1",
        ],
        "add_addr" => vec![
            "add_addr with hmac",
            "add_addr echo",
            "checked add_addr hmac",
        ],
        "add_addr_port" => vec![
            "add_addr with hmac",
            "add_addr with port",
            "add_addr echo",
            "checked add_addr hmac",
        ],
        "mp_prio" => vec!["mp_prio"],
        "remove_addr" => vec!["remove_addr"],
        "checksum" => vec![
            "mp_capable checksum required",
            "dss checksum",
            "checked dss checksum over the mapping",
            "dss data_fin",
        ],
        "fastclose" => vec![
            "mp_fastclose",
            "mp_tcprst",
            "checked fastclose receiver key",
        ],
        other => panic!("no expectations for fixture {other}"),
    });
    kinds
}

// ---------------------------------------------------------------------------------------------
// Connections and crypto

/// One side of a subflow as seen on the wire.
type Endpoint = SocketAddr;

/// An MPTCP connection, from its MP_CAPABLE handshake.
#[derive(Debug, Clone, Copy, Default)]
struct Connection {
    /// The key of the host that sent the MP_CAPABLE SYN.
    client_key: Option<u64>,
    /// The key of the host that answered it.
    server_key: Option<u64>,
}

/// A subflow: its connection, which end is the connection's client, and its ISNs.
#[derive(Debug, Clone)]
struct Subflow {
    connection: usize,
    client_end: Endpoint,
    isn: HashMap<Endpoint, u32>,
    join: Option<JoinExchange>,
}

/// The MP_JOIN exchange of a subflow: who started it and what each side sent.
#[derive(Debug, Clone, Default)]
struct JoinExchange {
    initiator: Option<Endpoint>,
    token: u32,
    random_initiator: u32,
    random_responder: Option<u32>,
    hmac_64: Option<(u32, u64)>,
    hmac_160: Option<(u32, [u8; 20])>,
}

/// Everything remembered about one packet for the second pass.
struct Seen {
    frame: u32,
    walked: Walked,
    options: Vec<MptcpOption>,
    payload: Option<Vec<u8>>,
    /// tshark's relative DSN and Data ACK (`mptcp.dss.dsn`, `mptcp.ack`).
    wireshark_dsn: Vec<Value>,
    wireshark_ack: Vec<Value>,
}

/// A subflow's key: its two ends in a fixed order.
fn subflow_key(a: Endpoint, b: Endpoint) -> (Endpoint, Endpoint) {
    if a <= b { (a, b) } else { (b, a) }
}

/// MP_JOIN SYN/ACK: the responder's truncated HMAC (RFC 8684 section 3.2).
fn check_join_hmac_64(
    responder_key: u64,
    initiator_key: u64,
    random_responder: u32,
    random_initiator: u32,
    captured: u64,
) -> Result<(), String> {
    let computed = join_hmac_64(
        responder_key,
        initiator_key,
        random_responder,
        random_initiator,
    );
    if computed == captured {
        Ok(())
    } else {
        Err(format!(
            "MP_JOIN SYN/ACK HMAC: captured {captured:#018x}, computed {computed:#018x}"
        ))
    }
}

/// MP_JOIN third ACK: the initiator's 160-bit HMAC.
fn check_join_hmac_160(
    initiator_key: u64,
    responder_key: u64,
    random_initiator: u32,
    random_responder: u32,
    captured: &[u8; 20],
) -> Result<(), String> {
    let computed = join_hmac_160(
        initiator_key,
        responder_key,
        random_initiator,
        random_responder,
    );
    if &computed == captured {
        Ok(())
    } else {
        Err(format!(
            "MP_JOIN ACK HMAC: captured {:?}, computed {:?}",
            Value::Bytes(captured.to_vec()),
            Value::Bytes(computed.to_vec())
        ))
    }
}

/// ADD_ADDR: the sender's truncated HMAC over id, address and port.
fn check_add_addr_hmac(
    sender_key: u64,
    receiver_key: u64,
    add_addr: &AddAddr,
) -> Result<(), String> {
    let Some(captured) = add_addr.hmac else {
        return Err("ADD_ADDR without HMAC".into());
    };
    let computed = add_addr_hmac(
        sender_key,
        receiver_key,
        add_addr.address_id,
        add_addr.address,
        add_addr.port,
    );
    if computed == captured {
        Ok(())
    } else {
        Err(format!(
            "ADD_ADDR HMAC: captured {captured:#018x}, computed {computed:#018x}"
        ))
    }
}

/// A DSS (or MP_CAPABLE) checksum over its mapping.
fn check_dss_checksum(
    data_seq: u64,
    subflow_seq: u32,
    data_len: u16,
    payload: &[u8],
    captured: u16,
) -> Result<(), String> {
    let computed = checksum::dss_checksum(data_seq, subflow_seq, data_len, payload);
    if computed == captured {
        Ok(())
    } else {
        Err(format!(
            "DSS checksum of mapping dsn {data_seq} ssn {subflow_seq} len {data_len}: captured \
             {captured:#06x}, computed {computed:#06x}"
        ))
    }
}

/// The bytes `[start, start + len)` of a subflow direction's stream, if every one of them was
/// captured; `segments` maps relative sequence numbers to payloads.
fn stream_bytes(segments: &BTreeMap<u32, Vec<u8>>, start: u32, len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    let mut next = start;
    while out.len() < len {
        // The segment holding `next`: the last one starting at or before it.
        let (&seg_start, payload) = segments.range(..=next).next_back()?;
        let skip = (next - seg_start) as usize;
        let available = payload.get(skip..).filter(|rest| !rest.is_empty())?;
        let take = available.len().min(len - out.len());
        out.extend_from_slice(&available[..take]);
        next += take as u32;
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// The check of one fixture

/// Failures of one fixture, each naming the frame and the field.
#[derive(Default)]
struct Report {
    fixture: String,
    failures: Vec<String>,
}

impl Report {
    fn fail(&mut self, frame: u32, what: impl fmt::Display) {
        self.failures
            .push(format!("{} frame {frame}: {what}", self.fixture));
    }
}

fn check_fixture(name: &str, path: &Path, report: &mut Report, counts: &mut Counts) {
    let frames = read_pcap(path);
    let rows = tshark_rows(path);
    assert_eq!(
        frames.len(),
        rows.len(),
        "{name}: {} frames in the pcap, {} from tshark",
        frames.len(),
        rows.len()
    );
    assert!(!frames.is_empty(), "{name}: empty fixture");

    // Pass 1: decode every packet and compare with tshark, field by field.
    let mut seen = Vec::new();
    for frame in &frames {
        let n = frame.number;
        let Some(row) = rows.get(&n) else {
            report.fail(n, "tshark did not list this frame");
            continue;
        };
        let walked = match walk(&frame.data) {
            Ok(w) => w,
            Err(e) => {
                report.fail(n, format!("cannot find the TCP header: {e}"));
                continue;
            }
        };
        let area = &frame.data[walked.options.clone()];
        let options = match parse_located(area, MptcpVersion::V1) {
            Ok(options) => options,
            Err(e) => {
                report.fail(n, format!("our option parser failed: {e}"));
                continue;
            }
        };
        compare_checksum_status(frame, &walked, row, &options, report, counts);
        compare_fields(n, &options, row, report);
        let mptcp: Vec<MptcpOption> = options
            .iter()
            .filter_map(|o| o.option.as_mptcp().cloned())
            .collect();
        count_kinds(&walked, &mptcp, counts);
        let payload = walked
            .payload
            .clone()
            .map(|range| frame.data[range].to_vec());
        let mut analysis = |field| match tshark_values(row, field) {
            Ok(values) => values,
            Err(e) => {
                report.fail(n, e);
                Vec::new()
            }
        };
        let wireshark_dsn = analysis("mptcp.dss.dsn");
        let wireshark_ack = analysis("mptcp.ack");
        seen.push(Seen {
            frame: n,
            walked,
            options: mptcp,
            payload,
            wireshark_dsn,
            wireshark_ack,
        });
    }

    // Pass 2: connections, keys and everything computed from them.
    check_crypto(&seen, report, counts);
}

/// Our checksum verdicts against tshark's `tcp.checksum.status` / `ip.checksum.status`
/// (0 bad, 1 good, 2 unverified).
fn compare_checksum_status(
    frame: &Frame,
    walked: &Walked,
    row: &Row,
    options: &[LocatedOption],
    report: &mut Report,
    counts: &mut Counts,
) {
    let n = frame.number;
    let status = |field| row.get(field).and_then(|v| v.first()).map(String::as_str);
    if let Some(header) = &walked.ipv4_header {
        let ours = checksum::verifies(checksum::sum(&frame.data[header.clone()]));
        let theirs = status("ip.checksum.status");
        if theirs != Some(if ours { "1" } else { "0" }) {
            report.fail(
                n,
                format!("ip.checksum.status: ours valid={ours}, tshark {theirs:?}"),
            );
        }
    }
    // The packet parser must find the same option area and options as the header walk, in
    // whole frames and in frames the snap length cut.
    let parsed = match ParsedPacket::parse_capture(&frame.data) {
        Ok(parsed) => parsed,
        Err(e) => {
            report.fail(n, format!("ParsedPacket::parse_capture failed: {e}"));
            return;
        }
    };
    if parsed.option_area() != &frame.data[walked.options.clone()] {
        report.fail(n, "ParsedPacket::option_area differs from the TCP header's");
    }
    match parsed.options() {
        Ok(located) if located == options => {}
        Ok(located) => report.fail(
            n,
            format!("ParsedPacket::options {located:?} differ from parse_located {options:?}"),
        ),
        Err(e) => report.fail(n, format!("ParsedPacket::options failed: {e}")),
    }
    let cut = frame.orig_len as usize - frame.data.len();
    if parsed.missing_bytes() != cut {
        report.fail(
            n,
            format!(
                "ParsedPacket::missing_bytes {} for a frame cut by {cut}",
                parsed.missing_bytes()
            ),
        );
    }
    if cut > 0 {
        // A cut frame cannot be verified by anyone.
        if status("tcp.checksum.status") != Some("2") {
            report.fail(
                n,
                format!(
                    "tcp.checksum.status of a cut frame: tshark {:?}, expected 2 (unverified)",
                    status("tcp.checksum.status")
                ),
            );
        }
        if parsed.verify_checksums().is_ok() {
            report.fail(n, "ParsedPacket::verify_checksums passed a cut frame");
        }
        return;
    }
    let parsed = match ParsedPacket::parse(&frame.data) {
        Ok(parsed) => parsed,
        Err(e) => {
            report.fail(
                n,
                format!("ParsedPacket::parse failed on a whole frame: {e}"),
            );
            return;
        }
    };
    let checks = parsed.checksums();
    let ours = checks.tcp.valid;
    let theirs = status("tcp.checksum.status");
    if theirs != Some(if ours { "1" } else { "0" }) {
        report.fail(
            n,
            format!(
                "tcp.checksum.status: ours valid={ours} (found {:#06x}, expected {:#06x}), \
                 tshark {theirs:?}",
                checks.tcp.found, checks.tcp.expected
            ),
        );
    }
    if let Some(ip) = checks.ipv4_header {
        let walked_valid = status("ip.checksum.status") == Some("1");
        if ip.valid != walked_valid {
            report.fail(
                n,
                format!(
                    "ParsedPacket IPv4 checksum valid={}, tshark disagrees",
                    ip.valid
                ),
            );
        }
    }
    counts.add("checked tcp checksum (whole frame)");
}

/// Compares every field of [`OPTION_FIELDS`] (and the DSS checksums) with tshark's.
fn compare_fields(n: u32, options: &[LocatedOption], row: &Row, report: &mut Report) {
    let ours = match expected_fields(options) {
        Ok(fields) => fields,
        Err(e) => {
            report.fail(n, e);
            return;
        }
    };
    for field in OPTION_FIELDS {
        let theirs = match tshark_values(row, field) {
            Ok(values) => values,
            Err(e) => {
                report.fail(n, e);
                continue;
            }
        };
        let mine = ours.get(field);
        if field == DSS_CHECKSUM_FIELD {
            // MP_CAPABLE checksums always; DSS checksums only where this tshark shows them.
            let mut with_dss = mine.to_vec();
            with_dss.extend(ours.dss_checksums.iter().cloned());
            if theirs != mine && theirs != with_dss {
                report.fail(
                    n,
                    format!("{field}: ours {with_dss:?} (DSS part optional), tshark {theirs:?}"),
                );
            }
            continue;
        }
        if theirs != mine {
            report.fail(n, format!("{field}: ours {mine:?}, tshark {theirs:?}"));
        }
    }
}

fn count_kinds(walked: &Walked, options: &[MptcpOption], counts: &mut Counts) {
    let syn = walked.flags & SYN != 0;
    let ack = walked.flags & ACK != 0;
    for option in options {
        match option {
            MptcpOption::MpCapable(c) => {
                match (&c.keys, syn, ack) {
                    (MpCapableKeys::None, true, false) => counts.add("mp_capable syn"),
                    (MpCapableKeys::Sender(_), true, true) => counts.add("mp_capable syn/ack"),
                    (MpCapableKeys::Both { .. }, false, _) => {
                        counts.add("mp_capable ack (both keys)")
                    }
                    (MpCapableKeys::WithData { .. }, false, _) => {
                        counts.add("mp_capable with data-level length")
                    }
                    _ => counts.add("mp_capable, unexpected form"),
                }
                if c.checksum_required() {
                    counts.add("mp_capable checksum required");
                }
            }
            MptcpOption::MpJoin(MpJoin::Syn { .. }) => counts.add("mp_join syn"),
            MptcpOption::MpJoin(MpJoin::SynAck { .. }) => counts.add("mp_join syn/ack"),
            MptcpOption::MpJoin(MpJoin::Ack { .. }) => counts.add("mp_join ack"),
            MptcpOption::Dss(dss) => {
                if dss.data_ack.is_some() {
                    counts.add("dss data ack");
                }
                if let Some(mapping) = &dss.mapping {
                    counts.add("dss mapping");
                    if mapping.checksum.is_some() {
                        counts.add("dss checksum");
                    }
                }
                if dss.data_fin {
                    counts.add("dss data_fin");
                }
            }
            MptcpOption::AddAddr(a) => {
                if a.echo {
                    counts.add("add_addr echo");
                }
                if a.hmac.is_some() {
                    counts.add("add_addr with hmac");
                }
                if a.port.is_some() {
                    counts.add("add_addr with port");
                }
            }
            MptcpOption::RemoveAddr(_) => counts.add("remove_addr"),
            MptcpOption::MpPrio(_) => counts.add("mp_prio"),
            MptcpOption::MpFastclose(_) => counts.add("mp_fastclose"),
            MptcpOption::MpTcpRst(_) => counts.add("mp_tcprst"),
            _ => counts.add("other mptcp option"),
        }
    }
}

/// The second pass: keys from the MP_CAPABLE handshakes, then every value derived from them.
fn check_crypto(seen: &[Seen], report: &mut Report, counts: &mut Counts) {
    let topology = Topology::learn(seen, report, counts);
    check_join_hmacs(&topology, report, counts);
    check_derived_values(seen, &topology, report, counts);
    check_dss_checksums(seen, &topology, report, counts);
}

/// The connections and subflows of a fixture, learned from the MP_CAPABLE and MP_JOIN
/// handshakes.
#[derive(Debug, Default)]
struct Topology {
    connections: Vec<Connection>,
    subflows: HashMap<(Endpoint, Endpoint), Subflow>,
}

impl Topology {
    /// Learns keys, subflows, ISNs and MP_JOIN exchanges in capture order.
    fn learn(seen: &[Seen], report: &mut Report, counts: &mut Counts) -> Topology {
        let mut connections: Vec<Connection> = Vec::new();
        let mut subflows: HashMap<(Endpoint, Endpoint), Subflow> = HashMap::new();
        for s in seen {
            let w = &s.walked;
            let key = subflow_key(w.src, w.dst);
            let syn = w.flags & SYN != 0;
            let ack = w.flags & ACK != 0;
            for option in &s.options {
                match option {
                    MptcpOption::MpCapable(_) if syn && !ack => {
                        connections.push(Connection::default());
                        subflows.insert(
                            key,
                            Subflow {
                                connection: connections.len() - 1,
                                client_end: w.src,
                                isn: HashMap::from([(w.src, w.seq)]),
                                join: None,
                            },
                        );
                    }
                    MptcpOption::MpCapable(c) => {
                        let Some(subflow) = subflows.get_mut(&key) else {
                            report.fail(s.frame, "MP_CAPABLE on a subflow whose SYN is missing");
                            continue;
                        };
                        let from_client = w.src == subflow.client_end;
                        if syn {
                            subflow.isn.insert(w.src, w.seq);
                        }
                        let connection = &mut connections[subflow.connection];
                        let (sender_slot, receiver_slot) = if from_client {
                            (&mut connection.client_key, &mut connection.server_key)
                        } else {
                            (&mut connection.server_key, &mut connection.client_key)
                        };
                        for (slot, key, what) in [
                            (sender_slot, c.sender_key(), "sender"),
                            (receiver_slot, c.receiver_key(), "receiver"),
                        ] {
                            match (key, *slot) {
                                (Some(new), Some(old)) if new != old => report.fail(
                                    s.frame,
                                    format!("MP_CAPABLE {what} key {new:#x} differs from {old:#x}"),
                                ),
                                (Some(new), None) => *slot = Some(new),
                                _ => {}
                            }
                        }
                    }
                    MptcpOption::MpJoin(MpJoin::Syn { token, random, .. }) => {
                        let found = connections.iter().enumerate().find_map(|(i, c)| {
                            if c.server_key.map(token_from_key) == Some(*token) {
                                Some((i, w.src))
                            } else if c.client_key.map(token_from_key) == Some(*token) {
                                Some((i, w.dst))
                            } else {
                                None
                            }
                        });
                        let Some((connection, client_end)) = found else {
                            report.fail(
                                s.frame,
                                format!(
                                    "MP_JOIN SYN token {token:#010x} is no connection's key hash"
                                ),
                            );
                            continue;
                        };
                        counts.add("checked token (mp_join syn)");
                        subflows.insert(
                            key,
                            Subflow {
                                connection,
                                client_end,
                                isn: HashMap::from([(w.src, w.seq)]),
                                join: Some(JoinExchange {
                                    initiator: Some(w.src),
                                    token: *token,
                                    random_initiator: *random,
                                    ..Default::default()
                                }),
                            },
                        );
                    }
                    MptcpOption::MpJoin(join) => {
                        let Some(exchange) = subflows.get_mut(&key).and_then(|sf| {
                            if syn {
                                sf.isn.insert(w.src, w.seq);
                            }
                            sf.join.as_mut()
                        }) else {
                            report.fail(s.frame, "MP_JOIN on a subflow whose SYN is missing");
                            continue;
                        };
                        match join {
                            MpJoin::SynAck { hmac, random, .. } => {
                                exchange.random_responder = Some(*random);
                                exchange.hmac_64 = Some((s.frame, *hmac));
                            }
                            MpJoin::Ack { hmac, .. } => exchange.hmac_160 = Some((s.frame, *hmac)),
                            MpJoin::Syn { .. } => unreachable!("matched above"),
                        }
                    }
                    _ => {}
                }
            }
        }
        Topology {
            connections,
            subflows,
        }
    }

    fn subflow(&self, w: &Walked) -> Option<&Subflow> {
        self.subflows.get(&subflow_key(w.src, w.dst))
    }

    /// The key of a packet's sender and of its receiver, once both are known.
    fn keys_of(&self, w: &Walked) -> Option<(u64, u64)> {
        let subflow = self.subflow(w)?;
        let c = self.connections[subflow.connection];
        let (client, server) = (c.client_key?, c.server_key?);
        Some(if w.src == subflow.client_end {
            (client, server)
        } else {
            (server, client)
        })
    }

    /// A packet's connection and whether it goes from the connection's client to its server.
    fn direction_of(&self, w: &Walked) -> Option<(usize, bool)> {
        let subflow = self.subflow(w)?;
        Some((subflow.connection, w.src == subflow.client_end))
    }
}

/// The MP_JOIN SYN/ACK and third-ACK HMACs of every subflow, with a negative control on the
/// first of each.
fn check_join_hmacs(topology: &Topology, report: &mut Report, counts: &mut Counts) {
    let mut controlled_64 = false;
    let mut controlled_160 = false;
    for subflow in topology.subflows.values() {
        let Some(join) = &subflow.join else { continue };
        let c = topology.connections[subflow.connection];
        let (Some(client_key), Some(server_key)) = (c.client_key, c.server_key) else {
            continue;
        };
        let initiator_is_client = join.initiator == Some(subflow.client_end);
        let (initiator_key, responder_key) = if initiator_is_client {
            (client_key, server_key)
        } else {
            (server_key, client_key)
        };
        if join.token != token_from_key(responder_key) {
            report.fail(
                0,
                format!("MP_JOIN token {:#x} is not the responder's", join.token),
            );
        }
        let Some(random_responder) = join.random_responder else {
            continue;
        };
        if let Some((frame, hmac)) = join.hmac_64 {
            let check = |hmac| {
                check_join_hmac_64(
                    responder_key,
                    initiator_key,
                    random_responder,
                    join.random_initiator,
                    hmac,
                )
            };
            match check(hmac) {
                Ok(()) => counts.add("checked join hmac 64"),
                Err(e) => report.fail(frame, e),
            }
            if !controlled_64 {
                controlled_64 = true;
                assert!(
                    check(hmac ^ 0x0100).is_err(),
                    "negative control: a flipped SYN/ACK HMAC byte passed"
                );
            }
        }
        if let Some((frame, hmac)) = join.hmac_160 {
            let check = |hmac: &[u8; 20]| {
                check_join_hmac_160(
                    initiator_key,
                    responder_key,
                    join.random_initiator,
                    random_responder,
                    hmac,
                )
            };
            match check(&hmac) {
                Ok(()) => counts.add("checked join hmac 160"),
                Err(e) => report.fail(frame, e),
            }
            if !controlled_160 {
                controlled_160 = true;
                let mut flipped = hmac;
                flipped[19] ^= 0x01;
                assert!(
                    check(&flipped).is_err(),
                    "negative control: a flipped third-ACK HMAC byte passed"
                );
            }
        }
    }
}

/// Per packet: ADD_ADDR HMACs, MP_FASTCLOSE keys, DSNs and Data ACKs relative to the IDSN
/// (against Wireshark's), and where each direction's data starts.
fn check_derived_values(
    seen: &[Seen],
    topology: &Topology,
    report: &mut Report,
    counts: &mut Counts,
) {
    let mut controlled_add_addr = false;
    // Smallest relative DSN per connection and direction (over all subflows), and the
    // MP_CAPABLE data length that precedes the first DSS mapping (RFC 8684 section 3.1: that
    // data starts at IDSN + 1).
    let mut first_dsn: BTreeMap<(usize, bool), u64> = BTreeMap::new();
    let mut capable_data: HashMap<(usize, bool), u64> = HashMap::new();
    for s in seen {
        let w = &s.walked;
        let keys = topology.keys_of(w);
        let direction = topology.direction_of(w);
        for option in &s.options {
            match option {
                MptcpOption::AddAddr(a) if !a.echo => {
                    let Some((sender, receiver)) = keys else {
                        report.fail(s.frame, "ADD_ADDR before both keys are known");
                        continue;
                    };
                    match check_add_addr_hmac(sender, receiver, a) {
                        Ok(()) => counts.add("checked add_addr hmac"),
                        Err(e) => report.fail(s.frame, e),
                    }
                    if !controlled_add_addr && let Some(hmac) = a.hmac {
                        controlled_add_addr = true;
                        let flipped = AddAddr {
                            hmac: Some(hmac ^ 0x8000_0000),
                            ..*a
                        };
                        assert!(
                            check_add_addr_hmac(sender, receiver, &flipped).is_err(),
                            "negative control: a flipped ADD_ADDR HMAC byte passed"
                        );
                    }
                }
                MptcpOption::MpFastclose(fc) => match keys {
                    Some((_, receiver)) if receiver == fc.receiver_key => {
                        counts.add("checked fastclose receiver key")
                    }
                    other => report.fail(
                        s.frame,
                        format!(
                            "MP_FASTCLOSE carries key {:#x}, the receiver's is {:?}",
                            fc.receiver_key,
                            other.map(|k| k.1)
                        ),
                    ),
                },
                MptcpOption::MpCapable(c) => {
                    if let (MpCapableKeys::WithData { data_len, .. }, Some(direction)) =
                        (c.keys, direction)
                    {
                        capable_data.entry(direction).or_insert(u64::from(data_len));
                    }
                    // Compared in `compare_fields` ("mptcp.expected_token", "..._idsn").
                    if c.sender_key().is_some() {
                        counts.add("checked expected_token/idsn vs wireshark");
                    }
                }
                MptcpOption::Dss(dss) => {
                    let Some((sender, receiver)) = keys else {
                        continue;
                    };
                    if let Some(mapping) = &dss.mapping {
                        let relative = relative_to(mapping.data_seq, idsn_from_key(sender));
                        compare_relative(
                            s,
                            "mptcp.dss.dsn",
                            relative,
                            &s.wireshark_dsn,
                            report,
                            counts,
                        );
                        if let (true, Some(direction)) = (mapping.data_len > 0, direction) {
                            let entry = first_dsn.entry(direction).or_insert(relative);
                            *entry = (*entry).min(relative);
                        }
                    }
                    if let Some(ack) = dss.data_ack {
                        let relative = relative_to(ack, idsn_from_key(receiver));
                        compare_relative(
                            s,
                            "mptcp.ack",
                            relative,
                            &s.wireshark_ack,
                            report,
                            counts,
                        );
                    }
                }
                _ => {}
            }
        }
    }
    for (direction, first) in &first_dsn {
        let expected = 1 + capable_data.get(direction).copied().unwrap_or(0);
        let (connection, from_client) = direction;
        let end = format!(
            "connection {connection}, {}",
            if *from_client {
                "client to server"
            } else {
                "server to client"
            }
        );
        if *first == expected {
            counts.add("checked first dsn = idsn + 1");
        } else {
            report.fail(
                0,
                format!(
                    "first DSS mapping from {end} starts at IDSN + {first}, expected IDSN + \
                     {expected} (IDSN + 1, after {} MP_CAPABLE data bytes)",
                    expected - 1
                ),
            );
        }
    }
}

/// `seq` relative to `idsn`; a 4-octet number is compared in 32 bits.
fn relative_to(seq: DataSeq, idsn: u64) -> u64 {
    match seq {
        DataSeq::Long(v) => v.wrapping_sub(idsn),
        DataSeq::Short(v) => u64::from(v.wrapping_sub(idsn as u32)),
    }
}

/// Compares our relative number with Wireshark's, where Wireshark shows one (it needs both
/// keys, and shows one value per packet).
fn compare_relative(
    s: &Seen,
    field: &str,
    ours: u64,
    theirs: &[Value],
    report: &mut Report,
    counts: &mut Counts,
) {
    match theirs {
        [] => {}
        [Value::Num(v)] if *v == u128::from(ours) || *v == u128::from(ours as u32) => {
            counts.add("checked relative dsn/ack vs wireshark")
        }
        other => report.fail(
            s.frame,
            format!("{field}: ours (from the IDSN) {ours}, tshark {other:?}"),
        ),
    }
}

/// Verifies every DSS checksum (and MP_CAPABLE data checksum) over the mapped payload, where all
/// of that payload was captured.
fn check_dss_checksums(
    seen: &[Seen],
    topology: &Topology,
    report: &mut Report,
    counts: &mut Counts,
) {
    // Payload per sending endpoint of each subflow, by sequence number relative to its ISN.
    let mut streams: HashMap<(Endpoint, Endpoint), BTreeMap<u32, Vec<u8>>> = HashMap::new();
    for s in seen {
        let w = &s.walked;
        let (Some(payload), Some(subflow)) = (&s.payload, topology.subflow(w)) else {
            continue;
        };
        let Some(isn) = subflow.isn.get(&w.src) else {
            continue;
        };
        if !payload.is_empty() {
            streams
                .entry((w.src, w.dst))
                .or_default()
                .insert(w.seq.wrapping_sub(*isn), payload.clone());
        }
    }
    let mut controlled = false;
    for s in seen {
        let w = &s.walked;
        let Some((sender, _)) = topology.keys_of(w) else {
            continue;
        };
        let empty = BTreeMap::new();
        let stream = streams.get(&(w.src, w.dst)).unwrap_or(&empty);
        for option in &s.options {
            // (DSN, subflow sequence, data-level length, checksum, DATA_FIN)
            let mapping = match option {
                MptcpOption::Dss(dss) => dss.mapping.and_then(|m| {
                    let dsn = match m.data_seq {
                        DataSeq::Long(v) => v,
                        // The pseudo-header wants 64 bits; Linux always sends 8 octets.
                        DataSeq::Short(_) => return None,
                    };
                    Some((dsn, m.subflow_seq, m.data_len, m.checksum?, dss.data_fin))
                }),
                MptcpOption::MpCapable(MpCapable {
                    keys:
                        MpCapableKeys::WithData {
                            data_len,
                            checksum: Some(checksum),
                            ..
                        },
                    ..
                }) => Some((
                    idsn_from_key(sender).wrapping_add(1),
                    1,
                    *data_len,
                    *checksum,
                    false,
                )),
                _ => None,
            };
            let Some((dsn, ssn, data_len, captured, data_fin)) = mapping else {
                continue;
            };
            // A DATA_FIN takes one byte of the data-level length and none of the payload; a
            // mapping of only the DATA_FIN has subflow sequence 0.
            let payload_len = usize::from(data_len) - usize::from(data_fin && data_len > 0);
            let payload = if payload_len == 0 {
                Some(Vec::new())
            } else {
                stream_bytes(stream, ssn, payload_len)
            };
            let Some(payload) = payload else {
                report.fail(
                    s.frame,
                    format!(
                        "DSS checksum: payload of mapping ssn {ssn} len {data_len} not captured"
                    ),
                );
                continue;
            };
            match check_dss_checksum(dsn, ssn, data_len, &payload, captured) {
                Ok(()) => counts.add("checked dss checksum over the mapping"),
                Err(e) => report.fail(s.frame, e),
            }
            if !controlled {
                controlled = true;
                assert!(
                    check_dss_checksum(dsn, ssn, data_len, &payload, captured ^ 0x0010).is_err(),
                    "negative control: a flipped DSS checksum passed"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn codec_agrees_with_wireshark_on_kernel_mptcp_captures() {
    if !tshark_available() {
        return;
    }
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for name in FIXTURES {
        let path = fixtures_dir().join(format!("{name}.pcap"));
        assert!(path.exists(), "fixture {} is missing", path.display());
        let mut report = Report {
            fixture: name.to_owned(),
            failures: Vec::new(),
        };
        let mut counts = Counts::default();
        check_fixture(name, &path, &mut report, &mut counts);
        for kind in required(name) {
            if counts.get(kind) == 0 {
                report.failures.push(format!(
                    "{name}: no packet of kind {kind:?} (counts: {counts:?})"
                ));
            }
        }
        summary.push(format!("{name}: {:?}", counts.0));
        failures.extend(report.failures);
    }
    for line in &summary {
        eprintln!("{line}");
    }
    if !failures.is_empty() {
        let shown: Vec<&String> = failures.iter().take(60).collect();
        panic!(
            "{} disagreements between emptcp-wire and tshark (first {}):\n{}",
            failures.len(),
            shown.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The crypto checks themselves must fail on a wrong value, or the fixture checks prove nothing;
/// this runs without tshark and without fixtures.
#[test]
fn crypto_checks_reject_flipped_bytes() {
    let (key_a, key_b, r_a, r_b) = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210, 7, 9);
    let hmac = join_hmac_64(key_b, key_a, r_b, r_a);
    assert!(check_join_hmac_64(key_b, key_a, r_b, r_a, hmac).is_ok());
    assert!(check_join_hmac_64(key_b, key_a, r_b, r_a, hmac ^ 1).is_err());
    let mut long = join_hmac_160(key_a, key_b, r_a, r_b);
    assert!(check_join_hmac_160(key_a, key_b, r_a, r_b, &long).is_ok());
    long[0] ^= 0x80;
    assert!(check_join_hmac_160(key_a, key_b, r_a, r_b, &long).is_err());
    let add = AddAddr {
        echo: false,
        address_id: 1,
        address: IpAddr::V4(Ipv4Addr::new(10, 77, 4, 1)),
        port: Some(10011),
        hmac: Some(add_addr_hmac(
            key_a,
            key_b,
            1,
            IpAddr::V4(Ipv4Addr::new(10, 77, 4, 1)),
            Some(10011),
        )),
        reserved: 0,
    };
    assert!(check_add_addr_hmac(key_a, key_b, &add).is_ok());
    let flipped = AddAddr {
        hmac: add.hmac.map(|h| h ^ 0x0100),
        ..add
    };
    assert!(check_add_addr_hmac(key_a, key_b, &flipped).is_err());
    let payload = b"hello, mptcp";
    let csum = checksum::dss_checksum(1000, 1, payload.len() as u16, payload);
    assert!(check_dss_checksum(1000, 1, payload.len() as u16, payload, csum).is_ok());
    assert!(check_dss_checksum(1000, 1, payload.len() as u16, payload, csum ^ 0x100).is_err());
}
