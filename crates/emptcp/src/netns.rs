//! Entering a network namespace for the current thread only.
//!
//! Interfaces are named by index within a namespace, and the kernel resolves
//! an attach target in the namespace of the calling thread. `setns` on one
//! thread keeps `/sys/fs/bpf` visible, unlike `ip netns exec`, which remounts
//! /sys and hides the pins (docs/testing.md).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::{Error, ErrorKind, Result};

/// While alive, the current thread is in another network namespace; dropping
/// it returns the thread to the namespace it was in.
#[must_use = "the thread leaves the namespace when the guard is dropped"]
pub struct NetnsGuard {
    previous: File,
}

impl NetnsGuard {
    /// Moves the current thread into the namespace at `path` (for example
    /// `/run/netns/NAME`).
    pub fn enter(path: &Path) -> Result<NetnsGuard> {
        let previous = File::open("/proc/thread-self/ns/net")
            .map_err(|e| Error::io("opening the current network namespace", e))?;
        let target = File::open(path)
            .map_err(|e| Error::io(format!("opening network namespace {}", path.display()), e))?;
        setns(&target)
            .map_err(|e| Error::io(format!("entering network namespace {}", path.display()), e))?;
        Ok(NetnsGuard { previous })
    }

    /// Enters a named namespace (`ip netns add NAME`).
    pub fn named(name: &str) -> Result<NetnsGuard> {
        NetnsGuard::enter(&named_path(name))
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // Failing to return would leave this thread in the wrong namespace
        // for whatever it does next; there is no safe way to continue.
        if let Err(e) = setns(&self.previous) {
            panic!("cannot return to the previous network namespace: {e}");
        }
    }
}

fn setns(ns: &File) -> std::io::Result<()> {
    // SAFETY: plain syscall on a valid fd; affects only the calling thread.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The namespace file of a named namespace (`ip netns add NAME`).
pub fn named_path(name: &str) -> std::path::PathBuf {
    Path::new("/run/netns").join(name)
}

/// The index of interface `name` in the calling thread's namespace.
pub fn interface_index(name: &str) -> Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| Error::new(ErrorKind::NotFound, format!("bad interface name {name:?}")))?;
    // SAFETY: valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(Error::io(
            format!("no interface {name} in this network namespace"),
            std::io::Error::last_os_error(),
        )
        .with_kind(ErrorKind::NotFound));
    }
    Ok(index)
}

/// The name of interface `ifindex` in the calling thread's namespace.
pub fn interface_name(ifindex: u32) -> Result<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf holds IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(Error::io(
            format!("no interface with index {ifindex} in this network namespace"),
            std::io::Error::last_os_error(),
        )
        .with_kind(ErrorKind::NotFound));
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    Ok(unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned())
}

/// The inode of the calling thread's network namespace: tells namespaces
/// apart (ifindexes are per namespace).
pub fn current_netns_inode() -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .map(|m| m.ino())
        .map_err(|e| Error::io("reading the current network namespace", e))
}
