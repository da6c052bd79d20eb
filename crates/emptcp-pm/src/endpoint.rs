//! Endpoints (addresses the in-kernel path manager may use), their flags, and the limits.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::attr::{AttrWriter, Attrs};
use crate::error::{Error, Result};
use crate::uapi::{addr_attr, addr_flag};

/// `MPTCP_PM_ADDR_FLAG_*` of an endpoint. Serialises as a list of names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct EndpointFlags(pub u32);

const FLAG_NAMES: [(&str, u32); 5] = [
    ("signal", addr_flag::SIGNAL),
    ("subflow", addr_flag::SUBFLOW),
    ("backup", addr_flag::BACKUP),
    ("fullmesh", addr_flag::FULLMESH),
    ("implicit", addr_flag::IMPLICIT),
];

impl EndpointFlags {
    /// Announce the address (ADD_ADDR).
    pub const SIGNAL: EndpointFlags = EndpointFlags(addr_flag::SIGNAL);
    /// Open subflows from the address.
    pub const SUBFLOW: EndpointFlags = EndpointFlags(addr_flag::SUBFLOW);
    /// Subflows on the address are backup.
    pub const BACKUP: EndpointFlags = EndpointFlags(addr_flag::BACKUP);
    /// A subflow to every address of the peer.
    pub const FULLMESH: EndpointFlags = EndpointFlags(addr_flag::FULLMESH);
    /// Made by the kernel for an address in use (shown, never set by users).
    pub const IMPLICIT: EndpointFlags = EndpointFlags(addr_flag::IMPLICIT);

    /// True when every bit of `other` is set.
    pub fn contains(self, other: EndpointFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The names of the set flags, in bit order; unknown bits as `0x..`.
    pub fn names(self) -> Vec<String> {
        let mut names: Vec<String> = FLAG_NAMES
            .iter()
            .filter(|(_, bit)| self.0 & bit != 0)
            .map(|(n, _)| (*n).to_owned())
            .collect();
        let known = FLAG_NAMES.iter().fold(0, |acc, (_, b)| acc | b);
        if self.0 & !known != 0 {
            names.push(format!("{:#x}", self.0 & !known));
        }
        names
    }
}

impl std::ops::BitOr for EndpointFlags {
    type Output = EndpointFlags;
    fn bitor(self, rhs: Self) -> Self {
        EndpointFlags(self.0 | rhs.0)
    }
}

impl fmt::Display for EndpointFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

/// Parses `signal,subflow,backup,fullmesh` (any subset, comma separated; empty is no flag).
/// `implicit` is refused: only the kernel sets it.
impl FromStr for EndpointFlags {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut flags = 0;
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let bit = FLAG_NAMES
                .iter()
                .take(4)
                .find(|(n, _)| n.eq_ignore_ascii_case(word))
                .map(|(_, b)| *b)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "unknown endpoint flag {word:?} (expected signal, subflow, backup, fullmesh)"
                    ))
                })?;
            flags |= bit;
        }
        Ok(EndpointFlags(flags))
    }
}

impl Serialize for EndpointFlags {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

/// An endpoint of the in-kernel path manager, as `GET_ADDR` reports it or `ADD_ADDR` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// Endpoint id (1..=255; 0 asks the kernel to pick one when adding).
    pub id: u8,
    /// The address.
    pub addr: IpAddr,
    /// Port (signal endpoints: announced with the address, and a listener is opened on it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Flags.
    pub flags: EndpointFlags,
    /// Interface index the endpoint is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<i32>,
}

impl Endpoint {
    /// An endpoint for `addr` with no id (kernel picks), port or interface.
    pub fn new(addr: IpAddr, flags: EndpointFlags) -> Self {
        Endpoint {
            id: 0,
            addr,
            port: None,
            flags,
            ifindex: None,
        }
    }

    pub(crate) fn encode(&self) -> AttrWriter {
        let mut w = address(self.addr, self.port);
        if self.id != 0 {
            w.put_u8(addr_attr::ID, self.id);
        }
        if self.flags.0 != 0 {
            w.put_u32(addr_attr::FLAGS, self.flags.0);
        }
        if let Some(ifindex) = self.ifindex {
            w.put_i32(addr_attr::IF_IDX, ifindex);
        }
        w
    }

    pub(crate) fn decode(attrs: Attrs<'_>) -> Result<Endpoint> {
        let (mut id, mut v4, mut v6, mut port, mut flags, mut ifindex) =
            (0, None, None, None, 0, None);
        for attr in attrs {
            let attr = attr?;
            match attr.kind {
                addr_attr::ID => id = attr.u8()?,
                addr_attr::ADDR4 => v4 = Some(Ipv4Addr::from(attr.octets::<4>()?)),
                addr_attr::ADDR6 => v6 = Some(Ipv6Addr::from(attr.octets::<16>()?)),
                addr_attr::PORT => port = Some(attr.u16()?).filter(|&p| p != 0),
                addr_attr::FLAGS => flags = attr.u32()?,
                addr_attr::IF_IDX => ifindex = Some(attr.i32()?).filter(|&i| i != 0),
                _ => {}
            }
        }
        let addr = v4
            .map(IpAddr::V4)
            .or(v6.map(IpAddr::V6))
            .ok_or_else(|| Error::Malformed(format!("endpoint {id} has no address")))?;
        Ok(Endpoint {
            id,
            addr,
            port,
            flags: EndpointFlags(flags),
            ifindex,
        })
    }
}

/// A nested-address body: family, address and (non-zero) port.
pub(crate) fn address(addr: IpAddr, port: Option<u16>) -> AttrWriter {
    let mut w = AttrWriter::new();
    match addr {
        IpAddr::V4(a) => {
            w.put_u16(addr_attr::FAMILY, libc::AF_INET as u16)
                .put(addr_attr::ADDR4, &a.octets());
        }
        IpAddr::V6(a) => {
            w.put_u16(addr_attr::FAMILY, libc::AF_INET6 as u16)
                .put(addr_attr::ADDR6, &a.octets());
        }
    }
    if let Some(p) = port.filter(|&p| p != 0) {
        w.put_u16(addr_attr::PORT, p);
    }
    w
}

/// A nested-address body for a socket address (userspace PM subflow commands).
pub(crate) fn socket_address(addr: SocketAddr) -> AttrWriter {
    address(addr.ip(), Some(addr.port()))
}

/// The in-kernel path manager's limits (per network namespace).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Most additional subflows per connection.
    pub subflows: u32,
    /// Most ADD_ADDRs accepted from a peer per connection.
    pub add_addr_accepted: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_print_and_refuse_unknown_words() {
        let f: EndpointFlags = "signal,backup".parse().unwrap();
        assert_eq!(f, EndpointFlags::SIGNAL | EndpointFlags::BACKUP);
        assert_eq!(f.to_string(), "signal,backup");
        assert_eq!("".parse::<EndpointFlags>().unwrap(), EndpointFlags(0));
        assert_eq!(
            "Subflow, FULLMESH".parse::<EndpointFlags>().unwrap().0,
            addr_flag::SUBFLOW | addr_flag::FULLMESH
        );
        let e = "signal,bakup".parse::<EndpointFlags>().unwrap_err();
        assert!(e.to_string().contains("\"bakup\""), "{e}");
        assert!("implicit".parse::<EndpointFlags>().is_err());
        assert_eq!(EndpointFlags(0x10 | 0x40).names(), ["implicit", "0x40"]);
    }

    #[test]
    fn endpoint_round_trips_through_attributes() {
        for ep in [
            Endpoint {
                id: 7,
                addr: "10.1.2.3".parse().unwrap(),
                port: Some(8080),
                flags: EndpointFlags::SIGNAL | EndpointFlags::BACKUP,
                ifindex: Some(3),
            },
            Endpoint {
                id: 255,
                addr: "fd77:2::1".parse().unwrap(),
                port: None,
                flags: EndpointFlags::SUBFLOW,
                ifindex: None,
            },
        ] {
            let bytes = ep.encode().into_bytes();
            assert_eq!(Endpoint::decode(Attrs::new(&bytes)).unwrap(), ep);
        }
        let bytes = address("10.0.0.1".parse().unwrap(), None).into_bytes();
        // family (4 + 2 -> 8) and ADDR4 (4 + 4): no port attribute for port 0 / None.
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[12..16], &[10, 0, 0, 1], "ADDR4 is in network order");
    }
}
