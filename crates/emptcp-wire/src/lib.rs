//! TCP and MPTCP option codec, and a packet builder and parser, for testing the emptcp data
//! plane. Pure Rust, no BPF, no root.
//!
//! - [`tcp_opt`]: the TCP option list, with offsets.
//! - [`mptcp`]: every MPTCP option of RFC 8684 (and RFC 6824 where it differs).
//! - [`crypto`]: tokens, IDSNs and the MP_JOIN / ADD_ADDR HMACs.
//! - [`checksum`]: Internet checksum, pseudo-headers, RFC 1624 updates, DSS checksum.
//! - [`packet`]: build and parse whole frames (Ethernet, VLAN, IPv4/IPv6, TCP).
//!
//! With the `proptest` feature, `strategy` offers proptest strategies for every option and
//! for whole packets.
//!
//! Nothing here panics on any input: every parser returns an [`Error`] saying what was malformed
//! and at which byte.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod checksum;
pub mod crypto;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod mptcp;
pub mod packet;
mod reader;
#[cfg(any(test, feature = "proptest"))]
pub mod strategy;
pub mod tcp_opt;

#[cfg(test)]
mod proptests;

pub use error::{Error, ErrorKind, Result};
