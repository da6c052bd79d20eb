//! `emptcp bench`: the data-plane benchmark (docs/benchmarks.md).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use emptcp::bench::{self, BenchOptions, PublishTarget};
use emptcp_testbed::{LinkEnd, LinkSpec, Topology};

use crate::bench_transfer::{self, TransferBenchOpts};
use crate::demo::{Progress, parse_size};

pub const EXAMPLES: &str = "Examples:\n  \
    emptcp bench --quick\n  \
    emptcp bench --json > bench.json\n  \
    emptcp bench --transfer                       real traffic, 5 rounds (~5 min)\n  \
    emptcp bench --transfer --rounds 3 --seconds 2\n  \
    emptcp bench --transfer --json > transfer.json\n\n\
    ns/packet of emptcp's entry programs beside an empty program and a\n\
    tail-call-per-operator engine measured in the same run (BPF_PROG_TEST_RUN), at XDP\n\
    and TC; flow-table and policy-count scaling; the time to publish a generation on a\n\
    live attachment (a veth pair in a namespace of its own, removed at exit). With\n\
    --transfer instead: real MPTCP traffic (bulk Gbit/s, short-flow completion times)\n\
    through a two-path namespace testbed whose middle node runs no program, emptcp\n\
    generation 0 with and without the quick pass, a chain-8 policy, or flow accounting\n\
    (tc-ingress on all four links); rounds interleaved, ratios against no program in\n\
    the same round; progress on stderr. Build with --release for meaningful figures.\n\
    Needs root.\n\
    Exit status: 0 done, 2 error.";

/// Arguments of `emptcp bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Fewer packets and runs per case (a minute instead of several).
    #[arg(long)]
    pub quick: bool,
    /// The report as JSON instead of Markdown tables.
    #[arg(long)]
    pub json: bool,
    /// Real traffic instead of ns/packet: MPTCP through emptcp on the middle
    /// node of a two-path testbed, beside no program (docs/benchmarks.md,
    /// "Real traffic through the router").
    #[arg(long, conflicts_with = "quick")]
    pub transfer: bool,
    /// Rounds of --transfer; each runs every variant once, interleaved.
    #[arg(long, default_value_t = 5, requires = "transfer")]
    pub rounds: usize,
    /// Bulk transfer time per variant and round, seconds (--transfer; at
    /// least one transfer).
    #[arg(long, default_value_t = 3.0, requires = "transfer")]
    pub seconds: f64,
    /// Bytes of each bulk transfer (--transfer; at most 256M; suffixes K, M,
    /// G are powers of 1024).
    #[arg(long, default_value = "256M", value_parser = parse_size, requires = "transfer")]
    pub bulk_bytes: u64,
    /// Short flows per variant and round, one after another (--transfer).
    #[arg(long, default_value_t = 200, requires = "transfer")]
    pub flows: usize,
    /// Bytes of each short flow (--transfer).
    #[arg(long, default_value = "100K", value_parser = parse_size, requires = "transfer")]
    pub flow_bytes: u64,
}

pub fn run(args: &BenchArgs) -> Result<ExitCode> {
    if !emptcp_testbed::is_root() {
        bail!("the benchmark needs root (BPF, network namespaces)");
    }
    if args.transfer {
        return run_transfer(args);
    }
    let mut opts = if args.quick {
        BenchOptions::quick()
    } else {
        BenchOptions::full()
    };
    // A veth pair inside a namespace of our own, for `apply` on a live
    // attachment; removed when `tb` drops.
    let tb = Topology::builder("bench")
        .host("b")
        .link(LinkSpec::new(
            LinkEnd::new("b", "bn0"),
            LinkEnd::new("b", "bn1"),
        ))
        .build()
        .context("creating the publish namespace")?;
    let host = tb.host("b")?;
    opts.publish_target = Some(PublishTarget {
        netns: host.netns_path(),
        ifindex: host.ifindex("bn0")?,
    });
    let report = bench::run(&opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_markdown());
    }
    Ok(ExitCode::SUCCESS)
}

fn run_transfer(args: &BenchArgs) -> Result<ExitCode> {
    let opts = TransferBenchOpts {
        rounds: args.rounds,
        seconds: args.seconds,
        bulk_bytes: args.bulk_bytes,
        flows: args.flows,
        flow_bytes: args.flow_bytes,
    };
    // On stderr also with --json: a run takes minutes.
    let report = bench_transfer::run(&opts, &Progress::new(true))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_markdown());
    }
    Ok(ExitCode::SUCCESS)
}
