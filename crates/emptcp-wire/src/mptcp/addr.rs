//! ADD_ADDR (RFC 8684 section 3.4.1, figure 12; RFC 6824 section 3.4.1) and REMOVE_ADDR
//! (RFC 8684 section 3.4.2, figure 13).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Header, Subtype, check_width, len, subtype_byte};
use crate::error::{Error, ErrorKind, Result};
use crate::reader::Reader;

/// ADD_ADDR as RFC 8684 defines it.
///
/// ```text
/// | Kind | Length |Subtype|(rsv)|E| Address ID |
/// | Address (IPv4: 4 octets / IPv6: 16 octets) |
/// | Port (2 octets, optional) |
/// | Truncated HMAC (8 octets, optional) |
/// ```
///
/// The length alone says which parts are present: 8/10/16/18 for IPv4 and 20/22/28/30 for
/// IPv6, where +2 is the port and +8 the HMAC. RFC 8684 sends the HMAC exactly when E is clear,
/// but the parser does not enforce that: it keeps E and the HMAC as found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddAddr {
    /// E: this option echoes an ADD_ADDR received from the peer.
    pub echo: bool,
    /// The sender's id for the address.
    pub address_id: u8,
    /// The advertised address; its family sets the option length.
    pub address: IpAddr,
    /// The port to connect to, if not the connection's.
    pub port: Option<u16>,
    /// The truncated HMAC ([`crate::crypto::add_addr_hmac`]).
    pub hmac: Option<u64>,
    /// The three reserved bits between the subtype and E.
    pub reserved: u8,
}

/// ADD_ADDR as RFC 6824 (MPTCP v0) defines it: an IPVer nibble, no echo flag, no HMAC.
///
/// ```text
/// | Kind | Length |Subtype| IPVer | Address ID |
/// | Address (IPv4: 4 octets / IPv6: 16 octets) |
/// | Port (2 octets, optional) |
/// ```
///
/// IPVer is written from the address family (4 or 6); a parsed IPVer that disagrees with the
/// length is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddAddrV0 {
    /// The sender's id for the address.
    pub address_id: u8,
    /// The advertised address.
    pub address: IpAddr,
    /// The port, if not the connection's.
    pub port: Option<u16>,
}

/// REMOVE_ADDR: the address ids the sender withdraws.
///
/// ```text
/// | Kind | Length = 3 + n |Subtype|(resv)| Address ID | ... |
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoveAddr {
    /// The ids withdrawn; at least one.
    pub address_ids: Vec<u8>,
    /// The four reserved bits after the subtype.
    pub reserved: u8,
}

/// Which optional parts an ADD_ADDR of `length` has: (IPv6, port, HMAC).
fn add_addr_layout(length: usize, hmac_allowed: bool) -> Option<(bool, bool, bool)> {
    let (is_v6, extra) = match length {
        len::ADD_ADDR_V4..len::ADD_ADDR_V6 => (false, length - len::ADD_ADDR_V4),
        len::ADD_ADDR_V6.. => (true, length - len::ADD_ADDR_V6),
        _ => return None,
    };
    let (port, hmac) = match extra {
        0 => (false, false),
        len::ADD_ADDR_PORT => (true, false),
        len::ADD_ADDR_HMAC if hmac_allowed => (false, true),
        10 if hmac_allowed => (true, true),
        _ => return None,
    };
    Some((is_v6, port, hmac))
}

fn address_len(address: &IpAddr) -> usize {
    match address {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 16,
    }
}

fn read_address(is_v6: bool, reader: &mut Reader<'_>) -> Result<IpAddr> {
    Ok(if is_v6 {
        IpAddr::V6(Ipv6Addr::from(reader.array::<16>()?))
    } else {
        IpAddr::V4(Ipv4Addr::from(reader.array::<4>()?))
    })
}

fn write_address(address: &IpAddr, out: &mut Vec<u8>) {
    match address {
        IpAddr::V4(v4) => out.extend(v4.octets()),
        IpAddr::V6(v6) => out.extend(v6.octets()),
    }
}

fn read_port(present: bool, reader: &mut Reader<'_>) -> Result<Option<u16>> {
    present.then(|| reader.u16()).transpose()
}

impl AddAddr {
    pub(super) fn parse(header: &Header, reader: &mut Reader<'_>) -> Result<Self> {
        let (is_v6, has_port, has_hmac) =
            add_addr_layout(header.length, true).ok_or_else(|| header.bad_length())?;
        Ok(AddAddr {
            echo: header.low_bits & 1 != 0,
            reserved: header.low_bits >> 1,
            address_id: reader.u8()?,
            address: read_address(is_v6, reader)?,
            port: read_port(has_port, reader)?,
            hmac: has_hmac.then(|| reader.u64()).transpose()?,
        })
    }

    pub(super) fn write_body(&self, out: &mut Vec<u8>) -> Result<()> {
        check_width(self.reserved.into(), 3, "add_addr reserved bits above 7")?;
        out.push(subtype_byte(
            Subtype::AddAddr,
            self.reserved << 1 | u8::from(self.echo),
        ));
        out.push(self.address_id);
        write_address(&self.address, out);
        if let Some(port) = self.port {
            out.extend(port.to_be_bytes());
        }
        if let Some(hmac) = self.hmac {
            out.extend(hmac.to_be_bytes());
        }
        Ok(())
    }

    pub(super) fn wire_len(&self) -> usize {
        4 + address_len(&self.address)
            + self.port.map_or(0, |_| len::ADD_ADDR_PORT)
            + self.hmac.map_or(0, |_| len::ADD_ADDR_HMAC)
    }
}

impl AddAddrV0 {
    pub(super) fn parse(header: &Header, reader: &mut Reader<'_>) -> Result<Self> {
        let (is_v6, has_port, _) =
            add_addr_layout(header.length, false).ok_or_else(|| header.bad_length())?;
        let ip_version = header.low_bits;
        if ip_version != if is_v6 { 6 } else { 4 } {
            return Err(Error::at(
                2,
                ErrorKind::AddAddrIpVersion {
                    ip_version,
                    length: header.length,
                },
            ));
        }
        Ok(AddAddrV0 {
            address_id: reader.u8()?,
            address: read_address(is_v6, reader)?,
            port: read_port(has_port, reader)?,
        })
    }

    pub(super) fn write_body(&self, out: &mut Vec<u8>) -> Result<()> {
        let ip_version = match self.address {
            IpAddr::V4(_) => 4,
            IpAddr::V6(_) => 6,
        };
        out.push(subtype_byte(Subtype::AddAddr, ip_version));
        out.push(self.address_id);
        write_address(&self.address, out);
        if let Some(port) = self.port {
            out.extend(port.to_be_bytes());
        }
        Ok(())
    }

    pub(super) fn wire_len(&self) -> usize {
        4 + address_len(&self.address) + self.port.map_or(0, |_| len::ADD_ADDR_PORT)
    }
}

impl RemoveAddr {
    pub(super) fn parse(header: &Header, reader: &mut Reader<'_>) -> Result<Self> {
        if header.length < len::REMOVE_ADDR_ONE {
            return Err(header.bad_length());
        }
        Ok(RemoveAddr {
            address_ids: reader.rest().to_vec(),
            reserved: header.low_bits,
        })
    }

    pub(super) fn write_body(&self, out: &mut Vec<u8>) -> Result<()> {
        check_width(
            self.reserved.into(),
            4,
            "remove_addr reserved bits above 15",
        )?;
        if self.address_ids.is_empty() {
            return Err(Error::unencodable("remove_addr without address ids"));
        }
        out.push(subtype_byte(Subtype::RemoveAddr, self.reserved));
        out.extend_from_slice(&self.address_ids);
        Ok(())
    }

    pub(super) fn wire_len(&self) -> usize {
        3 + self.address_ids.len()
    }
}

#[cfg(test)]
mod tests {
    //! Byte vectors laid out by hand from RFC 8684 figures 12 and 13 and RFC 6824 figure 12.
    use super::*;
    use crate::mptcp::{MptcpOption, MptcpVersion};

    fn check_v1(bytes: &[u8], expected: AddAddr) {
        let parsed = MptcpOption::parse(bytes).unwrap();
        assert_eq!(parsed, MptcpOption::AddAddr(expected));
        assert_eq!(parsed.to_bytes().unwrap(), bytes);
        assert_eq!(parsed.wire_len(), bytes.len());
    }

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1));
    const V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
    const V6_BYTES: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    fn add_addr(echo: bool, address: IpAddr, port: Option<u16>, hmac: Option<u64>) -> AddAddr {
        AddAddr {
            echo,
            address_id: 3,
            address,
            port,
            hmac,
            reserved: 0,
        }
    }

    #[test]
    fn ipv4_echo() {
        check_v1(
            &[0x1e, 0x08, 0x31, 0x03, 10, 0, 2, 1],
            add_addr(true, V4, None, None),
        );
    }

    #[test]
    fn ipv4_port_echo() {
        let bytes = [0x1e, 0x0a, 0x31, 0x03, 10, 0, 2, 1, 0x1f, 0x90];
        check_v1(&bytes, add_addr(true, V4, Some(8080), None));
    }

    #[test]
    fn ipv4_hmac() {
        let bytes = [0x1e, 0x10, 0x30, 0x03, 10, 0, 2, 1, 1, 2, 3, 4, 5, 6, 7, 8];
        check_v1(
            &bytes,
            add_addr(false, V4, None, Some(0x0102_0304_0506_0708)),
        );
    }

    #[test]
    fn ipv4_port_hmac() {
        #[rustfmt::skip]
        let bytes = [
            0x1e, 0x12, 0x30, 0x03, 10, 0, 2, 1, 0x00, 0x50,
            0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88,
        ];
        check_v1(
            &bytes,
            add_addr(false, V4, Some(80), Some(0xffee_ddcc_bbaa_9988)),
        );
    }

    #[test]
    fn ipv6_every_length() {
        let tail_port = [0x01, 0xbb];
        let tail_hmac = [9u8; 8];
        for (port, hmac, length) in [
            (false, false, 20u8),
            (true, false, 22),
            (false, true, 28),
            (true, true, 30),
        ] {
            let mut bytes = vec![0x1e, length, if hmac { 0x30 } else { 0x31 }, 0x03];
            bytes.extend(V6_BYTES);
            if port {
                bytes.extend(tail_port);
            }
            if hmac {
                bytes.extend(tail_hmac);
            }
            let expected = add_addr(
                !hmac,
                V6,
                port.then_some(443),
                hmac.then_some(0x0909_0909_0909_0909),
            );
            check_v1(&bytes, expected);
        }
    }

    #[test]
    fn bad_lengths() {
        for length in [3usize, 4, 7, 9, 11, 12, 15, 17, 19, 21, 23, 27, 29, 31, 40] {
            let mut bytes = vec![0u8; length];
            bytes[0] = 30;
            bytes[1] = length as u8;
            bytes[2] = 0x30;
            assert!(MptcpOption::parse(&bytes).is_err(), "length {length}");
        }
    }

    #[test]
    fn v0_forms() {
        let bytes = [0x1e, 0x08, 0x34, 0x03, 10, 0, 2, 1];
        let parsed = MptcpOption::parse_versioned(&bytes, MptcpVersion::V0).unwrap();
        let expected = AddAddrV0 {
            address_id: 3,
            address: V4,
            port: None,
        };
        assert_eq!(parsed, MptcpOption::AddAddrV0(expected));
        assert_eq!(parsed.to_bytes().unwrap(), bytes);

        let mut bytes6 = vec![0x1e, 0x16, 0x36, 0x07];
        bytes6.extend(V6_BYTES);
        bytes6.extend([0x00, 0x16]);
        let parsed = MptcpOption::parse_versioned(&bytes6, MptcpVersion::V0).unwrap();
        let expected = AddAddrV0 {
            address_id: 7,
            address: V6,
            port: Some(22),
        };
        assert_eq!(parsed, MptcpOption::AddAddrV0(expected));
        assert_eq!(parsed.to_bytes().unwrap(), bytes6);
    }

    #[test]
    fn v0_and_v1_read_the_same_bytes_differently() {
        // IPVer 4 reads as v1 reserved bits 0b010 with E clear.
        let bytes = [0x1e, 0x08, 0x34, 0x03, 10, 0, 2, 1];
        let v1 = MptcpOption::parse(&bytes).unwrap();
        assert_eq!(
            v1,
            MptcpOption::AddAddr(AddAddr {
                reserved: 2,
                ..add_addr(false, V4, None, None)
            })
        );
        assert_eq!(v1.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn v0_rejects_hmac_lengths_and_wrong_ip_version() {
        let bytes = [0x1e, 0x10, 0x34, 0x03, 10, 0, 2, 1, 1, 2, 3, 4, 5, 6, 7, 8];
        assert!(MptcpOption::parse_versioned(&bytes, MptcpVersion::V0).is_err());
        let bytes = [0x1e, 0x08, 0x36, 0x03, 10, 0, 2, 1];
        let err = MptcpOption::parse_versioned(&bytes, MptcpVersion::V0).unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::AddAddrIpVersion {
                ip_version: 6,
                length: 8
            }
        );
    }

    #[test]
    fn remove_addr() {
        let one = [0x1e, 0x04, 0x40, 0x05];
        let parsed = MptcpOption::parse(&one).unwrap();
        let expected = RemoveAddr {
            address_ids: vec![5],
            reserved: 0,
        };
        assert_eq!(parsed, MptcpOption::RemoveAddr(expected));
        assert_eq!(parsed.to_bytes().unwrap(), one);
        let three = [0x1e, 0x06, 0x4a, 1, 2, 3];
        let parsed = MptcpOption::parse(&three).unwrap();
        let expected = RemoveAddr {
            address_ids: vec![1, 2, 3],
            reserved: 0xa,
        };
        assert_eq!(parsed, MptcpOption::RemoveAddr(expected));
        assert_eq!(parsed.to_bytes().unwrap(), three);
        assert!(MptcpOption::parse(&[0x1e, 0x03, 0x40]).is_err());
        let empty = RemoveAddr {
            address_ids: vec![],
            reserved: 0,
        };
        assert!(MptcpOption::RemoveAddr(empty).to_bytes().is_err());
    }
}
