//! `emptcp bench`: the data-plane benchmark (docs/benchmarks.md).

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use emptcp::bench::{self, BenchOptions, PublishTarget};
use emptcp_testbed::{LinkEnd, LinkSpec, Topology};

pub const EXAMPLES: &str = "Examples:\n  \
    emptcp bench --quick\n  \
    emptcp bench --json > bench.json\n\n\
    ns/packet of emptcp's entry programs beside an empty program and a\n\
    tail-call-per-operator engine measured in the same run (BPF_PROG_TEST_RUN), at XDP\n\
    and TC; flow-table and policy-count scaling; the time to publish a generation on a\n\
    live attachment (a veth pair in a namespace of its own, removed at exit). Build with\n\
    --release for meaningful figures. Needs root.\n\
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
}

pub fn run(args: &BenchArgs) -> Result<ExitCode> {
    if !emptcp_testbed::is_root() {
        bail!("the benchmark needs root (BPF, network namespaces)");
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
