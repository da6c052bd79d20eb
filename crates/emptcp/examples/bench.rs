//! The data-plane benchmark (docs/benchmarks.md): emptcp's entry program
//! beside an empty program and a tail-call-per-operator engine, measured in
//! the same run. Needs root.
//!
//! ```text
//! cargo run --release -p emptcp --example bench -- [--quick] [--json]
//! ```
//!
//! `--quick`: every case with fewer packets and runs. `--json`: the report as
//! JSON on stdout instead of Markdown tables. The publish measurement
//! attaches to a veth end inside a network namespace of its own, removed at
//! exit.

use anyhow::{Context, Result, bail};
use emptcp::bench::{self, BenchOptions, PublishTarget};
use emptcp_testbed::{LinkEnd, LinkSpec, Topology};

fn main() -> Result<()> {
    let mut opts = BenchOptions::full();
    let mut json = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => opts = BenchOptions::quick(),
            "--json" => json = true,
            "-h" | "--help" => {
                println!("usage: bench [--quick] [--json]");
                return Ok(());
            }
            other => bail!("unknown argument {other} (usage: bench [--quick] [--json])"),
        }
    }
    if !emptcp_testbed::is_root() {
        bail!("the benchmark needs root (BPF, network namespaces)");
    }
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
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_markdown());
    }
    Ok(())
}
