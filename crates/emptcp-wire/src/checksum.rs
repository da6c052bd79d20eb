//! The Internet checksum (RFC 1071), the TCP pseudo-header sums, RFC 1624 incremental updates and
//! the MPTCP DSS checksum.
//!
//! These are written for clarity, one byte at a time, because later tests use them as the
//! independent reference for the data plane's own checksum code.
//!
//! "Sum" below means the 16-bit ones' complement sum (end-around carry, not complemented);
//! "checksum" is its complement, the value carried in a header.
//!
//! ```
//! use emptcp_wire::checksum::{internet_checksum, update_u16};
//! // RFC 1071 section 3 example bytes.
//! let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
//! let checksum = internet_checksum(&data);
//! assert_eq!(checksum, !0xddf2);
//! // Changing one word incrementally gives what recomputing gives.
//! let mut changed = data;
//! changed[2..4].copy_from_slice(&0x1234u16.to_be_bytes());
//! assert_eq!(update_u16(checksum, 0xf203, 0x1234), internet_checksum(&changed));
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

/// IANA protocol number of TCP, used in the pseudo-headers.
pub const IPPROTO_TCP: u8 = 6;

/// Ones' complement addition of two 16-bit values.
pub fn add(a: u16, b: u16) -> u16 {
    let sum = u32::from(a) + u32::from(b);
    // The end-around carry: a carry out of bit 15 is added back in (RFC 1071 section 1).
    ((sum & 0xffff) + (sum >> 16)) as u16
}

/// The ones' complement sum of `data` as big-endian 16-bit words; an odd final byte is padded
/// with a zero byte, as RFC 1071 prescribes.
pub fn sum(data: &[u8]) -> u16 {
    sum_at(0, data)
}

/// The ones' complement sum that `data` contributes when it starts `offset` bytes into the
/// checksummed region: at an odd offset each byte lands in the other half of its word.
pub fn sum_at(offset: usize, data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    for (index, &byte) in data.iter().enumerate() {
        acc += if (offset + index).is_multiple_of(2) {
            u64::from(byte) << 8
        } else {
            u64::from(byte)
        };
    }
    fold(acc)
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The Internet checksum of `data`: the complement of [`sum`].
pub fn internet_checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// The sum of the IPv4 TCP/UDP pseudo-header (RFC 9293 section 3.1): source, destination, zero,
/// protocol, and the transport length (header plus payload).
pub fn pseudo_header_sum_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4_len: u16) -> u16 {
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = protocol;
    pseudo[10..12].copy_from_slice(&l4_len.to_be_bytes());
    sum(&pseudo)
}

/// The sum of the IPv6 upper-layer pseudo-header (RFC 8200 section 8.1): source, final
/// destination, 32-bit upper-layer length, three zero bytes, next header.
pub fn pseudo_header_sum_v6(src: Ipv6Addr, dst: Ipv6Addr, l4_len: u32, next_header: u8) -> u16 {
    let mut pseudo = [0u8; 40];
    pseudo[0..16].copy_from_slice(&src.octets());
    pseudo[16..32].copy_from_slice(&dst.octets());
    pseudo[32..36].copy_from_slice(&l4_len.to_be_bytes());
    pseudo[39] = next_header;
    sum(&pseudo)
}

/// The sum of `data` with the 16-bit field at `field` (the checksum field) counted as zero.
fn sum_skipping(data: &[u8], field: usize) -> u16 {
    let before = data.get(..field).unwrap_or(data);
    let after = data.get(field + 2..).unwrap_or_default();
    add(sum(before), sum_at(field + 2, after))
}

/// The IPv4 header checksum for `header` (the whole header, options included), whatever its
/// checksum field (bytes 10..12) currently holds.
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    !sum_skipping(header, 10)
}

/// The TCP checksum of `segment` (TCP header, options and payload) over IPv4, whatever its
/// checksum field (bytes 16..18) currently holds. Segments longer than 65535 bytes are summed
/// with their length truncated to 16 bits, as no IPv4 packet can carry them.
pub fn tcp_checksum_v4(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let pseudo = pseudo_header_sum_v4(src, dst, IPPROTO_TCP, segment.len() as u16);
    !add(pseudo, sum_skipping(segment, 16))
}

/// The TCP checksum of `segment` over IPv6, whatever its checksum field currently holds. `dst`
/// must be the final destination (RFC 8200 section 8.1), which differs from the header's
/// destination while a routing header still has segments left.
pub fn tcp_checksum_v6(src: Ipv6Addr, dst: Ipv6Addr, segment: &[u8]) -> u16 {
    let pseudo = pseudo_header_sum_v6(src, dst, segment.len() as u32, IPPROTO_TCP);
    !add(pseudo, sum_skipping(segment, 16))
}

/// RFC 1624 equation 3, `HC' = ~(~HC + ~m + m')`, for one 16-bit word changed from `old` to
/// `new`.
pub fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    !add(add(!checksum, !old), new)
}

/// [`update_u16`] for a 32-bit field (two words), e.g. an address or a sequence number.
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    update_bytes_at(checksum, 0, &old.to_be_bytes(), &new.to_be_bytes())
}

/// RFC 1624 update for a run of bytes that starts `offset` bytes into the checksummed region (the
/// parity of `offset` is what matters) and changes from `old` to `new`.
///
/// If the lengths differ, the shorter run is taken as padded with zero bytes; so inserting bytes
/// into a zero-filled area, or writing over the area that a shrink left zeroed, is covered.
/// Moving existing bytes is not: account for the bytes at their old and new places separately.
pub fn update_bytes_at(checksum: u16, offset: usize, old: &[u8], new: &[u8]) -> u16 {
    !add(add(!checksum, !sum_at(offset, old)), sum_at(offset, new))
}

/// True when `data`, checksum field included, sums to all ones: the receiver's check of
/// RFC 1071 section 1 (so both 0x0000 and 0xffff pass for a zero sum).
pub fn verifies(data_sum: u16) -> bool {
    data_sum == 0xffff
}

/// The MPTCP DSS checksum (RFC 8684 section 3.3.1): the Internet checksum over a pseudo-header
/// of data sequence number (64 bits, even when the option carries 32), subflow sequence number,
/// data-level length and a zero checksum field, followed by the mapped payload.
pub fn dss_checksum(data_seq: u64, subflow_seq: u32, data_len: u16, payload: &[u8]) -> u16 {
    let mut pseudo = [0u8; 16];
    pseudo[0..8].copy_from_slice(&data_seq.to_be_bytes());
    pseudo[8..12].copy_from_slice(&subflow_seq.to_be_bytes());
    pseudo[12..14].copy_from_slice(&data_len.to_be_bytes());
    !add(sum(&pseudo), sum_at(pseudo.len(), payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_sum() {
        // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2.
        assert_eq!(
            sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn odd_offset_swaps_bytes() {
        assert_eq!(sum_at(1, &[0x12, 0x34]), add(0x0012, 0x3400));
        assert_eq!(
            add(sum(&[0xab]), sum_at(1, &[0xcd, 0xef])),
            sum(&[0xab, 0xcd, 0xef])
        );
    }

    #[test]
    fn ipv4_header_checksum_known_vector() {
        // A well-known sample header (Wikipedia "IPv4 header checksum"): checksum b861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header_checksum(&header), 0xb861);
        assert!(verifies(sum(&header)));
    }

    #[test]
    fn incremental_matches_recompute_at_odd_offset() {
        let mut data: Vec<u8> = (0u8..40).map(|b| b.wrapping_mul(37)).collect();
        let before = internet_checksum(&data);
        let new = [0xde, 0xad, 0xbe];
        let old = data[5..8].to_vec();
        data[5..8].copy_from_slice(&new);
        let updated = update_bytes_at(before, 5, &old, &new);
        assert!(verifies(add(sum(&data), updated)));
    }

    #[test]
    fn incremental_insert_into_zeros() {
        let mut data = vec![0x11u8; 10];
        data.extend([0u8; 4]);
        let before = internet_checksum(&data);
        data[10..14].copy_from_slice(&[1, 2, 3, 4]);
        assert!(verifies(add(
            sum(&data),
            update_bytes_at(before, 10, &[], &[1, 2, 3, 4])
        )));
    }

    #[test]
    fn dss_checksum_covers_pseudo_header_and_payload() {
        let payload = b"abc";
        let csum = dss_checksum(0x0102030405060708, 0x0a0b0c0d, 3, payload);
        let mut all = vec![1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d, 0, 3];
        all.extend(csum.to_be_bytes());
        all.extend(payload);
        assert!(verifies(sum(&all)));
    }
}
