//! Commands that change the pinned state: `attach`, `detach`, `apply`,
//! `rollback`. Each opens the pinned data plane (adopting what earlier
//! processes left), changes it, and exits; the kernel and bpffs keep the rest.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use emptcp::netns::{self, NetnsGuard};
use emptcp::pins::{DEFAULT_PIN_DIR, PolicySource};
use emptcp::policy::Policy;
use emptcp::policy_file::{self, PolicyFile};
use emptcp::{AttachMode, Dataplane, Hook, LoadOptions};
use serde::Serialize;

use crate::check::describe_action;

/// Options every state command shares (global on the command line).
#[derive(Args, Clone)]
pub struct StateOpts {
    /// The bpffs directory holding emptcp's pinned state.
    #[arg(long, global = true, env = "EMPTCP_PIN_DIR", default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    /// Run in network namespace NAME (/run/netns/NAME), as `ip netns exec`
    /// would, but keeping /sys/fs/bpf visible.
    #[arg(long, global = true, value_name = "NAME")]
    pub netns: Option<String>,
}

impl StateOpts {
    /// Enters the namespace asked for (held while the guard lives).
    pub fn enter_netns(&self) -> Result<Option<NetnsGuard>> {
        self.netns
            .as_deref()
            .map(|n| NetnsGuard::named(n).with_context(|| format!("entering netns {n}")))
            .transpose()
    }

    pub fn netns_path(&self) -> Option<PathBuf> {
        self.netns.as_deref().map(netns::named_path)
    }

    /// Opens the pinned data plane (creating the directory if needed).
    pub fn open(&self) -> Result<Dataplane> {
        self.open_with(&LoadOptions::default())
    }

    /// The same, creating a missing data plane with `options`.
    pub fn open_with(&self, options: &LoadOptions) -> Result<Dataplane> {
        Dataplane::open_pinned(&self.pin_dir, options).with_context(|| {
            format!(
                "opening the pinned data plane in {}",
                self.pin_dir.display()
            )
        })
    }

    /// Opens it only if something is pinned; `None` otherwise, so read-only
    /// commands create nothing.
    pub fn open_existing(&self) -> Result<Option<Dataplane>> {
        if !self.pin_dir.join("maps").exists() {
            return Ok(None);
        }
        self.open().map(Some)
    }
}

/// An interface and hook of this namespace.
#[derive(Args, Clone)]
pub struct Target {
    /// The interface (in this namespace, or in --netns).
    pub iface: String,
    /// The hook: xdp, tc-ingress, tc-egress.
    #[arg(long)]
    pub hook: Hook,
}

pub const ATTACH_EXAMPLES: &str = "Examples:\n  \
    emptcp attach eth0 --hook tc-ingress\n  \
    emptcp attach eth0 --hook tc-egress --tc-mode clsact\n  \
    emptcp --netns router attach r2 --hook xdp --mode xdp-generic\n\n\
    The program starts with no policies (every packet passes); `emptcp apply` gives it\n\
    some. It stays attached after emptcp exits, pinned under --pin-dir. An XDP attach\n\
    onto a device that already runs another XDP program is refused.\n\
    Exit status: 0 attached, 2 error.";

/// Arguments of `emptcp attach`.
#[derive(Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub target: Target,
    /// tcx or clsact for TC hooks (default: tcx where the kernel has it,
    /// Linux >= 6.6); xdp, xdp-native or xdp-generic for XDP (default: xdp,
    /// the driver's best mode).
    #[arg(long, alias = "tc-mode")]
    pub mode: Option<AttachMode>,
    /// Walk every TCP packet's options, also those of flows no policy
    /// selects (no quick pass: docs/engine.md). A setting of the data plane:
    /// it takes effect when this attach creates it (the first one), and is
    /// refused if the pinned data plane runs the other way.
    #[arg(long)]
    pub no_quick_pass: bool,
    /// Print the attachment as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct AttachOut<'a> {
    iface: &'a str,
    ifindex: u32,
    hook: Hook,
    mode: AttachMode,
    link_id: Option<u32>,
    prog_id: u32,
    pin_dir: Option<&'a Path>,
}

pub fn attach(opts: &StateOpts, args: &AttachArgs) -> Result<ExitCode> {
    let _ns = opts.enter_netns()?;
    let ifindex = netns::interface_index(&args.target.iface)?;
    let hook = args.target.hook;
    let mode = args.mode.unwrap_or_else(|| AttachMode::default_for(hook));
    if !mode.serves(hook) {
        bail!("attach mode {mode} cannot serve hook {hook}");
    }
    let mut dp = opts.open_with(&LoadOptions {
        quick_pass: !args.no_quick_pass,
        ..LoadOptions::default()
    })?;
    if args.no_quick_pass && dp.options().quick_pass {
        bail!(
            "the data plane pinned in {} runs with the quick pass; `emptcp detach --all` first to \
             change that",
            opts.pin_dir.display()
        );
    }
    let prog_id = dp.program_info(hook)?.id;
    if let Err(e) = dp.attach_with(hook, ifindex, mode, opts.netns_path().as_deref()) {
        // A pin directory this call made for nothing goes again.
        if dp.attachments().is_empty() {
            dp.detach_all()?;
        }
        return Err(
            anyhow::Error::new(e).context(format!("attaching at {hook} on {}", args.target.iface))
        );
    }
    let att = dp.attachment(hook, ifindex).expect("just attached");
    let out = AttachOut {
        iface: &args.target.iface,
        ifindex,
        hook,
        mode,
        link_id: att.link_id(),
        prog_id,
        pin_dir: att.pin_dir(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let link = out
            .link_id
            .map_or(String::new(), |id| format!(", link id {id}"));
        println!(
            "attached {} ({mode}) at {hook} on {}{link}: no policies yet (emptcp apply)",
            hook.program_name(),
            out.iface
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub const DETACH_EXAMPLES: &str = "Examples:\n  \
    emptcp detach eth0 --hook tc-ingress\n  \
    emptcp detach --all\n\n\
    --all detaches every emptcp attachment in every namespace and removes the pin\n\
    directory: everything emptcp created, nothing else.\n\
    Exit status: 0 detached, 1 nothing was attached there, 2 error.";

/// Arguments of `emptcp detach`.
#[derive(Args)]
pub struct DetachArgs {
    /// The interface (omit with --all).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub iface: Option<String>,
    /// The hook (omit with --all).
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    pub hook: Option<Hook>,
    /// Everything emptcp attached, in every namespace, and its pins.
    #[arg(long)]
    pub all: bool,
}

pub fn detach(opts: &StateOpts, args: &DetachArgs) -> Result<ExitCode> {
    let _ns = opts.enter_netns()?;
    if !opts.pin_dir.join("maps").exists() {
        println!("nothing pinned in {}", opts.pin_dir.display());
        return Ok(ExitCode::from(1));
    }
    if args.all {
        // Whatever emptcp version pinned it: --all is also the way out of
        // a pin directory an older emptcp left.
        let dp = Dataplane::open_pinned_to_detach(&opts.pin_dir).with_context(|| {
            format!(
                "opening the pinned data plane in {}",
                opts.pin_dir.display()
            )
        })?;
        let done = dp.detach_all()?;
        for what in &done {
            println!("detached {what}");
        }
        println!("removed {}", opts.pin_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(iface), Some(hook)) = (&args.iface, args.hook) else {
        bail!("give an interface and --hook, or --all");
    };
    let mut dp = opts.open()?;
    let ifindex = netns::interface_index(iface)?;
    if dp.detach(hook, ifindex)? {
        println!("detached {hook} from {iface}");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("emptcp is not attached at {hook} on {iface}");
        Ok(ExitCode::from(1))
    }
}

pub const APPLY_EXAMPLES: &str = "Examples:\n  \
    emptcp apply -f examples/policies/set_backup.toml eth0\n  \
    emptcp apply -f policy.toml eth0 --hook tc-egress --dry-run\n\n\
    Everything is checked before the kernel is touched; then the whole file becomes one\n\
    generation, published with one atomic link update. `emptcp rollback` returns to the\n\
    generation it replaced.\n\
    Exit status: 0 applied (dry run: changes found), 1 dry run found no change, 2 error.";

/// Arguments of `emptcp apply`.
#[derive(Args)]
pub struct ApplyArgs {
    /// The policy file (TOML; docs/policy-files.md).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// The interface whose attachment runs it.
    pub iface: String,
    /// The hook (default: the file's `hook`).
    #[arg(long)]
    pub hook: Option<Hook>,
    /// Print what would change against the running generation; change
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How a policy differs between the running generation and the file.
#[derive(Serialize, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Added,
    Removed,
    Changed,
    Unchanged,
}

#[derive(Serialize)]
struct PolicyChange {
    policy: String,
    change: Change,
    actions: Vec<String>,
}

#[derive(Serialize)]
struct ApplyOut {
    iface: String,
    hook: Hook,
    dry_run: bool,
    from_generation: Option<u32>,
    generation: Option<u32>,
    selectors_changed: bool,
    policies: Vec<PolicyChange>,
}

pub fn apply(opts: &StateOpts, args: &ApplyArgs) -> Result<ExitCode> {
    let _ns = opts.enter_netns()?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let file_name = args.file.display().to_string();
    let resolver = RecordingResolver::default();
    let file = policy_file::parse(&file_name, &text, &|n| resolver.resolve(n))?;
    let hook = file.resolve_hook(args.hook)?;
    let compiled = file.compile(Some(hook))?;
    let base = args.file.parent().unwrap_or(Path::new("."));
    let plugins = file.plugin_specs(base)?;

    let ifindex = netns::interface_index(&args.iface)?;
    let not_attached = || {
        anyhow::anyhow!(
            "emptcp is not attached at {hook} on {}: run `emptcp attach {} --hook {hook}` first",
            args.iface,
            args.iface
        )
    };
    let mut dp = opts.open_existing()?.ok_or_else(not_attached)?;
    let att = dp.attachment(hook, ifindex).ok_or_else(not_attached)?;
    let running = att.generation();
    let from_generation = running.map(|g| g.number());
    let old = running
        .and_then(|g| g.source())
        .map(PolicySource::parse)
        .transpose()?;
    let (selectors_changed, policies) = diff(old.as_ref(), &file);
    let mut out = ApplyOut {
        iface: args.iface.clone(),
        hook,
        dry_run: args.dry_run,
        from_generation,
        generation: None,
        selectors_changed,
        policies,
    };
    let changed =
        out.selectors_changed || out.policies.iter().any(|p| p.change != Change::Unchanged);
    if !args.dry_run {
        let plugin_refs: Vec<_> = plugins.iter().collect();
        let mut generation = dp.load_generation(&compiled, &plugin_refs)?;
        generation.set_source(PolicySource {
            file: file_name,
            text,
            interfaces: resolver.resolved.take(),
        });
        out.generation = Some(generation.number());
        dp.apply(ifindex, generation)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_apply(&out);
    }
    Ok(if args.dry_run && !changed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_apply(out: &ApplyOut) {
    let from = out
        .from_generation
        .map_or("generation 0 (no policies)".to_owned(), |n| {
            format!("generation {n}")
        });
    match out.generation {
        Some(n) => println!("{} on {}: {from} -> generation {n}", out.hook, out.iface),
        None => println!(
            "{} on {}: dry run against {from} (nothing applied)",
            out.hook, out.iface
        ),
    }
    if out.selectors_changed {
        println!("  ~ selector chain");
    }
    for p in &out.policies {
        let mark = match p.change {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Changed => '~',
            Change::Unchanged => ' ',
        };
        println!("  {mark} {:<24} {}", p.policy, p.actions.join(" -> "));
    }
}

/// Policies by name: added, removed, changed (selector values, priority or
/// actions), unchanged; in the new file's order, removed ones last.
fn diff(old: Option<&PolicyFile>, new: &PolicyFile) -> (bool, Vec<PolicyChange>) {
    let none = Vec::new();
    let old_policies: &Vec<Policy> = old.map_or(&none, |f| &f.set.policies);
    let selectors_changed = old.is_some_and(|o| o.set.selectors != new.set.selectors);
    let row = |p: &Policy, change| PolicyChange {
        policy: p.name.clone(),
        change,
        actions: p.actions.actions().iter().map(describe_action).collect(),
    };
    let mut out: Vec<PolicyChange> = new
        .set
        .policies
        .iter()
        .map(|p| match old_policies.iter().find(|o| o.name == p.name) {
            None => row(p, Change::Added),
            Some(o) if o == p => row(p, Change::Unchanged),
            Some(_) => row(p, Change::Changed),
        })
        .collect();
    out.extend(
        old_policies
            .iter()
            .filter(|o| !new.set.policies.iter().any(|p| p.name == o.name))
            .map(|o| row(o, Change::Removed)),
    );
    (selectors_changed, out)
}

/// Resolves interface names in this namespace and remembers them, so that
/// a later process compiles the file to the same rules.
#[derive(Default)]
struct RecordingResolver {
    resolved: RefCell<BTreeMap<String, u32>>,
}

impl RecordingResolver {
    fn resolve(&self, name: &str) -> Result<u32, String> {
        let index = netns::interface_index(name).map_err(|e| e.to_string())?;
        self.resolved.borrow_mut().insert(name.to_owned(), index);
        Ok(index)
    }
}

pub const ROLLBACK_EXAMPLES: &str = "Examples:\n  \
    emptcp rollback eth0 --hook tc-ingress\n\n\
    Puts back the generation the last apply replaced (one atomic link update); a second\n\
    rollback undoes the first.\n\
    Exit status: 0 rolled back, 2 error (nothing to roll back to).";

/// Arguments of `emptcp rollback`.
#[derive(Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub target: Target,
}

pub fn rollback(opts: &StateOpts, args: &RollbackArgs) -> Result<ExitCode> {
    let _ns = opts.enter_netns()?;
    let ifindex = netns::interface_index(&args.target.iface)?;
    let Some(mut dp) = opts.open_existing()? else {
        bail!(
            "no {} attachment on {}: nothing is pinned in {}",
            args.target.hook,
            args.target.iface,
            opts.pin_dir.display()
        );
    };
    let now = dp.rollback(args.target.hook, ifindex)?;
    println!(
        "{} on {}: back to generation {now}",
        args.target.hook, args.target.iface
    );
    Ok(ExitCode::SUCCESS)
}
