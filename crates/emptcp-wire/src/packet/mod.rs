//! Whole frames: Ethernet, up to two VLAN tags, IPv4 (with options) or IPv6 (with extension
//! headers), TCP with options and payload.
//!
//! [`PacketBuilder`] makes them, with right lengths and checksums unless told otherwise;
//! [`ParsedPacket`] takes them apart, reports each layer's offset and checks the checksums.

mod build;
mod headers;
mod parse;

use std::fmt;

pub use build::{ChecksumMode, PacketBuilder};
pub use headers::{
    EthernetHeader, IpHeader, Ipv4Header, Ipv6Extension, Ipv6Header, TcpFlags, TcpHeader, VlanTag,
    ethertype, ipv6_ext,
};
pub use parse::{LayerOffsets, ParsedPacket};

/// One checksum as found in a packet and as it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksumCheck {
    /// The value in the packet.
    pub found: u16,
    /// The value computed over the packet.
    pub expected: u16,
    /// Whether the packet passes the receiver's check (RFC 1071: the sum including the field
    /// is all ones, so `0x0000` and `0xffff` both pass where either is computed).
    pub valid: bool,
}

/// The checksums of a parsed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksumReport {
    /// The IPv4 header checksum; `None` for IPv6, which has none.
    pub ipv4_header: Option<ChecksumCheck>,
    /// The TCP checksum.
    pub tcp: ChecksumCheck,
}

impl ChecksumReport {
    /// True if every checksum is valid.
    pub fn is_valid(&self) -> bool {
        self.tcp.valid && self.ipv4_header.is_none_or(|c| c.valid)
    }
}

impl fmt::Display for ChecksumReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let checks = [("ipv4 header", self.ipv4_header), ("tcp", Some(self.tcp))];
        for (name, check) in checks {
            if let Some(check) = check.filter(|c| !c.valid) {
                if !first {
                    write!(f, ", ")?;
                }
                first = false;
                write!(
                    f,
                    "{name} checksum {:#06x}, expected {:#06x}",
                    check.found, check.expected
                )?;
            }
        }
        if first {
            write!(f, "all checksums valid")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
