//! Captures real kernel MPTCP traffic into small pcap fixtures for the emptcp-wire cross-check
//! against Wireshark (`crates/emptcp-wire/tests/tshark_crosscheck.rs`).
//!
//! ```text
//! cargo run -p emptcp-testbed --example capture_fixtures -- crates/emptcp-wire/tests/fixtures [PREFIX]
//! ```
//!
//! Needs root, tcpdump and tshark. With `PREFIX` only the fixtures whose name starts with it are
//! made (e.g. `checksum`, `add_addr_port_v6`); `KEEP_RAW=1` keeps the per-interface captures in
//! the temporary directory for debugging.
//!
//! Every scenario builds its own [`two_path`] topology (torn down when it ends), captures on the
//! client's two interfaces (c1: path 1, c2: path 2) and merges both captures by time into one
//! Ethernet pcap per scenario and address family:
//!
//! | file                     | what it contains                                                |
//! |--------------------------|-----------------------------------------------------------------|
//! | `basic_v{4,6}`           | MP_CAPABLE handshake and first data, MP_JOIN, DSS, DATA_FIN     |
//! | `add_addr_v{4,6}`        | the server signals its path-2 address: ADD_ADDR with HMAC, echo |
//! | `add_addr_port_v{4,6}`   | the same with a port                                            |
//! | `mp_prio_v{4,6}`         | `ip mptcp endpoint change ID backup` on a live connection       |
//! | `remove_addr_v{4,6}`     | `ip mptcp endpoint delete id ID` on a live connection           |
//! | `checksum_v{4,6}`        | `net.mptcp.checksum_enabled=1`: DSS checksums                   |
//! | `fastclose_v{4,6}`       | close with `SO_LINGER` 0: MP_FASTCLOSE and MP_TCPRST on RSTs    |
//!
//! Offloads are off on every interface: with transmit checksum offload on, a veth capture holds
//! partial checksums, and with TSO/GRO it holds super-segments no wire would carry.
//!
//! To keep the files small, packets longer than [`SNAPLEN`] bytes are cut to it, except the
//! first [`FULL_PACKETS`] of them per file, which stay whole so that TCP checksums can be
//! verified over a real payload. The checksum scenarios move less data and keep every packet
//! whole, since a DSS checksum covers a whole mapping of many segments.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use emptcp_testbed::capture::CaptureGuard;
use emptcp_testbed::presets::{TwoPath, TwoPathOpts, two_path};
use emptcp_testbed::traffic::sockopt::IPPROTO_MPTCP;
use emptcp_testbed::traffic::{TransferOpts, transfer};
use emptcp_testbed::{Family, Offloads, RateLimit, is_root};

/// Bytes kept of a long packet: Ethernet + IPv6 + TCP with 40 option bytes is 134, so every
/// header survives.
const SNAPLEN: usize = 200;
/// Long packets per file kept whole (for checksum verification).
const FULL_PACKETS: usize = 8;
/// A fixture with more packets than this is a scenario gone wrong (and too big to commit).
const MAX_PACKETS: usize = 600;
/// Bytes moved by the bulk scenarios: enough for several DSS mappings on both subflows.
const TRANSFER_BYTES: u64 = 160 << 10;
/// Runs of one scenario before giving up on it.
const ATTEMPTS: usize = 3;
/// How long packets may sit in tcpdump's capture ring before tcpdump sees them.
const CAPTURE_FLUSH: Duration = Duration::from_millis(1500);
/// Bytes moved by the checksum scenarios, whose packets are all kept whole.
const CHECKSUM_TRANSFER_BYTES: u64 = 16 << 10;
/// Rate limit of each path towards the server.
const RATE_MBIT: u64 = 10;
/// Port of the live-connection server.
const LIVE_PORT: u16 = 5301;
/// Port the server announces in `add_addr_port_*`.
const SIGNAL_PORT: u16 = 10011;
/// Pause between two writes of the live-connection client.
const LIVE_WRITE_INTERVAL: Duration = Duration::from_millis(40);
/// Bytes per write of the live-connection client.
const LIVE_WRITE_LEN: usize = 700;
/// Time for a new connection to set up its second subflow before a scenario acts on it.
const SETTLE: Duration = Duration::from_millis(600);

fn main() -> Result<()> {
    let out_dir = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .ok_or_else(|| anyhow!("usage: capture_fixtures OUTDIR [PREFIX]"))?,
    );
    ensure!(
        is_root(),
        "capture_fixtures needs root (network namespaces, tcpdump)"
    );
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let only: Option<String> = std::env::args().nth(2);
    for family in [Family::V4, Family::V6] {
        let suffix = match family {
            Family::V4 => "v4",
            Family::V6 => "v6",
        };
        for scenario in Scenario::ALL {
            let name = format!("{}_{suffix}", scenario.name());
            if only.as_deref().is_some_and(|o| !name.starts_with(o)) {
                continue;
            }
            let path = out_dir.join(format!("{name}.pcap"));
            let count = capture_until_complete(scenario, family, &path)
                .with_context(|| format!("scenario {name}"))?;
            println!("{}: {count} packets", path.display());
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Basic,
    AddAddr,
    AddAddrPort,
    MpPrio,
    RemoveAddr,
    Checksum,
    Fastclose,
}

impl Scenario {
    const ALL: [Scenario; 7] = [
        Scenario::Basic,
        Scenario::AddAddr,
        Scenario::AddAddrPort,
        Scenario::MpPrio,
        Scenario::RemoveAddr,
        Scenario::Checksum,
        Scenario::Fastclose,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Basic => "basic",
            Scenario::AddAddr => "add_addr",
            Scenario::AddAddrPort => "add_addr_port",
            Scenario::MpPrio => "mp_prio",
            Scenario::RemoveAddr => "remove_addr",
            Scenario::Checksum => "checksum",
            Scenario::Fastclose => "fastclose",
        }
    }
}

/// Runs the scenario until its pcap holds every packet kind the scenario is for (timing can make
/// a run miss one, e.g. a subflow that joins after a short transfer ended); at most
/// [`ATTEMPTS`] times.
fn capture_until_complete(scenario: Scenario, family: Family, path: &Path) -> Result<usize> {
    let mut missing = Vec::new();
    for attempt in 1..=ATTEMPTS {
        let count = run_scenario(scenario, family, path)?;
        missing = missing_kinds(scenario, path)?;
        if missing.is_empty() {
            return Ok(count);
        }
        eprintln!(
            "{}: attempt {attempt} lacks {missing:?}, capturing again",
            path.display()
        );
    }
    bail!("after {ATTEMPTS} attempts still no packet matching {missing:?}")
}

/// Wireshark display filters of which each must match at least one packet of the scenario.
fn expected_kinds(scenario: Scenario) -> Vec<&'static str> {
    const MPC_SYN: &str = "tcp.options.mptcp.subtype == 0 && tcp.flags.syn == 1";
    const JOIN_SYN: &str =
        "tcp.options.mptcp.subtype == 1 && tcp.flags.syn == 1 && tcp.flags.ack == 0";
    const JOIN_SYNACK: &str = "tcp.options.mptcp.sendtrunchmac";
    const JOIN_ACK: &str = "tcp.options.mptcp.sendhmac";
    const DATA_FIN: &str = "tcp.options.mptcp.datafin.flag == 1";
    let mut kinds = vec![MPC_SYN, JOIN_SYN, JOIN_SYNACK, JOIN_ACK];
    match scenario {
        Scenario::Basic => kinds.extend([
            // The first data packet: MP_CAPABLE with a data-level length.
            "tcp.options.mptcp.subtype == 0 && tcp.options.mptcp.datalvllen",
            "tcp.options.mptcp.rawdataack",
            "tcp.options.mptcp.rawdataseqno",
            DATA_FIN,
        ]),
        Scenario::AddAddr => kinds.extend([
            "tcp.options.mptcp.addaddrtrunchmac",
            "tcp.options.mptcp.subtype == 3 && tcp.options.mptcp.echo == 1",
        ]),
        Scenario::AddAddrPort => kinds.extend([
            "tcp.options.mptcp.addaddrtrunchmac && tcp.options.mptcp.port",
            "tcp.options.mptcp.subtype == 3 && tcp.options.mptcp.echo == 1",
        ]),
        Scenario::MpPrio => kinds.extend(["tcp.options.mptcp.subtype == 5", DATA_FIN]),
        Scenario::RemoveAddr => kinds.extend(["tcp.options.mptcp.subtype == 4", DATA_FIN]),
        Scenario::Checksum => kinds.extend([
            "tcp.options.mptcp.checksumreq.flags == 1",
            // Wireshark 4.0 does not show the DSS checksum (it wants two bytes more than the
            // option has), so only the mappings are checked here; the checksums themselves are
            // verified by emptcp-wire's cross-check.
            "tcp.options.mptcp.dseqnpresent.flag == 1",
            DATA_FIN,
        ]),
        Scenario::Fastclose => kinds.push("tcp.options.mptcp.subtype == 7"),
    }
    kinds
}

/// The [`expected_kinds`] of `scenario` that no packet of the pcap at `path` matches.
fn missing_kinds(scenario: Scenario, path: &Path) -> Result<Vec<&'static str>> {
    let mut missing = Vec::new();
    for filter in expected_kinds(scenario) {
        let output = Command::new("tshark")
            .arg("-n")
            .arg("-r")
            .arg(path)
            .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
            .output()
            .context("running tshark (is it installed?)")?;
        ensure!(
            output.status.success(),
            "tshark -Y '{filter}' failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if output.stdout.iter().all(u8::is_ascii_whitespace) {
            missing.push(filter);
        }
    }
    Ok(missing)
}

/// Builds the topology, runs the scenario under capture, writes the trimmed pcap to `path` and
/// returns its packet count.
fn run_scenario(scenario: Scenario, family: Family, path: &Path) -> Result<usize> {
    let opts = TwoPathOpts {
        family,
        offloads: Some(Offloads::all_off()),
        checksum: (scenario == Scenario::Checksum).then_some(true),
        // Slow enough that a bulk transfer lasts well beyond the MP_JOIN handshake, so the
        // second subflow joins (and carries data) before the connection closes.
        rate_limit: [Some(RateLimit::htb_mbit(RATE_MBIT)); 2],
        ..Default::default()
    };
    let tp = two_path(&format!("fx-{}", scenario.name()), opts)?;
    match scenario {
        Scenario::AddAddr => signal_server_path2(&tp, None)?,
        Scenario::AddAddrPort => {
            if family == Family::V6 {
                // An IPv6 ADD_ADDR with port and HMAC takes 30 bytes; with the 12 of the
                // timestamps the options would need 42 of 40, and Linux never sends it.
                for host in [&tp.client, &tp.server] {
                    host.sysctl_set("net.ipv4.tcp_timestamps", "0")?;
                }
            }
            signal_server_path2(&tp, Some(SIGNAL_PORT))?
        }
        _ => {}
    }

    let tmp = tempdir(path)?;
    let raw: Vec<PathBuf> = ["c1", "c2"]
        .iter()
        .map(|iface| tmp.join(format!("{iface}.pcap")))
        .collect();
    // Only the connection's traffic: no neighbour discovery or router solicitations.
    let filter = "tcp";
    let captures: Vec<CaptureGuard> = [tp.ifaces.c1, tp.ifaces.c2]
        .iter()
        .zip(&raw)
        .map(|(iface, file)| tp.client.capture(iface, filter, file))
        .collect::<Result<_>>()?;

    match scenario {
        Scenario::Basic | Scenario::AddAddr | Scenario::AddAddrPort | Scenario::Checksum => {
            let bytes = match scenario {
                Scenario::Checksum => CHECKSUM_TRANSFER_BYTES,
                _ => TRANSFER_BYTES,
            };
            let report = transfer(
                &tp.client,
                &tp.server,
                &TransferOpts::new(tp.server_addr(), bytes),
            )?;
            ensure!(
                report.sender.verified,
                "transfer not verified: {}",
                report.sender.subflow_summary()
            );
        }
        Scenario::MpPrio => live_connection(&tp, Close::Normal, |tp| {
            let id = client_path2_endpoint_id(tp)?;
            tp.client.ip([
                "mptcp",
                "endpoint",
                "change",
                "id",
                &id.to_string(),
                "backup",
            ])?;
            Ok(())
        })?,
        Scenario::RemoveAddr => live_connection(&tp, Close::Normal, |tp| {
            let id = client_path2_endpoint_id(tp)?;
            tp.client
                .ip(["mptcp", "endpoint", "delete", "id", &id.to_string()])?;
            Ok(())
        })?,
        Scenario::Fastclose => live_connection(&tp, Close::Abort, |_| Ok(()))?,
    }
    // tcpdump (libpcap's TPACKET_V3 ring) hands packets over a block at a time, a block at the
    // latest after its 1 s timeout, and drops a block still pending when it gets SIGINT: wait
    // until the last packets (FIN/ACK, RST) are surely handed over.
    std::thread::sleep(CAPTURE_FLUSH);
    for capture in captures {
        let summary = capture.finish()?;
        ensure!(
            summary.packets_dropped_by_kernel.unwrap_or(0) == 0,
            "tcpdump dropped packets: {summary:?}"
        );
    }

    let mut packets = Vec::new();
    for file in &raw {
        packets.extend(read_pcap(file)?);
    }
    // Stable sort: packets of one interface keep their order when timestamps tie.
    packets.sort_by_key(|p| (p.ts_sec, p.ts_usec));
    ensure!(
        packets.len() <= MAX_PACKETS,
        "{} packets captured, more than {MAX_PACKETS}",
        packets.len()
    );
    let count = packets.len();
    // DSS checksums cover a whole mapping, which spans many segments: keep every byte of the
    // (smaller) checksum transfer so that each checksum can be verified.
    let keep_whole = match scenario {
        Scenario::Checksum => usize::MAX,
        _ => FULL_PACKETS,
    };
    write_pcap(path, trim(packets, keep_whole))?;
    if std::env::var_os("KEEP_RAW").is_none() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    Ok(count)
}

/// A scratch directory for the raw captures of one fixture, named after this process so that
/// nothing of another run is touched.
fn tempdir(out: &Path) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "emptcp-fixtures-{}-{}",
        std::process::id(),
        out.file_stem().and_then(|s| s.to_str()).unwrap_or("x")
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// `10.77.4.1` / `fd77:4::1`: the server's path-2 address.
fn server_path2_addr(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::from([10, 77, 4, 1]),
        Family::V6 => IpAddr::from([0xfd77, 4, 0, 0, 0, 0, 0, 1]),
    }
}

/// Adds a `signal` endpoint for the server's path-2 address, so the server announces it with
/// ADD_ADDR on every new connection.
fn signal_server_path2(tp: &TwoPath, port: Option<u16>) -> Result<()> {
    let addr = server_path2_addr(tp.opts.family).to_string();
    let mut args = vec![
        "mptcp",
        "endpoint",
        "add",
        &addr,
        "dev",
        tp.ifaces.s4,
        "signal",
    ];
    let port = port.map(|p| p.to_string());
    if let Some(port) = &port {
        args.extend(["port", port]);
    }
    tp.server.ip(args)?;
    Ok(())
}

/// The id of the client's `subflow` endpoint on path 2 in the traffic family, from
/// `ip mptcp endpoint show` (lines like `10.77.2.1 id 1 subflow dev c2`).
fn client_path2_endpoint_id(tp: &TwoPath) -> Result<u8> {
    let addr = tp.client_addr(2).to_string();
    let shown = tp.client.ip(["mptcp", "endpoint", "show"])?;
    shown
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some(addr.as_str()) && words.next() == Some("id"))
                .then(|| words.next().and_then(|id| id.parse().ok()))
                .flatten()
        })
        .ok_or_else(|| anyhow!("no endpoint for {addr} in:\n{shown}"))
}

/// How the live-connection client ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// Plain close: DATA_FIN, then FIN on each subflow.
    Normal,
    /// `SO_LINGER` 0, then close: MPTCP's reset (MP_FASTCLOSE).
    Abort,
}

/// Keeps a slow MPTCP connection (one small write per [`LIVE_WRITE_INTERVAL`]) open from the
/// client to the server, runs `action` once both subflows are up, lets the connection run for
/// [`SETTLE`] more and closes it as `close` says.
///
/// `traffic::transfer` sends as fast as it can and closes at once, so it cannot hold a
/// connection open while an endpoint changes.
fn live_connection(
    tp: &TwoPath,
    close: Close,
    action: impl FnOnce(&TwoPath) -> Result<()>,
) -> Result<()> {
    let family = tp.opts.family;
    let listener = tp.server.run(move || mptcp_listener(family, LIVE_PORT))??;
    let server = tp.server.spawn(move || drain_one(listener))?;
    let stop = Arc::new(AtomicBool::new(false));
    let target = SocketAddr::new(tp.server_addr(), LIVE_PORT);
    let client_stop = Arc::clone(&stop);
    let client = tp
        .client
        .spawn(move || slow_sender(target, &client_stop, close))?;

    std::thread::sleep(SETTLE);
    let acted = action(tp);
    std::thread::sleep(SETTLE);
    stop.store(true, Ordering::SeqCst);
    let sent = join(client, "client");
    let received = join(server, "server");
    acted?;
    let sent = sent?;
    let received = received?;
    ensure!(sent > 0, "the live client sent nothing");
    if close == Close::Normal {
        ensure!(
            received == sent,
            "server received {received} bytes of {sent}"
        );
    }
    Ok(())
}

fn join<T>(handle: JoinHandle<Result<Result<T>>>, what: &str) -> Result<T> {
    handle
        .join()
        .map_err(|_| anyhow!("the live {what} thread panicked"))??
        .with_context(|| format!("live {what}"))
}

/// `socket(AF_INET[6], SOCK_STREAM, IPPROTO_MPTCP)`.
fn mptcp_socket(family: Family) -> io::Result<OwnedFd> {
    let domain = match family {
        Family::V4 => libc::AF_INET,
        Family::V6 => libc::AF_INET6,
    };
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            IPPROTO_MPTCP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Calls `f` with `addr` as a `sockaddr` and its length.
fn with_sockaddr<T>(
    addr: &SocketAddr,
    f: impl FnOnce(*const libc::sockaddr, libc::socklen_t) -> T,
) -> T {
    match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            f(
                (&raw const sin).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            f(
                (&raw const sin6).cast(),
                size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            )
        }
    }
}

fn set_int_opt(fd: &OwnedFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the option value is a live i32 of the length given.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    })
}

/// An MPTCP listener on the wildcard address of `family`.
fn mptcp_listener(family: Family, port: u16) -> Result<TcpListener> {
    let fd = mptcp_socket(family).context("MPTCP socket (is net.mptcp.enabled on?)")?;
    set_int_opt(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    let any: IpAddr = match family {
        Family::V4 => IpAddr::from([0u8; 4]),
        Family::V6 => IpAddr::from([0u16; 8]),
    };
    let addr = SocketAddr::new(any, port);
    // SAFETY: the sockaddr pointer and length come from `with_sockaddr` and outlive the call.
    with_sockaddr(&addr, |sa, len| {
        check(unsafe { libc::bind(fd.as_raw_fd(), sa, len) })
    })
    .with_context(|| format!("binding {addr}"))?;
    // SAFETY: listen(2) on a descriptor we own.
    check(unsafe { libc::listen(fd.as_raw_fd(), 4) })?;
    Ok(TcpListener::from(fd))
}

/// Accepts one connection and reads it to its end; returns the bytes read. A reset ends it too
/// (the fastclose scenario).
fn drain_one(listener: TcpListener) -> Result<u64> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e).context("accepting the live connection"),
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut total = 0u64;
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(total),
            Err(e) => return Err(e).context("reading the live connection"),
        }
    }
}

/// Connects to `target` and writes [`LIVE_WRITE_LEN`] bytes per [`LIVE_WRITE_INTERVAL`] until
/// `stop`; returns the bytes written.
fn slow_sender(target: SocketAddr, stop: &AtomicBool, close: Close) -> Result<u64> {
    let family = Family::of(&target.ip());
    let fd = mptcp_socket(family)?;
    // SAFETY: as in `mptcp_listener`.
    with_sockaddr(&target, |sa, len| {
        check(unsafe { libc::connect(fd.as_raw_fd(), sa, len) })
    })
    .with_context(|| format!("connecting to {target}"))?;
    let mut stream = TcpStream::from(fd);
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let chunk = [0x5au8; LIVE_WRITE_LEN];
    let mut sent = 0u64;
    while !stop.load(Ordering::SeqCst) {
        stream.write_all(&chunk).context("writing")?;
        sent += chunk.len() as u64;
        std::thread::sleep(LIVE_WRITE_INTERVAL);
    }
    match close {
        Close::Normal => {
            // Wait for the server's FIN so the whole DATA_FIN exchange is captured.
            stream.shutdown(std::net::Shutdown::Write)?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut rest = Vec::new();
            stream
                .read_to_end(&mut rest)
                .context("waiting for the server's close")?;
        }
        Close::Abort => {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: the option value is a live `linger` of the length given.
            check(unsafe {
                libc::setsockopt(
                    stream.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&raw const linger).cast(),
                    size_of::<libc::linger>() as libc::socklen_t,
                )
            })?;
        }
    }
    drop(stream);
    Ok(sent)
}

/// One record of a classic pcap file.
struct Record {
    ts_sec: u32,
    ts_usec: u32,
    orig_len: u32,
    data: Vec<u8>,
}

/// Classic pcap, microsecond timestamps, in this machine's byte order (what tcpdump writes).
const PCAP_MAGIC: u32 = 0xa1b2_c3d4;
/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: u32 = 1;

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_ne_bytes(word)
}

/// Reads a pcap tcpdump wrote on this machine (native byte order, Ethernet).
fn read_pcap(path: &Path) -> Result<Vec<Record>> {
    let mut bytes = Vec::new();
    BufReader::new(File::open(path).with_context(|| format!("opening {}", path.display()))?)
        .read_to_end(&mut bytes)?;
    ensure!(
        bytes.len() >= 24 && read_u32(&bytes, 0) == PCAP_MAGIC,
        "{}: not a native-order microsecond pcap",
        path.display()
    );
    ensure!(
        read_u32(&bytes, 20) == LINKTYPE_ETHERNET,
        "{}: link type {} is not Ethernet",
        path.display(),
        read_u32(&bytes, 20)
    );
    let mut records = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = read_u32(&bytes, at + 8) as usize;
        let data = bytes
            .get(at + 16..at + 16 + caplen)
            .ok_or_else(|| anyhow!("{}: truncated record at {at}", path.display()))?;
        records.push(Record {
            ts_sec: read_u32(&bytes, at),
            ts_usec: read_u32(&bytes, at + 4),
            orig_len: read_u32(&bytes, at + 12),
            data: data.to_vec(),
        });
        at += 16 + caplen;
    }
    if at != bytes.len() {
        bail!(
            "{}: {} stray bytes at the end",
            path.display(),
            bytes.len() - at
        );
    }
    Ok(records)
}

/// Cuts long packets to [`SNAPLEN`], except the first `keep_whole` long ones.
fn trim(mut packets: Vec<Record>, keep_whole: usize) -> Vec<Record> {
    let mut kept_whole = 0;
    for packet in &mut packets {
        if packet.data.len() > SNAPLEN {
            if kept_whole < keep_whole {
                kept_whole += 1;
            } else {
                packet.data.truncate(SNAPLEN);
            }
        }
    }
    packets
}

/// Writes a classic little-endian pcap (readable everywhere, whatever machine reads it).
fn write_pcap(path: &Path, packets: Vec<Record>) -> Result<()> {
    let mut out =
        BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    let mut header = Vec::with_capacity(24);
    header.extend(PCAP_MAGIC.to_le_bytes());
    header.extend(2u16.to_le_bytes());
    header.extend(4u16.to_le_bytes());
    header.extend(0i32.to_le_bytes()); // thiszone
    header.extend(0u32.to_le_bytes()); // sigfigs
    header.extend(65535u32.to_le_bytes()); // snaplen: some records are whole
    header.extend(LINKTYPE_ETHERNET.to_le_bytes());
    out.write_all(&header)?;
    for p in packets {
        out.write_all(&p.ts_sec.to_le_bytes())?;
        out.write_all(&p.ts_usec.to_le_bytes())?;
        out.write_all(&(p.data.len() as u32).to_le_bytes())?;
        out.write_all(&p.orig_len.to_le_bytes())?;
        out.write_all(&p.data)?;
    }
    out.flush()?;
    Ok(())
}
