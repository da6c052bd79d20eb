//! MP_PRIO (RFC 8684 section 3.3.8, figure 11; RFC 6824 figure 11), MP_FASTCLOSE (section 3.5,
//! figure 14), MP_TCPRST (section 3.6, figure 15) and MP_FAIL (section 3.7, figure 16).

use super::{Header, Subtype, check_width, len, subtype_byte};
use crate::error::Result;
use crate::reader::Reader;

/// MP_PRIO: the sender asks the receiver to change the subflow's priority.
///
/// ```text
/// RFC 8684 (3): | Kind | Length |Subtype|(rsv)|B|
/// RFC 6824 (4): | Kind | Length |Subtype|(rsv)|B| AddrID |
/// ```
///
/// The two forms differ in length, so they parse the same whatever the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MpPrio {
    /// B: the receiver should treat the subflow as backup.
    pub backup: bool,
    /// The RFC 6824 address id, naming the address whose subflows change.
    pub address_id: Option<u8>,
    /// The three reserved bits between the subtype and B.
    pub reserved: u8,
}

/// MP_FAIL: fall back to a single subflow from this data sequence number on.
///
/// ```text
/// | Kind | Length = 12 |Subtype| (reserved 12 bits) |
/// | Data Sequence Number (8 octets) |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MpFail {
    /// The 64-bit data sequence number of the failed mapping.
    pub data_seq: u64,
    /// The 12 reserved bits.
    pub reserved: u16,
}

/// MP_FASTCLOSE: abrupt close of the whole connection.
///
/// ```text
/// | Kind | Length = 12 |Subtype| (reserved 12 bits) |
/// | Option Receiver's Key (8 octets) |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MpFastclose {
    /// The receiver's key, proving the sender knows it.
    pub receiver_key: u64,
    /// The 12 reserved bits.
    pub reserved: u16,
}

/// MP_TCPRST: why a subflow was reset.
///
/// ```text
/// | Kind | Length = 4 |Subtype|U|V|W|T| Reason |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MpTcpRst {
    /// The flag nibble `U V W T`; see the `FLAG_` constants.
    pub flags: u8,
    /// The reason code; see the `REASON_` constants.
    pub reason: u8,
}

fn parse_u64_with_reserved(header: &Header, reader: &mut Reader<'_>) -> Result<(u64, u16)> {
    if header.length != len::MP_FAIL {
        return Err(header.bad_length());
    }
    let reserved = u16::from(header.low_bits) << 8 | u16::from(reader.u8()?);
    Ok((reader.u64()?, reserved))
}

fn write_u64_with_reserved(
    subtype: Subtype,
    value: u64,
    reserved: u16,
    out: &mut Vec<u8>,
) -> Result<()> {
    check_width(reserved, 12, "reserved bits above 12 bits")?;
    let [high, low] = reserved.to_be_bytes();
    out.push(subtype_byte(subtype, high));
    out.push(low);
    out.extend(value.to_be_bytes());
    Ok(())
}

impl MpPrio {
    pub(super) fn parse(header: &Header, reader: &mut Reader<'_>) -> Result<Self> {
        let address_id = match header.length {
            len::MP_PRIO => None,
            len::MP_PRIO_V0 => Some(reader.u8()?),
            _ => return Err(header.bad_length()),
        };
        Ok(MpPrio {
            backup: header.low_bits & 1 != 0,
            address_id,
            reserved: header.low_bits >> 1,
        })
    }

    pub(super) fn write_body(&self, out: &mut Vec<u8>) -> Result<()> {
        check_width(self.reserved.into(), 3, "mp_prio reserved bits above 7")?;
        out.push(subtype_byte(
            Subtype::MpPrio,
            self.reserved << 1 | u8::from(self.backup),
        ));
        out.extend(self.address_id);
        Ok(())
    }

    pub(super) fn wire_len(&self) -> usize {
        match self.address_id {
            None => len::MP_PRIO,
            Some(_) => len::MP_PRIO_V0,
        }
    }
}

impl MpFail {
    pub(super) fn parse(header: &Header, reader: &mut Reader<'_>) -> Result<Self> {
        let (data_seq, reserved) = parse_u64_with_reserved(header, reader)?;
        Ok(MpFail { data_seq, reserved })
    }

    pub(super) fn write_body(&self, out: &mut Vec<u8>) -> Result<()> {
        write_u64_with_reserved(Subtype::MpFail, self.data_seq, self.reserved, out)
    }
}

impl MpFastclose {
    pub(super) fn parse(header: &Header, reader: &mut Reader<'_>) -> Result<Self> {
        let (receiver_key, reserved) = parse_u64_with_reserved(header, reader)?;
        Ok(MpFastclose {
            receiver_key,
            reserved,
        })
    }

    pub(super) fn write_body(&self, out: &mut Vec<u8>) -> Result<()> {
        write_u64_with_reserved(Subtype::MpFastclose, self.receiver_key, self.reserved, out)
    }
}

impl MpTcpRst {
    /// U: unassigned.
    pub const FLAG_U: u8 = 0x8;
    /// V: unassigned.
    pub const FLAG_V: u8 = 0x4;
    /// W: unassigned.
    pub const FLAG_W: u8 = 0x2;
    /// T: transient error; the sender may accept a new subflow on this path later.
    pub const FLAG_TRANSIENT: u8 = 0x1;

    /// Unspecified error.
    pub const REASON_UNSPECIFIED: u8 = 0x00;
    /// MPTCP-specific error.
    pub const REASON_MPTCP_ERROR: u8 = 0x01;
    /// Lack of resources.
    pub const REASON_NO_RESOURCES: u8 = 0x02;
    /// Administratively prohibited.
    pub const REASON_PROHIBITED: u8 = 0x03;
    /// Too much outstanding data.
    pub const REASON_TOO_MUCH_DATA: u8 = 0x04;
    /// Unacceptable performance.
    pub const REASON_BAD_PERFORMANCE: u8 = 0x05;
    /// Middlebox interference.
    pub const REASON_MIDDLEBOX: u8 = 0x06;

    pub(super) fn parse(header: &Header, reader: &mut Reader<'_>) -> Result<Self> {
        if header.length != len::MP_TCPRST {
            return Err(header.bad_length());
        }
        Ok(MpTcpRst {
            flags: header.low_bits,
            reason: reader.u8()?,
        })
    }

    pub(super) fn write_body(&self, out: &mut Vec<u8>) -> Result<()> {
        check_width(self.flags.into(), 4, "mp_tcprst flags above 15")?;
        out.push(subtype_byte(Subtype::MpTcpRst, self.flags));
        out.push(self.reason);
        Ok(())
    }

    /// T: the error is transient.
    pub fn transient(&self) -> bool {
        self.flags & Self::FLAG_TRANSIENT != 0
    }
}

#[cfg(test)]
mod tests {
    //! Byte vectors laid out by hand from RFC 8684 figures 11, 14, 15 and 16.
    use super::*;
    use crate::error::ErrorKind;
    use crate::mptcp::MptcpOption;

    fn check(bytes: &[u8], expected: MptcpOption) {
        let parsed = MptcpOption::parse(bytes).unwrap();
        assert_eq!(parsed, expected);
        assert_eq!(parsed.to_bytes().unwrap(), bytes);
        assert_eq!(parsed.wire_len(), bytes.len());
    }

    #[test]
    fn mp_prio_v1() {
        let backup = MpPrio {
            backup: true,
            address_id: None,
            reserved: 0,
        };
        check(&[0x1e, 0x03, 0x51], backup.into());
        let regular = MpPrio {
            backup: false,
            ..backup
        };
        check(&[0x1e, 0x03, 0x50], regular.into());
    }

    #[test]
    fn mp_prio_v0_with_address_id() {
        let prio = MpPrio {
            backup: true,
            address_id: Some(9),
            reserved: 0,
        };
        check(&[0x1e, 0x04, 0x51, 0x09], prio.into());
        assert!(MptcpOption::parse(&[0x1e, 0x05, 0x51, 0, 0]).is_err());
    }

    #[test]
    fn mp_fail() {
        let bytes = [0x1e, 0x0c, 0x60, 0x00, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
        let expected = MpFail {
            data_seq: 0xdead_beef,
            reserved: 0,
        };
        check(&bytes, expected.into());
    }

    #[test]
    fn mp_fastclose() {
        let bytes = [0x1e, 0x0c, 0x70, 0x00, 1, 2, 3, 4, 5, 6, 7, 8];
        let expected = MpFastclose {
            receiver_key: 0x0102_0304_0506_0708,
            reserved: 0,
        };
        check(&bytes, expected.into());
        let reserved = [0x1e, 0x0c, 0x7f, 0xff, 1, 2, 3, 4, 5, 6, 7, 8];
        let expected = MpFastclose {
            receiver_key: 0x0102_0304_0506_0708,
            reserved: 0xfff,
        };
        check(&reserved, expected.into());
        let err = MptcpOption::parse(&[0x1e, 0x0b, 0x70, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::BadMptcpLength {
                subtype: 7,
                length: 11
            }
        );
    }

    #[test]
    fn mp_tcprst() {
        let bytes = [0x1e, 0x04, 0x81, 0x06];
        let expected = MpTcpRst {
            flags: MpTcpRst::FLAG_TRANSIENT,
            reason: MpTcpRst::REASON_MIDDLEBOX,
        };
        check(&bytes, expected.into());
        assert!(expected.transient());
        let all_flags = [0x1e, 0x04, 0x8f, 0x01];
        let expected = MpTcpRst {
            flags: 0xf,
            reason: 1,
        };
        check(&all_flags, expected.into());
        assert!(MptcpOption::parse(&[0x1e, 0x03, 0x81]).is_err());
    }
}
