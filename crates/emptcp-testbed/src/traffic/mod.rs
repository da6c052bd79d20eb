//! Built-in MPTCP traffic: a receiver and a sender that move a verified byte stream.
//!
//! The sender connects with `socket(AF_INET[6], SOCK_STREAM, IPPROTO_MPTCP)`, sends a 24-byte
//! header (magic `EMTB`, version, length, seed) and then `length` bytes of the pseudo-random stream
//! [`fill_stream`]`(seed)`. The receiver reads exactly `length` bytes, answers one byte `!` at
//! once (the sender's flow completion time stops there), then its length and SHA-256 of what it
//! got. The sender compares that with the SHA-256 of what it sent, waits until every subflow has
//! no unacknowledged or unsent data, reads per-subflow counters (`MPTCP_SUBFLOW_ADDRS` +
//! `MPTCP_TCPINFO`) and only then closes: once the connection closes, its subflows are gone.
//!
//! Every blocking call has a timeout (`SO_RCVTIMEO` / `SO_SNDTIMEO`) and every loop a deadline.

mod held;
pub mod sockopt;

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use held::HeldConnection;
pub use sockopt::{MptcpInfo, SubflowInfo};

use crate::host::Host;
use crate::topology::Family;

const MAGIC: [u8; 4] = *b"EMTB";
const VERSION: u32 = 1;
/// Bytes of the header the sender puts before the stream: payload on the
/// wire beside the stream's `length` bytes.
pub const HEADER_LEN: usize = 24;
const VERDICT_LEN: usize = 40;
const ALL_RECEIVED: u8 = b'!';
/// Transfers up to this size are generated (sender) or buffered (receiver) in memory, so that
/// generating and hashing stay out of the timed part (SHA-256 runs at ~30 MB/s in debug builds).
/// Larger transfers generate and hash on the fly, which can then limit throughput.
const IN_MEMORY_LIMIT: u64 = 256 << 20;
const CHUNK: usize = 256 * 1024;

/// Fills `buf` with the deterministic pseudo-random stream for `seed`, starting at byte
/// `offset`: word `i` (8 bytes, little endian) is splitmix64 of `seed + i * golden`.
pub fn fill_stream(seed: u64, offset: u64, buf: &mut [u8]) {
    let word = |i: u64| -> [u8; 8] {
        let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)).to_le_bytes()
    };
    let mut pos = 0usize;
    let mut index = offset / 8;
    let mut skip = (offset % 8) as usize;
    while pos < buf.len() {
        let w = word(index);
        let n = (8 - skip).min(buf.len() - pos);
        buf[pos..pos + n].copy_from_slice(&w[skip..skip + n]);
        pos += n;
        skip = 0;
        index += 1;
    }
}

/// Where `got` differs from the stream for `seed`: the first differing
/// byte, how many differ, and the first few runs of differing bytes.
fn stream_differences(seed: u64, got: &[u8]) -> Option<String> {
    const CHUNK: usize = 1 << 20;
    let mut want = vec![0u8; CHUNK];
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut total = 0usize;
    for (i, chunk) in got.chunks(CHUNK).enumerate() {
        let base = i * CHUNK;
        fill_stream(seed, base as u64, &mut want[..chunk.len()]);
        if chunk == &want[..chunk.len()] {
            continue;
        }
        for (j, (a, b)) in chunk.iter().zip(&want).enumerate() {
            if a == b {
                continue;
            }
            total += 1;
            match runs.last_mut() {
                Some((_, end)) if *end == base + j => *end += 1,
                _ => runs.push((base + j, base + j + 1)),
            }
        }
    }
    let (first, _) = *runs.first()?;
    let shown: Vec<String> = runs
        .iter()
        .take(8)
        .map(|(a, b)| format!("[{a}, {b})"))
        .collect();
    // Misplaced data (the stream's bytes from elsewhere: a mapping or
    // reassembly error) or foreign bytes (memory reuse)? Look the first 32
    // wrong bytes up in the whole stream.
    let probe = &got[first..(first + 32).min(got.len())];
    let mut stream = vec![0u8; got.len()];
    fill_stream(seed, 0, &mut stream);
    let origin = if probe.iter().all(|&b| b == 0) {
        "zeros".to_owned()
    } else {
        match stream.windows(probe.len()).position(|w| w == probe) {
            Some(at) => format!(
                "the stream's bytes at {at} (offset {:+})",
                at as i64 - first as i64
            ),
            None => "not from the stream".to_owned(),
        }
    };
    Some(format!(
        "{total} of {} bytes differ from the stream, first at byte {first}, in {} runs: {}{}; \
         the bytes there are {origin}",
        got.len(),
        runs.len(),
        shown.join(" "),
        if runs.len() > 8 { " ..." } else { "" }
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of the first `len` bytes of the stream for `seed`.
pub fn stream_sha256(seed: u64, len: u64) -> String {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < len {
        let n = ((len - off) as usize).min(CHUNK);
        fill_stream(seed, off, &mut buf[..n]);
        hasher.update(&buf[..n]);
        off += n as u64;
    }
    hex(&hasher.finalize())
}

/// Failures of a transfer that a test may want to tell apart (downcast the `anyhow::Error`).
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// The connection is plain TCP: the socket could not be MPTCP, or fell back.
    #[error("connection {local} -> {remote} is not MPTCP: {reason}")]
    NotMptcp {
        /// Local end.
        local: String,
        /// Remote end.
        remote: SocketAddr,
        /// What showed it.
        reason: String,
    },
    /// Fewer subflows than expected carried data.
    #[error(
        "expected at least {expected} subflows carrying data (more than {min_bytes} bytes acked \
         each), got {got}; subflows: {summary}"
    )]
    TooFewSubflowsWithData {
        /// The expectation.
        expected: usize,
        /// Subflows that carried data.
        got: usize,
        /// Threshold of acked payload bytes.
        min_bytes: u64,
        /// Per-subflow `local -> remote: acked` listing.
        summary: String,
        /// The full report of the run.
        report: Box<SenderReport>,
    },
    /// The receiver did not get the bytes that were sent.
    #[error(
        "data mismatch: sent {sent_bytes} bytes with sha256 {sent_sha256}, receiver got \
         {received_bytes} bytes with sha256 {received_sha256}"
    )]
    Corrupted {
        /// Bytes sent.
        sent_bytes: u64,
        /// SHA-256 of the sent stream.
        sent_sha256: String,
        /// Bytes the receiver counted.
        received_bytes: u64,
        /// SHA-256 the receiver computed.
        received_sha256: String,
    },
}

fn mptcp_socket(family: Family) -> io::Result<OwnedFd> {
    let domain = match family {
        Family::V4 => libc::AF_INET,
        Family::V6 => libc::AF_INET6,
    };
    // SAFETY: plain syscall; the returned fd is owned by the OwnedFd below.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            sockopt::IPPROTO_MPTCP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn bind(fd: &OwnedFd, addr: &SocketAddr) -> io::Result<()> {
    let (sa, len) = to_sockaddr(addr);
    // SAFETY: sa is a valid sockaddr of len bytes.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
}

fn connect(fd: &OwnedFd, addr: &SocketAddr) -> io::Result<()> {
    let (sa, len) = to_sockaddr(addr);
    // SAFETY: sa is a valid sockaddr of len bytes. A blocking connect honours SO_SNDTIMEO
    // and fails with EINPROGRESS when it expires.
    check(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
}

fn set_int_opt(fd: &OwnedFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: value is a valid c_int for the duration of the call.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    })
}

fn wildcard(family: Family, port: u16) -> SocketAddr {
    match family {
        Family::V4 => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        Family::V6 => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn rate_bps(bytes: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        bytes as f64 * 8.0 / d.as_secs_f64()
    }
}

/// Options of a [`Receiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReceiverOpts {
    /// Address family of the listening socket (bound to the wildcard address).
    pub family: Family,
    /// Port to listen on; 0 picks a free one (see [`Receiver::port`]).
    pub port: u16,
    /// Connections to serve, one after another, before the receiver stops by itself.
    pub max_connections: usize,
    /// Longest wait for a connection or for data on one, before the receiver gives up.
    pub io_timeout: Duration,
    /// Subflows a connection is expected to have: the receiver reads nothing
    /// until that many have joined (or [`JOIN_WAIT_LIMIT`] passed). `None`
    /// (or 1): reads at once.
    ///
    /// This keeps transfers clear of a Linux 6.18 MPTCP receive bug
    /// (docs/kernel-issues.md): a join that the receiving kernel finishes
    /// while the application holds the socket (a read copying data) can get
    /// its first data placed at the wrong data sequence number. A receiver
    /// that is not reading finishes joins at once; the sender is not slowed
    /// meanwhile (the testbed's receive buffer takes the early data).
    pub wait_subflows: Option<usize>,
}

/// The longest a receiver waits for the joins it expects before it reads.
pub const JOIN_WAIT_LIMIT: Duration = Duration::from_secs(2);

impl Default for ReceiverOpts {
    fn default() -> Self {
        ReceiverOpts {
            family: Family::V4,
            port: 0,
            max_connections: 1,
            io_timeout: Duration::from_secs(30),
            wait_subflows: None,
        }
    }
}

/// What the receiver saw of one connection.
#[derive(Debug, Clone, Serialize)]
pub struct ReceivedFlow {
    /// The peer (the initial subflow's source).
    pub peer: SocketAddr,
    /// Length announced in the header.
    pub expected_bytes: u64,
    /// Bytes received after the header.
    pub bytes: u64,
    /// SHA-256 (hex) of the received bytes.
    pub sha256: String,
    /// Stream seed announced in the header.
    pub seed: u64,
    /// First to last payload byte, in seconds.
    pub duration_s: f64,
    /// `bytes * 8 / duration_s`.
    pub throughput_bps: f64,
    /// MPTCP state of the accepted socket, read after the last byte.
    pub mptcp: Option<MptcpInfo>,
    /// Subflows of the accepted socket, read after the last byte.
    pub subflows: Vec<SubflowInfo>,
    /// Where the received bytes differ from the stream announced (streams
    /// kept in memory only); `None` when they do not.
    pub differs: Option<String>,
    /// Subflows the connection listed when the receiver began to read, if
    /// it waited for them ([`ReceiverOpts::wait_subflows`]); 0 otherwise.
    pub subflows_before_reading: usize,
}

/// A listening MPTCP receiver running on a background thread inside a host.
///
/// Dropping it stops the thread (within ~100 ms) without waiting for a result.
#[derive(Debug)]
pub struct Receiver {
    host: String,
    local: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<Vec<ReceivedFlow>>>>,
}

impl Receiver {
    /// Binds and listens inside `host`, then serves connections in the background.
    pub fn start(host: &Host, opts: ReceiverOpts) -> Result<Receiver> {
        let listener = host
            .run(move || -> io::Result<TcpListener> {
                let fd = mptcp_socket(opts.family)?;
                set_int_opt(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
                if opts.family == Family::V6 {
                    set_int_opt(&fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
                }
                bind(&fd, &wildcard(opts.family, opts.port))?;
                // SAFETY: plain syscall on a valid socket.
                check(unsafe { libc::listen(fd.as_raw_fd(), 16) })?;
                Ok(TcpListener::from(fd))
            })?
            .with_context(|| {
                format!(
                    "listening for MPTCP ({:?}) on host {}",
                    opts.family,
                    host.name()
                )
            })?;
        let local = listener
            .local_addr()
            .context("reading the listener's address")?;
        listener.set_nonblocking(false)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let host_name = host.name().to_owned();
        let handle = std::thread::Builder::new()
            .name(format!("recv-{}", host.name()))
            .spawn(move || serve(listener, opts, &stop_flag, &host_name))
            .context("spawning the receiver thread")?;
        tracing::debug!(host = host.name(), %local, "receiver listening");
        Ok(Receiver {
            host: host.name().to_owned(),
            local,
            stop,
            handle: Some(handle),
        })
    }

    /// The port the receiver listens on.
    pub fn port(&self) -> u16 {
        self.local.port()
    }

    /// Waits for the receiver to serve its `max_connections` (or to fail or time out).
    pub fn join(mut self) -> Result<Vec<ReceivedFlow>> {
        let handle = self.handle.take().expect("receiver joined twice");
        match handle.join() {
            Ok(result) => result.with_context(|| format!("receiver on host {}", self.host)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Stops accepting new connections and returns what was received so far.
    pub fn stop(self) -> Result<Vec<ReceivedFlow>> {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn set_timeval(fd: &impl AsRawFd, name: i32, d: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: tv is a valid timeval for the duration of the call.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    })
}

fn serve(
    listener: TcpListener,
    opts: ReceiverOpts,
    stop: &AtomicBool,
    host: &str,
) -> Result<Vec<ReceivedFlow>> {
    let mut flows = Vec::new();
    let mut idle_since = Instant::now();
    while flows.len() < opts.max_connections {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Wait at most 100 ms for a connection, then look at the stop flag
        // and the idle limit. poll, not SO_RCVTIMEO on the listener: once
        // (bench --transfer, after many connections served) the thread sat
        // in mptcp_stream_accept -> inet_csk_accept for minutes, neither
        // timing out nor seeing the stop flag, and the caller hung in
        // join/drop. Why the timeout did not fire was not found.
        let accepted = match readable(&listener, Duration::from_millis(100)) {
            Ok(true) => listener.accept(),
            Ok(false) => Err(io::ErrorKind::TimedOut.into()),
            Err(e) => Err(e),
        };
        match accepted {
            Ok((stream, peer)) => {
                let joined = match opts.wait_subflows {
                    Some(n) => wait_joined(&stream, n)
                        .with_context(|| format!("waiting for {n} subflows from {peer}"))?,
                    None => 0,
                };
                let mut flow = receive_one(stream, peer, opts.io_timeout)
                    .with_context(|| format!("receiving from {peer} on host {host}"))?;
                flow.subflows_before_reading = joined;
                flows.push(flow);
                idle_since = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if idle_since.elapsed() > opts.io_timeout {
                    bail!(
                        "no connection within {:?} on host {host} (served {} of {})",
                        opts.io_timeout,
                        flows.len(),
                        opts.max_connections
                    );
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("accept on host {host}"))),
        }
    }
    Ok(flows)
}

/// Whether `fd` becomes readable (a listener: has a connection to accept)
/// within `limit`.
fn readable(fd: &impl AsRawFd, limit: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: pfd is one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, limit.as_millis() as libc::c_int) };
    check(rc)?;
    Ok(rc > 0)
}

/// Waits until the connection lists `n` subflows, or [`JOIN_WAIT_LIMIT`],
/// and returns how many it lists. The receiving kernel lists a join once it
/// has finished it: from then on the join's data is placed right whatever
/// the application does.
fn wait_joined(stream: &TcpStream, n: usize) -> Result<usize> {
    let deadline = Instant::now() + JOIN_WAIT_LIMIT;
    loop {
        let listed = sockopt::subflows(stream.as_fd())?.len();
        if listed >= n || Instant::now() >= deadline {
            return Ok(listed);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn receive_one(
    mut stream: TcpStream,
    peer: SocketAddr,
    io_timeout: Duration,
) -> Result<ReceivedFlow> {
    stream.set_read_timeout(Some(io_timeout))?;
    stream.set_write_timeout(Some(io_timeout))?;
    let mut header = [0u8; HEADER_LEN];
    stream
        .read_exact(&mut header)
        .context("reading the header")?;
    if header[..4] != MAGIC {
        bail!(
            "bad magic {:02x?}: not an emptcp-testbed sender",
            &header[..4]
        );
    }
    let version = u32::from_be_bytes(header[4..8].try_into().expect("4 bytes"));
    if version != VERSION {
        bail!("protocol version {version}, expected {VERSION}");
    }
    let expected = u64::from_be_bytes(header[8..16].try_into().expect("8 bytes"));
    let seed = u64::from_be_bytes(header[16..24].try_into().expect("8 bytes"));

    let in_memory = expected <= IN_MEMORY_LIMIT;
    let mut stored: Vec<u8> = Vec::with_capacity(if in_memory { expected as usize } else { 0 });
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0u64;
    let mut first_byte: Option<Instant> = None;
    while received < expected {
        let want = ((expected - received) as usize).min(CHUNK);
        let n = match stream.read(&mut buf[..want]) {
            Ok(0) => bail!("peer closed after {received} of {expected} bytes"),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                bail!("no data for {io_timeout:?} after {received} of {expected} bytes")
            }
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("reading after {received} bytes"))
                );
            }
        };
        first_byte.get_or_insert_with(Instant::now);
        if in_memory {
            stored.extend_from_slice(&buf[..n]);
        } else {
            hasher.update(&buf[..n]);
        }
        received += n as u64;
    }
    let last_byte = Instant::now();
    stream
        .write_all(&[ALL_RECEIVED])
        .context("acknowledging the last byte")?;
    let mptcp = sockopt::mptcp_info(stream.as_fd()).ok();
    let subflows = sockopt::subflows(stream.as_fd()).unwrap_or_default();
    let differs = if in_memory {
        hasher.update(&stored);
        let differs = stream_differences(seed, &stored);
        if let Some(d) = &differs {
            // The sender reports the mismatch; where the bytes differ (one
            // flipped byte, a page, a segment) is only known here.
            eprintln!("emptcp-testbed receiver: stream from {peer}: {d}");
        }
        differs
    } else {
        None
    };
    let digest = hasher.finalize();
    let mut verdict = [0u8; VERDICT_LEN];
    verdict[..8].copy_from_slice(&received.to_be_bytes());
    verdict[8..].copy_from_slice(&digest);
    stream.write_all(&verdict).context("sending the verdict")?;
    // Wait for the sender to close (it first reads its subflow counters), so that our close
    // does not race with its reads.
    let mut rest = [0u8; 64];
    loop {
        match stream.read(&mut rest) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let duration = first_byte.map(|f| last_byte - f).unwrap_or_default();
    Ok(ReceivedFlow {
        peer,
        expected_bytes: expected,
        bytes: received,
        sha256: hex(&digest),
        seed,
        duration_s: secs(duration),
        throughput_bps: rate_bps(received, duration),
        mptcp,
        subflows,
        differs,
        subflows_before_reading: 0,
    })
}

/// What the sender checks before it reports success (default: only "is MPTCP").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Expect {
    /// Fail unless at least this many subflows carried data.
    pub subflows_with_data: Option<usize>,
    /// A subflow "carried data" when its peer acknowledged more than this many payload bytes.
    pub min_bytes_per_subflow: u64,
    /// Accept a plain TCP connection (fallback) instead of failing.
    pub allow_fallback: bool,
}

/// Options of [`send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SenderOpts {
    /// Where to connect.
    pub target: SocketAddr,
    /// Local address to bind before connecting (`None`: chosen by routing).
    pub bind: Option<IpAddr>,
    /// Payload bytes to move.
    pub bytes: u64,
    /// Seed of the pseudo-random stream.
    pub seed: u64,
    /// Longest time any single socket call may block.
    pub io_timeout: Duration,
    /// Deadline for the whole transfer, from `socket()` to the verdict.
    pub timeout: Duration,
    /// IP TOS / IPv6 traffic class of every subflow (`None`: the default);
    /// the DSCP is its upper six bits.
    pub tos: Option<u8>,
    /// Checks that make the run fail.
    pub expect: Expect,
}

impl SenderOpts {
    /// `bytes` to `target` with default timeouts (10 s per call, 120 s overall) and seed 1.
    pub fn new(target: SocketAddr, bytes: u64) -> Self {
        SenderOpts {
            target,
            bind: None,
            bytes,
            seed: 1,
            io_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
            tos: None,
            expect: Expect::default(),
        }
    }
}

/// What the sender measured.
#[derive(Debug, Clone, Serialize)]
pub struct SenderReport {
    /// Local address of the initial subflow.
    pub local: SocketAddr,
    /// The target.
    pub remote: SocketAddr,
    /// Payload bytes sent.
    pub bytes: u64,
    /// Stream seed.
    pub seed: u64,
    /// SHA-256 (hex) of the sent payload.
    pub sha256: String,
    /// The receiver got the same length and SHA-256.
    pub verified: bool,
    /// `connect()` duration (MP_CAPABLE handshake), seconds.
    pub connect_s: f64,
    /// Flow completion time: from calling `connect()` to the receiver's "all received" byte
    /// (which it sends after the last payload byte), seconds.
    pub fct_s: f64,
    /// `bytes * 8 / fct_s`.
    pub throughput_bps: f64,
    /// Every subflow drained (nothing unsent or unacked) before the counters were read.
    pub drained: bool,
    /// Connection-level MPTCP state, read just before closing.
    pub mptcp: MptcpInfo,
    /// Subflows, read just before closing.
    pub subflows: Vec<SubflowInfo>,
    /// Subflows whose peer acknowledged more than `min_bytes_per_subflow` payload bytes.
    pub subflows_with_data: usize,
}

impl SenderReport {
    /// Payload bytes acked per subflow: `tcpi_bytes_acked` minus 1 for the SYN.
    pub fn acked_payload(sf: &SubflowInfo) -> u64 {
        sf.bytes_acked.saturating_sub(1)
    }

    /// Payload bytes acked on the subflows whose local address is `local`.
    pub fn acked_payload_from(&self, local: std::net::IpAddr) -> u64 {
        self.subflows
            .iter()
            .filter(|sf| sf.local.map(|a| a.ip()) == Some(local))
            .map(Self::acked_payload)
            .sum()
    }

    /// One line per subflow: `local -> remote: acked N, sent M, retrans R`.
    pub fn subflow_summary(&self) -> String {
        self.subflows
            .iter()
            .map(|sf| {
                format!(
                    "{} -> {}: acked {} sent {} retrans {}",
                    sf.local
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "?".into()),
                    sf.remote
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "?".into()),
                    Self::acked_payload(sf),
                    sf.bytes_sent,
                    sf.bytes_retrans
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Connects from `host` and moves `opts.bytes` bytes to a [`Receiver`]; see the module docs.
pub fn send(host: &Host, opts: &SenderOpts) -> Result<SenderReport> {
    let opts = *opts;
    host.run(move || send_in_netns(&opts))?.with_context(|| {
        format!(
            "sending {} bytes from host {} to {}",
            opts.bytes,
            host.name(),
            opts.target
        )
    })
}

fn send_in_netns(opts: &SenderOpts) -> Result<SenderReport> {
    let family = Family::of(&opts.target.ip());
    let in_memory = opts.bytes <= IN_MEMORY_LIMIT;
    let payload = if in_memory {
        let mut p = vec![0u8; opts.bytes as usize];
        fill_stream(opts.seed, 0, &mut p);
        p
    } else {
        Vec::new()
    };

    let fd = mptcp_socket(family).context("creating an MPTCP socket (is net.mptcp.enabled 1?)")?;
    set_timeval(&fd, libc::SO_SNDTIMEO, opts.io_timeout)?;
    set_timeval(&fd, libc::SO_RCVTIMEO, opts.io_timeout)?;
    if let Some(ip) = opts.bind {
        bind(&fd, &SocketAddr::new(ip, 0)).with_context(|| format!("binding to {ip}"))?;
    }
    if let Some(tos) = opts.tos {
        // MPTCP hands IP_TOS / IPV6_TCLASS on to every subflow (Linux 5.17+).
        let (level, name) = match family {
            Family::V4 => (libc::IPPROTO_IP, libc::IP_TOS),
            Family::V6 => (libc::IPPROTO_IPV6, libc::IPV6_TCLASS),
        };
        set_int_opt(&fd, level, name, i32::from(tos)).context("setting the TOS")?;
    }
    let start = Instant::now();
    let deadline = start + opts.timeout;
    connect(&fd, &opts.target).map_err(|e| {
        if e.raw_os_error() == Some(libc::EINPROGRESS) {
            anyhow!(
                "connect to {} timed out after {:?}",
                opts.target,
                opts.io_timeout
            )
        } else {
            anyhow::Error::new(e).context(format!("connecting to {}", opts.target))
        }
    })?;
    let connected = Instant::now();
    let mut stream = TcpStream::from(fd);
    let local = stream.local_addr()?;
    let not_mptcp = |reason: String| TrafficError::NotMptcp {
        local: local.to_string(),
        remote: opts.target,
        reason,
    };
    if !opts.expect.allow_fallback {
        match sockopt::mptcp_info(stream.as_fd()) {
            Err(e) => return Err(not_mptcp(format!("getsockopt(MPTCP_INFO) failed: {e}")).into()),
            Ok(info) if info.fallback() => {
                return Err(not_mptcp("MPTCP_INFO reports fallback to TCP".into()).into());
            }
            Ok(_) => {}
        }
    }

    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&MAGIC);
    header[4..8].copy_from_slice(&VERSION.to_be_bytes());
    header[8..16].copy_from_slice(&opts.bytes.to_be_bytes());
    header[16..24].copy_from_slice(&opts.seed.to_be_bytes());
    stream.write_all(&header).context("sending the header")?;

    let mut hasher = Sha256::new();
    let mut chunk = if in_memory {
        Vec::new()
    } else {
        vec![0u8; CHUNK]
    };
    let mut sent = 0u64;
    while sent < opts.bytes {
        if Instant::now() > deadline {
            bail!(
                "transfer exceeded {:?} after {sent} of {} bytes",
                opts.timeout,
                opts.bytes
            );
        }
        let n = ((opts.bytes - sent) as usize).min(CHUNK);
        let data: &[u8] = if in_memory {
            &payload[sent as usize..sent as usize + n]
        } else {
            fill_stream(opts.seed, sent, &mut chunk[..n]);
            hasher.update(&chunk[..n]);
            &chunk[..n]
        };
        write_all_timed(&mut stream, data, opts.io_timeout)
            .with_context(|| format!("sending after {sent} of {} bytes", opts.bytes))?;
        sent += n as u64;
    }

    let mut ack = [0u8; 1];
    read_exact_timed(&mut stream, &mut ack, deadline).context("waiting for the receiver's ack")?;
    let done = Instant::now();
    if ack[0] != ALL_RECEIVED {
        bail!(
            "receiver answered {:#04x} instead of the all-received byte",
            ack[0]
        );
    }
    let mut verdict = [0u8; VERDICT_LEN];
    read_exact_timed(
        &mut stream,
        &mut verdict,
        deadline + Duration::from_secs(30),
    )
    .context("waiting for the receiver's verdict")?;
    if in_memory {
        hasher.update(&payload);
    }
    let sha256 = hex(&hasher.finalize());
    let received_bytes = u64::from_be_bytes(verdict[..8].try_into().expect("8 bytes"));
    let received_sha256 = hex(&verdict[8..]);
    let verified = received_bytes == opts.bytes && received_sha256 == sha256;

    // All data reached the receiver, but the subflow-level ACKs of the other path may still be
    // in flight: wait until nothing is unacked, so bytes_acked is final.
    let (drained, mptcp, subflows) = wait_drained(&stream, Duration::from_secs(3))?;
    if !opts.expect.allow_fallback && mptcp.fallback() {
        return Err(not_mptcp("MPTCP_INFO reports fallback to TCP at the end".into()).into());
    }
    stream.shutdown(std::net::Shutdown::Both).ok();
    drop(stream);

    let fct = done - start;
    let min = opts.expect.min_bytes_per_subflow;
    let subflows_with_data = subflows
        .iter()
        .filter(|sf| SenderReport::acked_payload(sf) > min)
        .count();
    let report = SenderReport {
        local,
        remote: opts.target,
        bytes: opts.bytes,
        seed: opts.seed,
        sha256: sha256.clone(),
        verified,
        connect_s: secs(connected - start),
        fct_s: secs(fct),
        throughput_bps: rate_bps(opts.bytes, fct),
        drained,
        mptcp,
        subflows,
        subflows_with_data,
    };
    tracing::debug!(?report, "transfer done");
    if !verified {
        return Err(TrafficError::Corrupted {
            sent_bytes: opts.bytes,
            sent_sha256: sha256,
            received_bytes,
            received_sha256,
        }
        .into());
    }
    if let Some(expected) = opts.expect.subflows_with_data
        && subflows_with_data < expected
    {
        return Err(TrafficError::TooFewSubflowsWithData {
            expected,
            got: subflows_with_data,
            min_bytes: min,
            summary: report.subflow_summary(),
            report: Box::new(report),
        }
        .into());
    }
    Ok(report)
}

fn write_all_timed(stream: &mut TcpStream, mut data: &[u8], io_timeout: Duration) -> Result<()> {
    while !data.is_empty() {
        match stream.write(data) {
            Ok(0) => bail!("the connection accepts no more data"),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                bail!("send stalled for {io_timeout:?}")
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn read_exact_timed(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => bail!("the receiver closed the connection"),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() > deadline {
                    bail!("no answer before the deadline");
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn wait_drained(
    stream: &TcpStream,
    limit: Duration,
) -> Result<(bool, MptcpInfo, Vec<SubflowInfo>)> {
    let until = Instant::now() + limit;
    loop {
        let mptcp = sockopt::mptcp_info(stream.as_fd()).unwrap_or_default();
        let subflows = sockopt::subflows(stream.as_fd()).unwrap_or_default();
        let drained = mptcp.snd_una == mptcp.write_seq
            && subflows
                .iter()
                .all(|sf| sf.unacked == 0 && sf.notsent_bytes == 0);
        if drained || Instant::now() >= until {
            if !drained {
                tracing::warn!(
                    ?subflows,
                    "subflows did not drain before the counters were read"
                );
            }
            return Ok((drained, mptcp, subflows));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Options of [`transfer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TransferOpts {
    /// Address of the receiver (its family picks the listener's family).
    pub server_ip: IpAddr,
    /// Payload bytes.
    pub bytes: u64,
    /// Stream seed.
    pub seed: u64,
    /// Local address for the sender to bind (`None`: routing decides).
    pub bind: Option<IpAddr>,
    /// The receiver's port (0: a free one).
    pub port: u16,
    /// The sender's TOS ([`SenderOpts::tos`]).
    pub tos: Option<u8>,
    /// Deadline for the whole transfer.
    pub timeout: Duration,
    /// Checks that make the run fail.
    pub expect: Expect,
}

impl TransferOpts {
    /// `bytes` to `server_ip`, seed 1, 120 s deadline, no expectations beyond "is MPTCP".
    pub fn new(server_ip: IpAddr, bytes: u64) -> Self {
        TransferOpts {
            server_ip,
            bytes,
            seed: 1,
            bind: None,
            port: 0,
            tos: None,
            timeout: Duration::from_secs(120),
            expect: Expect::default(),
        }
    }

    /// Listens on `port` instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sends with IP TOS `tos` (DSCP << 2).
    pub fn tos(mut self, tos: u8) -> Self {
        self.tos = Some(tos);
        self
    }

    /// Fails the run unless `n` subflows carried data.
    pub fn expect_subflows_with_data(mut self, n: usize) -> Self {
        self.expect.subflows_with_data = Some(n);
        self
    }
}

/// Both sides of one transfer.
#[derive(Debug, Clone, Serialize)]
pub struct TransferReport {
    /// The sender's view (timing, per-subflow bytes sent/acked).
    pub sender: SenderReport,
    /// The receiver's view (timing, per-subflow bytes received).
    pub receiver: ReceivedFlow,
}

/// The receiver-side MPTCP counters that say a mapping or the data did not
/// add up, as `name +n` (empty: none moved).
fn receiver_mapping_errors(delta: &crate::nstat::Counters) -> String {
    [
        "MPTcpExtDSSNotMatching",
        "MPTcpExtDSSNoMatchTCP",
        "MPTcpExtDSSCorruptionReset",
        "MPTcpExtDSSCorruptionFallback",
        "MPTcpExtDataCsumErr",
        "MPTcpExtMPRstTx",
        "MPTcpExtDuplicateData",
    ]
    .iter()
    .filter(|name| delta.get(name) > 0)
    .map(|name| format!("{name} +{}", delta.get(name)))
    .collect::<Vec<_>>()
    .join(", ")
}

/// Starts a receiver on `server`, sends from `client`, and returns both reports.
pub fn transfer(client: &Host, server: &Host, opts: &TransferOpts) -> Result<TransferReport> {
    let receiver = Receiver::start(
        server,
        ReceiverOpts {
            family: Family::of(&opts.server_ip),
            port: opts.port,
            io_timeout: opts.timeout.min(Duration::from_secs(30)),
            wait_subflows: opts.expect.subflows_with_data,
            ..Default::default()
        },
    )?;
    let mut sender_opts =
        SenderOpts::new(SocketAddr::new(opts.server_ip, receiver.port()), opts.bytes);
    sender_opts.seed = opts.seed;
    sender_opts.bind = opts.bind;
    sender_opts.tos = opts.tos;
    sender_opts.timeout = opts.timeout;
    sender_opts.expect = opts.expect;
    // A corrupted stream says which mapping checks the receiving kernel
    // failed meanwhile: docs/kernel-issues.md describes a kernel bug whose
    // corruptions show DSSNotMatching and MPRstTx there.
    let server_before = server.nstat().ok();
    let sender = send(client, &sender_opts).map_err(|e| {
        match (e.downcast_ref::<TrafficError>(), &server_before) {
            (Some(TrafficError::Corrupted { .. }), Some(before)) => {
                let noticed = server
                    .nstat()
                    .map(|now| receiver_mapping_errors(&now.delta(before)))
                    .unwrap_or_default();
                e.context(format!(
                    "the receiving host's kernel counted during the transfer: {}",
                    if noticed.is_empty() {
                        "no mapping error".to_owned()
                    } else {
                        noticed
                    }
                ))
            }
            _ => e,
        }
    })?;
    let mut flows = receiver.join()?;
    let receiver = flows
        .pop()
        .ok_or_else(|| anyhow!("the receiver served no connection"))?;
    Ok(TransferReport { sender, receiver })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_differences_locate_changed_bytes() {
        let mut got = vec![0u8; 3 << 20];
        fill_stream(9, 0, &mut got);
        assert_eq!(stream_differences(9, &got), None);
        got[5] ^= 1;
        for b in &mut got[(1 << 20) + 4096..(1 << 20) + 8192] {
            *b = !*b;
        }
        let d = stream_differences(9, &got).expect("differs");
        assert!(
            d.starts_with(
                "4097 of 3145728 bytes differ from the stream, first at byte 5, in 2 runs:"
            ),
            "{d}"
        );
        assert!(d.contains("[5, 6) [1052672, 1056768)"), "{d}");
        assert!(
            d.ends_with("the bytes there are not from the stream"),
            "{d}"
        );
        // Bytes of the stream out of place are found where they belong.
        fill_stream(9, 0, &mut got);
        let (a, b) = got.split_at_mut(200_000);
        a[100_000..101_448].copy_from_slice(&b[0..1448]);
        let d = stream_differences(9, &got).expect("differs");
        assert!(
            d.ends_with("the stream's bytes at 200000 (offset +100000)"),
            "{d}"
        );
    }

    #[test]
    fn stream_is_deterministic_and_seekable() {
        let mut whole = vec![0u8; 1000];
        fill_stream(7, 0, &mut whole);
        let mut part = vec![0u8; 101];
        fill_stream(7, 333, &mut part);
        assert_eq!(&whole[333..434], &part[..]);
        let mut other = vec![0u8; 1000];
        fill_stream(8, 0, &mut other);
        assert_ne!(whole, other);
        let digest = hex(&Sha256::digest(&whole));
        assert_eq!(stream_sha256(7, 1000), digest);
    }

    #[test]
    fn sockaddrs_round_trip_through_the_parser() {
        for addr in ["10.1.2.3:4567", "[fd77:3::1]:80"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let (storage, _) = to_sockaddr(&addr);
            // SAFETY: sockaddr_storage is 128 plain bytes.
            let bytes: [u8; 128] = unsafe { std::mem::transmute(storage) };
            assert_eq!(sockopt::parse_sockaddr(&bytes), Some(addr));
        }
    }
}
