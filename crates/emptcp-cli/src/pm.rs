//! `emptcp pm`: the kernel's MPTCP path manager over generic netlink (crate `emptcp-pm`).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use emptcp_pm::{Endpoint, EndpointFlags, Error as PmError, PathManager, Subflow};

use crate::state::StateOpts;

pub const EXAMPLES: &str = "Examples:\n  \
    emptcp pm endpoints --json\n  \
    emptcp pm add 10.0.2.1 --id 2 --flags subflow,backup --dev eth1\n  \
    emptcp pm add 10.0.3.1 --flags signal --port 8080\n  \
    emptcp pm set --id 2 --flags backup\n  \
    emptcp pm del --id 2\n  \
    emptcp pm limits --subflows 2 --add-addr-accepted 2\n  \
    emptcp pm --netns srv events --json --count 4 --timeout 30\n  \
    emptcp pm announce --token 0x1d53c012 --id 5 10.0.4.1          (pm_type=1)\n  \
    emptcp pm endpoints --token 0x1d53c012\n  \
    emptcp pm subflow create --token 0x1d53c012 --id 2 10.0.2.1 10.0.3.1:8080\n  \
    emptcp pm subflow destroy --token 0x1d53c012 10.0.2.1:40000 10.0.3.1:8080\n\n\
    Exit status: 0 success; 1 `events` stopped by --timeout before --count events;\n\
    2 error (the kernel's own message is shown when it gave one).";

/// Arguments of `emptcp pm`.
#[derive(Args)]
pub struct PmArgs {
    #[command(subcommand)]
    command: PmCommand,
}

#[derive(Subcommand)]
enum PmCommand {
    /// List the in-kernel path manager's endpoints, or (--token) the addresses of one
    /// connection of the userspace PM.
    Endpoints {
        /// Userspace PM: the local addresses of this connection instead.
        #[arg(long, value_parser = parse_token)]
        token: Option<u32>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Add an endpoint: an address the in-kernel path manager may announce or open subflows
    /// from.
    Add(AddArgs),
    /// Delete an endpoint; its subflows close and its announcement is withdrawn.
    Del {
        /// Endpoint id.
        #[arg(long)]
        id: u8,
    },
    /// Change an endpoint's flags (the kernel changes only backup and fullmesh; a backup
    /// change sends MP_PRIO on its subflows).
    Set {
        /// Endpoint id.
        #[arg(long)]
        id: u8,
        /// The new flags; empty clears backup and fullmesh.
        #[arg(long, default_value = "", value_parser = parse_flags)]
        flags: EndpointFlags,
    },
    /// Delete every endpoint.
    Flush,
    /// Show the limits, after setting the ones given.
    Limits {
        /// Most additional subflows per connection (kernel maximum 8).
        #[arg(long)]
        subflows: Option<u32>,
        /// Most ADD_ADDRs accepted from a peer per connection (kernel maximum 8).
        #[arg(long)]
        add_addr_accepted: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print path-manager events (one line each) until interrupted, --count or --timeout.
    Events {
        /// JSON lines, one object per event.
        #[arg(long)]
        json: bool,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds (exit status 1 if --count was not reached).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
    },
    /// Userspace PM: announce a local address on a connection (ADD_ADDR).
    Announce {
        /// Connection token (hex with 0x, or decimal), as events print it.
        #[arg(long, value_parser = parse_token)]
        token: u32,
        /// Address id to announce it with (1-255).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
        id: u8,
        /// The address.
        addr: IpAddr,
        /// Port to announce with the address.
        #[arg(long)]
        port: Option<u16>,
    },
    /// Userspace PM: withdraw an announced address id from a connection (RM_ADDR).
    Remove {
        /// Connection token.
        #[arg(long, value_parser = parse_token)]
        token: u32,
        /// Local address id.
        #[arg(long)]
        id: u8,
    },
    /// Userspace PM: create, destroy or re-prioritise one subflow of a connection.
    #[command(subcommand)]
    Subflow(SubflowCommand),
}

#[derive(Args)]
struct AddArgs {
    /// The address (IPv4 or IPv6).
    addr: IpAddr,
    /// Endpoint id (1-255); default: the kernel picks one.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
    id: Option<u8>,
    /// Comma-separated: signal, subflow, backup, fullmesh.
    #[arg(long, default_value = "", value_parser = parse_flags)]
    flags: EndpointFlags,
    /// Bind the endpoint's subflows to this interface.
    #[arg(long, value_name = "IF")]
    dev: Option<String>,
    /// Port to announce (signal endpoints; the kernel listens on it).
    #[arg(long)]
    port: Option<u16>,
}

#[derive(Subcommand)]
enum SubflowCommand {
    /// Open a subflow (MP_JOIN) from LOCAL to REMOTE.
    Create {
        /// Connection token.
        #[arg(long, value_parser = parse_token)]
        token: u32,
        /// Local address id for the subflow (1-255).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
        id: u8,
        /// Bind the subflow to this interface.
        #[arg(long, value_name = "IF")]
        dev: Option<String>,
        /// Local address.
        local: IpAddr,
        /// Remote address and port (the connection's listener).
        remote: SocketAddr,
    },
    /// Close the subflow LOCAL -> REMOTE (both with ports).
    Destroy {
        /// Connection token.
        #[arg(long, value_parser = parse_token)]
        token: u32,
        /// Local address and port.
        local: SocketAddr,
        /// Remote address and port.
        remote: SocketAddr,
    },
    /// Mark the subflow LOCAL -> REMOTE backup (or, with --clear, regular); sends MP_PRIO.
    Backup {
        /// Connection token.
        #[arg(long, value_parser = parse_token)]
        token: u32,
        /// Clear the backup bit instead of setting it.
        #[arg(long)]
        clear: bool,
        /// Local address and port.
        local: SocketAddr,
        /// Remote address and port.
        remote: SocketAddr,
    },
}

fn parse_flags(s: &str) -> Result<EndpointFlags, String> {
    s.parse().map_err(|e: PmError| e.to_string())
}

fn parse_token(s: &str) -> Result<u32, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("{s:?} is not a 32-bit token (hex with 0x, or decimal)"))
}

/// `--netns` is the global option (`StateOpts`): the socket joins the namespace of the thread
/// that opens it, so entering first is enough.
pub fn run(state: &StateOpts, args: &PmArgs) -> Result<ExitCode> {
    let _netns = state.enter_netns()?;
    let mut pm = PathManager::open()?;
    match &args.command {
        PmCommand::Endpoints { token, json } => {
            let endpoints = match token {
                Some(t) => pm.connection_endpoints(*t)?,
                None => pm.endpoints()?,
            };
            print_endpoints(&endpoints, *json)?
        }
        PmCommand::Add(a) => {
            let ifindex = a
                .dev
                .as_deref()
                .map(emptcp_pm::interface_index)
                .transpose()?;
            pm.add_endpoint(&Endpoint {
                id: a.id.unwrap_or(0),
                addr: a.addr,
                port: a.port,
                flags: a.flags,
                ifindex,
            })?;
        }
        PmCommand::Del { id } => pm.delete_endpoint(*id)?,
        PmCommand::Set { id, flags } => pm.set_endpoint_flags(*id, *flags)?,
        PmCommand::Flush => pm.flush_endpoints()?,
        PmCommand::Limits {
            subflows,
            add_addr_accepted,
            json,
        } => {
            if subflows.is_some() || add_addr_accepted.is_some() {
                pm.set_limits(*subflows, *add_addr_accepted)?;
            }
            let limits = pm.limits()?;
            if *json {
                println!("{}", serde_json::to_string(&limits)?);
            } else {
                println!(
                    "add_addr_accepted {} subflows {}",
                    limits.add_addr_accepted, limits.subflows
                );
            }
        }
        PmCommand::Events {
            json,
            count,
            timeout,
        } => {
            let timeout = timeout
                .map(|s| {
                    Duration::try_from_secs_f64(s)
                        .with_context(|| format!("--timeout {s} is not a duration in seconds"))
                })
                .transpose()?;
            return watch_events(&pm, *json, *count, timeout, state.netns.as_deref());
        }
        PmCommand::Announce {
            token,
            id,
            addr,
            port,
        } => pm.announce(*token, *id, *addr, *port)?,
        PmCommand::Remove { token, id } => pm.remove(*token, *id)?,
        PmCommand::Subflow(SubflowCommand::Create {
            token,
            id,
            dev,
            local,
            remote,
        }) => {
            let ifindex = dev.as_deref().map(emptcp_pm::interface_index).transpose()?;
            pm.subflow_create(*token, *id, *local, ifindex, *remote)?;
        }
        PmCommand::Subflow(SubflowCommand::Destroy {
            token,
            local,
            remote,
        }) => pm.subflow_destroy(Subflow {
            token: *token,
            local: *local,
            remote: *remote,
        })?,
        PmCommand::Subflow(SubflowCommand::Backup {
            token,
            clear,
            local,
            remote,
        }) => pm.set_subflow_backup(
            Subflow {
                token: *token,
                local: *local,
                remote: *remote,
            },
            !clear,
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_endpoints(endpoints: &[Endpoint], json: bool) -> Result<()> {
    let dev = |e: &Endpoint| e.ifindex.and_then(emptcp_pm::interface_name);
    if json {
        let rows = endpoints
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e)?;
                if let Some(d) = dev(e) {
                    v["dev"] = d.into();
                }
                Ok(v)
            })
            .collect::<Result<Vec<_>>>()?;
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for e in endpoints {
        // The order of `ip mptcp endpoint show`.
        let mut line = e.addr.to_string();
        if let Some(p) = e.port {
            line += &format!(" port {p}");
        }
        line += &format!(" id {}", e.id);
        for f in e.flags.names() {
            line += &format!(" {f}");
        }
        match (dev(e), e.ifindex) {
            (Some(d), _) => line += &format!(" dev {d}"),
            (None, Some(i)) => line += &format!(" ifindex {i}"),
            (None, None) => {}
        }
        println!("{line}");
    }
    Ok(())
}

fn watch_events(
    pm: &PathManager,
    json: bool,
    count: Option<u64>,
    timeout: Option<Duration>,
    netns: Option<&str>,
) -> Result<ExitCode> {
    let mut events = pm.subscribe()?;
    // Like tcpdump's "listening on": a caller can start traffic once this appears.
    eprintln!(
        "emptcp: listening for path-manager events in {}",
        netns.map_or("the current network namespace".to_owned(), |n| format!(
            "netns {n}"
        ))
    );
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut seen = 0u64;
    let stdout = std::io::stdout();
    while count.is_none_or(|c| seen < c) {
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) => Some(left),
                None => return Ok(ExitCode::from(1)),
            },
            None => None,
        };
        let event = match events.next(wait) {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(ExitCode::from(1)),
            Err(PmError::EventsLost) => {
                tracing::warn!("events were lost (receive buffer overflow); continuing");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut out = stdout.lock();
        let written = if json {
            writeln!(out, "{}", serde_json::to_string(&event)?)
        } else {
            writeln!(out, "{event}")
        };
        // A closed pipe (`| head`) ends the watch quietly.
        if written.and_then(|()| out.flush()).is_err() {
            break;
        }
        seen += 1;
    }
    if let Some(c) = count
        && seen < c
    {
        bail!("stdout closed after {seen} of {c} events");
    }
    Ok(ExitCode::SUCCESS)
}
