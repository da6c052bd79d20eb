//! MPTCP socket options (`SOL_MPTCP`), read from any MPTCP socket fd.
//!
//! Layouts follow `include/uapi/linux/mptcp.h` and `linux/tcp.h`. The kernel copies
//! `min(user size, kernel size)` of each structure, so the prefixes declared here work on newer
//! kernels whose structures grew at the end.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};

use serde::Serialize;

/// `IPPROTO_MPTCP`: the protocol number for `socket(2)`.
pub const IPPROTO_MPTCP: i32 = 262;
/// `SOL_MPTCP`: the level of MPTCP socket options.
pub const SOL_MPTCP: i32 = 284;
/// `MPTCP_INFO`: connection-level `struct mptcp_info`.
pub const MPTCP_INFO: i32 = 1;
/// `MPTCP_TCPINFO`: one `struct tcp_info` per subflow after a `struct mptcp_subflow_data` header.
pub const MPTCP_TCPINFO: i32 = 2;
/// `MPTCP_SUBFLOW_ADDRS`: one `struct mptcp_subflow_addrs` per subflow after the same header.
pub const MPTCP_SUBFLOW_ADDRS: i32 = 3;
/// `MPTCP_INFO_FLAG_FALLBACK`: the connection fell back to plain TCP.
pub const MPTCP_INFO_FLAG_FALLBACK: u32 = 1 << 0;

/// The stable prefix of `struct mptcp_info` (fields present since kernel 5.16).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct MptcpInfoRaw {
    subflows: u8,
    add_addr_signal: u8,
    add_addr_accepted: u8,
    subflows_max: u8,
    add_addr_signal_max: u8,
    add_addr_accepted_max: u8,
    flags: u32,
    token: u32,
    write_seq: u64,
    snd_una: u64,
    rcv_nxt: u64,
    local_addr_used: u8,
    local_addr_max: u8,
    csum_enabled: u8,
}

/// Connection-level MPTCP state (`MPTCP_INFO`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MptcpInfo {
    /// Extra subflows currently open (the initial subflow is not counted).
    pub extra_subflows: u8,
    /// Path-manager limit on extra subflows.
    pub subflows_max: u8,
    /// ADD_ADDRs accepted from the peer.
    pub add_addr_accepted: u8,
    /// `MPTCP_INFO_FLAG_*` bits.
    pub flags: u32,
    /// Local connection token.
    pub token: u32,
    /// Next data sequence number to write (64-bit DSN).
    pub write_seq: u64,
    /// Oldest unacknowledged data sequence number.
    pub snd_una: u64,
    /// Next data sequence number expected from the peer.
    pub rcv_nxt: u64,
    /// DSS checksums in use on this connection.
    pub csum_enabled: bool,
}

impl MptcpInfo {
    /// True when the kernel reports a fallback to plain TCP.
    pub fn fallback(&self) -> bool {
        self.flags & MPTCP_INFO_FLAG_FALLBACK != 0
    }
}

/// `struct tcp_info` from `linux/tcp.h` up to `tcpi_snd_wnd` (kernel 5.19+).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct TcpInfoRaw {
    state: u8,
    ca_state: u8,
    retransmits: u8,
    probes: u8,
    backoff: u8,
    options: u8,
    wscale: u8,
    app_limited_bits: u8,
    rto: u32,
    ato: u32,
    snd_mss: u32,
    rcv_mss: u32,
    unacked: u32,
    sacked: u32,
    lost: u32,
    retrans: u32,
    fackets: u32,
    last_data_sent: u32,
    last_ack_sent: u32,
    last_data_recv: u32,
    last_ack_recv: u32,
    pmtu: u32,
    rcv_ssthresh: u32,
    rtt: u32,
    rttvar: u32,
    snd_ssthresh: u32,
    snd_cwnd: u32,
    advmss: u32,
    reordering: u32,
    rcv_rtt: u32,
    rcv_space: u32,
    total_retrans: u32,
    pacing_rate: u64,
    max_pacing_rate: u64,
    bytes_acked: u64,
    bytes_received: u64,
    segs_out: u32,
    segs_in: u32,
    notsent_bytes: u32,
    min_rtt: u32,
    data_segs_in: u32,
    data_segs_out: u32,
    delivery_rate: u64,
    busy_time: u64,
    rwnd_limited: u64,
    sndbuf_limited: u64,
    delivered: u32,
    delivered_ce: u32,
    bytes_sent: u64,
    bytes_retrans: u64,
    dsack_dups: u32,
    reord_seen: u32,
    rcv_ooopack: u32,
    snd_wnd: u32,
}

const _: () = assert!(size_of::<TcpInfoRaw>() == 232);
const _: () = assert!(size_of::<MptcpInfoRaw>() == 48);

/// Header of `MPTCP_TCPINFO` / `MPTCP_SUBFLOW_ADDRS` (`struct mptcp_subflow_data`).
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy, Default)]
struct SubflowDataHeader {
    size_subflow_data: u32,
    num_subflows: u32,
    size_kernel: u32,
    size_user: u32,
}

/// Size of `struct mptcp_subflow_addrs`: two `sockaddr_storage`.
const SUBFLOW_ADDRS_SIZE: usize = 2 * 128;

/// One subflow as seen from this end: addresses and TCP counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubflowInfo {
    /// Local address and port.
    pub local: Option<SocketAddr>,
    /// Remote address and port.
    pub remote: Option<SocketAddr>,
    /// TCP state (`TCP_ESTABLISHED` = 1, ...).
    pub tcp_state: u8,
    /// Payload bytes sent, retransmissions included (`tcpi_bytes_sent`).
    pub bytes_sent: u64,
    /// Payload bytes the peer acknowledged (`tcpi_bytes_acked`; includes 1 for the SYN).
    pub bytes_acked: u64,
    /// Payload bytes received (`tcpi_bytes_received`).
    pub bytes_received: u64,
    /// Payload bytes retransmitted (`tcpi_bytes_retrans`).
    pub bytes_retrans: u64,
    /// Segments retransmitted over the subflow's life (`tcpi_total_retrans`).
    pub total_retrans: u32,
    /// Segments sent but not yet acknowledged (`tcpi_unacked`).
    pub unacked: u32,
    /// Bytes queued but not yet sent (`tcpi_notsent_bytes`).
    pub notsent_bytes: u32,
    /// Smoothed RTT in microseconds (`tcpi_rtt`).
    pub rtt_us: u32,
    /// Path MTU.
    pub pmtu: u32,
}

fn getsockopt_raw(fd: BorrowedFd<'_>, name: i32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf is valid for writes of len bytes; the kernel writes at most len bytes and
    // stores the written length in len.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            SOL_MPTCP,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(len as usize)
}

fn read_struct<T: Copy + Default>(buf: &[u8]) -> T {
    let mut out = T::default();
    let n = buf.len().min(size_of::<T>());
    // SAFETY: T is a plain-old-data repr(C) struct of integers; any byte pattern is valid and
    // we copy at most size_of::<T>() bytes into it.
    unsafe {
        std::ptr::copy_nonoverlapping(buf.as_ptr(), (&mut out as *mut T).cast::<u8>(), n);
    }
    out
}

/// Reads `MPTCP_INFO`. Fails with the OS error when the socket is not MPTCP or fell back to TCP
/// (the kernel then forwards the option to the TCP socket, which answers `ENOPROTOOPT`).
pub fn mptcp_info(fd: BorrowedFd<'_>) -> io::Result<MptcpInfo> {
    let mut buf = [0u8; 256];
    let n = getsockopt_raw(fd, MPTCP_INFO, &mut buf)?;
    let raw: MptcpInfoRaw = read_struct(&buf[..n]);
    Ok(MptcpInfo {
        extra_subflows: raw.subflows,
        subflows_max: raw.subflows_max,
        add_addr_accepted: raw.add_addr_accepted,
        flags: raw.flags,
        token: raw.token,
        write_seq: raw.write_seq,
        snd_una: raw.snd_una,
        rcv_nxt: raw.rcv_nxt,
        csum_enabled: raw.csum_enabled != 0,
    })
}

/// Reads an array option with a `struct mptcp_subflow_data` header; returns the elements
/// (each `elem_size` bytes) and the kernel's subflow count (which may exceed `max`).
fn subflow_array(
    fd: BorrowedFd<'_>,
    name: i32,
    elem_size: usize,
    max: usize,
) -> io::Result<(Vec<Vec<u8>>, usize)> {
    let header_size = size_of::<SubflowDataHeader>();
    let total = header_size + elem_size * max;
    // u64 backing keeps the header 8-byte aligned, as the uapi struct demands.
    let mut backing = vec![0u64; total.div_ceil(8)];
    // SAFETY: the Vec<u64> owns total rounded up to 8 bytes; viewing it as bytes is valid.
    let buf = unsafe { std::slice::from_raw_parts_mut(backing.as_mut_ptr().cast::<u8>(), total) };
    let header = SubflowDataHeader {
        size_subflow_data: header_size as u32,
        num_subflows: 0,
        size_kernel: 0,
        size_user: elem_size as u32,
    };
    // SAFETY: header is plain data of header_size bytes; buf holds at least that many.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&header as *const SubflowDataHeader).cast::<u8>(),
            buf.as_mut_ptr(),
            header_size,
        );
    }
    getsockopt_raw(fd, name, buf)?;
    let header: SubflowDataHeader = read_struct(&buf[..header_size]);
    let size_user = header.size_user as usize;
    let present = (header.num_subflows as usize).min(max);
    let elems = (0..present)
        .map(|i| {
            let start = header_size + i * size_user;
            buf[start..start + size_user].to_vec()
        })
        .collect();
    Ok((elems, header.num_subflows as usize))
}

pub(crate) fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([b[0], b[1]]) as i32;
    let port = u16::from_be_bytes([b[2], b[3]]);
    match family {
        libc::AF_INET => {
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&b[8..24]);
            let scope = u32::from_ne_bytes([b[24], b[25], b[26], b[27]]);
            let ip = Ipv6Addr::from(octets);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope)))
        }
        _ => None,
    }
}

/// Reads every subflow's addresses (`MPTCP_SUBFLOW_ADDRS`) and TCP counters (`MPTCP_TCPINFO`).
///
/// The two options walk the same subflow list in the same order; when the count changes between
/// the two calls (a subflow opened or closed), the read is retried.
pub fn subflows(fd: BorrowedFd<'_>) -> io::Result<Vec<SubflowInfo>> {
    const MAX_SUBFLOWS: usize = 16;
    for _ in 0..5 {
        let (addrs, n_addrs) =
            subflow_array(fd, MPTCP_SUBFLOW_ADDRS, SUBFLOW_ADDRS_SIZE, MAX_SUBFLOWS)?;
        let (infos, n_infos) =
            subflow_array(fd, MPTCP_TCPINFO, size_of::<TcpInfoRaw>(), MAX_SUBFLOWS)?;
        if n_addrs != n_infos {
            continue;
        }
        return Ok(addrs
            .iter()
            .zip(&infos)
            .map(|(a, t)| {
                let t: TcpInfoRaw = read_struct(t);
                SubflowInfo {
                    local: if a.len() >= 128 {
                        parse_sockaddr(&a[..128])
                    } else {
                        None
                    },
                    remote: if a.len() >= 256 {
                        parse_sockaddr(&a[128..256])
                    } else {
                        None
                    },
                    tcp_state: t.state,
                    bytes_sent: t.bytes_sent,
                    bytes_acked: t.bytes_acked,
                    bytes_received: t.bytes_received,
                    bytes_retrans: t.bytes_retrans,
                    total_retrans: t.total_retrans,
                    unacked: t.unacked,
                    notsent_bytes: t.notsent_bytes,
                    rtt_us: t.rtt,
                    pmtu: t.pmtu,
                }
            })
            .collect());
    }
    Err(io::Error::other(
        "the subflow list kept changing while it was read",
    ))
}

/// The IP address of a subflow end, for matching against a path's addresses.
pub fn ip_of(addr: &Option<SocketAddr>) -> Option<IpAddr> {
    addr.map(|a| a.ip())
}
