//! Rust view of `bpf/include/emptcp/abi.h`.
//!
//! The types are generated from the objects' BTF by libbpf-cargo, so they
//! cannot drift from the C definitions; this module only adds byte
//! conversions for reading and writing map entries.

pub use crate::skel::types::{
    emptcp_abi, emptcp_add_subflow_outcome, emptcp_addr_kept, emptcp_addr_state, emptcp_chain,
    emptcp_config, emptcp_conn_ct, emptcp_ct_flags, emptcp_ct_key, emptcp_entry_counter,
    emptcp_event, emptcp_event_kind, emptcp_event_version, emptcp_flow_key, emptcp_flow_stats,
    emptcp_hook, emptcp_limits, emptcp_op, emptcp_op_kind, emptcp_op_reason, emptcp_op_stats,
    emptcp_pkt_type, emptcp_rate_limit_arg, emptcp_record, emptcp_rule, emptcp_rule_key,
    emptcp_rule_set, emptcp_seq_kind, emptcp_set_backup_arg, emptcp_shape, emptcp_shape_stats,
    emptcp_subflow_ct, emptcp_token_ct, rodata,
};

/// ABI version this library was built against (`EMPTCP_ABI_VERSION`).
pub const ABI_VERSION: u32 = emptcp_abi::EMPTCP_ABI_VERSION.0;

/// Plain old data: every bit pattern of `size_of::<Self>()` bytes is a valid
/// value, so it can be copied to and from map bytes.
///
/// # Safety
/// Implement only for `#[repr(C)]` types made of integers and integer arrays.
pub unsafe trait Pod: Copy + Default {}

// SAFETY: generated #[repr(C)] structs of integer fields (see abi.h).
unsafe impl Pod for emptcp_flow_key {}
// SAFETY: as above (abi.h: explicit padding fields, size assertions).
unsafe impl Pod for emptcp_flow_stats {}
// SAFETY: as above.
unsafe impl Pod for emptcp_config {}
// SAFETY: as above.
unsafe impl Pod for emptcp_rule_key {}
// SAFETY: as above.
unsafe impl Pod for emptcp_rule_set {}
// SAFETY: as above.
unsafe impl Pod for emptcp_rule {}
// SAFETY: as above.
unsafe impl Pod for emptcp_op_stats {}
// SAFETY: as above.
unsafe impl Pod for emptcp_ct_key {}
// SAFETY: as above.
unsafe impl Pod for emptcp_subflow_ct {}
// SAFETY: as above.
unsafe impl Pod for emptcp_conn_ct {}
// SAFETY: as above.
unsafe impl Pod for emptcp_event {}
// SAFETY: as above.
unsafe impl Pod for emptcp_shape_stats {}
// SAFETY: as above.
unsafe impl Pod for emptcp_record {}
// SAFETY: as above.
unsafe impl Pod for emptcp_addr_kept {}
// SAFETY: primitive integer.
unsafe impl Pod for u32 {}
// SAFETY: primitive integer.
unsafe impl Pod for u64 {}

/// Copies a value out of map bytes; `None` when the length differs.
pub fn from_bytes<T: Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() != std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: length checked; T is Pod, so any bytes are a valid T;
    // read_unaligned copes with the Vec's alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The bytes of a value, as a map key or value.
pub fn as_bytes<T: Pod>(value: &T) -> &[u8] {
    // SAFETY: T is Pod (no padding holes with undefined content: abi.h makes
    // every padding byte an explicit field), so all its bytes are initialised.
    unsafe {
        std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_c_static_asserts() {
        assert_eq!(std::mem::size_of::<emptcp_flow_key>(), 44);
        assert_eq!(std::mem::size_of::<emptcp_flow_stats>(), 24);
    }

    #[test]
    fn sentinels_match_rust_name_tables() {
        assert_eq!(
            emptcp_hook::EMPTCP_HOOK__MAX.0 as usize,
            crate::Hook::ALL.len()
        );
        assert_eq!(
            emptcp_entry_counter::EMPTCP_CNT__MAX.0 as usize,
            crate::dataplane::ENTRY_COUNTER_NAMES.len()
        );
        assert_eq!(
            emptcp_op_reason::EMPTCP_REASON__MAX.0 as usize,
            crate::OP_REASON_NAMES.len()
        );
    }

    #[test]
    fn round_trip_through_bytes() {
        let key = emptcp_flow_key {
            ifindex: 7,
            hook: 2,
            family: 10,
            sport: 80,
            ..Default::default()
        };
        let back: emptcp_flow_key = from_bytes(as_bytes(&key)).unwrap();
        assert_eq!(back.ifindex, 7);
        assert_eq!(back.sport, 80);
        assert!(from_bytes::<emptcp_flow_key>(&[0; 3]).is_none());
    }
}
