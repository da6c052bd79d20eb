//! Commands that read the pinned state: `show`, `stats`, `conns`, `events`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use emptcp::events::{Event, EventReader};
use emptcp::{
    AttachMode, Attachment, Dataplane, EntryCounters, Generation, Hook, OP_REASON_NAMES,
    TrackedConnection,
};
use serde::Serialize;

use crate::check::describe_action;
use crate::state::StateOpts;

pub const SHOW_EXAMPLES: &str = "Examples:\n  \
    emptcp show\n  \
    emptcp show --json | jq '.attachments[].generation'\n\n\
    Exit status: 0 something is attached, 1 nothing is, 2 error.";

/// Arguments of `emptcp show`.
#[derive(Args)]
pub struct ShowArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct ShowOut {
    pin_dir: PathBuf,
    /// What the data plane was created with (`None`: nothing pinned).
    options: Option<emptcp::LoadOptions>,
    /// Kernel ids of the shared maps (flows, counters, conntrack, events).
    maps: std::collections::BTreeMap<&'static str, u32>,
    attachments: Vec<AttachmentOut>,
}

#[derive(Serialize)]
struct AttachmentOut {
    iface: String,
    ifindex: u32,
    netns: u64,
    hook: Hook,
    mode: AttachMode,
    link_id: Option<u32>,
    prog_id: Option<u32>,
    /// Instructions the verifier processed for the running program (its
    /// budget is 1M).
    verified_insns: Option<u32>,
    generation: Option<u32>,
    previous_generation: Option<u32>,
    policy_file: Option<String>,
    selector_stages: Vec<String>,
    policies: Vec<PolicyOut>,
}

#[derive(Serialize)]
struct PolicyOut {
    name: String,
    priority: i32,
    packets: u64,
    actions: Vec<String>,
}

pub fn show(opts: &StateOpts, args: &ShowArgs) -> Result<ExitCode> {
    let _ns = opts.enter_netns()?;
    let Some(dp) = opts.open_existing()? else {
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&ShowOut {
                    pin_dir: opts.pin_dir.clone(),
                    options: None,
                    maps: Default::default(),
                    attachments: Vec::new(),
                })?
            );
        } else {
            println!("nothing pinned in {}", opts.pin_dir.display());
        }
        return Ok(ExitCode::from(1));
    };
    let out = ShowOut {
        pin_dir: opts.pin_dir.clone(),
        options: Some(dp.options()),
        maps: dp.shared_map_ids()?,
        attachments: dp
            .attachments()
            .iter()
            .map(describe_attachment)
            .collect::<Result<_>>()?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("pin directory {}", out.pin_dir.display());
        let o = dp.options();
        println!(
            "quick pass {}, flow accounting {}",
            if o.quick_pass { "on" } else { "off" },
            if o.account_flows { "on" } else { "off" }
        );
        for a in &out.attachments {
            let link = a.link_id.map_or("-".into(), |id| id.to_string());
            let prog = a.prog_id.map_or("-".into(), |id| id.to_string());
            let generation = a.generation.map_or("-".into(), |g| g.to_string());
            let previous = a.previous_generation.map_or("-".into(), |g| g.to_string());
            println!(
                "\n{} {} ({}, netns {}): link {link}, prog {prog}, generation {generation} (previous {previous})",
                a.iface, a.hook, a.mode, a.netns
            );
            if let Some(f) = &a.policy_file {
                println!("  policy file: {f}");
            }
            if !a.selector_stages.is_empty() {
                println!("  selector chain: {}", a.selector_stages.join(" "));
            }
            for p in &a.policies {
                println!(
                    "  {:<24} prio {:>4} {:>12} packets  {}",
                    p.name,
                    p.priority,
                    p.packets,
                    p.actions.join(" -> ")
                );
            }
        }
    }
    Ok(if out.attachments.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn describe_attachment(a: &Attachment) -> Result<AttachmentOut> {
    let g = a.generation();
    let info = g.map(|g| g.program_info()).transpose()?;
    let file = g.and_then(|g| g.source()).map(|s| s.file.clone());
    let (stages, policies) = match g {
        Some(g) => policies_of(g)?,
        None => (Vec::new(), Vec::new()),
    };
    Ok(AttachmentOut {
        iface: a.ifname.clone(),
        ifindex: a.ifindex,
        netns: a.netns,
        hook: a.hook,
        mode: a.mode,
        link_id: a.link_id(),
        prog_id: info.as_ref().map(|i| i.id),
        verified_insns: info.as_ref().map(|i| i.verified_insns),
        generation: g.map(Generation::number),
        previous_generation: a.previous_generation(),
        policy_file: file,
        selector_stages: stages,
        policies,
    })
}

/// The selector stages and policies (with hits) a generation runs, read
/// from its recorded source.
fn policies_of(g: &Generation) -> Result<(Vec<String>, Vec<PolicyOut>)> {
    let Some(src) = g.source() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let file = src.parse()?;
    let hits = g.policy_hits()?;
    let stages = file
        .set
        .selectors
        .stages()
        .iter()
        .enumerate()
        .map(|(i, (kind, combine))| {
            if i == 0 {
                kind.name().to_owned()
            } else {
                format!("{combine:?} {}", kind.name()).to_lowercase()
            }
        })
        .collect();
    let policies = file
        .set
        .policies
        .iter()
        .map(|p| PolicyOut {
            name: p.name.clone(),
            priority: p.priority,
            packets: hits
                .iter()
                .find(|(n, _)| *n == p.name)
                .map_or(0, |(_, h)| *h),
            actions: p.actions.actions().iter().map(describe_action).collect(),
        })
        .collect();
    Ok((stages, policies))
}

pub const STATS_EXAMPLES: &str = "Examples:\n  \
    emptcp stats\n  \
    emptcp stats --watch 1\n  \
    emptcp stats --json | jq '.hooks[\"tc-ingress\"].matched'\n\n\
    Entry counters are per hook (summed over attachments and CPUs); operator counters\n\
    per attachment, policy and operator: hits, then every reason an operator skipped.\n\
    --watch prints the changes every N seconds until interrupted (or --count times).\n\
    Exit status: 0, 1 nothing is attached, 2 error.";

/// Arguments of `emptcp stats`.
#[derive(Args)]
pub struct StatsArgs {
    /// Print as JSON (with --watch: one JSON object per line).
    #[arg(long)]
    pub json: bool,
    /// Print the counters' changes every SECS seconds.
    #[arg(long, value_name = "SECS")]
    pub watch: Option<f64>,
    /// With --watch: stop after N reports.
    #[arg(long, value_name = "N", requires = "watch")]
    pub count: Option<u64>,
}

#[derive(Serialize, Clone, PartialEq)]
struct StatsOut {
    hooks: std::collections::BTreeMap<Hook, EntryCounters>,
    operators: Vec<OperatorOut>,
}

#[derive(Serialize, Clone, PartialEq)]
struct OperatorOut {
    iface: String,
    hook: Hook,
    generation: u32,
    policy: String,
    position: usize,
    operator: String,
    hits: u64,
    skipped: std::collections::BTreeMap<&'static str, u64>,
}

fn stats_of(dp: &Dataplane) -> Result<StatsOut> {
    let mut hooks = std::collections::BTreeMap::new();
    for hook in Hook::ALL {
        hooks.insert(hook, dp.counters(hook)?);
    }
    let mut operators = Vec::new();
    for a in dp.attachments() {
        let Some(g) = a.generation() else { continue };
        let policy = g.policy();
        for (pi, name) in policy.policy_names().iter().enumerate() {
            let Some(chain) = policy.chain_of(pi) else {
                continue;
            };
            let actions = policy.chain_actions(chain);
            for (i, op) in g.op_stats(chain)?.into_iter().enumerate() {
                let skipped = OP_REASON_NAMES
                    .iter()
                    .zip(op.reasons)
                    .filter(|(_, n)| *n > 0)
                    .map(|(r, n)| (*r, n))
                    .collect();
                operators.push(OperatorOut {
                    iface: a.ifname.clone(),
                    hook: a.hook,
                    generation: g.number(),
                    policy: name.clone(),
                    position: i,
                    operator: actions.get(i).map(describe_action).unwrap_or_default(),
                    hits: op.hits,
                    skipped,
                });
            }
        }
    }
    Ok(StatsOut { hooks, operators })
}

/// `now - before`, counter by counter (a counter that went down, after a
/// new generation, shows its new value).
fn delta(now: &StatsOut, before: &StatsOut) -> StatsOut {
    let mut out = now.clone();
    for (hook, counters) in &mut out.hooks {
        if let Some(b) = before.hooks.get(hook) {
            for (name, v) in counters.0.iter_mut() {
                *v = v.saturating_sub(b.get(name));
            }
        }
    }
    for op in &mut out.operators {
        let same = |b: &&OperatorOut| {
            (&b.iface, b.hook, b.generation, &b.policy, b.position)
                == (&op.iface, op.hook, op.generation, &op.policy, op.position)
        };
        if let Some(b) = before.operators.iter().find(same) {
            op.hits = op.hits.saturating_sub(b.hits);
            for (r, v) in op.skipped.iter_mut() {
                *v = v.saturating_sub(b.skipped.get(r).copied().unwrap_or(0));
            }
        }
    }
    out
}

pub fn stats(opts: &StateOpts, args: &StatsArgs) -> Result<ExitCode> {
    let _ns = opts.enter_netns()?;
    let Some(dp) = opts.open_existing()? else {
        println!("nothing pinned in {}", opts.pin_dir.display());
        return Ok(ExitCode::from(1));
    };
    let Some(secs) = args.watch else {
        let s = stats_of(&dp)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&s)?);
        } else {
            print_stats(&s, None);
        }
        return Ok(ExitCode::SUCCESS);
    };
    if !(secs.is_finite() && secs > 0.0) {
        anyhow::bail!("--watch needs a positive number of seconds, not {secs}");
    }
    let interval = Duration::from_secs_f64(secs);
    let mut before = stats_of(&dp)?;
    let mut reports = 0u64;
    while args.count.is_none_or(|n| reports < n) {
        std::thread::sleep(interval);
        let now = stats_of(&dp)?;
        let d = delta(&now, &before);
        if args.json {
            println!("{}", serde_json::to_string(&d)?);
        } else {
            print_stats(&d, Some(interval));
        }
        std::io::stdout().flush()?;
        before = now;
        reports += 1;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_stats(s: &StatsOut, interval: Option<Duration>) {
    if let Some(i) = interval {
        println!("--- last {:.1} s", i.as_secs_f64());
    }
    for (hook, c) in &s.hooks {
        if c.get("seen") == 0 && interval.is_none() {
            continue;
        }
        let nonzero: Vec<String> =
            c.0.iter()
                .filter(|(_, v)| **v > 0)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
        println!("{hook}: {}", nonzero.join(" "));
    }
    if !s.operators.is_empty() {
        println!(
            "\n{:<10} {:<11} {:>4} {:<22} {:<3} {:<18} {:>10}  skipped",
            "iface", "hook", "gen", "policy", "#", "operator", "hits"
        );
        for o in &s.operators {
            let skipped: Vec<String> = o.skipped.iter().map(|(r, n)| format!("{r}={n}")).collect();
            println!(
                "{:<10} {:<11} {:>4} {:<22} {:<3} {:<18} {:>10}  {}",
                o.iface,
                o.hook.name(),
                o.generation,
                o.policy,
                o.position,
                o.operator,
                o.hits,
                skipped.join(" ")
            );
        }
    }
}

pub const CONNS_EXAMPLES: &str = "Examples:\n  \
    emptcp conns\n  \
    emptcp conns --json\n\n\
    What connection tracking learned from the handshakes the data plane saw: MPTCP\n\
    connections by their listener's token, with their subflows in SYN order.\n\
    Exit status: 0 some connection is tracked, 1 none is, 2 error.";

/// Arguments of `emptcp conns`.
#[derive(Args)]
pub struct ConnsArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn conns(opts: &StateOpts, args: &ConnsArgs) -> Result<ExitCode> {
    let _ns = opts.enter_netns()?;
    let conns: Vec<TrackedConnection> = match opts.open_existing()? {
        Some(dp) => dp.connections()?,
        None => Vec::new(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&conns)?);
    } else {
        for c in &conns {
            let initiator = c
                .token_initiator
                .map_or("-".into(), |t| format!("{t:#010x}"));
            println!(
                "connection {:#010x} (initiator token {initiator}), {} subflows seen",
                c.token_listener, c.subflows_seen
            );
            for sf in &c.subflows {
                let index = sf.index.map_or("?".into(), |i| i.to_string());
                let kind = if sf.join { "join" } else { "initial" };
                let backup = if sf.backup { " backup" } else { "" };
                println!(
                    "  #{index} {} -> {} ({kind}{backup}, address id {})",
                    sf.initiator, sf.responder, sf.address_id
                );
            }
        }
    }
    Ok(if conns.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub const EVENTS_EXAMPLES: &str = "Examples:\n  \
    emptcp events\n  \
    emptcp events --count 4 --timeout 10 > events.jsonl\n\n\
    One JSON object per line per event (get_connect, get_subflow actors), as they come,\n\
    until interrupted, --count events or --timeout seconds. Events lost in the kernel's\n\
    ring buffer are counted (stats: events_lost).\n\
    Exit status: 0 at least one event, 1 none before the timeout, 2 error.";

/// Arguments of `emptcp events`.
#[derive(Args)]
pub struct EventsArgs {
    /// Stop after N events.
    #[arg(long, value_name = "N")]
    pub count: Option<usize>,
    /// Stop after SECS seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

pub fn events(opts: &StateOpts, args: &EventsArgs) -> Result<ExitCode> {
    let _ns = opts.enter_netns()?;
    let dp = opts.open()?;
    let map = dp.events_map()?;
    let mut reader = EventReader::new(&map)?;
    let deadline = args
        .timeout
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let mut seen = 0usize;
    let mut stdout = std::io::stdout().lock();
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) || args.count.is_some_and(|n| seen >= n) {
            break;
        }
        let wait = left.map_or(Duration::from_millis(200), |l| {
            l.min(Duration::from_millis(200))
        });
        for ev in reader.poll(wait)? {
            if args.count.is_some_and(|n| seen >= n) {
                break;
            }
            print_event(&mut stdout, &ev)?;
            seen += 1;
        }
    }
    if reader.undecodable() > 0 {
        eprintln!(
            "emptcp: {} records of another event schema skipped",
            reader.undecodable()
        );
    }
    Ok(if seen > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_event(out: &mut impl std::io::Write, ev: &Event) -> Result<()> {
    writeln!(out, "{}", serde_json::to_string(ev)?)?;
    out.flush()?;
    Ok(())
}
