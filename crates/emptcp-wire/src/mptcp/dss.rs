//! DSS, the Data Sequence Signal (RFC 8684 section 3.3, figure 9).

use super::{Header, Subtype, len, subtype_byte};
use crate::error::{Error, Result};
use crate::reader::Reader;

/// A Data ACK or data sequence number, in the width the option carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataSeq {
    /// 4 octets: the low 32 bits of the 64-bit number.
    Short(u32),
    /// 8 octets.
    Long(u64),
}

impl DataSeq {
    /// The value as 64 bits (a short form is the low half, zero-extended).
    pub fn value(self) -> u64 {
        match self {
            DataSeq::Short(value) => value.into(),
            DataSeq::Long(value) => value,
        }
    }

    fn wire_len(self) -> usize {
        match self {
            DataSeq::Short(_) => 4,
            DataSeq::Long(_) => 8,
        }
    }

    fn write(self, out: &mut Vec<u8>) {
        match self {
            DataSeq::Short(value) => out.extend(value.to_be_bytes()),
            DataSeq::Long(value) => out.extend(value.to_be_bytes()),
        }
    }

    fn read(long: bool, reader: &mut Reader<'_>) -> Result<Self> {
        Ok(if long {
            DataSeq::Long(reader.u64()?)
        } else {
            DataSeq::Short(reader.u32()?)
        })
    }
}

/// A DSS mapping: which data-level bytes this subflow range carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DssMapping {
    /// Data Sequence Number (flag m says 8 octets).
    pub data_seq: DataSeq,
    /// Subflow Sequence Number, relative to the subflow's initial sequence number.
    pub subflow_seq: u32,
    /// Data-Level Length.
    pub data_len: u16,
    /// The DSS checksum, present when the connection negotiated checksums.
    pub checksum: Option<u16>,
}

impl DssMapping {
    fn wire_len(&self) -> usize {
        self.data_seq.wire_len() + 4 + 2 + if self.checksum.is_some() { 2 } else { 0 }
    }
}

/// DSS: an optional Data ACK, an optional mapping and the DATA_FIN flag.
///
/// ```text
/// | Kind | Length |Subtype| (reserved) |F|m|M|a|A|
/// | Data ACK (4 or 8 octets)                       (if A) |
/// | Data Sequence Number (4 or 8 octets)           (if M) |
/// | Subflow Sequence Number (4 octets)             (if M) |
/// | Data-Level Length (2) | Checksum (2, if negotiated)   |
/// ```
///
/// The flags `A`, `a`, `M`, `m` follow from [`Dss::data_ack`] and [`Dss::mapping`]; `F` is
/// [`Dss::data_fin`]. Checksum presence is read from the length: the mapping is followed by
/// either nothing or a 2-byte checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dss {
    /// The Data ACK (flag A; flag a for 8 octets).
    pub data_ack: Option<DataSeq>,
    /// The mapping (flag M; flag m for an 8-octet DSN).
    pub mapping: Option<DssMapping>,
    /// F: DATA_FIN.
    pub data_fin: bool,
    /// The bits of the 12-bit flag field that no field above accounts for: the 7 reserved bits
    /// (mask `0x0fe0`), plus `a` (0x02) when there is no Data ACK and `m` (0x08) when there is
    /// no mapping, which RFC 8684 leaves meaningless in that case.
    pub unused_bits: u16,
}

impl Dss {
    /// A: a Data ACK is present.
    pub const FLAG_DATA_ACK: u16 = 0x01;
    /// a: the Data ACK is 8 octets.
    pub const FLAG_DATA_ACK_LONG: u16 = 0x02;
    /// M: a mapping is present.
    pub const FLAG_MAPPING: u16 = 0x04;
    /// m: the data sequence number is 8 octets.
    pub const FLAG_DSN_LONG: u16 = 0x08;
    /// F: DATA_FIN.
    pub const FLAG_DATA_FIN: u16 = 0x10;
    /// The reserved bits.
    pub const RESERVED_MASK: u16 = 0x0fe0;

    /// The flags the typed fields imply, and which bits they claim.
    fn typed_flags(&self) -> (u16, u16) {
        let mut flags = 0;
        let mut claimed = Self::FLAG_DATA_ACK | Self::FLAG_MAPPING | Self::FLAG_DATA_FIN;
        if let Some(ack) = self.data_ack {
            flags |= Self::FLAG_DATA_ACK;
            claimed |= Self::FLAG_DATA_ACK_LONG;
            if matches!(ack, DataSeq::Long(_)) {
                flags |= Self::FLAG_DATA_ACK_LONG;
            }
        }
        if let Some(mapping) = self.mapping {
            flags |= Self::FLAG_MAPPING;
            claimed |= Self::FLAG_DSN_LONG;
            if matches!(mapping.data_seq, DataSeq::Long(_)) {
                flags |= Self::FLAG_DSN_LONG;
            }
        }
        if self.data_fin {
            flags |= Self::FLAG_DATA_FIN;
        }
        (flags, claimed)
    }

    /// The 12-bit flag field as it goes on the wire.
    pub fn flags(&self) -> u16 {
        let (flags, claimed) = self.typed_flags();
        flags | (self.unused_bits & !claimed & 0x0fff)
    }

    pub(super) fn parse(header: &Header, reader: &mut Reader<'_>) -> Result<Self> {
        if header.length < len::DSS_BASE {
            return Err(header.bad_length());
        }
        let flags = u16::from(header.low_bits) << 8 | u16::from(reader.u8()?);
        let has_ack = flags & Self::FLAG_DATA_ACK != 0;
        let has_mapping = flags & Self::FLAG_MAPPING != 0;
        let ack_len = match (has_ack, flags & Self::FLAG_DATA_ACK_LONG != 0) {
            (false, _) => 0,
            (true, false) => 4,
            (true, true) => 8,
        };
        let mapping_len = match (has_mapping, flags & Self::FLAG_DSN_LONG != 0) {
            (false, _) => 0,
            (true, false) => 4 + 4 + 2,
            (true, true) => 8 + 4 + 2,
        };
        let without_checksum = len::DSS_BASE + ack_len + mapping_len;
        let has_checksum = match header.length {
            l if l == without_checksum => false,
            l if has_mapping && l == without_checksum + 2 => true,
            _ => return Err(header.bad_length()),
        };
        let data_ack = match has_ack {
            true => Some(DataSeq::read(
                flags & Self::FLAG_DATA_ACK_LONG != 0,
                reader,
            )?),
            false => None,
        };
        let mapping = match has_mapping {
            true => Some(DssMapping {
                data_seq: DataSeq::read(flags & Self::FLAG_DSN_LONG != 0, reader)?,
                subflow_seq: reader.u32()?,
                data_len: reader.u16()?,
                checksum: match has_checksum {
                    true => Some(reader.u16()?),
                    false => None,
                },
            }),
            false => None,
        };
        let mut dss = Dss {
            data_ack,
            mapping,
            data_fin: flags & Self::FLAG_DATA_FIN != 0,
            unused_bits: 0,
        };
        let (_, claimed) = dss.typed_flags();
        dss.unused_bits = flags & !claimed;
        Ok(dss)
    }

    pub(super) fn write_body(&self, out: &mut Vec<u8>) -> Result<()> {
        let (_, claimed) = self.typed_flags();
        if self.unused_bits & (claimed | 0xf000) != 0 {
            return Err(Error::unencodable(
                "dss unused bits overlapping the typed flags",
            ));
        }
        let [high, low] = self.flags().to_be_bytes();
        out.push(subtype_byte(Subtype::Dss, high));
        out.push(low);
        if let Some(ack) = self.data_ack {
            ack.write(out);
        }
        if let Some(mapping) = self.mapping {
            mapping.data_seq.write(out);
            out.extend(mapping.subflow_seq.to_be_bytes());
            out.extend(mapping.data_len.to_be_bytes());
            if let Some(checksum) = mapping.checksum {
                out.extend(checksum.to_be_bytes());
            }
        }
        Ok(())
    }

    pub(super) fn wire_len(&self) -> usize {
        len::DSS_BASE
            + self.data_ack.map_or(0, DataSeq::wire_len)
            + self.mapping.as_ref().map_or(0, DssMapping::wire_len)
    }
}

#[cfg(test)]
mod tests {
    //! Byte vectors laid out by hand from RFC 8684 figure 9, one per flag combination.
    use super::*;
    use crate::error::ErrorKind;
    use crate::mptcp::MptcpOption;

    fn check(bytes: &[u8], expected: Dss) {
        let parsed = MptcpOption::parse(bytes).unwrap();
        assert_eq!(parsed, MptcpOption::Dss(expected));
        assert_eq!(parsed.to_bytes().unwrap(), bytes);
        assert_eq!(parsed.wire_len(), bytes.len());
    }

    fn dss(data_ack: Option<DataSeq>, mapping: Option<DssMapping>, data_fin: bool) -> Dss {
        Dss {
            data_ack,
            mapping,
            data_fin,
            unused_bits: 0,
        }
    }

    const MAP32: DssMapping = DssMapping {
        data_seq: DataSeq::Short(0x1111_1111),
        subflow_seq: 0x2222_2222,
        data_len: 0x3333,
        checksum: None,
    };

    #[test]
    fn empty() {
        check(&[0x1e, 0x04, 0x20, 0x00], dss(None, None, false));
    }

    #[test]
    fn data_ack_32() {
        let bytes = [0x1e, 0x08, 0x20, 0x01, 0xaa, 0xbb, 0xcc, 0xdd];
        check(&bytes, dss(Some(DataSeq::Short(0xaabb_ccdd)), None, false));
    }

    #[test]
    fn data_ack_64() {
        let bytes = [0x1e, 0x0c, 0x20, 0x03, 1, 2, 3, 4, 5, 6, 7, 8];
        check(
            &bytes,
            dss(Some(DataSeq::Long(0x0102_0304_0506_0708)), None, false),
        );
    }

    #[test]
    fn mapping_32_without_checksum() {
        #[rustfmt::skip]
        let bytes = [
            0x1e, 0x0e, 0x20, 0x04,
            0x11, 0x11, 0x11, 0x11,
            0x22, 0x22, 0x22, 0x22,
            0x33, 0x33,
        ];
        check(&bytes, dss(None, Some(MAP32), false));
    }

    #[test]
    fn mapping_32_with_checksum() {
        #[rustfmt::skip]
        let bytes = [
            0x1e, 0x10, 0x20, 0x04,
            0x11, 0x11, 0x11, 0x11,
            0x22, 0x22, 0x22, 0x22,
            0x33, 0x33, 0x44, 0x44,
        ];
        let mapping = DssMapping {
            checksum: Some(0x4444),
            ..MAP32
        };
        check(&bytes, dss(None, Some(mapping), false));
    }

    #[test]
    fn ack_64_mapping_64_checksum_and_fin() {
        // Flags F|m|M|a|A = 0x1f: the longest DSS, 4 + 8 + 8 + 4 + 2 + 2 = 28 bytes.
        #[rustfmt::skip]
        let bytes = [
            0x1e, 0x1c, 0x20, 0x1f,
            0, 0, 0, 0, 0, 0, 0, 9,
            0, 0, 0, 1, 0, 0, 0, 0,
            0, 0, 0, 5,
            0x00, 0x00, 0xab, 0xcd,
        ];
        let mapping = DssMapping {
            data_seq: DataSeq::Long(1 << 32),
            subflow_seq: 5,
            data_len: 0,
            checksum: Some(0xabcd),
        };
        check(&bytes, dss(Some(DataSeq::Long(9)), Some(mapping), true));
    }

    #[test]
    fn ack_32_mapping_64_without_checksum() {
        #[rustfmt::skip]
        let bytes = [
            0x1e, 0x16, 0x20, 0x0d,
            0, 0, 0, 7,
            0, 0, 0, 0, 0, 0, 0, 8,
            0, 0, 0, 9,
            0x05, 0xa0,
        ];
        let mapping = DssMapping {
            data_seq: DataSeq::Long(8),
            subflow_seq: 9,
            data_len: 1440,
            checksum: None,
        };
        check(&bytes, dss(Some(DataSeq::Short(7)), Some(mapping), false));
    }

    #[test]
    fn every_flag_combination_roundtrips() {
        for flags in 0u8..0x20 {
            let has_ack = flags & 1 != 0;
            let has_map = flags & 4 != 0;
            for checksum in [false, true] {
                if checksum && !has_map {
                    continue;
                }
                let mut bytes = vec![30, 0, 0x20, flags];
                if has_ack {
                    bytes.extend(vec![0x5a; if flags & 2 != 0 { 8 } else { 4 }]);
                }
                if has_map {
                    bytes.extend(vec![0xa5; if flags & 8 != 0 { 8 } else { 4 }]);
                    bytes.extend([0, 0, 0, 1, 0, 2]);
                    if checksum {
                        bytes.extend([0xff, 0xfe]);
                    }
                }
                bytes[1] = bytes.len() as u8;
                let parsed = MptcpOption::parse(&bytes).unwrap();
                assert_eq!(parsed.to_bytes().unwrap(), bytes, "flags {flags:#x}");
            }
        }
    }

    #[test]
    fn reserved_and_orphan_width_bits_are_kept() {
        // a set without A, reserved bits 0xf in the subtype byte's low nibble.
        let bytes = [0x1e, 0x04, 0x2f, 0xe2];
        let parsed = MptcpOption::parse(&bytes).unwrap();
        assert_eq!(
            parsed,
            MptcpOption::Dss(Dss {
                data_ack: None,
                mapping: None,
                data_fin: false,
                unused_bits: 0x0fe2,
            })
        );
        assert_eq!(parsed.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn checksum_only_after_a_mapping() {
        // A alone with 2 extra bytes: no mapping, so no checksum can explain them.
        let bytes = [0x1e, 0x0a, 0x20, 0x01, 0, 0, 0, 1, 0, 0];
        let err = MptcpOption::parse(&bytes).unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::BadMptcpLength {
                subtype: 2,
                length: 10
            }
        );
    }

    #[test]
    fn length_disagreeing_with_flags_is_malformed() {
        let bytes = [0x1e, 0x08, 0x20, 0x04, 0, 0, 0, 1];
        assert!(MptcpOption::parse(&bytes).is_err());
        let err = MptcpOption::parse(&[0x1e, 0x03, 0x20]).unwrap_err();
        assert_eq!(
            err.kind(),
            &ErrorKind::BadMptcpLength {
                subtype: 2,
                length: 3
            }
        );
    }

    #[test]
    fn overlapping_unused_bits_are_refused() {
        let mut value = dss(Some(DataSeq::Short(1)), None, false);
        value.unused_bits = Dss::FLAG_DATA_ACK_LONG;
        assert!(MptcpOption::Dss(value).to_bytes().is_err());
    }
}
