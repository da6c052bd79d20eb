//! Network-namespace testbeds for emptcp.
//!
//! A [`Testbed`] is a set of network namespaces ("hosts") joined by veth pairs, built from a
//! [`Topology`] description. Everything it creates carries a per-process unique name and is removed
//! when the `Testbed` is dropped, also while a test panics (Drop runs on unwind).
//!
//! On top of that the crate offers:
//! - [`presets::two_path`]: client, router and server joined by two disjoint paths (the topology of
//!   the end-to-end baseline), with policy routing and MPTCP endpoints so that a connection gets two
//!   subflows;
//! - [`traffic`]: a built-in MPTCP receiver and sender that move a verified pseudo-random byte stream
//!   and report per-subflow byte counts read from the kernel;
//! - [`nstat`]: kernel SNMP/netstat counters of a host (`MPTcpExt*`, `TcpInCsumErrors`, ...);
//! - [`capture`]: tcpdump captures inside a host, stopped cleanly.
//!
//! Hosts are entered with `setns(CLONE_NEWNET)` on a dedicated thread ([`Host::run`]) or with
//! `nsenter --net` for child processes ([`Host::command`]); never with `ip netns exec`, which remounts
//! `/sys` and hides `/sys/fs/bpf`.
//!
//! Everything here needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
//!
//! ```no_run
//! use emptcp_testbed::presets::{two_path, TwoPathOpts};
//! use emptcp_testbed::traffic::{transfer, TransferOpts};
//! use emptcp_testbed::RateLimit;
//!
//! # fn main() -> anyhow::Result<()> {
//! let opts = TwoPathOpts {
//!     rate_limit: [Some(RateLimit::htb_mbit(100)), Some(RateLimit::htb_mbit(100))],
//!     ..Default::default()
//! };
//! let tp = two_path("demo", opts)?; // torn down when `tp` drops
//! let r1 = tp.router_ifindex("r1")?; // attach programs here
//! let before = tp.server.nstat()?;
//! let report = transfer(
//!     &tp.client,
//!     &tp.server,
//!     &TransferOpts::new(tp.server_addr(), 20 << 20).expect_subflows_with_data(2),
//! )?;
//! let joins = tp.server.nstat()?.delta(&before).mp_join_syn_rx();
//! println!("r1={r1} {:.0} Mbit/s, {joins} joins", report.sender.throughput_bps / 1e6);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod capture;
pub mod cmd;
mod host;
mod names;
pub mod nstat;
pub mod presets;
mod topology;
pub mod traffic;

pub use host::{Host, IfaceCounters, NetnsGuard, Offloads};
pub use names::{NAME_PREFIX, is_root, reap_stale, root_or_skip};
pub use topology::{
    Addr, DEFAULT_RECEIVE_BUFFER, EndpointFlags, Family, LINK_READY_TIMEOUT, LinkEnd, LinkSpec,
    MptcpEndpoint, MptcpLimits, Qdisc, RateLimit, Route, Rule, Testbed, Topology, TopologyBuilder,
};
