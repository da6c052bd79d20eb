//! A policy set written back as a policy file: what [`super::parse`] reads
//! into the same set. Stages are named by index in `select`, so the file
//! means the same whatever names the original used.

use std::fmt::Write as _;

use crate::Hook;
use crate::policy::{Action, Combine, PolicySet, Selector, Stream, limits};

/// The TOML policy file of `set` (with `hook = ...` when given).
///
/// ```
/// use emptcp::policy::{Action, ActionChain, Combine, Policy, PolicySet, Selector, SelectorChain, SelectorKind};
/// use emptcp::policy_file;
///
/// let mut sc = SelectorChain::new();
/// sc.add(SelectorKind::Src, Combine::And);
/// let mut ac = ActionChain::new();
/// ac.add(Action::Count);
/// let mut p = Policy::new("path2", ac);
/// p.select(0, Selector::Src("10.77.2.0/24".parse()?));
/// let set = PolicySet { selectors: sc, policies: vec![p] };
///
/// let text = policy_file::render(&set, None);
/// let back = policy_file::parse("rendered.toml", &text, &policy_file::no_interfaces)?;
/// assert_eq!(back.set, set);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn render(set: &PolicySet, hook: Option<Hook>) -> String {
    let mut out = String::new();
    if let Some(hook) = hook {
        writeln!(out, "hook = \"{hook}\"").unwrap();
    }
    for (i, (kind, combine)) in set.selectors.stages().iter().enumerate() {
        writeln!(out, "\n[[selector]]\nkind = \"{}\"", kind.name()).unwrap();
        if i > 0 && *combine == Combine::Or {
            out.push_str("combine = \"or\"\n");
        }
    }
    for p in &set.policies {
        writeln!(out, "\n[[policy]]\nname = {}", quote(&p.name)).unwrap();
        if p.priority != 0 {
            writeln!(out, "priority = {}", p.priority).unwrap();
        }
        if !p.values().is_empty() {
            let values: Vec<String> = p
                .values()
                .iter()
                .map(|(stage, v)| format!("{stage} = {}", selector_value(v)))
                .collect();
            writeln!(out, "select = {{ {} }}", values.join(", ")).unwrap();
        }
        let actions: Vec<String> = p.actions.actions().iter().map(|a| action(*a)).collect();
        writeln!(out, "actions = [{}]", actions.join(", ")).unwrap();
    }
    out
}

fn selector_value(v: &Selector) -> String {
    let opt = |k: &str, v: Option<String>| v.map(|v| format!("{k} = {v}"));
    let table = |fields: Vec<Option<String>>| {
        let f: Vec<String> = fields.into_iter().flatten().collect();
        format!("{{ {} }}", f.join(", "))
    };
    match v {
        Selector::Src(p) | Selector::Dst(p) => quote(&p.to_string()),
        Selector::IpPair { local, remote } => table(vec![
            Some(format!("local = {}", quote(&local.to_string()))),
            Some(format!("remote = {}", quote(&remote.to_string()))),
        ]),
        Selector::Subflow { local, remote } => table(vec![
            Some(format!("local = {}", quote(&local.to_string()))),
            Some(format!("remote = {}", quote(&remote.to_string()))),
        ]),
        Selector::Port { local, remote } => table(vec![
            opt("local", local.map(|p| p.to_string())),
            opt("remote", remote.map(|p| p.to_string())),
        ]),
        Selector::PacketType(types) => {
            let names: Vec<String> = types.iter().map(|t| quote(t.name())).collect();
            format!("[{}]", names.join(", "))
        }
        Selector::Sequence { stream, start, end } => table(vec![
            Some(format!(
                "stream = \"{}\"",
                match stream {
                    Stream::Subflow => "subflow",
                    Stream::Data => "data",
                }
            )),
            Some(format!("start = {start}")),
            opt("end", (*end != u64::MAX).then(|| end.to_string())),
        ]),
        Selector::Connection {
            token,
            subflow_index,
        } => table(vec![
            opt("token", token.map(|t| t.to_string())),
            opt("subflow_index", subflow_index.map(|i| i.to_string())),
        ]),
    }
}

fn action(a: Action) -> String {
    match a {
        Action::SetMark(m) => format!("{{ set_mark = {m} }}"),
        Action::RateLimit { window_bytes } => format!("{{ rate_limit = {window_bytes} }}"),
        Action::Redirect { ifindex } => format!("{{ redirect = {ifindex} }}"),
        Action::BlkSubflow { refuse_joins: true } => "{ blk_subflow = \"refuse_joins\" }".into(),
        Action::RateLimitRate { bits_per_second } => {
            format!("{{ rate_limit = \"{}\" }}", rate(bits_per_second))
        }
        Action::SetBackup { backup, packets } if packets == limits::SET_BACKUP_PACKETS_DEFAULT => {
            format!("{{ set_backup = {backup} }}")
        }
        Action::SetBackup { backup, packets } => {
            format!("{{ set_backup = {{ backup = {backup}, packets = {packets} }} }}")
        }
        Action::Plugin(slot) => format!("{{ plugin = {slot} }}"),
        other => quote(other.name()),
    }
}

/// A rate in bit/s as the file writes it: the largest decimal unit that
/// divides it.
fn rate(bits_per_second: u64) -> String {
    [(1_000_000_000, "G"), (1_000_000, "M"), (1_000, "K")]
        .into_iter()
        .find(|(unit, _)| bits_per_second.is_multiple_of(*unit))
        .map_or(format!("{bits_per_second}bit"), |(unit, prefix)| {
            format!("{}{prefix}bit", bits_per_second / unit)
        })
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => write!(out, "\\u{:04X}", u32::from(c)).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
