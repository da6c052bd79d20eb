//! A client of the kernel's MPTCP path manager over generic netlink (family `mptcp_pm`).
//!
//! - In-kernel PM: list, add, delete and flush endpoints, change their flags, read and set the
//!   limits ([`PathManager`]).
//! - Events: connection and subflow lifecycle from the `mptcp_pm_events` group ([`Events`],
//!   [`Event`]).
//! - Userspace PM (`net.mptcp.pm_type=1`): announce and remove addresses, create and destroy
//!   subflows, flip a subflow's backup bit, on a connection named by its token.
//!
//! Synchronous, on a raw `AF_NETLINK` socket with a small codec of its own ([`uapi`] holds every
//! number). Everything acts on the network namespace of the thread that opened the socket.
//! Kernel refusals carry the kernel's extended-ack message ([`Error::Kernel`]).
//!
//! ```no_run
//! use emptcp_pm::{Endpoint, EndpointFlags, PathManager};
//!
//! # fn main() -> emptcp_pm::Result<()> {
//! let mut pm = PathManager::open()?;
//! pm.set_limits(Some(2), Some(2))?;
//! pm.add_endpoint(&Endpoint::new("10.0.2.1".parse().unwrap(), EndpointFlags::SUBFLOW))?;
//! let mut events = pm.subscribe()?;
//! while let Some(e) = events.next(None)? {
//!     println!("{e}");
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod attr;
mod client;
mod endpoint;
mod error;
mod event;
mod family;
mod socket;
pub mod uapi;

pub use client::{Events, PathManager, Subflow};
pub use endpoint::{Endpoint, EndpointFlags, Limits};
pub use error::{Error, Result};
pub use event::{Event, EventKind};

/// The name of interface `ifindex` in the calling thread's network namespace.
pub fn interface_name(ifindex: i32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf holds IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex as libc::c_uint, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn interface_index(name: &str) -> Result<i32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| Error::InvalidArgument(format!("interface name {name:?} contains NUL")))?;
    // SAFETY: c is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(Error::io(
            format!("looking up interface {name}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(index as i32)
}
