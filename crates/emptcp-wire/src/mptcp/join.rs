//! MP_JOIN (RFC 8684 section 3.2, figures 5, 6 and 7).

use super::{Header, Subtype, check_width, len, subtype_byte};
use crate::error::Result;
use crate::reader::Reader;

/// MP_JOIN in its three handshake forms; the length (12, 16, 24) selects the form.
///
/// ```text
/// SYN (12):     |Subtype|(rsv)|B| Address ID | Receiver's Token (32) | Sender's Random Number (32) |
/// SYN/ACK (16): |Subtype|(rsv)|B| Address ID | Sender's Truncated HMAC (64) | Sender's Random Number (32) |
/// ACK (24):     |Subtype|     (reserved 12 bits)     | Sender's HMAC (160) |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MpJoin {
    /// The SYN that opens a subflow.
    Syn {
        /// B: the sender wants this subflow as a backup.
        backup: bool,
        /// The sender's id for the address the SYN leaves from.
        address_id: u8,
        /// The receiver's token (from its key, see [`crate::crypto::token_from_key`]).
        token: u32,
        /// The sender's random number (R-A).
        random: u32,
        /// The three reserved bits between the subtype and B.
        reserved: u8,
    },
    /// The SYN/ACK answering it.
    SynAck {
        /// B: the sender wants this subflow as a backup.
        backup: bool,
        /// The sender's id for its address.
        address_id: u8,
        /// The leftmost 64 bits of the sender's HMAC ([`crate::crypto::join_hmac_64`]).
        hmac: u64,
        /// The sender's random number (R-B).
        random: u32,
        /// The three reserved bits between the subtype and B.
        reserved: u8,
    },
    /// The third ACK.
    Ack {
        /// The leftmost 160 bits of the sender's HMAC ([`crate::crypto::join_hmac_160`]).
        hmac: [u8; 20],
        /// The 12 reserved bits after the subtype.
        reserved: u16,
    },
}

impl MpJoin {
    pub(super) fn parse(header: &Header, reader: &mut Reader<'_>) -> Result<Self> {
        let backup = header.low_bits & 1 != 0;
        let reserved = header.low_bits >> 1;
        match header.length {
            len::MP_JOIN_SYN => Ok(MpJoin::Syn {
                backup,
                address_id: reader.u8()?,
                token: reader.u32()?,
                random: reader.u32()?,
                reserved,
            }),
            len::MP_JOIN_SYNACK => Ok(MpJoin::SynAck {
                backup,
                address_id: reader.u8()?,
                hmac: reader.u64()?,
                random: reader.u32()?,
                reserved,
            }),
            len::MP_JOIN_ACK => {
                let low = reader.u8()?;
                Ok(MpJoin::Ack {
                    reserved: u16::from(header.low_bits) << 8 | u16::from(low),
                    hmac: reader.array()?,
                })
            }
            _ => Err(header.bad_length()),
        }
    }

    pub(super) fn write_body(&self, out: &mut Vec<u8>) -> Result<()> {
        match *self {
            MpJoin::Syn {
                backup,
                address_id,
                token,
                random,
                reserved,
            } => {
                write_handshake_head(out, reserved, backup, address_id)?;
                out.extend(token.to_be_bytes());
                out.extend(random.to_be_bytes());
            }
            MpJoin::SynAck {
                backup,
                address_id,
                hmac,
                random,
                reserved,
            } => {
                write_handshake_head(out, reserved, backup, address_id)?;
                out.extend(hmac.to_be_bytes());
                out.extend(random.to_be_bytes());
            }
            MpJoin::Ack { hmac, reserved } => {
                check_width(reserved, 12, "mp_join ack reserved bits above 12 bits")?;
                let [high, low] = reserved.to_be_bytes();
                out.push(subtype_byte(Subtype::MpJoin, high));
                out.push(low);
                out.extend(hmac);
            }
        }
        Ok(())
    }

    pub(super) fn wire_len(&self) -> usize {
        match self {
            MpJoin::Syn { .. } => len::MP_JOIN_SYN,
            MpJoin::SynAck { .. } => len::MP_JOIN_SYNACK,
            MpJoin::Ack { .. } => len::MP_JOIN_ACK,
        }
    }
}

/// The subtype byte (reserved bits, B flag) and address id that the SYN and
/// SYN/ACK forms start with (RFC 8684 section 3.2).
fn write_handshake_head(
    out: &mut Vec<u8>,
    reserved: u8,
    backup: bool,
    address_id: u8,
) -> Result<()> {
    check_width(reserved.into(), 3, "mp_join reserved bits above 7")?;
    out.push(subtype_byte(
        Subtype::MpJoin,
        reserved << 1 | u8::from(backup),
    ));
    out.push(address_id);
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Byte vectors laid out by hand from RFC 8684 figures 5-7.
    use super::*;
    use crate::error::ErrorKind;
    use crate::mptcp::MptcpOption;

    fn roundtrip(bytes: &[u8], expected: MpJoin) {
        let parsed = MptcpOption::parse(bytes).unwrap();
        assert_eq!(parsed, MptcpOption::MpJoin(expected));
        assert_eq!(parsed.to_bytes().unwrap(), bytes);
        assert_eq!(parsed.wire_len(), bytes.len());
    }

    #[test]
    fn syn() {
        // Subtype 1, B set, address id 2, token 0xdeadbeef, random 0x01020304.
        let bytes = [0x1e, 0x0c, 0x11, 0x02, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4];
        let expected = MpJoin::Syn {
            backup: true,
            address_id: 2,
            token: 0xdead_beef,
            random: 0x0102_0304,
            reserved: 0,
        };
        roundtrip(&bytes, expected);
    }

    #[test]
    fn syn_keeps_reserved_bits() {
        let bytes = [0x1e, 0x0c, 0x1e, 0x00, 0, 0, 0, 1, 0, 0, 0, 2];
        let expected = MpJoin::Syn {
            backup: false,
            address_id: 0,
            token: 1,
            random: 2,
            reserved: 7,
        };
        roundtrip(&bytes, expected);
    }

    #[test]
    fn synack() {
        #[rustfmt::skip]
        let bytes = [
            0x1e, 0x10, 0x10, 0x05,
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
            0x99, 0xaa, 0xbb, 0xcc,
        ];
        let expected = MpJoin::SynAck {
            backup: false,
            address_id: 5,
            hmac: 0x1122_3344_5566_7788,
            random: 0x99aa_bbcc,
            reserved: 0,
        };
        roundtrip(&bytes, expected);
    }

    #[test]
    fn ack() {
        let mut bytes = vec![0x1e, 0x18, 0x10, 0x00];
        bytes.extend(1u8..=20);
        let mut hmac = [0u8; 20];
        for (i, b) in hmac.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        roundtrip(&bytes, MpJoin::Ack { hmac, reserved: 0 });
        bytes[2] = 0x1a;
        bytes[3] = 0xbc;
        roundtrip(
            &bytes,
            MpJoin::Ack {
                hmac,
                reserved: 0xabc,
            },
        );
    }

    #[test]
    fn other_lengths_are_malformed() {
        for length in [3usize, 4, 11, 13, 15, 17, 20, 23, 25] {
            let mut bytes = vec![0u8; length];
            bytes[0] = 30;
            bytes[1] = length as u8;
            bytes[2] = 0x10;
            let err = MptcpOption::parse(&bytes).unwrap_err();
            assert_eq!(
                err.kind(),
                &ErrorKind::BadMptcpLength { subtype: 1, length }
            );
        }
    }
}
