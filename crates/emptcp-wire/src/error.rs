//! The crate's error type: what was malformed, and where.

use std::fmt;

use crate::packet::ChecksumReport;

/// What was malformed or could not be encoded.
///
/// Every variant names the field at fault; the byte position is kept beside it in [`Error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ended before a field that must be there.
    #[error("truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// A TCP option kind other than EOL or NOP was the last byte of the option area, so it has no
    /// length byte.
    #[error("option kind {kind} has no length byte")]
    MissingOptionLength {
        /// The option kind.
        kind: u8,
    },
    /// A TCP option length of 0 or 1, which cannot cover its own kind and length bytes
    /// (RFC 9293 section 3.1).
    #[error("option kind {kind} has length {length}, below the minimum of 2")]
    OptionLengthTooSmall {
        /// The option kind.
        kind: u8,
        /// The length byte.
        length: u8,
    },
    /// A TCP option whose length runs past the end of the option area.
    #[error(
        "option kind {kind} has length {length}, past the end of the option area ({available} bytes left)"
    )]
    OptionPastEnd {
        /// The option kind.
        kind: u8,
        /// The length byte.
        length: u8,
        /// Bytes left in the option area, counting from the option's kind byte.
        available: usize,
    },
    /// A known TCP option with a length its definition does not allow.
    #[error("option kind {kind} cannot have length {length}")]
    BadOptionLength {
        /// The option kind.
        kind: u8,
        /// The length found.
        length: usize,
    },
    /// An MPTCP option whose length its subtype does not allow.
    #[error("mptcp subtype {subtype} cannot have length {length}")]
    BadMptcpLength {
        /// The MPTCP subtype (upper 4 bits of the third byte).
        subtype: u8,
        /// The option length.
        length: usize,
    },
    /// [`crate::mptcp::MptcpOption::parse`] was given an option whose kind is not 30.
    #[error("option kind {kind} is not mptcp (30)")]
    NotMptcp {
        /// The kind found.
        kind: u8,
    },
    /// An option's length byte disagrees with the length of the slice it was handed in.
    #[error("option length byte says {declared}, slice holds {actual} bytes")]
    LengthMismatch {
        /// The option's length byte.
        declared: usize,
        /// The slice length.
        actual: usize,
    },
    /// An RFC 6824 ADD_ADDR whose IPVer field does not match its length.
    #[error("add_addr v0 ip version {ip_version} does not match length {length}")]
    AddAddrIpVersion {
        /// The IPVer nibble.
        ip_version: u8,
        /// The option length.
        length: usize,
    },
    /// A value that the serializer cannot encode so that it parses back the same.
    #[error("cannot encode {what}")]
    Unencodable {
        /// What was wrong with the value.
        what: &'static str,
    },
    /// An encoded option longer than its one-byte length field can express.
    #[error("option of {length} bytes exceeds 255")]
    OptionTooLong {
        /// The encoded length.
        length: usize,
    },
    /// An EtherType that is neither IPv4, IPv6 nor a VLAN tag.
    #[error("unsupported ethertype {0:#06x}")]
    UnsupportedEtherType(u16),
    /// More than two 802.1Q / 802.1ad tags in a row.
    #[error("more than two vlan tags")]
    TooManyVlanTags,
    /// The IP version nibble does not match the EtherType (or the expected version).
    #[error("ip version {found}, expected {expected}")]
    IpVersionMismatch {
        /// The version the context expected.
        expected: u8,
        /// The version nibble found.
        found: u8,
    },
    /// An IPv4 IHL below 5 or past the packet's end.
    #[error("bad ipv4 header length (ihl {ihl})")]
    BadIpv4HeaderLength {
        /// The IHL nibble.
        ihl: u8,
    },
    /// The IP total length (IPv4) or payload length (IPv6) cannot hold the headers it covers,
    /// or exceeds the bytes present.
    #[error(
        "ip length {declared} inconsistent with {available} bytes present and headers of {headers}"
    )]
    BadIpLength {
        /// The length the IP header declares, in bytes from the start of the IP header.
        declared: usize,
        /// Bytes present from the start of the IP header.
        available: usize,
        /// Bytes of headers the length must at least cover.
        headers: usize,
    },
    /// The transport protocol is not TCP (or is an IPv6 extension header this crate does not
    /// walk).
    #[error("not tcp: protocol {protocol}")]
    NotTcp {
        /// The IPv4 protocol or last IPv6 next-header value.
        protocol: u8,
    },
    /// A non-first IP fragment, which carries no TCP header.
    #[error("non-first ip fragment (offset {fragment_offset})")]
    NonFirstFragment {
        /// The fragment offset, in 8-byte units.
        fragment_offset: u16,
    },
    /// A TCP data offset below 5, or past the end of the segment.
    #[error("bad tcp data offset {data_offset}")]
    BadDataOffset {
        /// The data offset nibble.
        data_offset: u8,
    },
    /// The builder was given header fields it cannot lay out.
    #[error("cannot build {what} of {length} bytes")]
    BadLayout {
        /// The part that does not fit.
        what: &'static str,
        /// Its length.
        length: usize,
    },
    /// One or both checksums of a parsed packet are wrong.
    #[error("bad checksum: {0}")]
    BadChecksum(ChecksumReport),
}

/// A codec error: an [`ErrorKind`] and the byte offset where it was found.
///
/// The offset counts from the start of the buffer handed to the public function that failed: the
/// option area for [`crate::tcp_opt::parse_options`], the option itself for
/// [`crate::mptcp::MptcpOption::parse`], the frame for [`crate::packet::ParsedPacket::parse`]
/// (option errors inside a packet are rebased to the frame). Builder and serializer errors have no
/// offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    offset: Option<usize>,
}

impl Error {
    pub(crate) fn at(offset: usize, kind: ErrorKind) -> Self {
        Error {
            kind,
            offset: Some(offset),
        }
    }

    pub(crate) fn encode(kind: ErrorKind) -> Self {
        Error { kind, offset: None }
    }

    pub(crate) fn unencodable(what: &'static str) -> Self {
        Error::encode(ErrorKind::Unencodable { what })
    }

    /// Moves the offset by `base`, for errors found in a sub-slice of the caller's buffer.
    pub(crate) fn rebased(mut self, base: usize) -> Self {
        self.offset = self.offset.map(|offset| offset + base);
        self
    }

    /// What was wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Where it was found, in bytes from the start of the input; `None` for encoding errors.
    pub fn offset(&self) -> Option<usize> {
        self.offset
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(offset) => write!(f, "{} at byte {offset}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for Error {}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
