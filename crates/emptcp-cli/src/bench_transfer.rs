//! `emptcp bench --transfer`: real MPTCP traffic through emptcp on the
//! middle node of the two-path testbed, beside the same traffic through no
//! program at all, measured in the same run (docs/benchmarks.md, "Real
//! traffic through the router").
//!
//! How it measures:
//!
//! - one testbed (client, router, server; two unlimited veth paths) for the
//!   whole run, removed when the run ends, also on failure;
//! - a variant is applied on all four router links r1..r4 at tc-ingress
//!   (tcx): nothing, or a freshly loaded data plane (dropping it detaches);
//! - rounds are interleaved (every variant once per round, in order), so
//!   drift of the shared machine affects all variants alike; cells give the
//!   median over the rounds and (min-max), and each round's figure is also
//!   divided by the same round's figure with no program ("ratio vs none");
//! - bulk: back-to-back transfers of `bulk_bytes` (one MPTCP connection
//!   each, both subflows required to carry data) until `seconds` of transfer
//!   time; Gbit/s = the receiver's bytes / the receiver's first-to-last-byte
//!   time, summed over the transfers;
//! - short flows: `flows` connections of `flow_bytes`, one after another;
//!   completion time from `connect()` to the receiver's all-received byte;
//! - every transfer's bytes are checked (length and SHA-256 of the stream);
//! - **before any timing every variant is run once and checked**, and the
//!   same check runs again after each timed round: the data plane really ran
//!   (entry counters moved; the quick pass took packets, or none with it
//!   off), and the chain-8 policy matched the transfer's packets with every
//!   actor's and `record`'s count equal to its hit counter. A failed check
//!   fails the benchmark.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result, bail, ensure};
use emptcp::netns::NetnsGuard;
use emptcp::policy::{
    Action, ActionChain, Combine, Policy, PolicySet, Prefix, Selector, SelectorChain,
};
use emptcp::{Dataplane, Hook, LoadOptions};
use emptcp_testbed::presets::{self, TwoPath, TwoPathOpts};
use emptcp_testbed::traffic::{self, Receiver, ReceiverOpts, SenderOpts, TransferOpts};
use serde::Serialize;

use crate::demo::{Progress, human_bytes};

/// The receiver's port of every transfer: the chain-8 policy selects it.
pub const PORT: u16 = 5201;

/// Larger bulk transfers are generated and hashed while they are sent
/// (emptcp-testbed's in-memory limit), which would measure SHA-256.
pub const BULK_BYTES_MAX: u64 = 256 << 20;

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct TransferBenchOpts {
    /// Timed rounds (each runs every variant once).
    pub rounds: usize,
    /// Bulk: transfer time per variant and round, seconds (at least one
    /// transfer).
    pub seconds: f64,
    /// Bytes of each bulk transfer.
    pub bulk_bytes: u64,
    /// Short flows per variant and round.
    pub flows: usize,
    /// Bytes of each short flow.
    pub flow_bytes: u64,
}

/// What is on the router's links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// No program.
    None,
    /// emptcp generation 0 (no policies), quick pass on (LoadOptions default).
    Generation0,
    /// Generation 0 with `quick_pass: false`: every packet's options walked.
    Generation0NoQuick,
    /// A chain-8 policy (4 selectors, 4 actors) matching the transfer's
    /// client-to-server packets.
    Chain8,
    /// Generation 0 with flow accounting on.
    Accounted,
}

impl Variant {
    /// Every variant, in round order.
    pub const ALL: [Variant; 5] = [
        Variant::None,
        Variant::Generation0,
        Variant::Generation0NoQuick,
        Variant::Chain8,
        Variant::Accounted,
    ];

    /// The row label.
    pub fn label(self) -> &'static str {
        match self {
            Variant::None => "none",
            Variant::Generation0 => "generation 0 (quick pass)",
            Variant::Generation0NoQuick => "generation 0, no quick pass",
            Variant::Chain8 => "chain 8 (count, record)",
            Variant::Accounted => "generation 0, flows accounted",
        }
    }

    fn load_options(self) -> Option<LoadOptions> {
        let default = LoadOptions::default();
        match self {
            Variant::None => None,
            Variant::Generation0 | Variant::Chain8 => Some(default),
            Variant::Generation0NoQuick => Some(LoadOptions {
                quick_pass: false,
                ..default
            }),
            Variant::Accounted => Some(LoadOptions {
                account_flows: true,
                ..default
            }),
        }
    }
}

/// The chain-8 policy: src in the client subnets AND dst port [`PORT`] AND
/// dst the server's path-1 subnet AND the (server, client) address pair,
/// then count, record, count, count; none of them changes a packet, so the
/// traffic is the same as with no program. At tc-ingress "local" is the
/// destination: the selected packets are the client's (data, its SYNs and
/// FINs) on r1 and r2; the server's on r3 and r4 are not selected.
pub fn chain8_policy() -> PolicySet {
    let pfx = |s: &str| -> Prefix { s.parse().expect("prefix") };
    // 10.77.1.0/24 and 10.77.2.0/24 (the client's two paths).
    let clients = pfx("10.77.0.0/22");
    let stages = [
        Selector::Src(clients),
        Selector::Port {
            local: Some(PORT),
            remote: None,
        },
        Selector::Dst(pfx("10.77.3.0/24")),
        Selector::IpPair {
            local: pfx("10.77.3.1/32"),
            remote: clients,
        },
    ];
    let mut actions = ActionChain::new();
    actions
        .add(Action::Count)
        .add(Action::Record)
        .add(Action::Count)
        .add(Action::Count);
    let mut sc = SelectorChain::new();
    let mut p = Policy::new("transfer", actions);
    for (i, s) in stages.into_iter().enumerate() {
        sc.add(s.kind(), Combine::And);
        p.select(i, s);
    }
    PolicySet {
        selectors: sc,
        policies: vec![p],
    }
}

/// Median and range of per-round figures.
#[derive(Debug, Clone, Serialize)]
pub struct Stat {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
    /// Every round's figure, in round order.
    pub samples: Vec<f64>,
}

impl Stat {
    fn of(samples: &[f64]) -> Stat {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        Stat {
            median: median_sorted(&s),
            min: s.first().copied().unwrap_or(f64::NAN),
            max: s.last().copied().unwrap_or(f64::NAN),
            samples: samples.to_vec(),
        }
    }

    fn cell(&self, decimals: usize) -> String {
        let d = decimals;
        if self.samples.len() == 1 {
            format!("{:.d$}", self.median)
        } else {
            format!("{:.d$} ({:.d$}-{:.d$})", self.median, self.min, self.max)
        }
    }
}

fn median_sorted(s: &[f64]) -> f64 {
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile of sorted samples (p99 of 200 is the 198th).
fn percentile_sorted(s: &[f64], p: f64) -> f64 {
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// One variant's bulk transfers in one round.
#[derive(Debug, Clone, Serialize)]
pub struct BulkRun {
    /// Transfers made.
    pub transfers: usize,
    /// Payload bytes the receiver got, over all transfers.
    pub bytes: u64,
    /// The receiver's first-to-last-byte time, summed, seconds.
    pub seconds: f64,
    /// `bytes * 8 / seconds / 1e9`.
    pub gbps: f64,
    /// Bytes the client retransmitted (all subflows, all transfers).
    pub retrans_bytes: u64,
    /// Payload bytes the server acknowledged on path 1 and path 2 (client
    /// side addresses), over all transfers.
    pub path_bytes: [u64; 2],
}

/// One variant's short flows in one round.
#[derive(Debug, Clone, Serialize)]
pub struct FlowsRun {
    /// Completion time of each flow, in order, milliseconds.
    pub fct_ms: Vec<f64>,
    /// Median of `fct_ms`.
    pub median_ms: f64,
    /// Nearest-rank p99 of `fct_ms`.
    pub p99_ms: f64,
}

/// What a variant measured over the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct VariantRow {
    /// The variant.
    pub variant: Variant,
    /// Its label.
    pub label: String,
    /// Bulk, per round.
    pub bulk: Vec<BulkRun>,
    /// Short flows, per round.
    pub flows: Vec<FlowsRun>,
    /// Bulk Gbit/s over the rounds.
    pub bulk_gbps: Stat,
    /// Per round: bulk Gbit/s / the same round's none.
    pub bulk_ratio: Stat,
    /// Per-round median flow completion time, ms.
    pub fct_median_ms: Stat,
    /// Per-round p99 flow completion time, ms.
    pub fct_p99_ms: Stat,
    /// Per round: median FCT / the same round's none (above 1: slower).
    pub fct_ratio: Stat,
    /// What the last check verified.
    pub checked: String,
}

/// The load average (1, 5, 15 min) at points of the run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadAverage {
    /// Before the checks.
    pub start: [f64; 3],
    /// After the last round.
    pub end: [f64; 3],
    /// Highest 1-minute figure read after any round.
    pub max_1min: f64,
}

/// Everything the transfer benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct TransferBenchReport {
    /// Where.
    pub machine: emptcp::bench::Machine,
    /// The machine is shared: what else ran shows here.
    pub load_average: LoadAverage,
    /// What ran.
    pub options: TransferBenchOpts,
    /// Where the variants sit.
    pub hook: String,
    /// One row per variant, in [`Variant::ALL`] order.
    pub rows: Vec<VariantRow>,
    /// Checks run (and passed): one per variant before timing, one per
    /// variant and round after it.
    pub checks_passed: usize,
}

fn load_average() -> [f64; 3] {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = s.split_whitespace().map(|v| v.parse().unwrap_or(f64::NAN));
    [(); 3].map(|()| it.next().unwrap_or(f64::NAN))
}

/// What the data plane must have seen of one variant's traffic.
#[derive(Debug, Default)]
struct Moved {
    /// Client-to-server payload bytes, protocol headers included.
    payload_bytes: u64,
}

/// Loads the variant's data plane and attaches it at tc-ingress on r1..r4
/// (`None` for no program). Dropping the data plane detaches it.
fn apply_variant(tb: &TwoPath, variant: Variant) -> Result<Option<Dataplane>> {
    let Some(options) = variant.load_options() else {
        return Ok(None);
    };
    let mut dp = Dataplane::load_with(&options).context("loading the emptcp data plane")?;
    let policy = (variant == Variant::Chain8)
        .then(|| chain8_policy().compile(Hook::TcIngress))
        .transpose()
        .context("compiling the chain-8 policy")?;
    let _in_router = NetnsGuard::enter(&tb.router.netns_path())?;
    let i = tb.ifaces;
    for iface in [i.r1, i.r2, i.r3, i.r4] {
        let ifindex = tb.router_ifindex(iface)?;
        dp.attach(Hook::TcIngress, ifindex)
            .with_context(|| format!("attaching at tc-ingress on the router's {iface}"))?;
        if let Some(policy) = &policy {
            let g = dp.load_generation(policy, &[])?;
            dp.apply(ifindex, g)?;
        }
    }
    Ok(Some(dp))
}

/// Payload the data plane sees beside each stream: the traffic protocol's
/// header.
const STREAM_HEADER_BYTES: u64 = traffic::HEADER_LEN as u64;

fn run_bulk(tb: &TwoPath, opts: &TransferBenchOpts, moved: &mut Moved) -> Result<BulkRun> {
    let mut run = BulkRun {
        transfers: 0,
        bytes: 0,
        seconds: 0.0,
        gbps: 0.0,
        retrans_bytes: 0,
        path_bytes: [0; 2],
    };
    while run.transfers == 0 || run.seconds < opts.seconds {
        let t = traffic::transfer(
            &tb.client,
            &tb.server,
            &TransferOpts::new(tb.server_addr(), opts.bulk_bytes)
                .port(PORT)
                .expect_subflows_with_data(2),
        )
        .with_context(|| format!("bulk transfer {}", run.transfers + 1))?;
        ensure!(t.sender.verified && t.receiver.bytes == opts.bulk_bytes);
        run.transfers += 1;
        run.bytes += t.receiver.bytes;
        run.seconds += t.receiver.duration_s;
        run.retrans_bytes += t
            .sender
            .subflows
            .iter()
            .map(|s| s.bytes_retrans)
            .sum::<u64>();
        for (path, bytes) in run.path_bytes.iter_mut().enumerate() {
            *bytes += t.sender.acked_payload_from(tb.client_addr(path as u8 + 1));
        }
        moved.payload_bytes += opts.bulk_bytes + STREAM_HEADER_BYTES;
    }
    run.gbps = run.bytes as f64 * 8.0 / run.seconds / 1e9;
    Ok(run)
}

fn run_flows(tb: &TwoPath, n: usize, bytes: u64, moved: &mut Moved) -> Result<FlowsRun> {
    let receiver = Receiver::start(
        &tb.server,
        ReceiverOpts {
            port: PORT,
            max_connections: n,
            ..Default::default()
        },
    )?;
    let mut fct_ms = Vec::with_capacity(n);
    for i in 0..n {
        let mut o = SenderOpts::new(SocketAddr::new(tb.server_addr(), PORT), bytes);
        o.seed = i as u64 + 1;
        let s = traffic::send(&tb.client, &o).with_context(|| format!("short flow {}", i + 1))?;
        ensure!(s.verified, "short flow {}: data not verified", i + 1);
        fct_ms.push(s.fct_s * 1e3);
        moved.payload_bytes += bytes + STREAM_HEADER_BYTES;
    }
    let served = receiver.join()?;
    ensure!(
        served.len() == n && served.iter().all(|f| f.bytes == bytes),
        "the receiver served {} of {n} flows",
        served.len()
    );
    let mut sorted = fct_ms.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(FlowsRun {
        median_ms: median_sorted(&sorted),
        p99_ms: percentile_sorted(&sorted, 99.0),
        fct_ms,
    })
}

fn is_client(tb: &TwoPath, addr: IpAddr) -> bool {
    tb.path_of_client_addr(addr).is_some()
}

/// Checks that the variant's data plane did its work on the traffic that
/// was moved; returns what was checked.
fn check(tb: &TwoPath, variant: Variant, dp: Option<&Dataplane>, moved: &Moved) -> Result<String> {
    let Some(dp) = dp else {
        return Ok("every byte verified, both subflows carried bulk data".into());
    };
    let c = dp.counters(Hook::TcIngress)?;
    let (tcp, matched, no_policy) = (c.get("tcp"), c.get("matched"), c.get("no_policy"));
    let quick = c.get("quick_tcp") + c.get("quick_mptcp");
    ensure!(tcp > 0, "{}: the entry saw no TCP packet", variant.label());
    ensure!(
        c.get("missing_chain") == 0 && c.get("malformed") == 0,
        "{}: missing_chain {} malformed {}",
        variant.label(),
        c.get("missing_chain"),
        c.get("malformed")
    );
    let mut checked = format!("tcp {tcp}");
    match variant {
        Variant::None => unreachable!("no data plane"),
        Variant::Generation0 | Variant::Accounted => {
            ensure!(
                quick > 0 && matched == 0,
                "{}: quick {quick}, matched {matched}",
                variant.label()
            );
            checked += &format!(", quick {quick}, matched 0");
        }
        Variant::Generation0NoQuick => {
            let mptcp = c.get("mptcp");
            ensure!(
                quick == 0 && mptcp > 0 && matched == 0,
                "{}: quick {quick} (expected 0), mptcp {mptcp}, matched {matched}",
                variant.label()
            );
            checked += &format!(", quick 0, mptcp {mptcp} (walked), matched 0");
        }
        Variant::Chain8 => checked += &check_chain8(tb, dp, matched, no_policy, moved)?,
    }
    if variant == Variant::Accounted {
        let client_payload: u64 = dp
            .flow_stats()?
            .iter()
            .filter(|(k, _)| k.dport == PORT && is_client(tb, k.src))
            .map(|(_, s)| s.payload_bytes)
            .sum();
        ensure!(
            client_payload >= moved.payload_bytes,
            "flows accounted {client_payload} client payload bytes, {} were moved",
            moved.payload_bytes
        );
        checked += &format!(", accounted client payload {client_payload} >= moved");
    }
    Ok(checked)
}

fn check_chain8(
    tb: &TwoPath,
    dp: &Dataplane,
    matched: u64,
    no_policy: u64,
    moved: &Moved,
) -> Result<String> {
    let mut hits = 0;
    for att in dp.attachments() {
        let g = att.generation().context("chain 8: no generation applied")?;
        let att_hits: u64 = g.policy_hits()?.iter().map(|(_, n)| n).sum();
        let slot = g.policy().chain_of(0).context("chain 8: no chain")?;
        for (op, s) in g.op_stats(slot)?.iter().enumerate() {
            ensure!(
                s.hits == att_hits && s.reasons.iter().all(|&r| r == 0),
                "chain 8 on {}: operator {op} ran {} times with skips {:?}, the policy hit {att_hits}",
                att.ifname,
                s.hits,
                s.reasons
            );
        }
        hits += att_hits;
    }
    ensure!(
        hits > 0 && hits == matched,
        "chain 8: policy hits {hits}, entry counter matched {matched}"
    );
    // The server's packets (ACKs, verdicts) on r3 and r4: not selected.
    ensure!(no_policy > 0, "chain 8: every packet was selected");
    let (mut packets, mut payload) = (0, 0);
    for r in dp.records()? {
        for side in [&r.lo, &r.hi] {
            if is_client(tb, side.from.ip()) {
                packets += side.packets;
                payload += side.payload_bytes;
            }
        }
    }
    ensure!(
        packets == hits && payload >= moved.payload_bytes,
        "chain 8: record saw {packets} client packets ({payload} payload bytes), the policy hit \
         {hits}, {} payload bytes were moved",
        moved.payload_bytes
    );
    Ok(format!(
        ", policy hits {hits} = matched = each actor's hits = record's client packets, \
         no_policy {no_policy}, recorded client payload {payload} >= moved"
    ))
}

/// Applies `variant`, moves the bulk transfers and the short flows of `opts`
/// through it, checks what its data plane saw, and removes it.
fn run_variant(
    tb: &TwoPath,
    variant: Variant,
    opts: &TransferBenchOpts,
) -> Result<(BulkRun, FlowsRun, String)> {
    let dp = apply_variant(tb, variant)?;
    let mut moved = Moved::default();
    let bulk = run_bulk(tb, opts, &mut moved)?;
    let flows = run_flows(tb, opts.flows, opts.flow_bytes, &mut moved)?;
    let checked = check(tb, variant, dp.as_ref(), &moved)?;
    Ok((bulk, flows, checked))
}

/// Runs the transfer benchmark. `progress` gets a line per step on stderr.
pub fn run(opts: &TransferBenchOpts, progress: &Progress) -> Result<TransferBenchReport> {
    ensure!(opts.rounds > 0, "at least one round");
    ensure!(opts.flows > 0, "at least one short flow");
    if opts.bulk_bytes > BULK_BYTES_MAX {
        bail!(
            "bulk transfers above {} MiB are hashed while sent, which would limit throughput",
            BULK_BYTES_MAX >> 20
        );
    }
    let start_load = load_average();
    let machine = emptcp::bench::machine(None);
    progress.step("building the two-path testbed (unlimited veth paths)");
    let tb = presets::two_path("xbench", TwoPathOpts::default())
        .context("building the two-path testbed")?;

    let mut checks_passed = 0;
    let mut checked = vec![String::new(); Variant::ALL.len()];
    // Before any timing: each variant once, checked. A short bulk phase and
    // a few flows are enough to move every counter the check reads.
    let check_opts = TransferBenchOpts {
        seconds: 0.0,
        flows: opts.flows.min(10),
        ..opts.clone()
    };
    for (vi, &variant) in Variant::ALL.iter().enumerate() {
        progress.step(&format!("check: {}", variant.label()));
        (_, _, checked[vi]) = run_variant(&tb, variant, &check_opts)
            .with_context(|| format!("check, {}", variant.label()))?;
        checks_passed += 1;
    }

    let mut bulk = vec![Vec::new(); Variant::ALL.len()];
    let mut flows = vec![Vec::new(); Variant::ALL.len()];
    let mut max_load: f64 = start_load[0];
    for round in 0..opts.rounds {
        for (vi, &variant) in Variant::ALL.iter().enumerate() {
            let (b, f, last_check) = run_variant(&tb, variant, opts)
                .with_context(|| format!("round {}, {}", round + 1, variant.label()))?;
            checked[vi] = last_check;
            checks_passed += 1;
            let load = load_average();
            max_load = max_load.max(load[0]);
            progress.step(&format!(
                "round {}/{}, {}: bulk {:.2} Gbit/s ({} x {} MiB), flows median {:.3} ms p99 {:.3} ms, load {:.2}",
                round + 1,
                opts.rounds,
                variant.label(),
                b.gbps,
                b.transfers,
                opts.bulk_bytes >> 20,
                f.median_ms,
                f.p99_ms,
                load[0]
            ));
            bulk[vi].push(b);
            flows[vi].push(f);
        }
    }
    drop(tb);

    let none = Variant::ALL
        .iter()
        .position(|&v| v == Variant::None)
        .expect("none is a variant");
    let ratio = |vi: usize, f: &dyn Fn(usize, usize) -> f64| -> Vec<f64> {
        (0..opts.rounds).map(|r| f(vi, r) / f(none, r)).collect()
    };
    let rows = Variant::ALL
        .iter()
        .enumerate()
        .map(|(vi, &variant)| {
            let gbps: Vec<f64> = bulk[vi].iter().map(|b| b.gbps).collect();
            let med: Vec<f64> = flows[vi].iter().map(|f| f.median_ms).collect();
            let p99: Vec<f64> = flows[vi].iter().map(|f| f.p99_ms).collect();
            VariantRow {
                variant,
                label: variant.label().into(),
                bulk_gbps: Stat::of(&gbps),
                bulk_ratio: Stat::of(&ratio(vi, &|v, r| bulk[v][r].gbps)),
                fct_median_ms: Stat::of(&med),
                fct_p99_ms: Stat::of(&p99),
                fct_ratio: Stat::of(&ratio(vi, &|v, r| flows[v][r].median_ms)),
                bulk: bulk[vi].clone(),
                flows: flows[vi].clone(),
                checked: checked[vi].clone(),
            }
        })
        .collect();
    let end = load_average();
    Ok(TransferBenchReport {
        machine,
        load_average: LoadAverage {
            start: start_load,
            end,
            max_1min: max_load.max(end[0]),
        },
        options: opts.clone(),
        hook: "tc-ingress (tcx) on the router's r1, r2, r3, r4".into(),
        rows,
        checks_passed,
    })
}

impl TransferBenchReport {
    /// The report as Markdown tables (the format of docs/benchmarks.md).
    pub fn to_markdown(&self) -> String {
        use std::fmt::Write as _;
        let o = &self.options;
        let l = &self.load_average;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Real traffic through the router\n\n\
             {} CPUs ({}), kernel {}; load average {:.2} / {:.2} / {:.2} at start, {:.2} / {:.2} / {:.2} \
             at end, 1-min max {:.2}.\n\
             Variants on {}; {} rounds, interleaved; cells: median over the rounds (min-max).\n\
             Bulk: {} per transfer, back to back for {} s of transfer time, both subflows carrying data.\n\
             Short flows: {} x {}, one after another.\n",
            self.machine.cpus,
            self.machine.cpu_model,
            self.machine.kernel,
            l.start[0],
            l.start[1],
            l.start[2],
            l.end[0],
            l.end[1],
            l.end[2],
            l.max_1min,
            self.hook,
            o.rounds,
            human_bytes(o.bulk_bytes),
            o.seconds,
            o.flows,
            human_bytes(o.flow_bytes),
        );
        let _ = writeln!(
            s,
            "| variant | bulk Gbit/s | ratio vs none (per round) | retrans MiB / round | path 1 share |\n\
             |---|---|---|---|---|"
        );
        for r in &self.rows {
            let retrans = Stat::of(
                &r.bulk
                    .iter()
                    .map(|b| b.retrans_bytes as f64 / f64::from(1 << 20))
                    .collect::<Vec<_>>(),
            );
            let share = Stat::of(
                &r.bulk
                    .iter()
                    .map(|b| {
                        b.path_bytes[0] as f64 / (b.path_bytes[0] + b.path_bytes[1]).max(1) as f64
                    })
                    .collect::<Vec<_>>(),
            );
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                r.label,
                r.bulk_gbps.cell(2),
                r.bulk_ratio.cell(2),
                retrans.cell(1),
                share.cell(2)
            );
        }
        let _ = writeln!(
            s,
            "\n| variant | {size} FCT median ms | {size} FCT p99 ms | median ratio vs none (per round) |\n\
             |---|---|---|---|",
            size = human_bytes(o.flow_bytes)
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                r.label,
                r.fct_median_ms.cell(3),
                r.fct_p99_ms.cell(3),
                r.fct_ratio.cell(2)
            );
        }
        let _ = writeln!(
            s,
            "\nChecks passed: {} (each variant once before timing, then after every round). Last check:\n",
            self.checks_passed
        );
        for r in &self.rows {
            let _ = writeln!(s, "- {}: {}", r.label, r.checked);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile_sorted(&s, 99.0), 198.0);
        assert_eq!(median_sorted(&s), 100.5);
        assert_eq!(percentile_sorted(&[3.0], 99.0), 3.0);
        let st = Stat::of(&[3.0, 1.0, 2.0]);
        assert_eq!((st.median, st.min, st.max), (2.0, 1.0, 3.0));
        assert_eq!(st.samples, vec![3.0, 1.0, 2.0]);
    }

    #[test]
    fn markdown_has_a_row_per_variant_in_both_tables() {
        let stat = Stat::of(&[1.0]);
        let rows = Variant::ALL
            .iter()
            .map(|&variant| VariantRow {
                variant,
                label: variant.label().into(),
                bulk: vec![BulkRun {
                    transfers: 1,
                    bytes: 1 << 20,
                    seconds: 1.0,
                    gbps: 1.0,
                    retrans_bytes: 0,
                    path_bytes: [1, 1],
                }],
                flows: Vec::new(),
                bulk_gbps: stat.clone(),
                bulk_ratio: stat.clone(),
                fct_median_ms: stat.clone(),
                fct_p99_ms: stat.clone(),
                fct_ratio: stat.clone(),
                checked: "checked".into(),
            })
            .collect();
        let report = TransferBenchReport {
            machine: emptcp::bench::machine(None),
            load_average: LoadAverage {
                start: [0.0; 3],
                end: [0.0; 3],
                max_1min: 0.0,
            },
            options: TransferBenchOpts {
                rounds: 1,
                seconds: 1.0,
                bulk_bytes: 1 << 20,
                flows: 1,
                flow_bytes: 100 << 10,
            },
            hook: "tc-ingress".into(),
            rows,
            checks_passed: 10,
        };
        let md = report.to_markdown();
        for v in Variant::ALL {
            assert_eq!(md.matches(&format!("| {} |", v.label())).count(), 2, "{md}");
        }
        assert!(md.contains("| 100.0 KiB FCT median ms |"), "{md}");
    }

    #[test]
    fn chain8_has_four_selectors_and_four_actors() {
        let compiled = chain8_policy().compile(Hook::TcIngress).expect("compiles");
        let slot = compiled.chain_of(0).expect("a chain");
        assert_eq!(compiled.chain_actions(slot).len(), 4);
        assert_eq!(chain8_policy().selectors.stages().len(), 4);
    }
}
