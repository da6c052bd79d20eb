//! [`PacketBuilder`]: whole frames with right lengths and checksums, or deliberately wrong ones.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::headers::{
    EthernetHeader, IpHeader, Ipv4Header, Ipv6Extension, Ipv6Header, TcpFlags, TcpHeader, VlanTag,
    ethertype,
};
use crate::checksum;
use crate::error::{Error, ErrorKind, Result};
use crate::tcp_opt::{MAX_OPTION_AREA, TcpOption};

/// What a builder writes into a checksum field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChecksumMode {
    /// The right checksum.
    #[default]
    Correct,
    /// The right checksum with its lowest bit flipped: always fails the receiver's check (a
    /// change of one never turns a checksum into its other zero, `0x0000` <-> `0xffff`).
    Wrong,
    /// This exact value.
    Value(u16),
}

impl ChecksumMode {
    fn apply(self, correct: u16) -> u16 {
        match self {
            ChecksumMode::Correct => correct,
            ChecksumMode::Wrong => correct ^ 1,
            ChecksumMode::Value(value) => value,
        }
    }
}

/// Builds a frame (or a bare IP packet) carrying one TCP segment.
///
/// Lengths, IHL, data offset, the next-header chain, the EtherType and both checksums are
/// computed unless overridden. The TCP option area is padded with zero bytes (End of Option
/// List, RFC 9293) to a multiple of 4.
///
/// ```
/// use std::net::Ipv4Addr;
/// use emptcp_wire::mptcp::{MpCapable, MpCapableKeys};
/// use emptcp_wire::packet::{PacketBuilder, ParsedPacket, TcpFlags, VlanTag};
/// use emptcp_wire::tcp_opt::TcpOption;
///
/// let syn = MpCapable { version: 1, flags: MpCapable::FLAG_HMAC_SHA256, keys: MpCapableKeys::None };
/// let frame = PacketBuilder::ipv4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))
///     .vlan(VlanTag::dot1q(100))
///     .ports(40000, 80)
///     .flags(TcpFlags::SYN)
///     .option(TcpOption::Mss(1460))
///     .option(TcpOption::Mptcp(syn.into()))
///     .build()?;
/// let parsed = ParsedPacket::parse(&frame)?;
/// parsed.verify_checksums()?;
/// assert_eq!(parsed.offsets.tcp_options, 14 + 4 + 20 + 20);
/// assert_eq!(parsed.options()?[1].offset, 4);
/// # Ok::<(), emptcp_wire::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketBuilder {
    /// The Ethernet header; `None` builds a bare IP packet.
    pub ethernet: Option<EthernetHeader>,
    /// Up to two VLAN tags, outermost first.
    pub vlans: Vec<VlanTag>,
    /// The IP header.
    pub ip: IpHeader,
    /// The TCP header.
    pub tcp: TcpHeader,
    /// The raw TCP option area (before padding), so that malformed options can be built too.
    pub tcp_options: Vec<u8>,
    /// The TCP payload.
    pub payload: Vec<u8>,
    /// Bytes after the IP packet, such as Ethernet padding.
    pub trailer: Vec<u8>,
    /// The IPv4 header checksum to write (ignored for IPv6).
    pub ipv4_checksum: ChecksumMode,
    /// The TCP checksum to write.
    pub tcp_checksum: ChecksumMode,
    /// Overrides the IPv4 total length or the IPv6 payload length.
    pub ip_length: Option<u16>,
    /// Overrides the TCP data offset nibble.
    pub data_offset: Option<u8>,
    /// The first error of a chained call, reported by [`PacketBuilder::build`].
    deferred: Option<Error>,
}

impl PacketBuilder {
    fn with_ip(ip: IpHeader) -> Self {
        PacketBuilder {
            ethernet: Some(EthernetHeader::default()),
            vlans: Vec::new(),
            ip,
            tcp: TcpHeader::default(),
            tcp_options: Vec::new(),
            payload: Vec::new(),
            trailer: Vec::new(),
            ipv4_checksum: ChecksumMode::Correct,
            tcp_checksum: ChecksumMode::Correct,
            ip_length: None,
            data_offset: None,
            deferred: None,
        }
    }

    /// An Ethernet/IPv4/TCP frame with the defaults of [`Ipv4Header::new`],
    /// [`EthernetHeader::default`] and [`TcpHeader::default`].
    pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        PacketBuilder::with_ip(IpHeader::V4(Ipv4Header::new(src, dst)))
    }

    /// An Ethernet/IPv6/TCP frame with the defaults of [`Ipv6Header::new`],
    /// [`EthernetHeader::default`] and [`TcpHeader::default`].
    pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        PacketBuilder::with_ip(IpHeader::V6(Ipv6Header::new(src, dst)))
    }

    fn defer(&mut self, error: Error) {
        self.deferred.get_or_insert(error);
    }

    /// Sets the Ethernet addresses.
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.ethernet = Some(EthernetHeader { dst, src });
        self
    }

    /// Builds a bare IP packet, without Ethernet header or VLAN tags.
    pub fn without_ethernet(mut self) -> Self {
        self.ethernet = None;
        self
    }

    /// Adds a VLAN tag inside those already added.
    pub fn vlan(mut self, tag: VlanTag) -> Self {
        self.vlans.push(tag);
        self
    }

    /// Sets the IPv4 TTL or the IPv6 hop limit.
    pub fn ttl(mut self, ttl: u8) -> Self {
        match &mut self.ip {
            IpHeader::V4(v4) => v4.ttl = ttl,
            IpHeader::V6(v6) => v6.hop_limit = ttl,
        }
        self
    }

    /// Sets the IPv4 options (a multiple of 4 bytes, at most 40); an error for IPv6.
    pub fn ipv4_options(mut self, options: impl Into<Vec<u8>>) -> Self {
        match &mut self.ip {
            IpHeader::V4(v4) => v4.options = options.into(),
            IpHeader::V6(_) => self.defer(Error::unencodable("ipv4 options on an ipv6 packet")),
        }
        self
    }

    /// Appends an IPv6 extension header; an error for IPv4.
    pub fn ipv6_extension(mut self, extension: Ipv6Extension) -> Self {
        match &mut self.ip {
            IpHeader::V6(v6) => v6.extensions.push(extension),
            IpHeader::V4(_) => self.defer(Error::unencodable("ipv6 extension on an ipv4 packet")),
        }
        self
    }

    /// Sets the TCP ports.
    pub fn ports(mut self, src: u16, dst: u16) -> Self {
        self.tcp.src_port = src;
        self.tcp.dst_port = dst;
        self
    }

    /// Sets the sequence number.
    pub fn seq(mut self, seq: u32) -> Self {
        self.tcp.seq = seq;
        self
    }

    /// Sets the acknowledgment number.
    pub fn ack(mut self, ack: u32) -> Self {
        self.tcp.ack = ack;
        self
    }

    /// Sets the TCP flags.
    pub fn flags(mut self, flags: TcpFlags) -> Self {
        self.tcp.flags = flags;
        self
    }

    /// Sets the window.
    pub fn window(mut self, window: u16) -> Self {
        self.tcp.window = window;
        self
    }

    /// Appends one option to the TCP option area.
    pub fn option(mut self, option: TcpOption) -> Self {
        if let Err(error) = option.write_to(&mut self.tcp_options) {
            self.defer(error);
        }
        self
    }

    /// Appends options to the TCP option area.
    pub fn options(self, options: impl IntoIterator<Item = TcpOption>) -> Self {
        options.into_iter().fold(self, PacketBuilder::option)
    }

    /// Replaces the TCP option area with these bytes, well formed or not.
    pub fn raw_options(mut self, area: impl Into<Vec<u8>>) -> Self {
        self.tcp_options = area.into();
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    /// Sets bytes to append after the IP packet.
    pub fn trailer(mut self, trailer: impl Into<Vec<u8>>) -> Self {
        self.trailer = trailer.into();
        self
    }

    /// Chooses the IPv4 header checksum.
    pub fn ipv4_checksum(mut self, mode: ChecksumMode) -> Self {
        self.ipv4_checksum = mode;
        self
    }

    /// Chooses the TCP checksum.
    pub fn tcp_checksum(mut self, mode: ChecksumMode) -> Self {
        self.tcp_checksum = mode;
        self
    }

    /// Overrides the IPv4 total length or IPv6 payload length.
    pub fn ip_length(mut self, length: u16) -> Self {
        self.ip_length = Some(length);
        self
    }

    /// Overrides the TCP data offset (in 32-bit words; only the low 4 bits are written).
    pub fn data_offset(mut self, words: u8) -> Self {
        self.data_offset = Some(words);
        self
    }

    /// The bytes of the frame or packet.
    pub fn build(&self) -> Result<Vec<u8>> {
        if let Some(error) = &self.deferred {
            return Err(error.clone());
        }
        let mut segment = self.tcp_segment()?;
        let mut frame = self.link_header()?;
        match &self.ip {
            IpHeader::V4(v4) => {
                let header = self.ipv4_header(v4, segment.len())?;
                let correct = checksum::tcp_checksum_v4(v4.src, v4.dst, &segment);
                set_checksum(&mut segment, 16, self.tcp_checksum.apply(correct));
                frame.extend(header);
            }
            IpHeader::V6(v6) => {
                let header = self.ipv6_header(v6, segment.len())?;
                let dst = v6.final_destination();
                let correct = checksum::tcp_checksum_v6(v6.src, dst, &segment);
                set_checksum(&mut segment, 16, self.tcp_checksum.apply(correct));
                frame.extend(header);
            }
        }
        frame.extend(segment);
        frame.extend_from_slice(&self.trailer);
        Ok(frame)
    }

    fn link_header(&self) -> Result<Vec<u8>> {
        let Some(ethernet) = &self.ethernet else {
            if !self.vlans.is_empty() {
                return Err(Error::unencodable("vlan tags without ethernet"));
            }
            return Ok(Vec::new());
        };
        if self.vlans.len() > 2 {
            return Err(Error::encode(ErrorKind::TooManyVlanTags));
        }
        let mut out = Vec::with_capacity(14 + 4 * self.vlans.len());
        out.extend(ethernet.dst);
        out.extend(ethernet.src);
        for tag in &self.vlans {
            out.extend(tag.tpid.to_be_bytes());
            out.extend(tag.tci.to_be_bytes());
        }
        let ip_type = match self.ip {
            IpHeader::V4(_) => ethertype::IPV4,
            IpHeader::V6(_) => ethertype::IPV6,
        };
        out.extend(ip_type.to_be_bytes());
        Ok(out)
    }

    fn tcp_segment(&self) -> Result<Vec<u8>> {
        let mut area = self.tcp_options.clone();
        area.resize(area.len().next_multiple_of(4), 0);
        if area.len() > MAX_OPTION_AREA {
            return Err(Error::encode(ErrorKind::BadLayout {
                what: "tcp option area",
                length: area.len(),
            }));
        }
        let tcp = &self.tcp;
        let data_offset = self.data_offset.unwrap_or((5 + area.len() / 4) as u8);
        let mut out = Vec::with_capacity(20 + area.len() + self.payload.len());
        out.extend(tcp.src_port.to_be_bytes());
        out.extend(tcp.dst_port.to_be_bytes());
        out.extend(tcp.seq.to_be_bytes());
        out.extend(tcp.ack.to_be_bytes());
        out.push(((data_offset & 0x0f) << 4) | (tcp.reserved & 0x0f));
        out.push(tcp.flags.0);
        out.extend(tcp.window.to_be_bytes());
        out.extend([0, 0]);
        out.extend(tcp.urgent_ptr.to_be_bytes());
        out.extend(area);
        out.extend_from_slice(&self.payload);
        Ok(out)
    }

    fn ipv4_header(&self, v4: &Ipv4Header, segment_len: usize) -> Result<Vec<u8>> {
        let options_len = v4.options.len();
        if options_len > 40 || !options_len.is_multiple_of(4) {
            return Err(Error::encode(ErrorKind::BadLayout {
                what: "ipv4 options",
                length: options_len,
            }));
        }
        let header_len = 20 + options_len;
        let total = header_len + segment_len;
        let total = match self.ip_length {
            Some(length) => length,
            None => u16::try_from(total).map_err(|_| {
                Error::encode(ErrorKind::BadLayout {
                    what: "ipv4 packet",
                    length: total,
                })
            })?,
        };
        let mut out = Vec::with_capacity(header_len);
        out.push(0x40 | (header_len / 4) as u8);
        out.push(v4.dscp_ecn);
        out.extend(total.to_be_bytes());
        out.extend(v4.identification.to_be_bytes());
        out.extend(v4.flags_fragment.to_be_bytes());
        out.push(v4.ttl);
        out.push(v4.protocol);
        out.extend([0, 0]);
        out.extend(v4.src.octets());
        out.extend(v4.dst.octets());
        out.extend_from_slice(&v4.options);
        let correct = checksum::ipv4_header_checksum(&out);
        set_checksum(&mut out, 10, self.ipv4_checksum.apply(correct));
        Ok(out)
    }

    fn ipv6_header(&self, v6: &Ipv6Header, segment_len: usize) -> Result<Vec<u8>> {
        let extensions = ipv6_extensions(v6)?;
        let payload_len = extensions.len() + segment_len;
        let payload_len = match self.ip_length {
            Some(length) => length,
            None => u16::try_from(payload_len).map_err(|_| {
                Error::encode(ErrorKind::BadLayout {
                    what: "ipv6 payload",
                    length: payload_len,
                })
            })?,
        };
        let first_next = v6
            .extensions
            .first()
            .map_or(v6.upper_protocol, Ipv6Extension::header_type);
        let mut out = Vec::with_capacity(40 + extensions.len());
        let version_class_flow =
            (6u32 << 28) | (u32::from(v6.traffic_class) << 20) | (v6.flow_label & 0x000f_ffff);
        out.extend(version_class_flow.to_be_bytes());
        out.extend(payload_len.to_be_bytes());
        out.push(first_next);
        out.push(v6.hop_limit);
        out.extend(v6.src.octets());
        out.extend(v6.dst.octets());
        out.extend(extensions);
        Ok(out)
    }
}

/// Serializes the extension headers, each announcing the next one, the last one announcing
/// the upper-layer protocol.
fn ipv6_extensions(v6: &Ipv6Header) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let nexts = v6
        .extensions
        .iter()
        .skip(1)
        .map(Ipv6Extension::header_type)
        .chain([v6.upper_protocol]);
    for (extension, next) in v6.extensions.iter().zip(nexts) {
        let bad_length = |what| {
            Error::encode(ErrorKind::BadLayout {
                what,
                length: extension.wire_len(),
            })
        };
        // Hdr Ext Len counts 8-byte units after the first 8 (RFC 8200 section 4.3).
        let ext_len = |total: usize, what| {
            if total.is_multiple_of(8) {
                u8::try_from(total / 8 - 1).map_err(|_| bad_length(what))
            } else {
                Err(bad_length(what))
            }
        };
        out.push(next);
        match extension {
            Ipv6Extension::HopByHop(data) | Ipv6Extension::DestinationOptions(data) => {
                out.push(ext_len(extension.wire_len(), "ipv6 options header")?);
                out.extend_from_slice(data);
            }
            Ipv6Extension::Routing {
                routing_type,
                segments_left,
                data,
            } => {
                out.push(ext_len(extension.wire_len(), "ipv6 routing header")?);
                out.extend([*routing_type, *segments_left]);
                out.extend_from_slice(data);
            }
            Ipv6Extension::Fragment {
                fragment_offset,
                more_fragments,
                identification,
                reserved,
                reserved_bits,
            } => {
                if *fragment_offset > 0x1fff || *reserved_bits > 3 {
                    return Err(Error::unencodable("fragment offset or bits too wide"));
                }
                let offset_flags = (fragment_offset << 3)
                    | (u16::from(*reserved_bits) << 1)
                    | u16::from(*more_fragments);
                out.push(*reserved);
                out.extend(offset_flags.to_be_bytes());
                out.extend(identification.to_be_bytes());
            }
        }
    }
    Ok(out)
}

fn set_checksum(bytes: &mut [u8], at: usize, value: u16) {
    if let Some(field) = bytes.get_mut(at..at + 2) {
        field.copy_from_slice(&value.to_be_bytes());
    }
}
