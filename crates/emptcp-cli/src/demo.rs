//! `emptcp demo`: a client, a middle node and a server in network
//! namespaces, two paths, real kernel MPTCP through emptcp on the middle node.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use emptcp::netns::NetnsGuard;
use emptcp::policy::{
    Action, ActionChain, Combine, PacketType, Policy, PolicySet, Prefix, Selector, SelectorChain,
    SelectorKind,
};
use emptcp::{Dataplane, FlowKey, FlowStats, Hook};
use emptcp_testbed::presets::{self, TwoPath, TwoPathOpts};
use emptcp_testbed::traffic::{self, TransferOpts, TransferReport};
use emptcp_testbed::{Family, RateLimit};
use serde::Serialize;

pub const EXAMPLES: &str = "\
Examples:
  emptcp demo                        2 x 100 Mbit/s paths, 32 MiB over IPv4
  emptcp demo --ipv6 --bytes 64M     the same over IPv6
  emptcp demo --rate-mbit 0          unlimited veth paths
  emptcp demo --hook tc-egress       attach on the router's server-side links
  emptcp demo --json                 one JSON document on stdout";

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Payload to move (bytes; suffixes K, M, G are powers of 1024).
    #[arg(long, default_value = "32M", value_parser = parse_size)]
    bytes: u64,

    /// Rate limit per path in Mbit/s (HTB on the router's server-side links); 0 = none.
    #[arg(long, default_value_t = 100)]
    rate_mbit: u64,

    /// Move the traffic over IPv6 instead of IPv4.
    #[arg(long)]
    ipv6: bool,

    /// Where to attach emptcp on the middle node: tc-ingress (client-side
    /// links), tc-egress (server-side links) or xdp (client-side links;
    /// costs throughput on veth, see docs/hooks.md).
    #[arg(long, default_value = "tc-ingress")]
    hook: Hook,

    /// Print one JSON document instead of tables.
    #[arg(long)]
    json: bool,
}

pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size such as 4096, 64K or 32M"))?;
    match n.checked_mul(mult) {
        Some(0) | None => Err(format!("size '{s}' must be between 1 byte and 16 EiB")),
        Some(v) => Ok(v),
    }
}

/// Everything the demo measured, as printed with `--json`.
#[derive(Serialize)]
struct DemoReport {
    family: &'static str,
    hook: Hook,
    rate_mbit_per_path: u64,
    bytes: u64,
    verified: bool,
    sha256: String,
    fct_s: f64,
    throughput_mbps: f64,
    subflows: Vec<SubflowRow>,
    emptcp_counters: Vec<(String, emptcp::EntryCounters)>,
    policies: Vec<PolicyRow>,
    /// What connection tracking on the router learned.
    connections: Vec<emptcp::TrackedConnection>,
    /// get_connect / get_subflow events.
    events: Vec<emptcp::events::Event>,
}

/// What one policy did, summed over the router's attachments.
#[derive(Serialize)]
struct PolicyRow {
    name: String,
    actions: String,
    packets: u64,
}

/// The demo's policies, as a researcher would write them: count what each
/// path carries, and (at TC) mark path 2's packets for policy routing;
/// MP_JOIN SYNs are picked out first, whichever path they take.
fn demo_policy(hook: Hook, family: Family) -> PolicySet {
    let path_prefix = |path: u8| -> Prefix {
        let s = match family {
            Family::V4 => format!("10.77.{path}.0/24"),
            Family::V6 => format!("fd77:{path}::/64"),
        };
        s.parse().expect("valid demo prefix")
    };
    let mut sc = SelectorChain::new();
    sc.add(SelectorKind::PacketType, Combine::And)
        .add(SelectorKind::Src, Combine::Or);
    // Handshakes first (priority 10), whichever path they take: events with
    // the keys (get_connect) and one per subflow SYN (get_subflow).
    let mut handshakes = Policy::new(
        "handshakes",
        chain(&[Action::Count, Action::GetConnect, Action::GetSubflow]),
    );
    handshakes
        .select(
            0,
            Selector::PacketType(vec![PacketType::MpCapable, PacketType::MpJoinSyn]),
        )
        .priority(10);
    let mut path1 = Policy::new("path1", chain(&[Action::Count]));
    path1.select(1, Selector::Src(path_prefix(1)));
    let path2_actions: &[Action] = if hook == Hook::Xdp {
        &[Action::Count]
    } else {
        &[Action::Count, Action::SetMark(2)]
    };
    let mut path2 = Policy::new("path2", chain(path2_actions));
    path2.select(1, Selector::Src(path_prefix(2)));
    PolicySet {
        selectors: sc,
        policies: vec![handshakes, path1, path2],
    }
}

fn chain(actions: &[Action]) -> ActionChain {
    let mut c = ActionChain::new();
    for a in actions {
        c.add(*a);
    }
    c
}

fn policy_report(dp: &Dataplane) -> Result<Vec<PolicyRow>> {
    let mut rows: Vec<PolicyRow> = Vec::new();
    for att in dp.attachments() {
        let Some(g) = att.generation() else { continue };
        for (name, packets) in g.policy_hits()? {
            match rows.iter_mut().find(|r| r.name == name) {
                Some(r) => r.packets += packets,
                None => rows.push(PolicyRow {
                    name,
                    actions: String::new(),
                    packets,
                }),
            }
        }
        for (i, row) in rows.iter_mut().enumerate() {
            if let Some(slot) = g.policy().chain_of(i) {
                let names: Vec<&str> = g
                    .policy()
                    .chain_actions(slot)
                    .iter()
                    .map(|a| a.name())
                    .collect();
                row.actions = names.join(" -> ");
            }
        }
    }
    Ok(rows)
}

#[derive(Serialize)]
struct SubflowRow {
    path: Option<u8>,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    /// Payload bytes the server acknowledged (sender's tcp_info).
    acked_bytes: u64,
    /// Payload bytes the receiver got on this subflow (receiver's tcp_info).
    received_bytes: Option<u64>,
    /// Client-to-server payload bytes emptcp saw on the middle node.
    emptcp_payload_bytes: u64,
    emptcp_packets: u64,
    throughput_mbps: f64,
}

pub fn run(args: &DemoArgs) -> Result<ExitCode> {
    let family = if args.ipv6 { Family::V6 } else { Family::V4 };
    let mut opts = TwoPathOpts {
        family,
        ..Default::default()
    };
    if args.rate_mbit > 0 {
        opts.rate_limit = [Some(RateLimit::htb_mbit(args.rate_mbit)); 2];
    }
    let progress = Progress::new(!args.json);

    progress.step("building the testbed: client, router (middle node), server; two paths");
    let tb = presets::two_path("demo", opts).context("building the two-path testbed")?;

    progress.step(&format!(
        "loading emptcp and attaching it at {} on the router",
        args.hook
    ));
    // Flows accounted: the report sets emptcp's per-subflow counts beside
    // the kernels'.
    let accounted = emptcp::LoadOptions {
        account_flows: true,
        ..Default::default()
    };
    let mut dp = Dataplane::load_with(&accounted).context("loading the emptcp data plane")?;
    let ifaces = match args.hook {
        Hook::TcIngress | Hook::Xdp => [tb.ifaces.r1, tb.ifaces.r2],
        Hook::TcEgress => [tb.ifaces.r3, tb.ifaces.r4],
    };
    let policy = demo_policy(args.hook, family)
        .compile(args.hook)
        .context("compiling the demo policy")?;
    {
        let _in_router = NetnsGuard::enter(&tb.router.netns_path())?;
        for iface in ifaces {
            let ifindex = tb.router_ifindex(iface)?;
            dp.attach(args.hook, ifindex)
                .with_context(|| format!("attaching to {iface} on the router"))?;
            let generation = dp.load_generation(&policy, &[])?;
            dp.apply(ifindex, generation)?;
        }
    }

    let events_map = dp.events_map()?;
    let mut events = emptcp::events::EventReader::new(&events_map)?;

    progress.step(&format!(
        "moving {} over MPTCP from client to server ({})",
        human_bytes(args.bytes),
        if args.rate_mbit > 0 {
            format!("{} Mbit/s per path", args.rate_mbit)
        } else {
            "unlimited".into()
        }
    ));
    let transfer = traffic::transfer(
        &tb.client,
        &tb.server,
        &TransferOpts::new(tb.server_addr(), args.bytes).expect_subflows_with_data(2),
    )
    .context("MPTCP transfer through emptcp")?;

    // The connections' closing packets still cross the router: wait until
    // they have, so that counters, flows and policy hits agree.
    let counters = ifaces_counters(&dp, args.hook)?;
    let flows = dp.flow_stats()?;
    let mut report = build_report(args, &tb, &transfer, &flows, counters)?;
    report.policies = policy_report(&dp)?;
    report.connections = dp.connections()?;
    report.events = events.drain()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if !report.verified {
        bail!("the receiver's bytes differ from what was sent");
    }
    if report.subflows.iter().any(|s| s.emptcp_packets == 0) {
        bail!("emptcp saw no packets of a subflow that carried data");
    }
    progress.step("tearing the testbed down");
    drop(events);
    drop(dp);
    drop(tb);
    Ok(ExitCode::SUCCESS)
}

fn ifaces_counters(dp: &Dataplane, hook: Hook) -> Result<Vec<(String, emptcp::EntryCounters)>> {
    let quiet =
        dp.counters_when_quiet(hook, Duration::from_millis(200), Duration::from_secs(10))?;
    Ok(vec![(hook.name().to_owned(), quiet)])
}

fn build_report(
    args: &DemoArgs,
    tb: &TwoPath,
    t: &TransferReport,
    flows: &[(FlowKey, FlowStats)],
    emptcp_counters: Vec<(String, emptcp::EntryCounters)>,
) -> Result<DemoReport> {
    let fct = t.sender.fct_s;
    let subflows = t
        .sender
        .subflows
        .iter()
        .map(|sf| {
            let acked = traffic::SenderReport::acked_payload(sf);
            // The receiver's subflow with the same 4-tuple, seen from the other end.
            let received = t
                .receiver
                .subflows
                .iter()
                .find(|r| r.local == sf.remote && r.remote == sf.local)
                .map(|r| r.bytes_received);
            let seen = flows
                .iter()
                .filter(|(k, _)| {
                    Some(SocketAddr::new(k.src, k.sport)) == sf.local
                        && Some(SocketAddr::new(k.dst, k.dport)) == sf.remote
                })
                .fold(FlowStats::default(), |mut acc, (_, s)| {
                    acc.packets += s.packets;
                    acc.payload_bytes += s.payload_bytes;
                    acc
                });
            SubflowRow {
                path: sf
                    .local
                    .map(|a| a.ip())
                    .and_then(|ip: IpAddr| tb.path_of_client_addr(ip)),
                local: sf.local,
                remote: sf.remote,
                acked_bytes: acked,
                received_bytes: received,
                emptcp_payload_bytes: seen.payload_bytes,
                emptcp_packets: seen.packets,
                throughput_mbps: if fct > 0.0 {
                    acked as f64 * 8.0 / fct / 1e6
                } else {
                    0.0
                },
            }
        })
        .collect();
    Ok(DemoReport {
        family: if args.ipv6 { "ipv6" } else { "ipv4" },
        hook: args.hook,
        rate_mbit_per_path: args.rate_mbit,
        bytes: t.sender.bytes,
        verified: t.sender.verified && t.receiver.sha256 == t.sender.sha256,
        sha256: t.sender.sha256.clone(),
        fct_s: fct,
        throughput_mbps: t.sender.throughput_bps / 1e6,
        subflows,
        emptcp_counters,
        policies: Vec::new(),
        connections: Vec::new(),
        events: Vec::new(),
    })
}

fn print_report(r: &DemoReport) {
    println!();
    println!(
        "transfer: {} over {} in {:.3} s = {:.1} Mbit/s, SHA-256 {} ({})",
        human_bytes(r.bytes),
        r.family,
        r.fct_s,
        r.throughput_mbps,
        if r.verified { "verified" } else { "MISMATCH" },
        &r.sha256[..16.min(r.sha256.len())],
    );
    println!();
    println!(
        "{:<5} {:<44} {:>12} {:>12} {:>12} {:>9} {:>9}",
        "path",
        "subflow (client -> server)",
        "acked B",
        "received B",
        "emptcp B",
        "emptcp #",
        "Mbit/s"
    );
    for s in &r.subflows {
        let flow = format!(
            "{} -> {}",
            s.local.map_or("?".into(), |a| a.to_string()),
            s.remote.map_or("?".into(), |a| a.to_string())
        );
        println!(
            "{:<5} {:<44} {:>12} {:>12} {:>12} {:>9} {:>9.1}",
            s.path.map_or("?".into(), |p| p.to_string()),
            flow,
            s.acked_bytes,
            s.received_bytes.map_or("?".into(), |b| b.to_string()),
            s.emptcp_payload_bytes,
            s.emptcp_packets,
            s.throughput_mbps
        );
    }
    println!();
    println!("{:<12} {:<38} {:>8}", "policy", "actions", "packets");
    for p in &r.policies {
        println!("{:<12} {:<38} {:>8}", p.name, p.actions, p.packets);
    }
    println!();
    for c in r.connections.iter().filter(|c| c.token_listener != 0) {
        println!(
            "connection tracking: listener token {:#010x}, initiator token {}, {} subflow(s):",
            c.token_listener,
            c.token_initiator
                .map_or("?".into(), |t| format!("{t:#010x}")),
            c.subflows.len()
        );
        for s in &c.subflows {
            println!(
                "  #{} {} -> {}{}",
                s.index.map_or("?".into(), |i| i.to_string()),
                s.initiator,
                s.responder,
                if s.join {
                    format!(" (MP_JOIN, address id {})", s.address_id)
                } else {
                    " (MP_CAPABLE)".into()
                }
            );
        }
    }
    for e in &r.events {
        match e {
            emptcp::events::Event::Connection {
                at,
                sender_token,
                receiver_token,
                ..
            } => println!(
                "event: keys seen {} -> {}: sender token {sender_token:#010x}{}",
                at.src,
                at.dst,
                receiver_token.map_or(String::new(), |t| format!(", receiver token {t:#010x}"))
            ),
            emptcp::events::Event::Subflow {
                at,
                join,
                join_token,
                ..
            } => println!(
                "event: subflow SYN {} -> {} ({}{})",
                at.src,
                at.dst,
                if *join { "MP_JOIN" } else { "MP_CAPABLE" },
                join_token.map_or(String::new(), |t| format!(", token {t:#010x}"))
            ),
            emptcp::events::Event::AddSubflow {
                at,
                outcome,
                address_id,
            } => println!(
                "event: add_subflow {outcome:?} (address id {address_id}) {} -> {}",
                at.src, at.dst
            ),
        }
    }
    println!();
    for (hook, c) in &r.emptcp_counters {
        let line: Vec<String> = c.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("emptcp {hook} counters: {}", line.join(" "));
    }
    println!(
        "\nacked B: the kernel's tcpi_bytes_acked on the client; received B: tcpi_bytes_received \
         on the server;\nemptcp B / #: payload bytes and packets (GRO/GSO aggregates count once at TC) \
         emptcp saw on the router."
    );
}

pub(crate) fn human_bytes(b: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    match UNITS.iter().find(|(unit, _)| b >= *unit) {
        Some((unit, name)) => format!("{:.1} {name}", b as f64 / *unit as f64),
        None => format!("{b} B"),
    }
}

/// Progress lines on stderr for a human (`on: false`: silent).
pub(crate) struct Progress {
    on: bool,
    start: Instant,
}

impl Progress {
    pub(crate) fn new(on: bool) -> Self {
        Progress {
            on,
            start: Instant::now(),
        }
    }

    pub(crate) fn step(&self, what: &str) {
        if self.on {
            let t: Duration = self.start.elapsed();
            eprintln!("[{:>6.2}s] {what}", t.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes_and_reject_junk() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("32M"), Ok(32 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("fast").is_err());
        assert!(parse_size("99999999999G").is_err());
        assert!(parse_size("").is_err());
    }
}
