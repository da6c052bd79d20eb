//! Netlink attributes (TLVs): a writer for requests and a checked reader for replies.
//!
//! Layout (`linux/netlink.h`): `u16 nla_len` (header + value, unpadded), `u16 nla_type`, the
//! value, then padding to a multiple of 4. Integers are in host order unless the attribute is
//! documented as big endian (event ports and addresses).

use crate::error::{Error, Result};
use crate::uapi::nl::{ALIGNTO, NLA_F_NESTED, NLA_TYPE_MASK};

const NLA_HDRLEN: usize = 4;

pub(crate) fn align(len: usize) -> usize {
    len.div_ceil(ALIGNTO) * ALIGNTO
}

/// Appends attributes to a byte buffer.
#[derive(Debug, Default)]
pub(crate) struct AttrWriter {
    buf: Vec<u8>,
}

impl AttrWriter {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub(crate) fn put(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = u16::try_from(NLA_HDRLEN + value.len()).expect("attribute fits in 64 KiB");
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    pub(crate) fn put_u8(&mut self, kind: u16, v: u8) -> &mut Self {
        self.put(kind, &[v])
    }

    pub(crate) fn put_u16(&mut self, kind: u16, v: u16) -> &mut Self {
        self.put(kind, &v.to_ne_bytes())
    }

    pub(crate) fn put_u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.put(kind, &v.to_ne_bytes())
    }

    pub(crate) fn put_i32(&mut self, kind: u16, v: i32) -> &mut Self {
        self.put(kind, &v.to_ne_bytes())
    }

    pub(crate) fn put_str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.put(kind, &v)
    }

    /// A nested attribute. `NLA_F_NESTED` is set: strict policies (the generated `mptcp_pm`
    /// policy is one) refuse a nest without it.
    pub(crate) fn nested(&mut self, kind: u16, inner: AttrWriter) -> &mut Self {
        self.put(kind | NLA_F_NESTED, &inner.buf)
    }
}

/// One attribute of a received message: its type (flags masked off) and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attr<'a> {
    pub(crate) kind: u16,
    pub(crate) value: &'a [u8],
}

impl<'a> Attr<'a> {
    fn fixed<const N: usize>(&self, what: &str) -> Result<[u8; N]> {
        self.value.try_into().map_err(|_| {
            Error::Malformed(format!(
                "attribute {} ({what}) has {} bytes, expected {N}",
                self.kind,
                self.value.len()
            ))
        })
    }

    pub(crate) fn u8(&self) -> Result<u8> {
        Ok(self.fixed::<1>("u8")?[0])
    }

    pub(crate) fn u16(&self) -> Result<u16> {
        Ok(u16::from_ne_bytes(self.fixed("u16")?))
    }

    pub(crate) fn be16(&self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.fixed("be16")?))
    }

    pub(crate) fn u32(&self) -> Result<u32> {
        Ok(u32::from_ne_bytes(self.fixed("u32")?))
    }

    pub(crate) fn i32(&self) -> Result<i32> {
        Ok(i32::from_ne_bytes(self.fixed("s32")?))
    }

    pub(crate) fn octets<const N: usize>(&self) -> Result<[u8; N]> {
        self.fixed("address")
    }

    /// A NUL-terminated string (the NUL and anything after it dropped).
    pub(crate) fn string(&self) -> String {
        let end = self
            .value
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.value.len());
        String::from_utf8_lossy(&self.value[..end]).into_owned()
    }

    pub(crate) fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.value)
    }
}

/// Iterates over the attributes in a buffer; a truncated attribute is an error, not a panic.
#[derive(Debug, Clone)]
pub(crate) struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Attrs { rest: buf }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        if self.rest.len() < NLA_HDRLEN {
            let n = self.rest.len();
            self.rest = &[];
            return Some(Err(Error::Malformed(format!(
                "{n} trailing bytes where an attribute header was expected"
            ))));
        }
        let len = u16::from_ne_bytes([self.rest[0], self.rest[1]]) as usize;
        let kind = u16::from_ne_bytes([self.rest[2], self.rest[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > self.rest.len() {
            let have = self.rest.len();
            self.rest = &[];
            return Some(Err(Error::Malformed(format!(
                "attribute {kind} claims {len} bytes, {have} left"
            ))));
        }
        let value = &self.rest[NLA_HDRLEN..len];
        self.rest = &self.rest[align(len).min(self.rest.len())..];
        Some(Ok(Attr { kind, value }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_attributes_read_back_with_padding_and_nesting() {
        let mut inner = AttrWriter::new();
        inner.put_u8(2, 7).put_u16(1, 2);
        let mut w = AttrWriter::new();
        w.put_u32(4, 0xdead_beef).nested(1, inner).put_str(9, "ab");
        let bytes = w.into_bytes();
        // u32: 8, nest: 4 + (8 + 8) = 20, "ab\0": 4 + 3 -> 8.
        assert_eq!(bytes.len(), 8 + 20 + 8);
        assert_eq!(&bytes[8..12], &[20, 0, 1, 0x80]);
        let attrs: Vec<_> = Attrs::new(&bytes).collect::<Result<_>>().unwrap();
        assert_eq!(attrs.len(), 3);
        assert_eq!(attrs[0].u32().unwrap(), 0xdead_beef);
        assert_eq!(attrs[1].kind, 1, "NLA_F_NESTED is masked off");
        let nested: Vec<_> = attrs[1].nested().collect::<Result<_>>().unwrap();
        assert_eq!(nested[0].u8().unwrap(), 7);
        assert_eq!(nested[1].u16().unwrap(), 2);
        assert_eq!(attrs[2].string(), "ab");
    }

    #[test]
    fn truncated_and_oversized_attributes_are_errors() {
        assert!(Attrs::new(&[8, 0, 1]).next().unwrap().is_err());
        assert!(
            Attrs::new(&[12, 0, 1, 0, 0, 0, 0, 0])
                .next()
                .unwrap()
                .is_err()
        );
        assert!(Attrs::new(&[2, 0, 1, 0]).next().unwrap().is_err());
        let a = Attrs::new(&[6, 0, 1, 0, 1, 2]).next().unwrap().unwrap();
        assert!(a.u32().is_err(), "a 2-byte value is not a u32");
        assert_eq!(a.u16().unwrap(), u16::from_ne_bytes([1, 2]));
    }
}
