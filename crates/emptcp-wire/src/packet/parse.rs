//! [`ParsedPacket`]: a frame taken apart, with each layer's offset.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use super::build::{ChecksumMode, PacketBuilder};
use super::headers::{
    EthernetHeader, IpHeader, Ipv4Header, Ipv6Extension, Ipv6Header, TcpFlags, TcpHeader, VlanTag,
    ethertype, ipv6_ext,
};
use super::{ChecksumCheck, ChecksumReport};
use crate::checksum::{self, IPPROTO_TCP};
use crate::error::{Error, ErrorKind, Result};
use crate::mptcp::{MptcpOption, MptcpVersion};
use crate::reader::Reader;
use crate::tcp_opt::{self, LocatedOption};

/// Where each layer starts, in bytes from the start of the parsed buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LayerOffsets {
    /// The Ethernet header; `None` for a bare IP packet.
    pub l2: Option<usize>,
    /// The IP header.
    pub l3: usize,
    /// The TCP header.
    pub l4: usize,
    /// The TCP option area (`l4 + 20`).
    pub tcp_options: usize,
    /// The TCP payload (end of the option area).
    pub payload: usize,
    /// The end of the IP packet (of the buffer, for a capture cut short); any bytes after it
    /// are the trailer.
    pub end: usize,
}

/// A parsed TCP frame or packet.
///
/// Parsing fails (with the offset of the fault) only when the layers cannot be found: unknown
/// EtherType, more than two VLAN tags, bad IP version, IHL, length or data offset, not TCP, a
/// non-first fragment, or truncation. Malformed TCP options do not fail the parse: they are in
/// [`ParsedPacket::options`] as an error, so negative tests can still look at the packet.
///
/// Lengths must be consistent (the IP length covers the TCP header and ends inside the buffer);
/// the bytes after the IP length are kept as the trailer. For captures cut short by a snap
/// length, [`ParsedPacket::parse_capture`] accepts a payload that ends early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPacket {
    /// The Ethernet header, if the buffer had one.
    pub ethernet: Option<EthernetHeader>,
    /// The VLAN tags, outermost first.
    pub vlans: Vec<VlanTag>,
    /// The IP header.
    pub ip: IpHeader,
    /// The TCP header.
    pub tcp: TcpHeader,
    /// The layer offsets.
    pub offsets: LayerOffsets,
    /// The decoded option area, or its first malformed option.
    options: Result<Vec<LocatedOption>>,
    /// The IPv4 header checksum as found; `None` for IPv6.
    pub ipv4_checksum: Option<u16>,
    /// The TCP checksum as found.
    pub tcp_checksum: u16,
    /// The IPv4 total length or IPv6 payload length as found.
    ip_length: u16,
    /// Bytes of the IP packet that the buffer lacks (a capture cut short).
    missing: usize,
    bytes: Vec<u8>,
}

/// Whether the buffer must hold the whole IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    /// The IP length must end inside the buffer.
    Whole,
    /// The buffer may end before the IP length does, but not before the TCP options end.
    MayBeCut,
}

impl ParsedPacket {
    /// Parses an Ethernet frame (with up to two 802.1Q / 802.1ad tags).
    pub fn parse(frame: &[u8]) -> Result<ParsedPacket> {
        parse_l2(frame, Capture::Whole)
    }

    /// Parses an Ethernet frame from a capture whose snap length may have cut the payload:
    /// headers and TCP options must be whole, the payload may end early
    /// ([`ParsedPacket::missing_bytes`] says how much is absent).
    pub fn parse_capture(frame: &[u8]) -> Result<ParsedPacket> {
        parse_l2(frame, Capture::MayBeCut)
    }

    /// Parses a bare IP packet (no link header); the version nibble says IPv4 or IPv6.
    pub fn parse_ip(packet: &[u8]) -> Result<ParsedPacket> {
        parse_l3(packet, 0, None, Capture::Whole)
    }

    /// [`ParsedPacket::parse_capture`] for a bare IP packet.
    pub fn parse_ip_capture(packet: &[u8]) -> Result<ParsedPacket> {
        parse_l3(packet, 0, None, Capture::MayBeCut)
    }

    /// Bytes of the IP packet absent from the buffer: 0 unless parsed from a capture cut short.
    pub fn missing_bytes(&self) -> usize {
        self.missing
    }

    /// The whole buffer as parsed.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn slice(&self, range: Range<usize>) -> &[u8] {
        self.bytes.get(range).unwrap_or_default()
    }

    /// The TCP option area.
    pub fn option_area(&self) -> &[u8] {
        self.slice(self.offsets.tcp_options..self.offsets.payload)
    }

    /// The TCP payload.
    pub fn payload(&self) -> &[u8] {
        self.slice(self.offsets.payload..self.offsets.end)
    }

    /// The TCP segment: header, options and payload.
    pub fn segment(&self) -> &[u8] {
        self.slice(self.offsets.l4..self.offsets.end)
    }

    /// The bytes after the IP packet.
    pub fn trailer(&self) -> &[u8] {
        self.slice(self.offsets.end..self.bytes.len())
    }

    /// The TCP options with their offsets inside the option area, decoded with RFC 8684 formats
    /// (see [`ParsedPacket::options_versioned`]); or the first malformed option, its error offset
    /// counted from the start of the buffer.
    pub fn options(&self) -> Result<&[LocatedOption]> {
        self.options.as_deref().map_err(Clone::clone)
    }

    /// Decodes the option area again with the MPTCP formats of `version` (ADD_ADDR differs).
    pub fn options_versioned(&self, version: MptcpVersion) -> Result<Vec<LocatedOption>> {
        tcp_opt::parse_located(self.option_area(), version)
            .map_err(|e| e.rebased(self.offsets.tcp_options))
    }

    /// The MPTCP options, in order (none if the option area is malformed).
    pub fn mptcp_options(&self) -> impl Iterator<Item = &MptcpOption> {
        self.options
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|located| located.option.as_mptcp())
    }

    /// The IPv4 header checksum and the TCP checksum, as found and as computed. For a capture
    /// cut short the TCP values cover only the captured bytes and mean nothing.
    pub fn checksums(&self) -> ChecksumReport {
        let segment = self.segment();
        let tcp_found = self.tcp_checksum;
        let (pseudo, tcp_expected) = match &self.ip {
            IpHeader::V4(v4) => (
                checksum::pseudo_header_sum_v4(v4.src, v4.dst, IPPROTO_TCP, segment.len() as u16),
                checksum::tcp_checksum_v4(v4.src, v4.dst, segment),
            ),
            IpHeader::V6(v6) => {
                let dst = v6.final_destination();
                (
                    checksum::pseudo_header_sum_v6(v6.src, dst, segment.len() as u32, IPPROTO_TCP),
                    checksum::tcp_checksum_v6(v6.src, dst, segment),
                )
            }
        };
        let tcp = ChecksumCheck {
            found: tcp_found,
            expected: tcp_expected,
            valid: checksum::verifies(checksum::add(pseudo, checksum::sum(segment))),
        };
        let ipv4_header = self.ipv4_checksum.map(|found| {
            let header = self.slice(self.offsets.l3..self.offsets.l4);
            ChecksumCheck {
                found,
                expected: checksum::ipv4_header_checksum(header),
                valid: checksum::verifies(checksum::sum(header)),
            }
        });
        ChecksumReport { ipv4_header, tcp }
    }

    /// Checks both checksums; the error says which are wrong, with found and expected values.
    /// A capture cut short cannot be checked: that is a `Truncated` error at its end.
    pub fn verify_checksums(&self) -> Result<()> {
        if self.missing > 0 {
            return Err(Error::at(
                self.offsets.end,
                ErrorKind::Truncated {
                    needed: self.missing,
                    available: 0,
                },
            ));
        }
        let report = self.checksums();
        if report.is_valid() {
            Ok(())
        } else {
            Err(Error::at(self.offsets.l3, ErrorKind::BadChecksum(report)))
        }
    }

    /// A builder that reproduces this packet byte for byte (checksums as found); set its
    /// checksum modes to [`ChecksumMode::Correct`] to repair them.
    pub fn to_builder(&self) -> PacketBuilder {
        let mut builder = match &self.ip {
            IpHeader::V4(v4) => PacketBuilder::ipv4(v4.src, v4.dst),
            IpHeader::V6(v6) => PacketBuilder::ipv6(v6.src, v6.dst),
        };
        builder.ethernet = self.ethernet;
        builder.vlans = self.vlans.clone();
        builder.ip = self.ip.clone();
        builder.tcp = self.tcp;
        builder.tcp_options = self.option_area().to_vec();
        builder.payload = self.payload().to_vec();
        builder.trailer = self.trailer().to_vec();
        builder.ipv4_checksum = self
            .ipv4_checksum
            .map_or(ChecksumMode::Correct, ChecksumMode::Value);
        builder.tcp_checksum = ChecksumMode::Value(self.tcp_checksum);
        if self.missing > 0 {
            builder.ip_length = Some(self.ip_length);
        }
        builder
    }
}

/// Parses the Ethernet header and VLAN tags, then the rest.
fn parse_l2(frame: &[u8], capture: Capture) -> Result<ParsedPacket> {
    let mut reader = Reader::new(frame);
    let ethernet = EthernetHeader {
        dst: reader.array()?,
        src: reader.array()?,
    };
    let mut vlans = Vec::new();
    let mut ether_type = reader.u16()?;
    while ether_type == ethertype::VLAN || ether_type == ethertype::QINQ {
        if vlans.len() == 2 {
            return Err(Error::at(reader.offset() - 2, ErrorKind::TooManyVlanTags));
        }
        vlans.push(VlanTag {
            tpid: ether_type,
            tci: reader.u16()?,
        });
        ether_type = reader.u16()?;
    }
    let version = match ether_type {
        ethertype::IPV4 => 4,
        ethertype::IPV6 => 6,
        other => {
            return Err(Error::at(
                reader.offset() - 2,
                ErrorKind::UnsupportedEtherType(other),
            ));
        }
    };
    let mut parsed = parse_l3(frame, reader.offset(), Some(version), capture)?;
    parsed.ethernet = Some(ethernet);
    parsed.vlans = vlans;
    parsed.offsets.l2 = Some(0);
    Ok(parsed)
}

/// Parses from the IP header at `l3` to the end; `expected_version` comes from the EtherType.
fn parse_l3(
    buf: &[u8],
    l3: usize,
    expected_version: Option<u8>,
    capture: Capture,
) -> Result<ParsedPacket> {
    let packet = buf.get(l3..).unwrap_or_default();
    let first = *packet.first().ok_or_else(|| {
        Error::at(
            l3,
            ErrorKind::Truncated {
                needed: 1,
                available: 0,
            },
        )
    })?;
    let version = first >> 4;
    if let Some(expected) = expected_version.filter(|v| *v != version) {
        return Err(Error::at(
            l3,
            ErrorKind::IpVersionMismatch {
                expected,
                found: version,
            },
        ));
    }
    let network = match version {
        4 => parse_ipv4(packet, capture).map_err(|e| e.rebased(l3))?,
        6 => parse_ipv6(packet, capture).map_err(|e| e.rebased(l3))?,
        found => {
            return Err(Error::at(
                l3,
                ErrorKind::IpVersionMismatch { expected: 4, found },
            ));
        }
    };
    let Network {
        ip,
        ipv4_checksum,
        ip_length,
        missing,
        l4,
        end,
    } = network.rebased(l3);
    let tcp = parse_tcp(buf, l4, end)?;
    let options = tcp_opt::parse_located(
        buf.get(tcp.options.clone()).unwrap_or_default(),
        MptcpVersion::V1,
    )
    .map_err(|e| e.rebased(tcp.options.start));
    Ok(ParsedPacket {
        ethernet: None,
        vlans: Vec::new(),
        ip,
        tcp: tcp.header,
        offsets: LayerOffsets {
            l2: None,
            l3,
            l4,
            tcp_options: tcp.options.start,
            payload: tcp.options.end,
            end,
        },
        options,
        ipv4_checksum,
        tcp_checksum: tcp.checksum,
        ip_length,
        missing,
        bytes: buf.to_vec(),
    })
}

/// The network layer of a packet, with offsets relative to the IP header until rebased.
struct Network {
    ip: IpHeader,
    ipv4_checksum: Option<u16>,
    /// The length field as found.
    ip_length: u16,
    /// Bytes the IP length covers beyond the buffer.
    missing: usize,
    l4: usize,
    /// The end of the IP packet, or of the buffer if that comes first.
    end: usize,
}

impl Network {
    fn rebased(self, base: usize) -> Network {
        Network {
            l4: self.l4 + base,
            end: self.end + base,
            ..self
        }
    }
}

/// The error for an IP length that cannot hold `headers` bytes or runs past `available`.
fn bad_ip_length(at: usize, declared: usize, available: usize, headers: usize) -> Error {
    Error::at(
        at,
        ErrorKind::BadIpLength {
            declared,
            available,
            headers,
        },
    )
}

/// The minimum TCP header.
const TCP_HEADER: usize = 20;

/// Where the packet's bytes end: at `declared`, or earlier if the capture was cut short.
fn captured_end(declared: usize, available: usize, capture: Capture) -> Option<usize> {
    match capture {
        _ if declared <= available => Some(declared),
        Capture::MayBeCut => Some(available),
        Capture::Whole => None,
    }
}

fn parse_ipv4(packet: &[u8], capture: Capture) -> Result<Network> {
    let mut reader = Reader::new(packet);
    let ihl = reader.u8()? & 0x0f;
    let header_len = usize::from(ihl) * 4;
    if ihl < 5 || header_len > packet.len() {
        return Err(Error::at(0, ErrorKind::BadIpv4HeaderLength { ihl }));
    }
    let dscp_ecn = reader.u8()?;
    let total_length = reader.u16()?;
    let identification = reader.u16()?;
    let flags_fragment = reader.u16()?;
    let ttl = reader.u8()?;
    let protocol = reader.u8()?;
    let header_checksum = reader.u16()?;
    let src = Ipv4Addr::from(reader.array::<4>()?);
    let dst = Ipv4Addr::from(reader.array::<4>()?);
    let options = reader.take(header_len - 20)?.to_vec();
    if protocol != IPPROTO_TCP {
        return Err(Error::at(9, ErrorKind::NotTcp { protocol }));
    }
    let header = Ipv4Header {
        dscp_ecn,
        identification,
        flags_fragment,
        ttl,
        protocol,
        src,
        dst,
        options,
    };
    if header.fragment_offset() != 0 {
        return Err(Error::at(
            6,
            ErrorKind::NonFirstFragment {
                fragment_offset: header.fragment_offset(),
            },
        ));
    }
    let declared = usize::from(total_length);
    let headers = header_len + TCP_HEADER;
    let end = captured_end(declared, packet.len(), capture)
        .filter(|_| declared >= headers)
        .ok_or_else(|| bad_ip_length(2, declared, packet.len(), headers))?;
    Ok(Network {
        ip: IpHeader::V4(header),
        ipv4_checksum: Some(header_checksum),
        ip_length: total_length,
        missing: declared - end,
        l4: header_len,
        end,
    })
}

fn parse_ipv6(packet: &[u8], capture: Capture) -> Result<Network> {
    let mut reader = Reader::new(packet);
    let version_class_flow = reader.u32()?;
    let payload_length = reader.u16()?;
    let mut next_header = reader.u8()?;
    let hop_limit = reader.u8()?;
    let src = Ipv6Addr::from(reader.array::<16>()?);
    let dst = Ipv6Addr::from(reader.array::<16>()?);
    // A zero payload length means a jumbogram (RFC 2675), which never carries test traffic.
    let declared = 40 + usize::from(payload_length);
    let end = captured_end(declared, packet.len(), capture)
        .filter(|_| payload_length != 0)
        .ok_or_else(|| bad_ip_length(4, declared, packet.len(), 40 + TCP_HEADER))?;
    let within = packet.get(..end).unwrap_or_default();
    let mut reader = Reader::new(within);
    reader.take(40)?;
    let mut extensions = Vec::new();
    // Each extension header is at least 8 bytes, so this ends within the payload length.
    loop {
        let header_start = reader.offset();
        let extension = match next_header {
            ipv6_ext::HOP_BY_HOP | ipv6_ext::DESTINATION_OPTIONS | ipv6_ext::ROUTING => {
                let next = reader.u8()?;
                let body_len = usize::from(reader.u8()?) * 8 + 6;
                let extension = match next_header {
                    ipv6_ext::HOP_BY_HOP => {
                        Ipv6Extension::HopByHop(reader.take(body_len)?.to_vec())
                    }
                    ipv6_ext::DESTINATION_OPTIONS => {
                        Ipv6Extension::DestinationOptions(reader.take(body_len)?.to_vec())
                    }
                    _ => Ipv6Extension::Routing {
                        routing_type: reader.u8()?,
                        segments_left: reader.u8()?,
                        data: reader.take(body_len - 2)?.to_vec(),
                    },
                };
                next_header = next;
                extension
            }
            ipv6_ext::FRAGMENT => {
                next_header = reader.u8()?;
                let reserved = reader.u8()?;
                let offset_flags = reader.u16()?;
                let identification = reader.u32()?;
                let fragment_offset = offset_flags >> 3;
                if fragment_offset != 0 {
                    return Err(Error::at(
                        header_start + 2,
                        ErrorKind::NonFirstFragment { fragment_offset },
                    ));
                }
                Ipv6Extension::Fragment {
                    fragment_offset,
                    more_fragments: offset_flags & 1 != 0,
                    identification,
                    reserved,
                    reserved_bits: ((offset_flags >> 1) & 3) as u8,
                }
            }
            IPPROTO_TCP => break,
            protocol => {
                let at = match extensions.is_empty() {
                    true => 6,
                    false => header_start,
                };
                return Err(Error::at(at, ErrorKind::NotTcp { protocol }));
            }
        };
        extensions.push(extension);
    }
    let l4 = reader.offset();
    if declared < l4 + TCP_HEADER {
        return Err(bad_ip_length(4, declared, packet.len(), l4 + TCP_HEADER));
    }
    let header = Ipv6Header {
        traffic_class: (version_class_flow >> 20) as u8,
        flow_label: version_class_flow & 0x000f_ffff,
        hop_limit,
        src,
        dst,
        extensions,
        upper_protocol: IPPROTO_TCP,
    };
    Ok(Network {
        ip: IpHeader::V6(header),
        ipv4_checksum: None,
        ip_length: payload_length,
        missing: declared - end,
        l4,
        end,
    })
}

struct Tcp {
    header: TcpHeader,
    checksum: u16,
    options: Range<usize>,
}

fn parse_tcp(buf: &[u8], l4: usize, end: usize) -> Result<Tcp> {
    let segment = buf.get(l4..end).unwrap_or_default();
    let mut reader = Reader::with_base(segment, l4);
    let src_port = reader.u16()?;
    let dst_port = reader.u16()?;
    let seq = reader.u32()?;
    let ack = reader.u32()?;
    let offset_byte = reader.u8()?;
    let flags = TcpFlags(reader.u8()?);
    let window = reader.u16()?;
    let checksum = reader.u16()?;
    let urgent_ptr = reader.u16()?;
    let data_offset = offset_byte >> 4;
    let header_len = usize::from(data_offset) * 4;
    if data_offset < 5 || header_len > segment.len() {
        return Err(Error::at(l4 + 12, ErrorKind::BadDataOffset { data_offset }));
    }
    Ok(Tcp {
        header: TcpHeader {
            src_port,
            dst_port,
            seq,
            ack,
            flags,
            reserved: offset_byte & 0x0f,
            window,
            urgent_ptr,
        },
        checksum,
        options: l4 + TCP_HEADER..l4 + header_len,
    })
}
