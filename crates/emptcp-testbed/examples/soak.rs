//! Many MPTCP transfers through the two-path testbed, no emptcp program anywhere: a control for
//! data-integrity questions (does a corruption seen through emptcp also happen without it?), and
//! the reproducer of the kernel bug in docs/kernel-issues.md.
//!
//! ```text
//! cargo run --release -p emptcp-testbed --example soak -- [COUNT] [BYTES] [v4|v6] [MBIT|none]
//! ```
//!
//! Defaults: 200 transfers of 1 MiB over IPv4, both paths limited to 200 Mbit/s (the live tests'
//! pacing), the testbed's receive buffer. Every transfer is a new connection, checked byte by
//! byte by the receiver, which prints where a stream differs. Needs root. Prints one line per
//! failure with both hosts' MPTCP/TCP counter deltas for that connection, progress every 1000
//! transfers (stderr), and a summary. Knobs, to tell factors apart:
//!
//! - `RCVBUF=kernel` keeps the kernel's receive buffer (the kernel bug shows), `RCVBUF=N` sets N
//!   bytes;
//! - `SUBFLOWS=0` keeps connections single-path;
//! - `OFFLOADS=off|on` switches TSO/GSO/GRO and checksum offload on every link;
//! - `CHECKSUM=1` turns DSS checksums on;
//! - `EXPECT_SUBFLOWS=N` makes each transfer expect N subflows with data, as most live tests do
//!   (the sender then waits for the joins before its first byte);
//! - `CAPTURE=DIR` keeps the client's last ~200 MB of TCP headers and first payload bytes (enough
//!   to tell which stream bytes a segment carries) in a ring of four pcap files in DIR, and stops
//!   at the first failure.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use emptcp_testbed::nstat::Counters;
use emptcp_testbed::presets::{TwoPathOpts, two_path};
use emptcp_testbed::traffic::{TransferOpts, transfer};
use emptcp_testbed::{Family, Offloads, RateLimit, is_root};

fn main() -> Result<()> {
    if !is_root() {
        bail!("needs root (network namespaces)");
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let count: u32 = arg(0).unwrap_or("200").parse().context("COUNT")?;
    let bytes: u64 = arg(1).unwrap_or("1048576").parse().context("BYTES")?;
    let family = match arg(2).unwrap_or("v4") {
        "v4" => Family::V4,
        "v6" => Family::V6,
        other => bail!("family {other:?}: v4 or v6"),
    };
    let rate = match arg(3).unwrap_or("200") {
        "none" => None,
        mbit => Some(RateLimit::htb_mbit(mbit.parse().context("MBIT")?)),
    };
    let mut topo = TwoPathOpts {
        family,
        rate_limit: [rate; 2],
        ..Default::default()
    };
    if let Ok(n) = std::env::var("SUBFLOWS") {
        topo.client_limits.subflows = n.parse().context("SUBFLOWS")?;
        topo.server_limits.subflows = topo.client_limits.subflows;
    }
    match std::env::var("OFFLOADS").as_deref() {
        Ok("off") => topo.offloads = Some(Offloads::all_off()),
        Ok("on") => topo.offloads = Some(Offloads::all_on()),
        Ok(other) => bail!("OFFLOADS={other:?}: on or off"),
        Err(_) => {}
    }
    match std::env::var("RCVBUF").as_deref() {
        Ok("kernel") => topo.receive_buffer = None,
        Ok(n) => topo.receive_buffer = Some(n.parse().context("RCVBUF")?),
        Err(_) => {}
    }
    if let Ok(c) = std::env::var("CHECKSUM") {
        topo.checksum = Some(c == "1");
    }
    let expect: Option<usize> = match std::env::var("EXPECT_SUBFLOWS") {
        Ok(n) => Some(n.parse().context("EXPECT_SUBFLOWS")?),
        Err(_) => None,
    };
    println!("{topo:?}, expect {expect:?} subflows with data");
    let tb = two_path("soak", topo)?;
    let _capture = match std::env::var("CAPTURE") {
        Ok(dir) => Some(Tcpdump::start(&tb.client, &dir)?),
        Err(_) => None,
    };
    let start = Instant::now();
    let mut failed = 0u32;
    let mut done = 0u32;
    for i in 0..count {
        let mut opts = TransferOpts::new(tb.server_addr(), bytes);
        if let Some(n) = expect {
            opts = opts.expect_subflows_with_data(n);
        }
        let before = [tb.client.nstat()?, tb.server.nstat()?];
        let result = transfer(&tb.client, &tb.server, &opts);
        // What the kernels counted during this transfer (the first one, for
        // comparison, and every failed one).
        let delta = |host: &emptcp_testbed::Host, before: &Counters| -> Result<String> {
            let d = host.nstat()?.delta(before);
            let d = d
                .with_prefix("MPTcpExt")
                .nonzero()
                .0
                .into_iter()
                .chain(d.with_prefix("TcpExt").nonzero().0);
            Ok(d.map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "))
        };
        if let Err(e) = &result {
            failed += 1;
            println!("transfer {i}: {e:#}");
        }
        if result.is_err() || i == 0 {
            println!("  client: {}", delta(&tb.client, &before[0])?);
            println!("  server: {}", delta(&tb.server, &before[1])?);
        }
        done = i + 1;
        if result.is_err() && _capture.is_some() {
            break;
        }
        if done.is_multiple_of(1000) {
            eprintln!("{done} of {count} transfers, {failed} failed");
        }
    }
    println!(
        "{done} transfers of {bytes} bytes ({family:?}, {rate:?}): {failed} failed, {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// tcpdump in a host, writing a ring of pcap files; stopped (and its files
/// flushed) when dropped, also when the soak ends with an error.
struct Tcpdump(std::process::Child);

impl Tcpdump {
    fn start(host: &emptcp_testbed::Host, dir: &str) -> Result<Tcpdump> {
        let child = host
            .command("tcpdump")
            .args(["-n", "-B", "262144", "-Z", "root", "-i", "any", "-s", "200"])
            .args(["-C", "50", "-W", "4", "-w"])
            .arg(format!("{dir}/soak.pcap"))
            .arg("tcp")
            .stderr(std::fs::File::create(format!("{dir}/tcpdump.log"))?)
            .spawn()
            .context("starting tcpdump")?;
        // Long enough for tcpdump to open the interface.
        std::thread::sleep(Duration::from_secs(1));
        Ok(Tcpdump(child))
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        // tcpdump lags behind the traffic: let it catch up, then SIGINT (it
        // writes out what it holds).
        std::thread::sleep(Duration::from_secs(3));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = self.0.wait();
    }
}
