//! The header values that [`super::PacketBuilder`] writes and [`super::ParsedPacket`] reads.
//!
//! Fields that follow from the rest of the packet (lengths, IHL, data offset, next-header
//! chain, EtherType, checksums) are not stored here: the builder computes them, and the parser
//! checks them or reports them beside the headers.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::{BitOr, BitOrAssign};

/// EtherType values this crate writes and reads.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q customer VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
}

/// IPv6 next-header values of the extension headers this crate walks (RFC 8200 section 4).
pub mod ipv6_ext {
    /// Hop-by-Hop Options.
    pub const HOP_BY_HOP: u8 = 0;
    /// Routing.
    pub const ROUTING: u8 = 43;
    /// Fragment.
    pub const FRAGMENT: u8 = 44;
    /// Destination Options.
    pub const DESTINATION_OPTIONS: u8 = 60;
}

/// An Ethernet II header without its EtherType, which follows from the tags and IP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetHeader {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
}

impl Default for EthernetHeader {
    /// Locally administered addresses `02:00:00:00:00:01` -> `02:00:00:00:00:02`.
    fn default() -> Self {
        EthernetHeader {
            dst: [0x02, 0, 0, 0, 0, 0x02],
            src: [0x02, 0, 0, 0, 0, 0x01],
        }
    }
}

/// An 802.1Q or 802.1ad tag: its TPID and its TCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// Tag protocol identifier: [`ethertype::VLAN`] or [`ethertype::QINQ`].
    pub tpid: u16,
    /// Tag control information: PCP (3 bits), DEI (1 bit), VID (12 bits).
    pub tci: u16,
}

impl VlanTag {
    /// An 802.1Q tag with this VLAN id, priority 0.
    pub fn dot1q(vid: u16) -> Self {
        VlanTag {
            tpid: ethertype::VLAN,
            tci: vid & 0x0fff,
        }
    }

    /// An 802.1ad (service) tag with this VLAN id, priority 0.
    pub fn dot1ad(vid: u16) -> Self {
        VlanTag {
            tpid: ethertype::QINQ,
            tci: vid & 0x0fff,
        }
    }

    /// The VLAN id.
    pub fn vid(&self) -> u16 {
        self.tci & 0x0fff
    }

    /// The priority code point.
    pub fn pcp(&self) -> u8 {
        (self.tci >> 13) as u8
    }
}

/// An IPv4 header without version, IHL, total length and checksum.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ipv4Header {
    /// DSCP (6 bits) and ECN (2 bits).
    pub dscp_ecn: u8,
    /// Identification.
    pub identification: u16,
    /// Flags (3 bits: reserved, DF, MF) and fragment offset (13 bits, in 8-byte units).
    pub flags_fragment: u16,
    /// Time to live.
    pub ttl: u8,
    /// Protocol; TCP (6) unless a test wants otherwise.
    pub protocol: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Option bytes, a multiple of 4 and at most 40.
    pub options: Vec<u8>,
}

impl Ipv4Header {
    /// Don't Fragment.
    pub const FLAG_DF: u16 = 0x4000;
    /// More Fragments.
    pub const FLAG_MF: u16 = 0x2000;

    /// A TCP header from `src` to `dst` with TTL 64, DF set and no options.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Ipv4Header {
            dscp_ecn: 0,
            identification: 0,
            flags_fragment: Self::FLAG_DF,
            ttl: 64,
            protocol: crate::checksum::IPPROTO_TCP,
            src,
            dst,
            options: Vec::new(),
        }
    }

    /// The fragment offset, in 8-byte units.
    pub fn fragment_offset(&self) -> u16 {
        self.flags_fragment & 0x1fff
    }
}

/// One IPv6 extension header, without its Next Header byte (the builder chains them).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ipv6Extension {
    /// Hop-by-Hop Options: the option bytes after Next Header and Hdr Ext Len; 6 + 8n bytes.
    HopByHop(Vec<u8>),
    /// Destination Options: as for Hop-by-Hop.
    DestinationOptions(Vec<u8>),
    /// Routing header.
    Routing {
        /// Routing Type (e.g. 2 for Mobile IPv6, 4 for SRH).
        routing_type: u8,
        /// Segments Left.
        segments_left: u8,
        /// The bytes after Segments Left; 4 + 8n bytes.
        data: Vec<u8>,
    },
    /// Fragment header (8 bytes).
    Fragment {
        /// Fragment Offset, in 8-byte units (13 bits).
        fragment_offset: u16,
        /// M: more fragments follow.
        more_fragments: bool,
        /// Identification.
        identification: u32,
        /// The reserved byte after Next Header.
        reserved: u8,
        /// The two reserved bits between the offset and M.
        reserved_bits: u8,
    },
}

impl Ipv6Extension {
    /// The next-header value that announces this extension.
    pub fn header_type(&self) -> u8 {
        match self {
            Ipv6Extension::HopByHop(_) => ipv6_ext::HOP_BY_HOP,
            Ipv6Extension::DestinationOptions(_) => ipv6_ext::DESTINATION_OPTIONS,
            Ipv6Extension::Routing { .. } => ipv6_ext::ROUTING,
            Ipv6Extension::Fragment { .. } => ipv6_ext::FRAGMENT,
        }
    }

    /// The header's length on the wire.
    pub fn wire_len(&self) -> usize {
        match self {
            Ipv6Extension::HopByHop(data) | Ipv6Extension::DestinationOptions(data) => {
                2 + data.len()
            }
            Ipv6Extension::Routing { data, .. } => 4 + data.len(),
            Ipv6Extension::Fragment { .. } => 8,
        }
    }

    /// Hop-by-Hop options padded with a PadN option to the next 8-byte boundary, so that any
    /// option list makes a valid header (RFC 8200 section 4.2).
    pub fn hop_by_hop_padded(options: &[u8]) -> Self {
        Ipv6Extension::HopByHop(pad_options(options))
    }

    /// Destination options padded like [`Ipv6Extension::hop_by_hop_padded`].
    pub fn destination_options_padded(options: &[u8]) -> Self {
        Ipv6Extension::DestinationOptions(pad_options(options))
    }
}

/// Pads an option list to 6 + 8n bytes with Pad1 (one byte) or PadN (RFC 8200 section 4.2).
fn pad_options(options: &[u8]) -> Vec<u8> {
    let mut data = options.to_vec();
    let missing = (8 - (data.len() + 2) % 8) % 8;
    match missing {
        0 => {}
        1 => data.push(0),
        n => {
            data.extend([1, (n - 2) as u8]);
            data.extend(std::iter::repeat_n(0, n - 2));
        }
    }
    data
}

/// An IPv6 header without payload length and next header, plus its extension headers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ipv6Header {
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
    /// Hop limit.
    pub hop_limit: u8,
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address (of this hop, when a routing header has segments left).
    pub dst: Ipv6Addr,
    /// Extension headers in order; the next-header chain is computed.
    pub extensions: Vec<Ipv6Extension>,
    /// The next header after the last extension: TCP (6) unless a test wants otherwise.
    pub upper_protocol: u8,
}

impl Ipv6Header {
    /// A TCP header from `src` to `dst` with hop limit 64 and no extension headers.
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        Ipv6Header {
            traffic_class: 0,
            flow_label: 0,
            hop_limit: 64,
            src,
            dst,
            extensions: Vec::new(),
            upper_protocol: crate::checksum::IPPROTO_TCP,
        }
    }

    /// The destination the TCP pseudo-header uses (RFC 8200 section 8.1): the final one. While a
    /// routing header of type 0 or 2 has segments left, that is its last address; for an SRH
    /// (type 4, RFC 8754) it is Segment List\[0\]; otherwise the header's destination.
    pub fn final_destination(&self) -> Ipv6Addr {
        let mut last = self.dst;
        for extension in &self.extensions {
            let Ipv6Extension::Routing {
                routing_type,
                segments_left,
                data,
            } = extension
            else {
                continue;
            };
            if *segments_left == 0 {
                continue;
            }
            let address = match routing_type {
                0 | 2 => data.len().checked_sub(16).and_then(|at| data.get(at..)),
                4 => data.get(4..20),
                _ => None,
            };
            if let Some(bytes) = address.and_then(|b| <[u8; 16]>::try_from(b).ok()) {
                last = Ipv6Addr::from(bytes);
            }
        }
        last
    }
}

/// The network layer of a packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IpHeader {
    /// IPv4.
    V4(Ipv4Header),
    /// IPv6 with its extension headers.
    V6(Ipv6Header),
}

/// The eight TCP flag bits of header byte 13.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// PSH.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// ACK.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// URG.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECE.
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// CWR.
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// True if every flag of `other` is set here.
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;

    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

/// A TCP header without data offset, checksum and options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpHeader {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// The flag byte.
    pub flags: TcpFlags,
    /// The four bits between data offset and the flags (reserved, and AE in RFC 9768).
    pub reserved: u8,
    /// Window.
    pub window: u16,
    /// Urgent pointer.
    pub urgent_ptr: u16,
}

impl Default for TcpHeader {
    /// Port 49152 to port 80, sequence and acknowledgment 0, ACK, window 64240.
    fn default() -> Self {
        TcpHeader {
            src_port: 49152,
            dst_port: 80,
            seq: 0,
            ack: 0,
            flags: TcpFlags::ACK,
            reserved: 0,
            window: 64240,
            urgent_ptr: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_options_reaches_eight_byte_multiples() {
        for len in 0..20 {
            let padded = pad_options(&vec![0xaa; len]);
            assert_eq!((padded.len() + 2) % 8, 0, "{len}");
            assert!(padded.len() - len < 8);
        }
        assert_eq!(pad_options(&[]), [1, 4, 0, 0, 0, 0]);
        assert_eq!(pad_options(&[5, 2, 0, 0, 9]), [5, 2, 0, 0, 9, 0]);
    }

    #[test]
    fn final_destination_follows_routing_headers() {
        let hop = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
        let last = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 9);
        let mut header = Ipv6Header::new(Ipv6Addr::LOCALHOST, hop);
        let mut data = vec![0u8; 4];
        data.extend(last.octets());
        header.extensions.push(Ipv6Extension::Routing {
            routing_type: 2,
            segments_left: 1,
            data: data.clone(),
        });
        assert_eq!(header.final_destination(), last);
        header.extensions[0] = Ipv6Extension::Routing {
            routing_type: 2,
            segments_left: 0,
            data,
        };
        assert_eq!(header.final_destination(), hop);
    }
}
