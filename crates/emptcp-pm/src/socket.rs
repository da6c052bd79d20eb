//! A synchronous generic netlink socket: requests with acks, dumps, multicast reception, and the
//! kernel's extended acks.
//!
//! The socket belongs to the network namespace of the thread that creates it (the kernel takes
//! `current->nsproxy->net_ns` in `socket(2)`), and stays there whatever the thread does later.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::attr::{Attrs, align};
use crate::error::{Error, Result};
use crate::uapi::nl::*;

/// Kernel dumps fill at most `NLMSG_GOODSIZE` (about a page, up to 8 KiB) per datagram; events
/// are far smaller. 64 KiB leaves room for either.
const RECV_BUF: usize = 64 * 1024;

/// One generic netlink message: its command and the attributes after the genetlink header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GenlMessage {
    pub(crate) family: u16,
    pub(crate) cmd: u8,
    pub(crate) attrs: Vec<u8>,
}

/// A datagram split into netlink messages, as (type, flags, seq, payload).
struct Received {
    kind: u16,
    flags: u16,
    seq: u32,
    payload: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct GenlSocket {
    fd: OwnedFd,
    seq: u32,
    queue: VecDeque<Received>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("kind", &self.kind)
            .field("seq", &self.seq)
            .field("len", &self.payload.len())
            .finish()
    }
}

fn check(rc: libc::c_int, context: &str) -> Result<libc::c_int> {
    if rc < 0 {
        Err(Error::io(context, io::Error::last_os_error()))
    } else {
        Ok(rc)
    }
}

impl GenlSocket {
    /// Opens a `NETLINK_GENERIC` socket in the calling thread's network namespace.
    pub(crate) fn open() -> Result<Self> {
        // SAFETY: plain syscall; the fd is owned by OwnedFd below.
        let fd = check(
            unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    NETLINK_GENERIC,
                )
            },
            "opening a generic netlink socket",
        )?;
        // SAFETY: fd is fresh and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; all-zero with nl_family set binds to a
        // kernel-chosen port id with no groups.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: sa is a valid sockaddr_nl for the call.
        check(
            unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_nl).cast(),
                    size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            },
            "binding the netlink socket",
        )?;
        let sock = GenlSocket {
            fd,
            seq: 0,
            queue: VecDeque::new(),
            buf: vec![0; RECV_BUF],
        };
        sock.set_opt(NETLINK_EXT_ACK, 1, "enabling extended acks")?;
        sock.set_opt(NETLINK_CAP_ACK, 1, "capping acks")?;
        Ok(sock)
    }

    fn set_opt(&self, name: i32, value: i32, context: &str) -> Result<()> {
        // SAFETY: value is a valid c_int for the call.
        check(
            unsafe {
                libc::setsockopt(
                    self.fd.as_raw_fd(),
                    SOL_NETLINK,
                    name,
                    (&value as *const i32).cast(),
                    size_of::<i32>() as libc::socklen_t,
                )
            },
            context,
        )?;
        Ok(())
    }

    /// Joins a multicast group (a generic netlink group id from the controller).
    pub(crate) fn join_group(&self, group: u32) -> Result<()> {
        self.set_opt(
            NETLINK_ADD_MEMBERSHIP,
            group as i32,
            "joining the multicast group",
        )
    }

    fn send(&mut self, family: u16, flags: u16, cmd: u8, version: u8, attrs: &[u8]) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let len = NLMSG_HDRLEN + GENL_HDRLEN + attrs.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&family.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[cmd, version, 0, 0]);
        msg.extend_from_slice(attrs);
        // SAFETY: sockaddr_nl all-zero with nl_family set addresses the kernel (port 0).
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: msg and to are valid for the call.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(Error::io(
                "sending a netlink request",
                io::Error::last_os_error(),
            ));
        }
        tracing::trace!(family, cmd, seq = self.seq, len, "netlink request sent");
        Ok(self.seq)
    }

    /// Waits up to `timeout` (forever with `None`) for a datagram and queues its messages.
    /// Returns false on timeout.
    fn fill(&mut self, timeout: Option<Duration>) -> Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
        loop {
            // SAFETY: pfd is a valid pollfd array of length 1.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io("waiting on the netlink socket", e));
            }
            if rc == 0 {
                return Ok(false);
            }
            break;
        }
        // MSG_TRUNC makes recv return the datagram's real length, so a truncation is seen.
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOBUFS) {
                return Err(Error::EventsLost);
            }
            return Err(Error::io("receiving from the netlink socket", e));
        }
        let n = n as usize;
        if n > self.buf.len() {
            return Err(Error::Malformed(format!(
                "datagram of {n} bytes exceeds the {} byte buffer",
                self.buf.len()
            )));
        }
        let mut rest = &self.buf[..n];
        while !rest.is_empty() {
            if rest.len() < NLMSG_HDRLEN {
                return Err(Error::Malformed(format!(
                    "{} trailing bytes after the last message",
                    rest.len()
                )));
            }
            let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
            if len < NLMSG_HDRLEN || len > rest.len() {
                return Err(Error::Malformed(format!(
                    "message claims {len} bytes, {} left",
                    rest.len()
                )));
            }
            self.queue.push_back(Received {
                kind: u16::from_ne_bytes(rest[4..6].try_into().expect("2 bytes")),
                flags: u16::from_ne_bytes(rest[6..8].try_into().expect("2 bytes")),
                seq: u32::from_ne_bytes(rest[8..12].try_into().expect("4 bytes")),
                payload: rest[NLMSG_HDRLEN..len].to_vec(),
            });
            rest = &rest[align(len).min(rest.len())..];
        }
        Ok(true)
    }

    /// Sends a request and collects its replies until the ack (or, for a dump, the end).
    /// `operation` names the request in errors.
    pub(crate) fn request(
        &mut self,
        family: u16,
        cmd: u8,
        version: u8,
        dump: bool,
        attrs: &[u8],
        operation: &dyn Fn() -> String,
    ) -> Result<Vec<GenlMessage>> {
        let flags = NLM_F_ACK | if dump { NLM_F_DUMP } else { 0 };
        let seq = self.send(family, flags, cmd, version, attrs)?;
        let mut replies = Vec::new();
        loop {
            let Some(msg) = self.queue.pop_front() else {
                self.fill(None)?;
                continue;
            };
            if msg.seq != seq {
                tracing::debug!(?msg, seq, "skipping a reply to another request");
                continue;
            }
            match msg.kind {
                NLMSG_ERROR => {
                    let errno = parse_error(&msg, operation)?;
                    if errno != 0 {
                        return Err(errno_error(&msg, errno, operation));
                    }
                    return Ok(replies);
                }
                NLMSG_DONE => {
                    // A dump's end carries its status like an error message does.
                    let status = msg
                        .payload
                        .get(..4)
                        .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                    if status < 0 {
                        return Err(errno_error(&msg, -status, operation));
                    }
                    return Ok(replies);
                }
                NLMSG_OVERRUN => {
                    return Err(Error::Malformed("the kernel reported an overrun".into()));
                }
                _ => replies.push(genl_message(&msg)?),
            }
        }
    }

    /// The next message sent to a joined group, waiting up to `timeout`; `None` on timeout.
    pub(crate) fn next_multicast(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<GenlMessage>> {
        loop {
            if let Some(msg) = self.queue.pop_front() {
                if msg.kind < NLMSG_MIN_TYPE {
                    // Control messages (NOOP, ERROR, DONE) belong to no event.
                    continue;
                }
                return genl_message(&msg).map(Some);
            }
            if !self.fill(timeout)? {
                return Ok(None);
            }
        }
    }
}

fn genl_message(msg: &Received) -> Result<GenlMessage> {
    if msg.payload.len() < GENL_HDRLEN {
        return Err(Error::Malformed(format!(
            "generic netlink message of {} bytes has no genetlink header",
            msg.payload.len()
        )));
    }
    Ok(GenlMessage {
        family: msg.kind,
        cmd: msg.payload[0],
        attrs: msg.payload[GENL_HDRLEN..].to_vec(),
    })
}

/// The (positive) errno of an `NLMSG_ERROR`; 0 for an ack.
fn parse_error(msg: &Received, operation: &dyn Fn() -> String) -> Result<i32> {
    let Some(status) = msg.payload.get(..4) else {
        return Err(Error::Malformed(format!(
            "{}: error message without a status",
            operation()
        )));
    };
    Ok(-i32::from_ne_bytes(status.try_into().expect("4 bytes")))
}

fn errno_error(msg: &Received, errno: i32, operation: &dyn Fn() -> String) -> Error {
    Error::Kernel {
        operation: operation(),
        errno,
        message: ext_ack_message(msg),
    }
}

/// `NLMSGERR_ATTR_MSG` from an error or done message, when the kernel attached one.
fn ext_ack_message(msg: &Received) -> Option<String> {
    if msg.flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let tlv_start = match msg.kind {
        // error status, then the echoed request: its header alone when capped.
        NLMSG_ERROR if msg.flags & NLM_F_CAPPED != 0 => 4 + NLMSG_HDRLEN,
        NLMSG_ERROR => {
            let echoed = msg.payload.get(4..8)?;
            4 + align(u32::from_ne_bytes(echoed.try_into().ok()?) as usize)
        }
        _ => 4,
    };
    Attrs::new(msg.payload.get(tlv_start..)?)
        .filter_map(Result::ok)
        .find(|a| a.kind == NLMSGERR_ATTR_MSG)
        .map(|a| a.string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AttrWriter;

    fn error_message(flags: u16, echoed_len: u32, echoed_payload: usize) -> Received {
        let mut payload = (-22i32).to_ne_bytes().to_vec();
        payload.extend_from_slice(&echoed_len.to_ne_bytes());
        payload.extend_from_slice(&[0; 12]);
        payload.extend(std::iter::repeat_n(0xaa, echoed_payload));
        let mut tlvs = AttrWriter::new();
        tlvs.put_str(NLMSGERR_ATTR_MSG, "limit greater than maximum (8)")
            .put_u32(NLMSGERR_ATTR_OFFS, 20);
        payload.extend_from_slice(&tlvs.into_bytes());
        Received {
            kind: NLMSG_ERROR,
            flags,
            seq: 1,
            payload,
        }
    }

    #[test]
    fn extended_ack_message_is_found_in_capped_and_full_errors() {
        let capped = error_message(NLM_F_CAPPED | NLM_F_ACK_TLVS, 32, 0);
        assert_eq!(
            ext_ack_message(&capped).as_deref(),
            Some("limit greater than maximum (8)")
        );
        // Uncapped: the whole 30-byte request is echoed, padded to 32.
        let full = error_message(NLM_F_ACK_TLVS, 30, 16);
        assert_eq!(
            ext_ack_message(&full).as_deref(),
            Some("limit greater than maximum (8)")
        );
        let without = error_message(NLM_F_CAPPED, 32, 0);
        assert_eq!(ext_ack_message(&without), None);
        let e = errno_error(&capped, 22, &|| "setting limits".into());
        assert_eq!(
            e.to_string(),
            "setting limits: limit greater than maximum (8) (Invalid argument (os error 22))"
        );
    }
}
