//! MP_CAPABLE (RFC 8684 section 3.1, figure 4; RFC 6824 section 3.1).

use super::{Header, Subtype, check_width, len, subtype_byte};
use crate::error::Result;
use crate::reader::Reader;

/// MP_CAPABLE: version, flags and whatever keys the handshake step carries.
///
/// ```text
/// | Kind | Length |Subtype|Version|A|B|C|D|E|F|G|H|
/// | Option Sender's Key (64 bits)      (if length >= 12) |
/// | Option Receiver's Key (64 bits)    (if length >= 20) |
/// | Data-Level Length (16) | Checksum (16) |  (22: length only, 24: both)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MpCapable {
    /// The version nibble: 0 for RFC 6824, 1 for RFC 8684.
    pub version: u8,
    /// The flag byte `A B C D E F G H`, bit A first; see the `FLAG_` constants.
    pub flags: u8,
    /// The keys and data fields, chosen by the length.
    pub keys: MpCapableKeys,
}

/// The part of MP_CAPABLE after the flags; the option length selects the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MpCapableKeys {
    /// Length 4: the v1 SYN, which carries no key.
    None,
    /// Length 12: the sender's key, as in the v1 SYN/ACK and the v0 SYN and SYN/ACK.
    Sender(u64),
    /// Length 20: both keys, as in the third ACK.
    Both {
        /// Option Sender's Key.
        sender: u64,
        /// Option Receiver's Key.
        receiver: u64,
    },
    /// Length 22 (no checksum) or 24: both keys and a data-level length, as on the first data
    /// packet when the third ACK was lost or carried data (RFC 8684 only).
    WithData {
        /// Option Sender's Key.
        sender: u64,
        /// Option Receiver's Key.
        receiver: u64,
        /// Data-Level Length of the payload this option maps.
        data_len: u16,
        /// The DSS checksum, present when checksums were negotiated (length 24).
        checksum: Option<u16>,
    },
}

impl MpCapable {
    /// A: checksum required.
    pub const FLAG_CHECKSUM_REQUIRED: u8 = 0x80;
    /// B: extensibility, reserved for future use.
    pub const FLAG_EXTENSIBILITY: u8 = 0x40;
    /// C: do not try to open subflows to the sender's source address (RFC 8684 only).
    pub const FLAG_NO_SOURCE_ADDRESS: u8 = 0x20;
    /// H: HMAC-SHA256 (v1; HMAC-SHA1 in v0).
    pub const FLAG_HMAC_SHA256: u8 = 0x01;

    pub(super) fn parse(header: &Header, reader: &mut Reader<'_>) -> Result<Self> {
        const LENGTHS: [usize; 5] = [
            len::MP_CAPABLE_SYN,
            len::MP_CAPABLE_SYNACK,
            len::MP_CAPABLE_ACK,
            len::MP_CAPABLE_DATA,
            len::MP_CAPABLE_DATA_CSUM,
        ];
        if !LENGTHS.contains(&header.length) {
            return Err(header.bad_length());
        }
        let version = header.low_bits;
        let flags = reader.u8()?;
        let keys = match header.length {
            len::MP_CAPABLE_SYN => MpCapableKeys::None,
            len::MP_CAPABLE_SYNACK => MpCapableKeys::Sender(reader.u64()?),
            len::MP_CAPABLE_ACK => MpCapableKeys::Both {
                sender: reader.u64()?,
                receiver: reader.u64()?,
            },
            len::MP_CAPABLE_DATA | len::MP_CAPABLE_DATA_CSUM => MpCapableKeys::WithData {
                sender: reader.u64()?,
                receiver: reader.u64()?,
                data_len: reader.u16()?,
                checksum: match header.length {
                    len::MP_CAPABLE_DATA_CSUM => Some(reader.u16()?),
                    _ => None,
                },
            },
            _ => return Err(header.bad_length()),
        };
        Ok(MpCapable {
            version,
            flags,
            keys,
        })
    }

    pub(super) fn write_body(&self, out: &mut Vec<u8>) -> Result<()> {
        check_width(self.version.into(), 4, "mp_capable version above 15")?;
        out.push(subtype_byte(Subtype::MpCapable, self.version));
        out.push(self.flags);
        match self.keys {
            MpCapableKeys::None => {}
            MpCapableKeys::Sender(sender) => out.extend(sender.to_be_bytes()),
            MpCapableKeys::Both { sender, receiver } => {
                out.extend(sender.to_be_bytes());
                out.extend(receiver.to_be_bytes());
            }
            MpCapableKeys::WithData {
                sender,
                receiver,
                data_len,
                checksum,
            } => {
                out.extend(sender.to_be_bytes());
                out.extend(receiver.to_be_bytes());
                out.extend(data_len.to_be_bytes());
                if let Some(checksum) = checksum {
                    out.extend(checksum.to_be_bytes());
                }
            }
        }
        Ok(())
    }

    pub(super) fn wire_len(&self) -> usize {
        match self.keys {
            MpCapableKeys::None => len::MP_CAPABLE_SYN,
            MpCapableKeys::Sender(_) => len::MP_CAPABLE_SYNACK,
            MpCapableKeys::Both { .. } => len::MP_CAPABLE_ACK,
            MpCapableKeys::WithData { checksum: None, .. } => len::MP_CAPABLE_DATA,
            MpCapableKeys::WithData { .. } => len::MP_CAPABLE_DATA_CSUM,
        }
    }

    /// The A flag: the sender requires DSS checksums.
    pub fn checksum_required(&self) -> bool {
        self.flags & Self::FLAG_CHECKSUM_REQUIRED != 0
    }

    /// The sender's key, if this form carries one.
    pub fn sender_key(&self) -> Option<u64> {
        match self.keys {
            MpCapableKeys::None => None,
            MpCapableKeys::Sender(sender)
            | MpCapableKeys::Both { sender, .. }
            | MpCapableKeys::WithData { sender, .. } => Some(sender),
        }
    }

    /// The receiver's key, if this form carries one.
    pub fn receiver_key(&self) -> Option<u64> {
        match self.keys {
            MpCapableKeys::None | MpCapableKeys::Sender(_) => None,
            MpCapableKeys::Both { receiver, .. } | MpCapableKeys::WithData { receiver, .. } => {
                Some(receiver)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Byte vectors laid out by hand from RFC 8684 figure 4.
    use super::*;
    use crate::error::ErrorKind;
    use crate::mptcp::MptcpOption;

    fn roundtrip(bytes: &[u8], expected: MpCapable) {
        let parsed = MptcpOption::parse(bytes).unwrap();
        assert_eq!(parsed, MptcpOption::MpCapable(expected));
        assert_eq!(parsed.to_bytes().unwrap(), bytes);
        assert_eq!(parsed.wire_len(), bytes.len());
    }

    #[test]
    fn syn_v1() {
        // Kind 30, length 4, subtype 0 version 1, flags A|H.
        let expected = MpCapable {
            version: 1,
            flags: 0x81,
            keys: MpCapableKeys::None,
        };
        roundtrip(&[0x1e, 0x04, 0x01, 0x81], expected);
    }

    #[test]
    fn synack_v1_and_syn_v0_share_a_layout() {
        let bytes = [0x1e, 0x0c, 0x01, 0x01, 1, 2, 3, 4, 5, 6, 7, 8];
        let expected = MpCapable {
            version: 1,
            flags: 0x01,
            keys: MpCapableKeys::Sender(0x0102_0304_0506_0708),
        };
        roundtrip(&bytes, expected);
        let v0 = [0x1e, 0x0c, 0x00, 0x81, 8, 7, 6, 5, 4, 3, 2, 1];
        let expected = MpCapable {
            version: 0,
            flags: 0x81,
            keys: MpCapableKeys::Sender(0x0807_0605_0403_0201),
        };
        roundtrip(&v0, expected);
    }

    #[test]
    fn third_ack() {
        #[rustfmt::skip]
        let bytes = [
            0x1e, 0x14, 0x01, 0x21,
            0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
            0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb,
        ];
        let expected = MpCapable {
            version: 1,
            flags: MpCapable::FLAG_NO_SOURCE_ADDRESS | MpCapable::FLAG_HMAC_SHA256,
            keys: MpCapableKeys::Both {
                sender: 0xaaaa_aaaa_aaaa_aaaa,
                receiver: 0xbbbb_bbbb_bbbb_bbbb,
            },
        };
        roundtrip(&bytes, expected);
    }

    #[test]
    fn ack_with_data_length_and_checksum() {
        #[rustfmt::skip]
        let without = [
            0x1e, 0x16, 0x01, 0x01,
            0, 0, 0, 0, 0, 0, 0, 1,
            0, 0, 0, 0, 0, 0, 0, 2,
            0x05, 0xdc,
        ];
        let mut expected = MpCapable {
            version: 1,
            flags: 0x01,
            keys: MpCapableKeys::WithData {
                sender: 1,
                receiver: 2,
                data_len: 1500,
                checksum: None,
            },
        };
        roundtrip(&without, expected);
        let mut with = without.to_vec();
        with[1] = 24;
        with.extend([0xbe, 0xef]);
        if let MpCapableKeys::WithData { checksum, .. } = &mut expected.keys {
            *checksum = Some(0xbeef);
        }
        roundtrip(&with, expected);
    }

    #[test]
    fn other_lengths_are_malformed() {
        for length in [3usize, 5, 8, 11, 13, 19, 21, 23, 25, 32] {
            let mut bytes = vec![0u8; length];
            bytes[0] = 30;
            bytes[1] = length as u8;
            bytes[2] = 0x01;
            let err = MptcpOption::parse(&bytes).unwrap_err();
            assert_eq!(
                err.kind(),
                &ErrorKind::BadMptcpLength { subtype: 0, length },
                "length {length}"
            );
            assert_eq!(err.offset(), Some(1));
        }
    }
}
