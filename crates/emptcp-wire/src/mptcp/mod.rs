//! Every MPTCP option (TCP option kind 30) of RFC 8684, and the RFC 6824 (v0) forms where they
//! differ, as typed values with an exact parser and serializer.
//!
//! Parsing is exact: every bit of a valid option lands in a field (reserved bits included), so
//! `bytes -> MptcpOption -> bytes` is the identity for every option that parses. The serializer
//! refuses values it could not encode so that they parse back the same
//! ([`ErrorKind::Unencodable`]).
//!
//! # How the length resolves ambiguities
//!
//! | subtype | lengths | resolved by |
//! |---|---|---|
//! | MP_CAPABLE | 4, 12, 20, 22, 24 | the length alone picks [`MpCapableKeys`]; 12 is the v1 SYN/ACK *and* the v0 SYN or SYN/ACK (same layout: one key); which packet it is comes from the TCP flags, not the option |
//! | MP_JOIN | 12, 16, 24 | SYN, SYN/ACK, third ACK |
//! | DSS | 4 + ack + mapping (+ 2) | the flags give the size of the Data ACK and the mapping; a mapping followed by exactly 2 more bytes has a checksum, otherwise none |
//! | ADD_ADDR (v1) | 8, 10, 16, 18 (IPv4); 20, 22, 28, 30 (IPv6) | the length says the family, whether a port (2 bytes) and whether a truncated HMAC (8 bytes) are present; the E flag is kept as it is and does not decide |
//! | ADD_ADDR (v0) | 8, 10 (IPv4); 20, 22 (IPv6) | as above, with no HMAC; the IPVer nibble must agree with the length |
//! | MP_PRIO | 3, 4 | 4 is the RFC 6824 form with an address id |
//! | REMOVE_ADDR | 3 + n, n >= 1 | one id per byte |
//!
//! The one ambiguity the length cannot resolve is v0 against v1 ADD_ADDR (length 8, 10, 20 or
//! 22): [`MptcpOption::parse`] reads RFC 8684 and [`MptcpOption::parse_versioned`] takes the
//! version the connection negotiated in MP_CAPABLE.
//!
//! ```
//! use emptcp_wire::mptcp::{MpPrio, MptcpOption};
//! let prio = MptcpOption::MpPrio(MpPrio { backup: true, address_id: None, reserved: 0 });
//! let bytes = prio.to_bytes()?;
//! assert_eq!(bytes, [30, 3, 0x51]);
//! assert_eq!(MptcpOption::parse(&bytes)?, prio);
//! # Ok::<(), emptcp_wire::Error>(())
//! ```

mod addr;
mod capable;
mod control;
mod dss;
mod join;

pub use addr::{AddAddr, AddAddrV0, RemoveAddr};
pub use capable::{MpCapable, MpCapableKeys};
pub use control::{MpFail, MpFastclose, MpPrio, MpTcpRst};
pub use dss::{DataSeq, Dss, DssMapping};
pub use join::MpJoin;

use crate::error::{Error, ErrorKind, Result};
use crate::reader::Reader;

/// TCP option kind of every MPTCP option (RFC 8684 section 3).
pub const KIND: u8 = 30;

/// The MPTCP subtypes (RFC 8684 section 7.2 registry), the upper nibble of an option's third
/// byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Subtype {
    /// Multipath Capable.
    MpCapable = 0x0,
    /// Join Connection.
    MpJoin = 0x1,
    /// Data Sequence Signal (Data ACK and data sequence mapping).
    Dss = 0x2,
    /// Add Address.
    AddAddr = 0x3,
    /// Remove Address.
    RemoveAddr = 0x4,
    /// Change Subflow Priority.
    MpPrio = 0x5,
    /// Fallback.
    MpFail = 0x6,
    /// Fast Close.
    MpFastclose = 0x7,
    /// Subflow Reset.
    MpTcpRst = 0x8,
    /// Reserved for private experiments.
    Experimental = 0xf,
}

impl Subtype {
    /// Every assigned subtype, in numeric order.
    pub const ALL: [Subtype; 10] = [
        Subtype::MpCapable,
        Subtype::MpJoin,
        Subtype::Dss,
        Subtype::AddAddr,
        Subtype::RemoveAddr,
        Subtype::MpPrio,
        Subtype::MpFail,
        Subtype::MpFastclose,
        Subtype::MpTcpRst,
        Subtype::Experimental,
    ];

    /// The subtype with this 4-bit value, if one is assigned.
    pub fn from_u8(value: u8) -> Option<Subtype> {
        Subtype::ALL.into_iter().find(|s| *s as u8 == value)
    }
}

/// Option lengths fixed by RFC 8684 (and RFC 6824 where it differs), in bytes, kind and length
/// bytes included.
pub mod len {
    /// MP_CAPABLE on a v1 SYN: no key.
    pub const MP_CAPABLE_SYN: usize = 4;
    /// MP_CAPABLE with the sender's key: v1 SYN/ACK, v0 SYN and SYN/ACK.
    pub const MP_CAPABLE_SYNACK: usize = 12;
    /// MP_CAPABLE with both keys: the third ACK.
    pub const MP_CAPABLE_ACK: usize = 20;
    /// MP_CAPABLE with both keys and a data-level length.
    pub const MP_CAPABLE_DATA: usize = 22;
    /// MP_CAPABLE with both keys, a data-level length and a checksum.
    pub const MP_CAPABLE_DATA_CSUM: usize = 24;
    /// MP_JOIN on a SYN.
    pub const MP_JOIN_SYN: usize = 12;
    /// MP_JOIN on a SYN/ACK.
    pub const MP_JOIN_SYNACK: usize = 16;
    /// MP_JOIN on the third ACK.
    pub const MP_JOIN_ACK: usize = 24;
    /// DSS with neither Data ACK nor mapping.
    pub const DSS_BASE: usize = 4;
    /// ADD_ADDR, IPv4, no port, no HMAC (an echo).
    pub const ADD_ADDR_V4: usize = 8;
    /// ADD_ADDR, IPv6, no port, no HMAC (an echo).
    pub const ADD_ADDR_V6: usize = 20;
    /// Bytes a port adds to ADD_ADDR.
    pub const ADD_ADDR_PORT: usize = 2;
    /// Bytes the truncated HMAC adds to ADD_ADDR.
    pub const ADD_ADDR_HMAC: usize = 8;
    /// REMOVE_ADDR with one address id.
    pub const REMOVE_ADDR_ONE: usize = 4;
    /// MP_PRIO (RFC 8684).
    pub const MP_PRIO: usize = 3;
    /// MP_PRIO with an address id (RFC 6824).
    pub const MP_PRIO_V0: usize = 4;
    /// MP_FAIL.
    pub const MP_FAIL: usize = 12;
    /// MP_FASTCLOSE.
    pub const MP_FASTCLOSE: usize = 12;
    /// MP_TCPRST.
    pub const MP_TCPRST: usize = 4;
}

/// The MPTCP version whose option formats apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MptcpVersion {
    /// RFC 6824 (version 0).
    V0,
    /// RFC 8684 (version 1).
    #[default]
    V1,
}

/// One MPTCP option.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MptcpOption {
    /// MP_CAPABLE (RFC 8684 section 3.1).
    MpCapable(MpCapable),
    /// MP_JOIN (RFC 8684 section 3.2).
    MpJoin(MpJoin),
    /// DSS (RFC 8684 section 3.3).
    Dss(Dss),
    /// ADD_ADDR in its RFC 8684 form (section 3.4.1).
    AddAddr(AddAddr),
    /// ADD_ADDR in its RFC 6824 form, with IPVer and without HMAC.
    AddAddrV0(AddAddrV0),
    /// REMOVE_ADDR (RFC 8684 section 3.4.2).
    RemoveAddr(RemoveAddr),
    /// MP_PRIO (RFC 8684 section 3.3.8; RFC 6824 section 3.3.8 for the address-id form).
    MpPrio(MpPrio),
    /// MP_FAIL (RFC 8684 section 3.7).
    MpFail(MpFail),
    /// MP_FASTCLOSE (RFC 8684 section 3.5).
    MpFastclose(MpFastclose),
    /// MP_TCPRST (RFC 8684 section 3.6).
    MpTcpRst(MpTcpRst),
    /// A subtype this crate does not decode (MP_EXPERIMENTAL, or unassigned), kept as bytes.
    Unknown {
        /// The subtype nibble.
        subtype: u8,
        /// The lower nibble of the third byte.
        low_bits: u8,
        /// The bytes after the third byte.
        data: Vec<u8>,
    },
}

/// What the subtype parsers get: the option length and the lower nibble of byte 2, plus a
/// reader at byte 3.
pub(crate) struct Header {
    pub(crate) subtype: u8,
    pub(crate) length: usize,
    pub(crate) low_bits: u8,
}

impl Header {
    pub(crate) fn bad_length(&self) -> Error {
        // The length byte is at offset 1 of the option.
        Error::at(
            1,
            ErrorKind::BadMptcpLength {
                subtype: self.subtype,
                length: self.length,
            },
        )
    }
}

/// Refuses `value` if it does not fit in `bits` bits, naming `what`.
pub(crate) fn check_width(value: u16, bits: u32, what: &'static str) -> Result<()> {
    if u32::from(value) >> bits == 0 {
        Ok(())
    } else {
        Err(Error::unencodable(what))
    }
}

pub(crate) fn subtype_byte(subtype: Subtype, low_bits: u8) -> u8 {
    ((subtype as u8) << 4) | (low_bits & 0x0f)
}

impl MptcpOption {
    /// Parses one MPTCP option, `option` holding exactly its bytes from the kind byte on, with
    /// RFC 8684 (v1) formats.
    pub fn parse(option: &[u8]) -> Result<MptcpOption> {
        MptcpOption::parse_versioned(option, MptcpVersion::V1)
    }

    /// Parses one MPTCP option with the formats of `version`; only ADD_ADDR differs.
    pub fn parse_versioned(option: &[u8], version: MptcpVersion) -> Result<MptcpOption> {
        let mut reader = Reader::new(option);
        let kind = reader.u8()?;
        if kind != KIND {
            return Err(Error::at(0, ErrorKind::NotMptcp { kind }));
        }
        let declared = usize::from(reader.u8()?);
        if declared != option.len() {
            return Err(Error::at(
                1,
                ErrorKind::LengthMismatch {
                    declared,
                    actual: option.len(),
                },
            ));
        }
        let third = reader.u8().map_err(|_| {
            Error::at(
                1,
                ErrorKind::BadMptcpLength {
                    subtype: 0,
                    length: declared,
                },
            )
        })?;
        let (subtype, low_bits) = (third >> 4, third & 0x0f);
        let header = Header {
            subtype,
            length: declared,
            low_bits,
        };
        let reader = &mut reader;
        let parsed = match (Subtype::from_u8(subtype), version) {
            (Some(Subtype::MpCapable), _) => MpCapable::parse(&header, reader)?.into(),
            (Some(Subtype::MpJoin), _) => MpJoin::parse(&header, reader)?.into(),
            (Some(Subtype::Dss), _) => Dss::parse(&header, reader)?.into(),
            (Some(Subtype::AddAddr), MptcpVersion::V1) => AddAddr::parse(&header, reader)?.into(),
            (Some(Subtype::AddAddr), MptcpVersion::V0) => AddAddrV0::parse(&header, reader)?.into(),
            (Some(Subtype::RemoveAddr), _) => RemoveAddr::parse(&header, reader)?.into(),
            (Some(Subtype::MpPrio), _) => MpPrio::parse(&header, reader)?.into(),
            (Some(Subtype::MpFail), _) => MpFail::parse(&header, reader)?.into(),
            (Some(Subtype::MpFastclose), _) => MpFastclose::parse(&header, reader)?.into(),
            (Some(Subtype::MpTcpRst), _) => MpTcpRst::parse(&header, reader)?.into(),
            (Some(Subtype::Experimental) | None, _) => MptcpOption::Unknown {
                subtype,
                low_bits,
                data: reader.rest().to_vec(),
            },
        };
        // Each subtype checked its length against the layout it read, so nothing is left.
        debug_assert_eq!(reader.remaining(), 0);
        Ok(parsed)
    }

    /// The subtype nibble.
    pub fn subtype(&self) -> u8 {
        match self {
            MptcpOption::MpCapable(_) => Subtype::MpCapable as u8,
            MptcpOption::MpJoin(_) => Subtype::MpJoin as u8,
            MptcpOption::Dss(_) => Subtype::Dss as u8,
            MptcpOption::AddAddr(_) | MptcpOption::AddAddrV0(_) => Subtype::AddAddr as u8,
            MptcpOption::RemoveAddr(_) => Subtype::RemoveAddr as u8,
            MptcpOption::MpPrio(_) => Subtype::MpPrio as u8,
            MptcpOption::MpFail(_) => Subtype::MpFail as u8,
            MptcpOption::MpFastclose(_) => Subtype::MpFastclose as u8,
            MptcpOption::MpTcpRst(_) => Subtype::MpTcpRst as u8,
            MptcpOption::Unknown { subtype, .. } => *subtype,
        }
    }

    /// Appends the option's bytes (kind and length included) to `out`.
    ///
    /// On error `out` is left as it was.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        out.extend([KIND, 0]);
        let written = match self {
            MptcpOption::MpCapable(o) => o.write_body(out),
            MptcpOption::MpJoin(o) => o.write_body(out),
            MptcpOption::Dss(o) => o.write_body(out),
            MptcpOption::AddAddr(o) => o.write_body(out),
            MptcpOption::AddAddrV0(o) => o.write_body(out),
            MptcpOption::RemoveAddr(o) => o.write_body(out),
            MptcpOption::MpPrio(o) => o.write_body(out),
            MptcpOption::MpFail(o) => o.write_body(out),
            MptcpOption::MpFastclose(o) => o.write_body(out),
            MptcpOption::MpTcpRst(o) => o.write_body(out),
            MptcpOption::Unknown {
                subtype,
                low_bits,
                data,
            } => write_unknown(*subtype, *low_bits, data, out),
        };
        let length = out.len() - start;
        let result = written.and_then(|()| {
            u8::try_from(length).map_err(|_| Error::encode(ErrorKind::OptionTooLong { length }))
        });
        match result {
            Ok(length_byte) => {
                out[start + 1] = length_byte;
                Ok(())
            }
            Err(err) => {
                out.truncate(start);
                Err(err)
            }
        }
    }

    /// The option's bytes, kind and length included.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.wire_len());
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// The option's length on the wire (what its length byte says).
    pub fn wire_len(&self) -> usize {
        match self {
            MptcpOption::MpCapable(o) => o.wire_len(),
            MptcpOption::MpJoin(o) => o.wire_len(),
            MptcpOption::Dss(o) => o.wire_len(),
            MptcpOption::AddAddr(o) => o.wire_len(),
            MptcpOption::AddAddrV0(o) => o.wire_len(),
            MptcpOption::RemoveAddr(o) => o.wire_len(),
            MptcpOption::MpPrio(o) => o.wire_len(),
            MptcpOption::MpFail(_) => len::MP_FAIL,
            MptcpOption::MpFastclose(_) => len::MP_FASTCLOSE,
            MptcpOption::MpTcpRst(_) => len::MP_TCPRST,
            MptcpOption::Unknown { data, .. } => 3 + data.len(),
        }
    }
}

fn write_unknown(subtype: u8, low_bits: u8, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    check_width(subtype.into(), 4, "mptcp subtype above 15")?;
    check_width(low_bits.into(), 4, "mptcp low bits above 15")?;
    if Subtype::from_u8(subtype).is_some_and(|s| s != Subtype::Experimental) {
        return Err(Error::unencodable(
            "unknown mptcp option with an assigned subtype",
        ));
    }
    out.push((subtype << 4) | low_bits);
    out.extend_from_slice(data);
    Ok(())
}

macro_rules! impl_from_variant {
    ($($ty:ident),*) => {$(
        impl From<$ty> for MptcpOption {
            fn from(option: $ty) -> Self {
                MptcpOption::$ty(option)
            }
        }
    )*};
}
impl_from_variant!(
    MpCapable,
    MpJoin,
    Dss,
    AddAddr,
    AddAddrV0,
    RemoveAddr,
    MpPrio,
    MpFail,
    MpFastclose,
    MpTcpRst
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_kind_and_length() {
        let err = MptcpOption::parse(&[2, 4, 5, 0xb4]).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::NotMptcp { kind: 2 });
        let err = MptcpOption::parse(&[30, 4, 0x00]).unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::LengthMismatch {
                declared: 4,
                actual: 3
            }
        );
        assert!(MptcpOption::parse(&[30, 2]).is_err());
        assert!(MptcpOption::parse(&[]).is_err());
    }

    #[test]
    fn experimental_and_unassigned_are_kept_raw() {
        let bytes = [30, 6, 0xf3, 1, 2, 3];
        let parsed = MptcpOption::parse(&bytes).unwrap();
        assert_eq!(
            parsed,
            MptcpOption::Unknown {
                subtype: 0xf,
                low_bits: 3,
                data: vec![1, 2, 3]
            }
        );
        assert_eq!(parsed.to_bytes().unwrap(), bytes);
        let unassigned = [30, 3, 0x9a];
        assert_eq!(
            MptcpOption::parse(&unassigned).unwrap().to_bytes().unwrap(),
            unassigned
        );
    }

    #[test]
    fn unknown_with_assigned_subtype_is_refused() {
        let option = MptcpOption::Unknown {
            subtype: 2,
            low_bits: 0,
            data: vec![],
        };
        assert!(option.to_bytes().is_err());
    }

    #[test]
    fn too_long_is_refused_and_leaves_output_alone() {
        let option = MptcpOption::RemoveAddr(RemoveAddr {
            address_ids: vec![1; 253],
            reserved: 0,
        });
        let mut out = vec![9];
        let err = option.write_to(&mut out).unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::OptionTooLong { length: 256 });
        assert_eq!(out, [9]);
    }

    #[test]
    fn subtype_table() {
        for subtype in Subtype::ALL {
            assert_eq!(Subtype::from_u8(subtype as u8), Some(subtype));
        }
        assert_eq!(Subtype::from_u8(9), None);
    }
}
