//! `emptcp`: attach the emptcp data plane, drive it, and see what it does.
//!
//! The binary is glue: argument definitions, printing and exit codes. The
//! work is in the `emptcp` and `emptcp-testbed` libraries.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod bench;
mod bench_transfer;
mod check;
mod demo;
mod inspect;
mod pm;
mod replay;
mod state;

/// Exit codes (documented in `--help`).
const EXIT_ERROR: u8 = 2;

#[derive(Parser)]
#[command(
    name = "emptcp",
    version,
    about = "Extensible Multipath TCP with eBPF: policy chains of packet operators",
    after_help = "Exit status: 0 success, 1 nothing matched or nothing to do, 2 error.\n\
                  Logs: -v / -vv, or RUST_LOG=emptcp=debug."
)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(flatten)]
    state: state::StateOpts,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach emptcp's entry program to an interface at a hook (no policies
    /// yet); it stays attached after emptcp exits.
    #[command(after_help = state::ATTACH_EXAMPLES)]
    Attach(state::AttachArgs),
    /// Detach from an interface, or everything emptcp attached (--all).
    #[command(after_help = state::DETACH_EXAMPLES)]
    Detach(state::DetachArgs),
    /// Validate a policy file, then make it the running generation of an
    /// attachment with one atomic swap (--dry-run: show what would change).
    #[command(after_help = state::APPLY_EXAMPLES)]
    Apply(state::ApplyArgs),
    /// Put an attachment back on the generation the last apply replaced.
    #[command(after_help = state::ROLLBACK_EXAMPLES)]
    Rollback(state::RollbackArgs),
    /// List attachments, their generations and policies (with packet counts).
    #[command(after_help = inspect::SHOW_EXAMPLES)]
    Show(inspect::ShowArgs),
    /// Entry and per-operator counters (hits, skips by reason); --watch.
    #[command(after_help = inspect::STATS_EXAMPLES)]
    Stats(inspect::StatsArgs),
    /// MPTCP connections and subflows connection tracking learned.
    #[command(after_help = inspect::CONNS_EXAMPLES)]
    Conns(inspect::ConnsArgs),
    /// Follow the data plane's events as JSON lines.
    #[command(after_help = inspect::EVENTS_EXAMPLES)]
    Events(inspect::EventsArgs),
    /// Measure the data plane (ns/packet beside baselines; publish time).
    #[command(after_help = bench::EXAMPLES)]
    Bench(bench::BenchArgs),
    /// Build a namespace testbed, move real MPTCP traffic through emptcp on a
    /// middle node, and print what it saw.
    #[command(after_help = demo::EXAMPLES)]
    Demo(demo::DemoArgs),
    /// Validate and compile a policy file without touching the kernel, and
    /// summarise it (policies, rules, shapes, action chains).
    #[command(after_help = check::EXAMPLES)]
    Check(check::CheckArgs),
    /// Run every packet of a capture, in order, through the real programs of
    /// one hook under a policy file, and write the resulting packets.
    #[command(after_help = replay::EXAMPLES)]
    Replay(replay::ReplayArgs),
    /// The kernel's MPTCP path manager (generic netlink `mptcp_pm`): endpoints, limits,
    /// events, and userspace-PM commands on a connection by token.
    #[command(after_help = pm::EXAMPLES)]
    Pm(pm::PmArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let st = &cli.state;
    let result = match cli.command {
        Command::Attach(args) => state::attach(st, &args),
        Command::Detach(args) => state::detach(st, &args),
        Command::Apply(args) => state::apply(st, &args),
        Command::Rollback(args) => state::rollback(st, &args),
        Command::Show(args) => inspect::show(st, &args),
        Command::Stats(args) => inspect::stats(st, &args),
        Command::Conns(args) => inspect::conns(st, &args),
        Command::Events(args) => inspect::events(st, &args),
        Command::Bench(args) => bench::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Replay(args) => replay::run(&args),
        Command::Pm(args) => pm::run(st, &args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("emptcp: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
