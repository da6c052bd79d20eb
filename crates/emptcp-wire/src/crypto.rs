//! MPTCP v1 key material: tokens, initial data sequence numbers and the HMACs of MP_JOIN and
//! ADD_ADDR (RFC 8684 sections 3.1, 3.2, 3.4.1), all with HMAC-SHA256.
//!
//! Keys, random numbers and ports enter the hash in network byte order, exactly as they appear on
//! the wire. The functions take the *sender's* values first: the host that puts the HMAC into the
//! option hashes `Key = own key || peer key` and `Msg = own data || peer data`.
//!
//! ```
//! use emptcp_wire::crypto::{idsn_from_key, join_hmac, join_hmac_64, token_from_key};
//! let key_a = 0x0123_4567_89ab_cdef;
//! let key_b = 0xfedc_ba98_7654_3210;
//! let _token_a = token_from_key(key_a); // what B's MP_JOIN SYN names A's connection by
//! let _idsn_a = idsn_from_key(key_a);
//! // B answers A's MP_JOIN SYN (random R-A) with its random R-B and this truncated HMAC:
//! let (r_a, r_b) = (0x1111_1111, 0x2222_2222);
//! let thmac_b = join_hmac_64(key_b, key_a, r_b, r_a);
//! assert_eq!(thmac_b.to_be_bytes(), join_hmac(key_b, key_a, r_b, r_a)[..8]);
//! ```

use std::net::IpAddr;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// SHA-256 of the key as 8 network-order bytes (RFC 8684 section 3.1).
fn key_digest(key: u64) -> [u8; 32] {
    Sha256::digest(key.to_be_bytes()).into()
}

/// The connection token a host's key yields: the most significant 32 bits of SHA-256(key)
/// (RFC 8684 section 3.2).
pub fn token_from_key(key: u64) -> u32 {
    let digest = key_digest(key);
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The initial data sequence number a host's key yields: the least significant 64 bits of
/// SHA-256(key) (RFC 8684 section 3.1).
pub fn idsn_from_key(key: u64) -> u64 {
    let digest = key_digest(key);
    let mut low = [0u8; 8];
    low.copy_from_slice(&digest[24..]);
    u64::from_be_bytes(low)
}

/// HMAC-SHA256 keyed with `first_key || second_key` (16 bytes, network order) over `message`:
/// the MAC that every MPTCP v1 option uses.
pub fn mptcp_hmac(first_key: u64, second_key: u64, message: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&first_key.to_be_bytes());
    key[8..].copy_from_slice(&second_key.to_be_bytes());
    // A 16-byte key is shorter than SHA-256's block, so HMAC accepts it as it is.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("hmac accepts keys of any length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The full MP_JOIN HMAC (RFC 8684 section 3.2): `HMAC(Key = sender key || receiver key,
/// Msg = sender random || receiver random)`.
///
/// In the SYN/ACK, B sends `join_hmac(key_b, key_a, r_b, r_a)` truncated by [`join_hmac_64`];
/// in the third ACK, A sends `join_hmac(key_a, key_b, r_a, r_b)` truncated by
/// [`join_hmac_160`].
pub fn join_hmac(
    sender_key: u64,
    receiver_key: u64,
    sender_random: u32,
    receiver_random: u32,
) -> [u8; 32] {
    let mut message = [0u8; 8];
    message[..4].copy_from_slice(&sender_random.to_be_bytes());
    message[4..].copy_from_slice(&receiver_random.to_be_bytes());
    mptcp_hmac(sender_key, receiver_key, &message)
}

/// The MP_JOIN SYN/ACK's "Sender's Truncated HMAC": the leftmost 64 bits of [`join_hmac`].
pub fn join_hmac_64(
    sender_key: u64,
    receiver_key: u64,
    sender_random: u32,
    receiver_random: u32,
) -> u64 {
    let full = join_hmac(sender_key, receiver_key, sender_random, receiver_random);
    let mut left = [0u8; 8];
    left.copy_from_slice(&full[..8]);
    u64::from_be_bytes(left)
}

/// The MP_JOIN third ACK's "Sender's HMAC (160 bits)": the leftmost 20 bytes of [`join_hmac`].
pub fn join_hmac_160(
    sender_key: u64,
    receiver_key: u64,
    sender_random: u32,
    receiver_random: u32,
) -> [u8; 20] {
    let full = join_hmac(sender_key, receiver_key, sender_random, receiver_random);
    let mut left = [0u8; 20];
    left.copy_from_slice(&full[..20]);
    left
}

/// The ADD_ADDR "Truncated HMAC" (RFC 8684 section 3.4.1): the **rightmost** 64 bits of
/// `HMAC(Key = sender key || receiver key, Msg = address id || address || port)`.
///
/// The address is 4 or 16 bytes. The port is always two bytes in network order, zero when the
/// option carries no port: the RFC's message names the port without an "if present", and Linux
/// (`add_addr_generate_hmac`) hashes zero for an absent port, so that is what interoperates.
pub fn add_addr_hmac(
    sender_key: u64,
    receiver_key: u64,
    address_id: u8,
    address: IpAddr,
    port: Option<u16>,
) -> u64 {
    let mut message = Vec::with_capacity(19);
    message.push(address_id);
    match address {
        IpAddr::V4(v4) => message.extend(v4.octets()),
        IpAddr::V6(v6) => message.extend(v6.octets()),
    }
    message.extend(port.unwrap_or(0).to_be_bytes());
    let full = mptcp_hmac(sender_key, receiver_key, &message);
    let mut right = [0u8; 8];
    right.copy_from_slice(&full[24..]);
    u64::from_be_bytes(right)
}

#[cfg(test)]
mod tests {
    //! Expected values were computed independently with Python's hashlib/hmac, e.g.
    //! `hashlib.sha256(bytes.fromhex("0123456789abcdef")).hexdigest()` and
    //! `hmac.new(ka + kb, msg, hashlib.sha256).hexdigest()`.
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const KEY_A: u64 = 0x0123_4567_89ab_cdef;
    const KEY_B: u64 = 0xfedc_ba98_7654_3210;

    #[test]
    fn token_and_idsn() {
        // sha256(01 23 45 67 89 ab cd ef) =
        // 55c53f5d490297900cefa825d0c8e8e9532ee8a118abe7d8570762cd38be9818
        assert_eq!(token_from_key(KEY_A), 0x55c5_3f5d);
        assert_eq!(idsn_from_key(KEY_A), 0x5707_62cd_38be_9818);
    }

    #[test]
    fn join_hmacs() {
        // hmac(key_b || key_a, r_b || r_a) with r_a = 11111111, r_b = 22222222
        let full = join_hmac(KEY_B, KEY_A, 0x2222_2222, 0x1111_1111);
        assert_eq!(
            join_hmac_64(KEY_B, KEY_A, 0x2222_2222, 0x1111_1111),
            u64_at(&full, 0)
        );
        assert_eq!(hex(&full), JOIN_B_HEX);
        let ack = join_hmac_160(KEY_A, KEY_B, 0x1111_1111, 0x2222_2222);
        assert_eq!(hex(&ack), &JOIN_A_HEX[..40]);
    }

    #[test]
    fn add_addr_hmacs() {
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1));
        assert_eq!(add_addr_hmac(KEY_A, KEY_B, 1, v4, None), ADD_ADDR_V4);
        assert_eq!(
            add_addr_hmac(KEY_A, KEY_B, 1, v4, Some(8080)),
            ADD_ADDR_V4_PORT
        );
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
        assert_eq!(add_addr_hmac(KEY_B, KEY_A, 7, v6, None), ADD_ADDR_V6);
    }

    fn u64_at(bytes: &[u8], at: usize) -> u64 {
        let mut out = [0u8; 8];
        out.copy_from_slice(&bytes[at..at + 8]);
        u64::from_be_bytes(out)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `hmac.new(kb + ka, rb + ra, sha256)`
    const JOIN_B_HEX: &str = "b127f56db7b4d8d3b2916689013ab5ca858c6f33e5d820f760f4172e12c6e168";
    /// `hmac.new(ka + kb, ra + rb, sha256)`
    const JOIN_A_HEX: &str = "47ea314b6243dcfbf0fbbdde7cde4b6a26816dbda3f3e599a15cad3e55e0d2d8";
    /// Last 8 bytes of `hmac.new(ka + kb, b"\x01" + 10.0.2.1 + b"\x00\x00", sha256)`.
    const ADD_ADDR_V4: u64 = 0xbf12_3919_3d1c_a414;
    /// Same with port 8080 (`1f 90`).
    const ADD_ADDR_V4_PORT: u64 = 0x51a0_864c_66af_4858;
    /// Last 8 bytes of `hmac.new(kb + ka, b"\x07" + 2001:db8::2 + b"\x00\x00", sha256)`.
    const ADD_ADDR_V6: u64 = 0x73bd_9ed2_b9e9_5a4e;
}
