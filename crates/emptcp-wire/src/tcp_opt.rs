//! The TCP option list (RFC 9293 section 3.1): parse and serialize every option in any order
//! and alignment, with each option's byte offset inside the option area.
//!
//! The option area is the part of the TCP header after the 20 fixed bytes. Parsing stops at the
//! first malformed option with a typed error (length 0 or 1, missing length byte, length past the
//! end, or a known kind with a length its definition forbids); it never panics. MPTCP options are
//! decoded with [`crate::mptcp`]; an MPTCP option that is well framed but malformed inside is an
//! error as well, since later tests want to know when the data plane wrote one.
//!
//! Bytes after an End of Option List are padding, not options (RFC 9293: "the padding is
//! composed of zeros"); they are returned as one [`TcpOption::Padding`] so that serializing the
//! parsed list gives back the exact area, whatever the padding holds.
//!
//! ```
//! use emptcp_wire::tcp_opt::{options, parse_options, serialize_options, TcpOption};
//! let area = [2, 4, 0x05, 0xb4, 1, 3, 3, 7];
//! let parsed = parse_options(&area)?;
//! assert_eq!(parsed, [TcpOption::Mss(1460), TcpOption::Nop, TcpOption::WindowScale(7)]);
//! assert_eq!(serialize_options(&parsed)?, area);
//! let offsets: Vec<usize> = options(&area).map(|o| o.map(|o| o.offset)).collect::<Result<_, _>>()?;
//! assert_eq!(offsets, [0, 4, 5]);
//! # Ok::<(), emptcp_wire::Error>(())
//! ```

use crate::error::{Error, ErrorKind, Result};
use crate::mptcp::{MptcpOption, MptcpVersion};
use crate::reader::Reader;

/// TCP option kinds this crate decodes (IANA "TCP Option Kind Numbers").
pub mod kind {
    /// End of Option List.
    pub const EOL: u8 = 0;
    /// No-Operation.
    pub const NOP: u8 = 1;
    /// Maximum Segment Size.
    pub const MSS: u8 = 2;
    /// Window Scale (RFC 7323).
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK Permitted (RFC 2018).
    pub const SACK_PERMITTED: u8 = 4;
    /// SACK (RFC 2018).
    pub const SACK: u8 = 5;
    /// Timestamps (RFC 7323).
    pub const TIMESTAMPS: u8 = 8;
    /// Multipath TCP (RFC 8684).
    pub const MPTCP: u8 = 30;
}

/// The most option bytes a TCP header can carry: data offset 15 words, minus the 20 fixed bytes.
pub const MAX_OPTION_AREA: usize = 40;

/// One SACK block: the left and right edges of a received range (RFC 2018 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SackBlock {
    /// First sequence number of the block.
    pub left: u32,
    /// Sequence number just after the block.
    pub right: u32,
}

/// One TCP option.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TcpOption {
    /// Kind 0: end of the option list.
    EndOfList,
    /// The bytes between an [`TcpOption::EndOfList`] and the end of the area; never empty.
    Padding(Vec<u8>),
    /// Kind 1: no-operation, used for alignment.
    Nop,
    /// Kind 2, length 4.
    Mss(u16),
    /// Kind 3, length 3: the shift count.
    WindowScale(u8),
    /// Kind 4, length 2.
    SackPermitted,
    /// Kind 5, length 2 + 8n with n >= 1.
    Sack(Vec<SackBlock>),
    /// Kind 8, length 10.
    Timestamps {
        /// TSval.
        value: u32,
        /// TSecr.
        echo_reply: u32,
    },
    /// Kind 30.
    Mptcp(MptcpOption),
    /// Any other kind, with its bytes after the length byte.
    Unknown {
        /// The kind.
        kind: u8,
        /// The bytes after the kind and length bytes.
        data: Vec<u8>,
    },
}

/// The kinds [`TcpOption::Unknown`] must not carry, since they parse as typed options.
const TYPED_KINDS: [u8; 8] = [
    kind::EOL,
    kind::NOP,
    kind::MSS,
    kind::WINDOW_SCALE,
    kind::SACK_PERMITTED,
    kind::SACK,
    kind::TIMESTAMPS,
    kind::MPTCP,
];

impl TcpOption {
    /// The option's kind byte; [`TcpOption::Padding`] reports the EOL kind it follows.
    pub fn kind(&self) -> u8 {
        match self {
            TcpOption::EndOfList | TcpOption::Padding(_) => kind::EOL,
            TcpOption::Nop => kind::NOP,
            TcpOption::Mss(_) => kind::MSS,
            TcpOption::WindowScale(_) => kind::WINDOW_SCALE,
            TcpOption::SackPermitted => kind::SACK_PERMITTED,
            TcpOption::Sack(_) => kind::SACK,
            TcpOption::Timestamps { .. } => kind::TIMESTAMPS,
            TcpOption::Mptcp(_) => kind::MPTCP,
            TcpOption::Unknown { kind, .. } => *kind,
        }
    }

    /// Bytes the option takes in the area.
    pub fn wire_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::Nop => 1,
            TcpOption::Padding(bytes) => bytes.len(),
            TcpOption::Mss(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::Sack(blocks) => 2 + 8 * blocks.len(),
            TcpOption::Timestamps { .. } => 10,
            TcpOption::Mptcp(option) => option.wire_len(),
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// The MPTCP option inside, if this is one.
    pub fn as_mptcp(&self) -> Option<&MptcpOption> {
        match self {
            TcpOption::Mptcp(option) => Some(option),
            _ => None,
        }
    }

    /// Appends the option's bytes to `out`; on error `out` is left as it was.
    ///
    /// A lone option is checked on its own; [`serialize_options`] also checks the order of EOL
    /// and padding.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        let length_byte = |length: usize| {
            u8::try_from(length).map_err(|_| Error::encode(ErrorKind::OptionTooLong { length }))
        };
        match self {
            TcpOption::EndOfList => out.push(kind::EOL),
            TcpOption::Padding(bytes) => {
                if bytes.is_empty() {
                    return Err(Error::unencodable("empty padding"));
                }
                out.extend_from_slice(bytes);
            }
            TcpOption::Nop => out.push(kind::NOP),
            TcpOption::Mss(mss) => {
                out.extend([kind::MSS, 4]);
                out.extend(mss.to_be_bytes());
            }
            TcpOption::WindowScale(shift) => out.extend([kind::WINDOW_SCALE, 3, *shift]),
            TcpOption::SackPermitted => out.extend([kind::SACK_PERMITTED, 2]),
            TcpOption::Sack(blocks) => {
                if blocks.is_empty() {
                    return Err(Error::unencodable("sack without blocks"));
                }
                out.extend([kind::SACK, length_byte(self.wire_len())?]);
                for block in blocks {
                    out.extend(block.left.to_be_bytes());
                    out.extend(block.right.to_be_bytes());
                }
            }
            TcpOption::Timestamps { value, echo_reply } => {
                out.extend([kind::TIMESTAMPS, 10]);
                out.extend(value.to_be_bytes());
                out.extend(echo_reply.to_be_bytes());
            }
            TcpOption::Mptcp(option) => option.write_to(out)?,
            TcpOption::Unknown { kind, data } => {
                if TYPED_KINDS.contains(kind) {
                    return Err(Error::unencodable("unknown option with a decoded kind"));
                }
                out.extend([*kind, length_byte(self.wire_len())?]);
                out.extend_from_slice(data);
            }
        }
        debug_assert_eq!(out.len() - start, self.wire_len());
        Ok(())
    }
}

/// An option and where it sits in the option area.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocatedOption {
    /// Offset of the option's first byte (its kind) from the start of the option area.
    pub offset: usize,
    /// The option.
    pub option: TcpOption,
}

impl LocatedOption {
    /// The byte range the option covers in the option area.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.option.wire_len()
    }
}

/// Iterator over the options of an option area, with offsets; made by [`options`].
///
/// It yields `Err` once for a malformed option and then ends.
#[derive(Debug, Clone)]
pub struct OptionIter<'a> {
    area: &'a [u8],
    offset: usize,
    version: MptcpVersion,
    after_eol: bool,
    done: bool,
}

/// Iterates over the options of `area` (the bytes after the fixed TCP header), decoding MPTCP
/// options with RFC 8684 formats.
pub fn options(area: &[u8]) -> OptionIter<'_> {
    OptionIter {
        area,
        offset: 0,
        version: MptcpVersion::V1,
        after_eol: false,
        done: false,
    }
}

impl<'a> OptionIter<'a> {
    /// Decodes MPTCP options with the formats of `version` instead (see
    /// [`MptcpOption::parse_versioned`]).
    pub fn mptcp_version(mut self, version: MptcpVersion) -> Self {
        self.version = version;
        self
    }

    fn next_option(&mut self) -> Result<Option<LocatedOption>> {
        let offset = self.offset;
        let rest = self.area.get(offset..).unwrap_or_default();
        let Some(&kind_byte) = rest.first() else {
            return Ok(None);
        };
        let located = |option: TcpOption| LocatedOption { offset, option };
        if self.after_eol {
            // Whatever follows EOL is padding, not options (RFC 9293 section 3.1).
            self.offset = self.area.len();
            return Ok(Some(located(TcpOption::Padding(rest.to_vec()))));
        }
        match kind_byte {
            kind::EOL => {
                self.after_eol = true;
                self.offset += 1;
                return Ok(Some(located(TcpOption::EndOfList)));
            }
            kind::NOP => {
                self.offset += 1;
                return Ok(Some(located(TcpOption::Nop)));
            }
            _ => {}
        }
        let Some(&length) = rest.get(1) else {
            return Err(Error::at(
                offset,
                ErrorKind::MissingOptionLength { kind: kind_byte },
            ));
        };
        if length < 2 {
            return Err(Error::at(
                offset + 1,
                ErrorKind::OptionLengthTooSmall {
                    kind: kind_byte,
                    length,
                },
            ));
        }
        let Some(bytes) = rest.get(..usize::from(length)) else {
            return Err(Error::at(
                offset + 1,
                ErrorKind::OptionPastEnd {
                    kind: kind_byte,
                    length,
                    available: rest.len(),
                },
            ));
        };
        let option = decode(kind_byte, bytes, self.version).map_err(|e| e.rebased(offset))?;
        self.offset += bytes.len();
        Ok(Some(located(option)))
    }
}

/// Decodes one option with a length byte; `bytes` is exactly the option.
fn decode(kind_byte: u8, bytes: &[u8], version: MptcpVersion) -> Result<TcpOption> {
    let length = bytes.len();
    let bad_length = || {
        Error::at(
            1,
            ErrorKind::BadOptionLength {
                kind: kind_byte,
                length,
            },
        )
    };
    let mut body = Reader::with_base(bytes.get(2..).unwrap_or_default(), 2);
    let option = match kind_byte {
        kind::MSS if length == 4 => TcpOption::Mss(body.u16()?),
        kind::WINDOW_SCALE if length == 3 => TcpOption::WindowScale(body.u8()?),
        kind::SACK_PERMITTED if length == 2 => TcpOption::SackPermitted,
        kind::SACK if length >= 10 && (length - 2).is_multiple_of(8) => {
            let mut blocks = Vec::with_capacity((length - 2) / 8);
            while body.remaining() > 0 {
                blocks.push(SackBlock {
                    left: body.u32()?,
                    right: body.u32()?,
                });
            }
            TcpOption::Sack(blocks)
        }
        kind::TIMESTAMPS if length == 10 => TcpOption::Timestamps {
            value: body.u32()?,
            echo_reply: body.u32()?,
        },
        kind::MSS | kind::WINDOW_SCALE | kind::SACK_PERMITTED | kind::SACK | kind::TIMESTAMPS => {
            return Err(bad_length());
        }
        kind::MPTCP => TcpOption::Mptcp(MptcpOption::parse_versioned(bytes, version)?),
        _ => TcpOption::Unknown {
            kind: kind_byte,
            data: body.rest().to_vec(),
        },
    };
    Ok(option)
}

impl Iterator for OptionIter<'_> {
    type Item = Result<LocatedOption>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_option().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

/// Parses a whole option area into its options (RFC 8684 formats for MPTCP).
pub fn parse_options(area: &[u8]) -> Result<Vec<TcpOption>> {
    parse_options_versioned(area, MptcpVersion::V1)
}

/// Parses a whole option area, decoding MPTCP options with the formats of `version`.
pub fn parse_options_versioned(area: &[u8], version: MptcpVersion) -> Result<Vec<TcpOption>> {
    options(area)
        .mptcp_version(version)
        .map(|located| located.map(|l| l.option))
        .collect()
}

/// Parses a whole option area, keeping each option's offset.
pub fn parse_located(area: &[u8], version: MptcpVersion) -> Result<Vec<LocatedOption>> {
    options(area).mptcp_version(version).collect()
}

/// Serializes `options` back to back, with no padding added.
///
/// Refuses what would not parse back the same: a [`TcpOption::Padding`] anywhere but right after
/// an [`TcpOption::EndOfList`], any option after EOL other than that padding, and the checks of
/// [`TcpOption::write_to`]. The 40-byte limit of a TCP header is not checked here (the packet
/// builder checks it), so that longer areas can be built on purpose.
pub fn serialize_options(options: &[TcpOption]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(options.iter().map(TcpOption::wire_len).sum());
    let mut previous: Option<&TcpOption> = None;
    for option in options {
        match (previous, option) {
            (Some(TcpOption::EndOfList), TcpOption::Padding(_)) => {}
            (_, TcpOption::Padding(_)) => {
                return Err(Error::unencodable("padding not right after end of list"));
            }
            (Some(TcpOption::EndOfList | TcpOption::Padding(_)), _) => {
                return Err(Error::unencodable("option after end of list"));
            }
            _ => {}
        }
        option.write_to(&mut out)?;
        previous = Some(option);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! Byte vectors laid out by hand from RFC 9293, RFC 7323 and RFC 2018.
    use super::*;
    use crate::mptcp::{MpCapable, MpCapableKeys, MpPrio};

    fn located(area: &[u8]) -> Vec<(usize, TcpOption)> {
        options(area)
            .map(|o| o.map(|o| (o.offset, o.option)))
            .collect::<Result<_>>()
            .unwrap()
    }

    #[test]
    fn linux_syn_options() {
        // MSS 1460, SACK permitted, timestamps, NOP, window scale 7: what Linux puts in a SYN.
        #[rustfmt::skip]
        let area = [
            0x02, 0x04, 0x05, 0xb4,
            0x04, 0x02,
            0x08, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
            0x01,
            0x03, 0x03, 0x07,
        ];
        let expected = vec![
            (0, TcpOption::Mss(1460)),
            (4, TcpOption::SackPermitted),
            (
                6,
                TcpOption::Timestamps {
                    value: 1,
                    echo_reply: 0,
                },
            ),
            (16, TcpOption::Nop),
            (17, TcpOption::WindowScale(7)),
        ];
        assert_eq!(located(&area), expected);
        let options: Vec<_> = expected.into_iter().map(|(_, o)| o).collect();
        assert_eq!(serialize_options(&options).unwrap(), area);
    }

    #[test]
    fn mptcp_at_odd_alignment_with_sack() {
        #[rustfmt::skip]
        let area = [
            0x01,
            0x1e, 0x03, 0x51,
            0x05, 0x0a, 0, 0, 0, 1, 0, 0, 0, 2,
            0x1e, 0x04, 0x01, 0x01,
        ];
        let expected = vec![
            (0, TcpOption::Nop),
            (
                1,
                TcpOption::Mptcp(
                    MpPrio {
                        backup: true,
                        address_id: None,
                        reserved: 0,
                    }
                    .into(),
                ),
            ),
            (4, TcpOption::Sack(vec![SackBlock { left: 1, right: 2 }])),
            (
                14,
                TcpOption::Mptcp(
                    MpCapable {
                        version: 1,
                        flags: 1,
                        keys: MpCapableKeys::None,
                    }
                    .into(),
                ),
            ),
        ];
        assert_eq!(located(&area), expected);
    }

    #[test]
    fn eol_then_padding() {
        let area = [0x02, 0x04, 0x05, 0xb4, 0x01, 0x00, 0x00, 0x00];
        let parsed = parse_options(&area).unwrap();
        assert_eq!(
            parsed,
            [
                TcpOption::Mss(1460),
                TcpOption::Nop,
                TcpOption::EndOfList,
                TcpOption::Padding(vec![0, 0])
            ]
        );
        assert_eq!(serialize_options(&parsed).unwrap(), area);
        // Garbage after EOL is padding too, and is kept.
        let garbage = [0x00, 0xff, 0x05];
        let parsed = parse_options(&garbage).unwrap();
        assert_eq!(
            parsed,
            [TcpOption::EndOfList, TcpOption::Padding(vec![0xff, 5])]
        );
        assert_eq!(serialize_options(&parsed).unwrap(), garbage);
    }

    #[test]
    fn unknown_kinds_are_kept_raw() {
        let area = [0xfd, 0x04, 0xab, 0xcd, 0x13, 0x02];
        let parsed = parse_options(&area).unwrap();
        assert_eq!(
            parsed,
            [
                TcpOption::Unknown {
                    kind: 0xfd,
                    data: vec![0xab, 0xcd]
                },
                TcpOption::Unknown {
                    kind: 0x13,
                    data: vec![]
                }
            ]
        );
        assert_eq!(serialize_options(&parsed).unwrap(), area);
    }

    #[test]
    fn malformed_lengths() {
        let cases: [(&[u8], ErrorKind, usize); 7] = [
            (
                &[0x01, 0x02, 0x00],
                ErrorKind::OptionLengthTooSmall { kind: 2, length: 0 },
                2,
            ),
            (
                &[0x1e, 0x01],
                ErrorKind::OptionLengthTooSmall {
                    kind: 30,
                    length: 1,
                },
                1,
            ),
            (&[0x01, 0x08], ErrorKind::MissingOptionLength { kind: 8 }, 1),
            (
                &[0x02, 0x05, 0, 0],
                ErrorKind::OptionPastEnd {
                    kind: 2,
                    length: 5,
                    available: 4,
                },
                1,
            ),
            (
                &[0x02, 0x03, 0],
                ErrorKind::BadOptionLength { kind: 2, length: 3 },
                1,
            ),
            (
                &[0x01, 0x05, 0x02],
                ErrorKind::BadOptionLength { kind: 5, length: 2 },
                2,
            ),
            (
                &[0x01, 0x01, 0x1e, 0x05, 0x51, 0, 0],
                ErrorKind::BadMptcpLength {
                    subtype: 5,
                    length: 5,
                },
                3,
            ),
        ];
        for (area, kind, offset) in cases {
            let err = parse_options(area).unwrap_err();
            assert_eq!(err.kind(), &kind, "{area:?}");
            assert_eq!(err.offset(), Some(offset), "{area:?}");
        }
    }

    #[test]
    fn iterator_stops_after_error() {
        let area = [0x01, 0x02, 0x00, 0x01];
        let items: Vec<_> = options(&area).collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert!(items[1].is_err());
    }

    #[test]
    fn serializer_refuses_what_would_not_parse_back() {
        let refused: [&[TcpOption]; 5] = [
            &[TcpOption::Padding(vec![0])],
            &[TcpOption::EndOfList, TcpOption::Nop],
            &[TcpOption::EndOfList, TcpOption::Padding(vec![])],
            &[TcpOption::Sack(vec![])],
            &[TcpOption::Unknown {
                kind: 2,
                data: vec![5, 0xb4],
            }],
        ];
        for options in refused {
            assert!(serialize_options(options).is_err(), "{options:?}");
        }
        let long = TcpOption::Unknown {
            kind: 99,
            data: vec![0; 254],
        };
        assert_eq!(
            serialize_options(&[long]).unwrap_err().kind(),
            &ErrorKind::OptionTooLong { length: 256 }
        );
    }
}
