//! `emptcp check`: validate and compile a policy file, touching no kernel.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use emptcp::Hook;
use emptcp::policy_file::{self, PolicyFile};
use serde::Serialize;

pub const EXAMPLES: &str = "Examples:\n  \
    emptcp check -f examples/policies/multi_tenant.toml\n  \
    emptcp check -f policy.toml --hook xdp --json\n\n\
    Exit status: 0 valid, 2 invalid (the error names file, line and field).";

/// Arguments of `emptcp check`.
#[derive(Args)]
pub struct CheckArgs {
    /// The policy file (TOML; docs/policy-files.md).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Compile for this hook (xdp, tc-ingress, tc-egress); needed when the
    /// file has no `hook`, and must agree with it when it has one.
    #[arg(long)]
    pub hook: Option<Hook>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `check` reports.
#[derive(Serialize)]
struct Summary {
    file: String,
    hook: Hook,
    policies: usize,
    rules: usize,
    shapes: usize,
    chains: usize,
    plugins: Vec<String>,
    /// Interface names `redirect` uses that do not exist here (resolved when
    /// the file is applied where they do).
    unresolved_interfaces: Vec<String>,
    policy: Vec<PolicyRow>,
}

#[derive(Serialize)]
struct PolicyRow {
    name: String,
    line: Option<usize>,
    priority: i32,
    stages: usize,
    actions: Vec<String>,
}

/// Resolves interface names in the current network namespace; names not
/// found are recorded and stand for ifindex 0, so that a file written for
/// another host still checks.
pub struct LenientResolver {
    pub missing: RefCell<Vec<String>>,
}

impl LenientResolver {
    pub fn new() -> Self {
        LenientResolver {
            missing: RefCell::new(Vec::new()),
        }
    }

    pub fn resolve(&self, name: &str) -> Result<u32, String> {
        match ifindex(name) {
            Some(i) => Ok(i),
            None => {
                let mut m = self.missing.borrow_mut();
                if !m.iter().any(|n| n == name) {
                    m.push(name.to_owned());
                }
                Ok(0)
            }
        }
    }
}

/// The ifindex of interface `name` in this network namespace.
fn ifindex(name: &str) -> Option<u32> {
    emptcp::netns::interface_index(name).ok()
}

/// Parses the file with a lenient resolver; returns it with the names it
/// could not resolve here.
pub fn load(path: &Path) -> Result<(PolicyFile, Vec<String>)> {
    let resolver = LenientResolver::new();
    let file = policy_file::load(path, &|n| resolver.resolve(n))?;
    let missing = resolver.missing.take();
    Ok((file, missing))
}

pub fn run(args: &CheckArgs) -> Result<ExitCode> {
    let (file, unresolved) = load(&args.file)?;
    let hook = file.resolve_hook(args.hook)?;
    let compiled = file.compile(Some(hook))?;
    let policy = file
        .set
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| PolicyRow {
            name: p.name.clone(),
            line: file.policy_line(i),
            priority: p.priority,
            stages: p.values().len(),
            actions: p.actions.actions().iter().map(describe_action).collect(),
        })
        .collect();
    let summary = Summary {
        file: args.file.display().to_string(),
        hook,
        policies: file.set.policies.len(),
        rules: compiled.rule_count(),
        shapes: compiled.shape_count(),
        chains: compiled.chain_count(),
        plugins: file.plugins.iter().map(|p| p.name.clone()).collect(),
        unresolved_interfaces: unresolved,
        policy,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

fn print(s: &Summary) {
    println!(
        "{}: valid for {}: {} policies, {} rules, {} shapes, {} action chains",
        s.file, s.hook, s.policies, s.rules, s.shapes, s.chains
    );
    if !s.policy.is_empty() {
        println!();
        println!("{:<24} {:>5} {:>8}  actions", "policy", "line", "priority");
        for p in &s.policy {
            let line = p.line.map_or("-".to_owned(), |l| l.to_string());
            let actions = if p.actions.is_empty() {
                "(none)".to_owned()
            } else {
                p.actions.join(" -> ")
            };
            println!("{:<24} {:>5} {:>8}  {actions}", p.name, line, p.priority);
        }
    }
    if !s.plugins.is_empty() {
        println!("plugins (by slot): {}", s.plugins.join(", "));
    }
    for name in &s.unresolved_interfaces {
        println!("note: no interface '{name}' here; it is resolved where the file is applied");
    }
}

/// An actor as the policy file writes it.
pub fn describe_action(a: &emptcp::policy::Action) -> String {
    use emptcp::policy::Action;
    match a {
        Action::SetMark(m) => format!("set_mark({m})"),
        Action::RateLimit { window_bytes } => format!("rate_limit({window_bytes})"),
        Action::RateLimitRate { bits_per_second } => {
            format!("rate_limit({bits_per_second} bit/s)")
        }
        Action::SetBackup { backup, packets } => format!("set_backup({backup}, {packets} packets)"),
        Action::Redirect { ifindex } => format!("redirect({ifindex})"),
        Action::Plugin(s) => format!("plugin({s})"),
        other => other.name().to_owned(),
    }
}
