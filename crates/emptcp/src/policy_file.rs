//! Policy files: a TOML form of a [`PolicySet`] (docs/policy-files.md has
//! the format).
//!
//! Parsing is pure: it reads no file but the policy file itself (and not even
//! that with [`parse`]), and it asks a caller-supplied resolver for the
//! interface names `redirect` uses. Every error names the file, the line
//! (1-based) and the field, e.g.
//! `policy.toml:12: field 'policy[1].actions[2].rate_limit': expected a size such as 64KiB, got "fast"`.
//!
//! ```
//! use emptcp::policy_file::{self, PolicyFile};
//! use emptcp::Hook;
//!
//! let text = r#"
//! hook = "tc-ingress"
//! [[selector]]
//! kind = "src"
//! [[policy]]
//! name = "path2"
//! select = { src = "10.77.2.0/24" }
//! actions = ["count", { set_mark = 2 }]
//! "#;
//! let file = policy_file::parse("policy.toml", text, &policy_file::no_interfaces)?;
//! assert_eq!(file.set.policies.len(), 1);
//! let compiled = file.compile(None)?;
//! assert_eq!(compiled.hook(), Hook::TcIngress);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The parser walks `toml::de::DeTable`, the TOML document with the span of
//! every key and value, rather than deriving serde `Deserialize`: serde's
//! errors carry a position but not the field, and the format's values depend
//! on the stage they are for.

mod render;
pub use render::render;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::Hook;
use crate::plugin::PluginSpec;
use crate::policy::{
    Action, ActionChain, Combine, CompiledPolicy, PacketType, Policy, PolicyError, PolicySet,
    Prefix, Selector, SelectorChain, SelectorKind, Stream, limits,
};

/// A policy file's error: file, line, field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file as the caller named it.
    pub file: String,
    /// 1-based line, when the error has a place in the file.
    pub line: Option<usize>,
    /// The field concerned (`policy[1].actions[2]`), if one.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.field {
            write!(f, "field '{field}': ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for FileError {}

/// A plugin the file declares: `[[plugin]]` entries, in slot order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginDecl {
    /// The name actions use (`{ plugin = "name" }`).
    pub name: String,
    /// Its slot (the declaration's position).
    pub slot: u8,
    /// The compiled BPF object, as written (relative paths are relative to
    /// the policy file: [`PolicyFile::plugin_specs`]).
    pub object: PathBuf,
    /// The plugin program in the object.
    pub program: String,
    /// The plugin's `.rodata` bytes, if given.
    pub rodata: Option<Vec<u8>>,
}

/// Where the parts of a policy sit in the file, for errors found later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PolicyLines {
    /// Line of the policy (its `name`).
    line: usize,
    /// Line of each stage value, by stage index, with the key used.
    stages: HashMap<usize, (usize, String)>,
    /// Line of each actor.
    actions: Vec<usize>,
}

/// A parsed policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFile {
    /// The file as the caller named it (for errors).
    pub file: String,
    /// The hook the file says it is for (`hook = ...`), if it says.
    pub hook: Option<Hook>,
    /// The policy set.
    pub set: PolicySet,
    /// The plugins it declares, in slot order.
    pub plugins: Vec<PluginDecl>,
    hook_line: usize,
    lines: Vec<PolicyLines>,
}

/// A resolver that knows no interface: `redirect` then takes only numbers.
pub fn no_interfaces(name: &str) -> Result<u32, String> {
    Err(format!(
        "cannot resolve interface '{name}' here: give its ifindex"
    ))
}

/// Reads and parses the policy file at `path` (errors name it as given).
pub fn load(
    path: &Path,
    resolve: &dyn Fn(&str) -> Result<u32, String>,
) -> Result<PolicyFile, FileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        file: file.clone(),
        line: None,
        field: None,
        message: format!("cannot read it: {e}"),
    })?;
    parse(&file, &text, resolve)
}

/// Parses policy-file `text`; `file` names it in errors, `resolve` turns an
/// interface name into an ifindex (or says why not).
pub fn parse(
    file: &str,
    text: &str,
    resolve: &dyn Fn(&str) -> Result<u32, String>,
) -> Result<PolicyFile, FileError> {
    let p = Parser {
        file,
        text,
        resolve,
    };
    let doc = DeTable::parse(text).map_err(|e| {
        let line = e.span().map(|s| p.line(s.start));
        FileError {
            file: file.to_owned(),
            line,
            field: None,
            message: format!("bad TOML: {}", e.message().trim_end()),
        }
    })?;
    p.document(doc.get_ref())
}

impl PolicyFile {
    /// Compiles the set for `hook`, or for the file's hook when `None`. The
    /// two must agree when both are given. Errors point at the line of what
    /// they concern.
    pub fn compile(&self, hook: Option<Hook>) -> Result<CompiledPolicy, FileError> {
        let hook = self.resolve_hook(hook)?;
        // Actors first, one at a time, so an actor the hook refuses is named
        // by its own line.
        for (pi, p) in self.set.policies.iter().enumerate() {
            for (ai, a) in p.actions.actions().iter().enumerate() {
                if let Err(e) = actor_at(*a, hook) {
                    return Err(self.error(
                        self.lines[pi].actions.get(ai).copied(),
                        Some(format!("policy[{pi}].actions[{ai}]")),
                        e.message,
                    ));
                }
            }
        }
        self.set.compile(hook).map_err(|e| self.map_error(e))
    }

    /// The hook `compile` would use.
    pub fn resolve_hook(&self, hook: Option<Hook>) -> Result<Hook, FileError> {
        match (self.hook, hook) {
            (Some(f), Some(h)) if f != h => Err(self.error(
                Some(self.hook_line),
                Some("hook".into()),
                format!("the file is for {f}, but {h} was asked for"),
            )),
            (_, Some(h)) | (Some(h), None) => Ok(h),
            (None, None) => Err(self.error(
                None,
                None,
                "no hook: add hook = \"tc-ingress\" (or xdp, tc-egress) to the file, or give one"
                    .to_owned(),
            )),
        }
    }

    /// Reads the declared plugins' objects (relative to `base`, normally the
    /// policy file's directory) into specs for `Dataplane::load_generation`,
    /// in slot order.
    pub fn plugin_specs(&self, base: &Path) -> Result<Vec<PluginSpec>, FileError> {
        self.plugins
            .iter()
            .map(|d| {
                let path = base.join(&d.object);
                let bytes = std::fs::read(&path).map_err(|e| {
                    self.error(
                        None,
                        Some(format!("plugin[{}].object", d.slot)),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let spec = PluginSpec::new(&d.name, &bytes, &d.program);
                Ok(match &d.rodata {
                    Some(r) => spec.rodata(r.clone()),
                    None => spec,
                })
            })
            .collect()
    }

    /// The 1-based line of policy `index`.
    pub fn policy_line(&self, index: usize) -> Option<usize> {
        self.lines.get(index).map(|l| l.line)
    }

    fn map_error(&self, e: PolicyError) -> FileError {
        let pi = e
            .policy
            .as_ref()
            .and_then(|n| self.set.policies.iter().position(|p| &p.name == n));
        let Some(pi) = pi else {
            return self.error(None, None, e.to_string());
        };
        let lines = &self.lines[pi];
        if let Some((line, key)) = e.stage.and_then(|s| lines.stages.get(&s)) {
            return self.error(
                Some(*line),
                Some(format!("policy[{pi}].select.{key}")),
                format!(
                    "policy '{}': stage {}: {}",
                    self.set.policies[pi].name,
                    e.stage.unwrap_or_default(),
                    e.message
                ),
            );
        }
        self.error(
            Some(lines.line),
            Some(format!("policy[{pi}]")),
            format!("policy '{}': {}", self.set.policies[pi].name, e.message),
        )
    }

    fn error(&self, line: Option<usize>, field: Option<String>, message: String) -> FileError {
        FileError {
            file: self.file.clone(),
            line,
            field,
            message,
        }
    }
}

/// Whether `hook` takes actor `a`, by the compiler's own rules (a one-policy
/// set with just that actor).
fn actor_at(a: Action, hook: Hook) -> Result<(), PolicyError> {
    let mut chain = ActionChain::new();
    chain.add(a);
    PolicySet {
        selectors: SelectorChain::new(),
        policies: vec![Policy::new("actor", chain)],
    }
    .compile(hook)
    .map(drop)
}

type Resolver<'r> = &'r dyn Fn(&str) -> Result<u32, String>;

struct Parser<'a> {
    file: &'a str,
    text: &'a str,
    resolve: Resolver<'a>,
}

/// One stage of the selector chain as the file names it.
struct Stage {
    kind: SelectorKind,
    name: Option<String>,
}

type Val<'i> = Spanned<DeValue<'i>>;

const SELECTOR_KINDS: [SelectorKind; 8] = [
    SelectorKind::Subflow,
    SelectorKind::IpPair,
    SelectorKind::Src,
    SelectorKind::Dst,
    SelectorKind::Port,
    SelectorKind::PacketType,
    SelectorKind::Sequence,
    SelectorKind::Connection,
];

impl Parser<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: Range<usize>, field: &str, message: impl Into<String>) -> FileError {
        FileError {
            file: self.file.to_owned(),
            line: Some(self.line(span.start)),
            field: (!field.is_empty()).then(|| field.to_owned()),
            message: message.into(),
        }
    }

    /// The table's entries in file order, refusing keys not in `allowed`.
    fn entries<'t, 'i>(
        &self,
        table: &'t DeTable<'i>,
        field: &str,
        allowed: &[&str],
    ) -> Result<Vec<(&'t Spanned<toml::de::DeString<'i>>, &'t Val<'i>)>, FileError> {
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        for (k, _) in &entries {
            if !allowed.contains(&k.get_ref().as_ref()) {
                return Err(self.err(
                    k.span(),
                    &join(field, k.get_ref()),
                    format!("unknown key; expected one of {}", allowed.join(", ")),
                ));
            }
        }
        Ok(entries)
    }

    fn document(&self, doc: &DeTable<'_>) -> Result<PolicyFile, FileError> {
        let mut out = PolicyFile {
            file: self.file.to_owned(),
            hook: None,
            set: PolicySet::default(),
            plugins: Vec::new(),
            hook_line: 0,
            lines: Vec::new(),
        };
        let entries = self.entries(doc, "", &["hook", "selector", "plugin", "policy"])?;
        let get = |name: &str| {
            entries
                .iter()
                .find(|(k, _)| k.get_ref() == name)
                .map(|e| e.1)
        };
        if let Some(v) = get("hook") {
            let s = self.string(v, "hook")?;
            out.hook = Some(
                s.parse()
                    .map_err(|e: String| self.err(v.span(), "hook", e))?,
            );
            out.hook_line = self.line(v.span().start);
        }
        let mut stages = Vec::new();
        if let Some(v) = get("selector") {
            for (i, t) in self.tables(v, "selector")?.into_iter().enumerate() {
                let field = format!("selector[{i}]");
                let (stage, combine) = self.stage(t.clone(), &field, &stages)?;
                if stages.len() == limits::STAGES {
                    return Err(self.err(
                        t.span(),
                        &field,
                        format!("more than {} selector stages", limits::STAGES),
                    ));
                }
                out.set.selectors.add(stage.kind, combine);
                stages.push(stage);
            }
        }
        if let Some(v) = get("plugin") {
            for (i, t) in self.tables(v, "plugin")?.into_iter().enumerate() {
                let decl = self.plugin(t, &format!("plugin[{i}]"), i, &out.plugins)?;
                out.plugins.push(decl);
            }
        }
        if let Some(v) = get("policy") {
            for (i, t) in self.tables(v, "policy")?.into_iter().enumerate() {
                let (policy, lines) =
                    self.policy(t, &format!("policy[{i}]"), &stages, &out.plugins)?;
                if let Some(j) = out.set.policies.iter().position(|p| p.name == policy.name) {
                    return Err(self.err_line(
                        lines.line,
                        &format!("policy[{i}].name"),
                        format!(
                            "duplicate policy name '{}' (first at line {})",
                            policy.name, out.lines[j].line
                        ),
                    ));
                }
                out.set.policies.push(policy);
                out.lines.push(lines);
            }
        }
        Ok(out)
    }

    fn err_line(&self, line: usize, field: &str, message: String) -> FileError {
        FileError {
            file: self.file.to_owned(),
            line: Some(line),
            field: Some(field.to_owned()),
            message,
        }
    }

    fn tables<'t, 'i>(
        &self,
        v: &'t Val<'i>,
        field: &str,
    ) -> Result<Vec<Spanned<&'t DeTable<'i>>>, FileError> {
        let DeValue::Array(items) = v.get_ref() else {
            return Err(self.err(
                v.span(),
                field,
                format!(
                    "expected an array of tables ([[{field}]]), got {}",
                    v.get_ref().type_str()
                ),
            ));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item.get_ref() {
                DeValue::Table(t) => Ok(Spanned::new(item.span(), t)),
                other => Err(self.err(
                    item.span(),
                    &format!("{field}[{i}]"),
                    format!("expected a table, got {}", other.type_str()),
                )),
            })
            .collect()
    }

    fn stage(
        &self,
        t: Spanned<&DeTable<'_>>,
        field: &str,
        before: &[Stage],
    ) -> Result<(Stage, Combine), FileError> {
        let entries = self.entries(t.get_ref(), field, &["kind", "combine", "name"])?;
        let mut kind = None;
        let mut combine = Combine::And;
        let mut name = None;
        for (k, v) in entries {
            let f = join(field, k.get_ref());
            match k.get_ref().as_ref() {
                "kind" => {
                    let s = self.string(v, &f)?;
                    kind = Some(
                        SELECTOR_KINDS
                            .into_iter()
                            .find(|k| k.name() == s)
                            .ok_or_else(|| {
                                let names: Vec<&str> =
                                    SELECTOR_KINDS.iter().map(|k| k.name()).collect();
                                self.err(
                                    v.span(),
                                    &f,
                                    format!(
                                        "unknown selector '{s}': expected one of {}",
                                        names.join(", ")
                                    ),
                                )
                            })?,
                    );
                }
                "combine" => {
                    combine = match self.string(v, &f)? {
                        "and" => Combine::And,
                        "or" => Combine::Or,
                        s => {
                            return Err(self.err(
                                v.span(),
                                &f,
                                format!("expected \"and\" or \"or\", got \"{s}\""),
                            ));
                        }
                    }
                }
                _ => {
                    let s = self.string(v, &f)?;
                    if s.is_empty() || s.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(self.err(
                            v.span(),
                            &f,
                            format!("a stage name must not be empty or a number, got \"{s}\""),
                        ));
                    }
                    if before.iter().any(|st| st.name.as_deref() == Some(s)) {
                        return Err(self.err(v.span(), &f, format!("two stages are named '{s}'")));
                    }
                    name = Some(s.to_owned());
                }
            }
        }
        let kind = kind.ok_or_else(|| {
            self.err(
                t.span(),
                field,
                "missing key 'kind' (the selector: src, dst, ip_pair, ...)",
            )
        })?;
        Ok((Stage { kind, name }, combine))
    }

    fn plugin(
        &self,
        t: Spanned<&DeTable<'_>>,
        field: &str,
        slot: usize,
        before: &[PluginDecl],
    ) -> Result<PluginDecl, FileError> {
        let entries = self.entries(t.get_ref(), field, &["name", "object", "program", "rodata"])?;
        if slot >= limits::PLUGIN_SLOTS {
            return Err(self.err(
                t.span(),
                field,
                format!("more than {} plugins", limits::PLUGIN_SLOTS),
            ));
        }
        let (mut name, mut object, mut program, mut rodata) = (None, None, None, None);
        for (k, v) in entries {
            let f = join(field, k.get_ref());
            match k.get_ref().as_ref() {
                "name" => {
                    let s = self.string(v, &f)?;
                    if before.iter().any(|p| p.name == s) {
                        return Err(self.err(v.span(), &f, format!("two plugins are named '{s}'")));
                    }
                    name = Some(s.to_owned());
                }
                "object" => object = Some(PathBuf::from(self.string(v, &f)?)),
                "program" => program = Some(self.string(v, &f)?.to_owned()),
                _ => {
                    let DeValue::Array(items) = v.get_ref() else {
                        return Err(self.err(
                            v.span(),
                            &f,
                            format!("expected an array of bytes, got {}", v.get_ref().type_str()),
                        ));
                    };
                    let bytes = items
                        .iter()
                        .enumerate()
                        .map(|(i, b)| self.int(b, &format!("{f}[{i}]"), 0, 255).map(|n| n as u8))
                        .collect::<Result<Vec<u8>, _>>()?;
                    rodata = Some(bytes);
                }
            }
        }
        let missing = |key: &str| self.err(t.span(), field, format!("missing key '{key}'"));
        let name = name.ok_or_else(|| missing("name"))?;
        Ok(PluginDecl {
            object: object.ok_or_else(|| missing("object"))?,
            program: program.unwrap_or_else(|| name.clone()),
            name,
            slot: slot as u8,
            rodata,
        })
    }

    fn policy(
        &self,
        t: Spanned<&DeTable<'_>>,
        field: &str,
        stages: &[Stage],
        plugins: &[PluginDecl],
    ) -> Result<(Policy, PolicyLines), FileError> {
        let entries = self.entries(
            t.get_ref(),
            field,
            &["name", "priority", "select", "actions"],
        )?;
        let get = |name: &str| {
            entries
                .iter()
                .find(|(k, _)| k.get_ref() == name)
                .map(|e| e.1)
        };
        let name_v = get("name").ok_or_else(|| self.err(t.span(), field, "missing key 'name'"))?;
        let name = self.string(name_v, &join(field, "name"))?;
        if name.is_empty() {
            return Err(self.err(name_v.span(), &join(field, "name"), "empty name"));
        }
        let mut lines = PolicyLines {
            line: self.line(name_v.span().start),
            ..Default::default()
        };
        let mut chain = ActionChain::new();
        if let Some(v) = get("actions") {
            let f = join(field, "actions");
            let DeValue::Array(items) = v.get_ref() else {
                return Err(self.err(
                    v.span(),
                    &f,
                    format!(
                        "expected an array of actors such as [\"count\", {{ set_mark = 2 }}], got {}",
                        v.get_ref().type_str()
                    ),
                ));
            };
            if items.len() > limits::CHAIN_OPS {
                return Err(self.err(
                    v.span(),
                    &f,
                    format!(
                        "the action chain has {} actors; at most {} are supported",
                        items.len(),
                        limits::CHAIN_OPS
                    ),
                ));
            }
            for (i, item) in items.iter().enumerate() {
                chain.add(self.action(item, &format!("{f}[{i}]"), plugins)?);
                lines.actions.push(self.line(item.span().start));
            }
        }
        let mut policy = Policy::new(name, chain);
        if let Some(v) = get("priority") {
            let n = self.int(
                v,
                &join(field, "priority"),
                i32::MIN.into(),
                i32::MAX.into(),
            )?;
            policy.priority(n as i32);
        }
        if let Some(v) = get("select") {
            let f = join(field, "select");
            let DeValue::Table(sel) = v.get_ref() else {
                return Err(self.err(
                    v.span(),
                    &f,
                    format!(
                        "expected a table of stage values such as {{ src = \"10.0.0.0/8\" }}, got {}",
                        v.get_ref().type_str()
                    ),
                ));
            };
            let mut entries: Vec<_> = sel.iter().collect();
            entries.sort_by_key(|(k, _)| k.span().start);
            for (k, v) in entries {
                let key = k.get_ref().as_ref();
                let kf = join(&f, key);
                let stage = self
                    .stage_index(key, stages)
                    .map_err(|m| self.err(k.span(), &kf, m))?;
                let value = self.value(v, &kf, stages[stage].kind)?;
                if policy.values().contains_key(&stage) {
                    return Err(self.err(
                        k.span(),
                        &kf,
                        format!("stage {stage} is given a value twice"),
                    ));
                }
                policy.select(stage, value);
                lines
                    .stages
                    .insert(stage, (self.line(k.span().start), key.to_owned()));
            }
        }
        Ok((policy, lines))
    }

    /// The stage a `select` key names: an index, a stage's name, or a kind
    /// only one unnamed stage has.
    fn stage_index(&self, key: &str, stages: &[Stage]) -> Result<usize, String> {
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
            return match key.parse::<usize>() {
                Ok(i) if i < stages.len() => Ok(i),
                _ => Err(format!(
                    "stage {key} is out of range: the selector chain has {} stage{}",
                    stages.len(),
                    if stages.len() == 1 { "" } else { "s" }
                )),
            };
        }
        if let Some(i) = stages.iter().position(|s| s.name.as_deref() == Some(key)) {
            return Ok(i);
        }
        let by_kind: Vec<usize> = stages
            .iter()
            .enumerate()
            .filter(|(_, s)| s.name.is_none() && s.kind.name() == key)
            .map(|(i, _)| i)
            .collect();
        match by_kind[..] {
            [i] => Ok(i),
            [] => {
                let names: Vec<String> = stages
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        s.name.clone().unwrap_or_else(|| s.kind.name().to_owned())
                            + &format!(" ({i})")
                    })
                    .collect();
                Err(if names.is_empty() {
                    format!("no stage '{key}': the selector chain is empty")
                } else {
                    format!("no stage '{key}': the stages are {}", names.join(", "))
                })
            }
            _ => Err(format!(
                "{} stages are '{key}': give them names, or use the stage index",
                by_kind.len()
            )),
        }
    }

    fn value(&self, v: &Val<'_>, f: &str, kind: SelectorKind) -> Result<Selector, FileError> {
        let table = |example: &str| -> Result<&DeTable<'_>, FileError> {
            match v.get_ref() {
                DeValue::Table(t) => Ok(t),
                other => Err(self.err(
                    v.span(),
                    f,
                    format!(
                        "a {} stage takes a table such as {example}, got {}",
                        kind.name(),
                        describe(other)
                    ),
                )),
            }
        };
        Ok(match kind {
            SelectorKind::Src | SelectorKind::Dst => {
                let p = self.prefix(v, f, kind)?;
                if kind == SelectorKind::Src {
                    Selector::Src(p)
                } else {
                    Selector::Dst(p)
                }
            }
            SelectorKind::IpPair => {
                let t = table("{ local = \"10.0.0.0/24\", remote = \"10.1.0.0/16\" }")?;
                let e = self.entries(t, f, &["local", "remote"])?;
                let (mut local, mut remote) = (None, None);
                for (k, v) in e {
                    let kf = join(f, k.get_ref());
                    let p = self.prefix(v, &kf, kind)?;
                    if k.get_ref() == "local" {
                        local = Some(p);
                    } else {
                        remote = Some(p);
                    }
                }
                let (Some(local), Some(remote)) = (local, remote) else {
                    return Err(self.err(v.span(), f, "an ip_pair needs both local and remote"));
                };
                if local.addr.is_ipv4() != remote.addr.is_ipv4() {
                    return Err(self.err(
                        v.span(),
                        f,
                        format!("local {local} and remote {remote} are of different families"),
                    ));
                }
                Selector::IpPair { local, remote }
            }
            SelectorKind::Subflow => {
                let t = table("{ local = \"10.0.0.1:80\", remote = \"10.0.0.2:40000\" }")?;
                let e = self.entries(t, f, &["local", "remote"])?;
                let (mut local, mut remote) = (None, None);
                for (k, v) in e {
                    let kf = join(f, k.get_ref());
                    let s = self.string(v, &kf)?;
                    let a: SocketAddr = s.parse().map_err(|_| {
                        self.err(
                            v.span(),
                            &kf,
                            format!(
                                "expected an address and port such as 10.0.0.1:80 or [fd00::1]:80, got \"{s}\""
                            ),
                        )
                    })?;
                    if k.get_ref() == "local" {
                        local = Some(a);
                    } else {
                        remote = Some(a);
                    }
                }
                let (Some(local), Some(remote)) = (local, remote) else {
                    return Err(self.err(v.span(), f, "a subflow needs both local and remote"));
                };
                if local.is_ipv4() != remote.is_ipv4() {
                    return Err(self.err(
                        v.span(),
                        f,
                        format!("local {local} and remote {remote} are of different families"),
                    ));
                }
                Selector::Subflow { local, remote }
            }
            SelectorKind::Port => {
                let t = table("{ local = 80 } or { remote = 5201 }")?;
                let e = self.entries(t, f, &["local", "remote"])?;
                let (mut local, mut remote) = (None, None);
                for (k, v) in e {
                    let kf = join(f, k.get_ref());
                    let port = self.int(v, &kf, 1, 65535)? as u16;
                    if k.get_ref() == "local" {
                        local = Some(port);
                    } else {
                        remote = Some(port);
                    }
                }
                if local.is_none() && remote.is_none() {
                    return Err(self.err(v.span(), f, "a port stage needs local and/or remote"));
                }
                Selector::Port { local, remote }
            }
            SelectorKind::PacketType => {
                let one = |v: &Val<'_>, f: &str| -> Result<PacketType, FileError> {
                    let s = self.string(v, f)?;
                    s.parse().map_err(|e: String| self.err(v.span(), f, e))
                };
                let types = match v.get_ref() {
                    DeValue::Array(items) if !items.is_empty() => items
                        .iter()
                        .enumerate()
                        .map(|(i, it)| one(it, &format!("{f}[{i}]")))
                        .collect::<Result<Vec<_>, _>>()?,
                    DeValue::String(_) => vec![one(v, f)?],
                    other => {
                        return Err(self.err(
                            v.span(),
                            f,
                            format!(
                                "a packet_type stage takes a type or a list such as [\"mp_join_syn\", \"syn\"], got {}",
                                describe(other)
                            ),
                        ));
                    }
                };
                Selector::PacketType(types)
            }
            SelectorKind::Sequence => {
                let t = table("{ stream = \"data\", start = \"1MiB\" }")?;
                let e = self.entries(t, f, &["stream", "start", "end"])?;
                let (mut stream, mut start, mut end) = (None, 0, u64::MAX);
                let mut end_span = v.span();
                for (k, v) in e {
                    let kf = join(f, k.get_ref());
                    match k.get_ref().as_ref() {
                        "stream" => {
                            stream = Some(match self.string(v, &kf)? {
                                "data" => Stream::Data,
                                "subflow" => Stream::Subflow,
                                s => {
                                    return Err(self.err(
                                        v.span(),
                                        &kf,
                                        format!("expected \"data\" or \"subflow\", got \"{s}\""),
                                    ));
                                }
                            })
                        }
                        "start" => start = self.size(v, &kf, 0)?,
                        _ => {
                            end = self.size(v, &kf, 1)?;
                            end_span = v.span();
                        }
                    }
                }
                let stream = stream.ok_or_else(|| {
                    self.err(
                        v.span(),
                        f,
                        "a sequence stage needs stream = \"data\" or \"subflow\"",
                    )
                })?;
                if end <= start {
                    return Err(self.err(
                        end_span,
                        &join(f, "end"),
                        format!("end {end} is not after start {start}"),
                    ));
                }
                Selector::Sequence { stream, start, end }
            }
            SelectorKind::Connection => {
                let t = table("{ token = \"0x1a2b3c4d\", subflow_index = 1 }")?;
                let e = self.entries(t, f, &["token", "subflow_index"])?;
                let (mut token, mut subflow_index) = (None, None);
                for (k, v) in e {
                    let kf = join(f, k.get_ref());
                    if k.get_ref() == "token" {
                        token = Some(self.u32_or_hex(v, &kf, "a token such as \"0x1a2b3c4d\"")?);
                    } else {
                        subflow_index = Some(self.int(v, &kf, 0, 255)? as u8);
                    }
                }
                if token.is_none() && subflow_index.is_none() {
                    return Err(self.err(
                        v.span(),
                        f,
                        "a connection stage needs token and/or subflow_index",
                    ));
                }
                Selector::Connection {
                    token,
                    subflow_index,
                }
            }
        })
    }

    fn prefix(&self, v: &Val<'_>, f: &str, kind: SelectorKind) -> Result<Prefix, FileError> {
        let s = match v.get_ref() {
            DeValue::String(s) => s.as_ref(),
            other => {
                return Err(self.err(
                    v.span(),
                    f,
                    format!(
                        "a {} stage takes an address or prefix such as \"10.0.0.0/8\", got {}",
                        kind.name(),
                        describe(other)
                    ),
                ));
            }
        };
        s.parse().map_err(|e: String| self.err(v.span(), f, e))
    }

    fn action(&self, v: &Val<'_>, f: &str, plugins: &[PluginDecl]) -> Result<Action, FileError> {
        const NAMES: &str = "count, set_mark, drop, rate_limit, redirect, record, blk_subflow, set_backup, add_subflow, get_connect, get_subflow, plugin";
        let unknown = |name: &str, span: Range<usize>, f: &str| {
            self.err(
                span,
                f,
                format!("unknown actor '{name}': expected one of {NAMES}"),
            )
        };
        match v.get_ref() {
            DeValue::String(s) => match s.as_ref() {
                "count" => Ok(Action::Count),
                "drop" => Ok(Action::Drop),
                "get_connect" => Ok(Action::GetConnect),
                "get_subflow" => Ok(Action::GetSubflow),
                "record" => Ok(Action::Record),
                "add_subflow" => Ok(Action::AddSubflow),
                "blk_subflow" => Ok(Action::BlkSubflow {
                    refuse_joins: false,
                }),
                p @ ("set_mark" | "rate_limit" | "redirect" | "set_backup" | "plugin") => {
                    Err(self.err(v.span(), f, format!("{p} needs a value: {}", example(p))))
                }
                other => Err(unknown(other, v.span(), f)),
            },
            DeValue::Table(t) => {
                let mut entries: Vec<_> = t.iter().collect();
                entries.sort_by_key(|(k, _)| k.span().start);
                let [(k, p)] = entries[..] else {
                    return Err(self.err(
                        v.span(),
                        f,
                        format!(
                            "an actor with a value is a table with one key such as {{ set_mark = 2 }}, got {} keys",
                            entries.len()
                        ),
                    ));
                };
                let name = k.get_ref().as_ref();
                let kf = join(f, name);
                match name {
                    "set_mark" => Ok(Action::SetMark(self.u32_or_hex(
                        p,
                        &kf,
                        "a mark such as 2 or \"0x10\"",
                    )?)),
                    "rate_limit" => {
                        if let DeValue::String(r) = p.get_ref()
                            && r.trim_end().ends_with("bit")
                        {
                            let bits_per_second = parse_rate(r).ok_or_else(|| {
                                self.err(
                                    p.span(),
                                    &kf,
                                    format!(
                                        "expected a rate such as \"20Mbit\" (bit/s; K, M, G: powers of 1000), got \"{r}\""
                                    ),
                                )
                            })?;
                            if !(1..=limits::RATE_LIMIT_BPS_MAX).contains(&bits_per_second) {
                                return Err(self.err(
                                    p.span(),
                                    &kf,
                                    format!(
                                        "a rate of {bits_per_second} bit/s is out of range: expected 1bit to 100Gbit"
                                    ),
                                ));
                            }
                            return Ok(Action::RateLimitRate { bits_per_second });
                        }
                        let n = self.size(p, &kf, 1).map_err(|mut e| {
                            if matches!(p.get_ref(), DeValue::String(_)) {
                                e.message.push_str(", or a rate such as \"20Mbit\"");
                            }
                            e
                        })?;
                        let window_bytes = u32::try_from(n).map_err(|_| {
                            self.err(
                                p.span(),
                                &kf,
                                format!("a window of {n} bytes is more than 4GiB - 1"),
                            )
                        })?;
                        Ok(Action::RateLimit { window_bytes })
                    }
                    "redirect" => {
                        let ifindex = match p.get_ref() {
                            DeValue::String(s) => {
                                (self.resolve)(s).map_err(|e| self.err(p.span(), &kf, e))?
                            }
                            DeValue::Integer(_) => self.int(p, &kf, 1, u32::MAX.into())? as u32,
                            other => {
                                return Err(self.err(
                                    p.span(),
                                    &kf,
                                    format!(
                                        "expected an interface name such as \"eth1\" or an ifindex, got {}",
                                        describe(other)
                                    ),
                                ));
                            }
                        };
                        Ok(Action::Redirect { ifindex })
                    }
                    "plugin" => {
                        let slot = match p.get_ref() {
                            DeValue::String(s) => plugins
                                .iter()
                                .find(|d| d.name == s.as_ref())
                                .map(|d| d.slot)
                                .ok_or_else(|| {
                                    self.err(
                                        p.span(),
                                        &kf,
                                        format!(
                                            "no plugin '{s}' is declared ([[plugin]] name = \"{s}\")"
                                        ),
                                    )
                                })?,
                            _ => self.int(p, &kf, 0, limits::PLUGIN_SLOTS as i128 - 1)? as u8,
                        };
                        Ok(Action::Plugin(slot))
                    }
                    "set_backup" => match p.get_ref() {
                        DeValue::Boolean(backup) => Ok(Action::SetBackup {
                            backup: *backup,
                            packets: limits::SET_BACKUP_PACKETS_DEFAULT,
                        }),
                        DeValue::Table(t) => {
                            let (mut backup, mut packets) =
                                (None, limits::SET_BACKUP_PACKETS_DEFAULT);
                            for (k, v) in self.entries(t, &kf, &["backup", "packets"])? {
                                let vf = join(&kf, k.get_ref());
                                match (k.get_ref().as_ref(), v.get_ref()) {
                                    ("backup", DeValue::Boolean(b)) => backup = Some(*b),
                                    ("backup", other) => {
                                        return Err(self.err(
                                            v.span(),
                                            &vf,
                                            format!(
                                                "expected true (backup) or false (regular), got {}",
                                                describe(other)
                                            ),
                                        ));
                                    }
                                    _ => {
                                        packets = self.int(
                                            v,
                                            &vf,
                                            1,
                                            limits::SET_BACKUP_PACKETS_MAX.into(),
                                        )? as u8
                                    }
                                }
                            }
                            let backup = backup.ok_or_else(|| {
                                self.err(
                                    p.span(),
                                    &kf,
                                    "set_backup needs backup: { backup = true, packets = 5 }",
                                )
                            })?;
                            Ok(Action::SetBackup { backup, packets })
                        }
                        other => Err(self.err(
                            p.span(),
                            &kf,
                            format!(
                                "set_backup takes true (backup), false (regular) or {{ backup = true, packets = 5 }}, got {}",
                                describe(other)
                            ),
                        )),
                    },
                    "blk_subflow" => match p.get_ref() {
                        DeValue::String(s) if s.as_ref() == "refuse_joins" => {
                            Ok(Action::BlkSubflow { refuse_joins: true })
                        }
                        other => Err(self.err(
                            p.span(),
                            &kf,
                            format!(
                                "blk_subflow takes \"refuse_joins\" (also drop MP_JOIN SYNs) or no value, got {}",
                                describe(other)
                            ),
                        )),
                    },
                    p @ ("count" | "drop" | "record" | "add_subflow" | "get_connect"
                    | "get_subflow") => {
                        Err(self.err(k.span(), &kf, format!("{p} takes no value: write \"{p}\"")))
                    }
                    other => Err(unknown(other, k.span(), &kf)),
                }
            }
            other => Err(self.err(
                v.span(),
                f,
                format!(
                    "expected an actor such as \"count\" or {{ set_mark = 2 }}, got {}",
                    describe(other)
                ),
            )),
        }
    }

    fn string<'v>(&self, v: &'v Val<'_>, f: &str) -> Result<&'v str, FileError> {
        match v.get_ref() {
            DeValue::String(s) => Ok(s.as_ref()),
            other => Err(self.err(
                v.span(),
                f,
                format!("expected a string, got {}", describe(other)),
            )),
        }
    }

    /// An integer in `[min, max]`.
    fn int(&self, v: &Val<'_>, f: &str, min: i128, max: i128) -> Result<i128, FileError> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            Some(n) => Err(self.err(
                v.span(),
                f,
                format!("{n} is out of range: expected {min} to {max}"),
            )),
            None => Err(self.err(
                v.span(),
                f,
                format!(
                    "expected an integer from {min} to {max}, got {}",
                    describe(v.get_ref())
                ),
            )),
        }
    }

    /// A 32-bit value as an integer or a "0x..." string.
    fn u32_or_hex(&self, v: &Val<'_>, f: &str, what: &str) -> Result<u32, FileError> {
        match v.get_ref() {
            DeValue::String(s) => s
                .strip_prefix("0x")
                .or_else(|| s.strip_prefix("0X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .ok_or_else(|| self.err(v.span(), f, format!("expected {what}, got \"{s}\""))),
            DeValue::Integer(_) => Ok(self.int(v, f, 0, u32::MAX.into())? as u32),
            other => Err(self.err(
                v.span(),
                f,
                format!("expected {what}, got {}", describe(other)),
            )),
        }
    }

    /// A byte count: an integer or a string such as "64KiB" (K, KiB, M, MiB,
    /// G, GiB: powers of 1024), at least `min`.
    fn size(&self, v: &Val<'_>, f: &str, min: u64) -> Result<u64, FileError> {
        let bad = |got: String| {
            self.err(
                v.span(),
                f,
                format!("expected a size such as 65536 or \"64KiB\", got {got}"),
            )
        };
        let n = match v.get_ref() {
            DeValue::Integer(_) => self.int(v, f, min.into(), u64::MAX.into())? as u64,
            DeValue::String(s) => parse_size(s).ok_or_else(|| bad(format!("\"{s}\"")))?,
            other => return Err(bad(describe(other))),
        };
        if n < min {
            return Err(self.err(
                v.span(),
                f,
                format!("{n} is out of range: expected at least {min}"),
            ));
        }
        Ok(n)
    }
}

/// "64KiB", "64K", "1MiB", "4096", "4096B" (binary multiples).
fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(digits);
    let mult: u64 = match unit.trim_start() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return None,
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// "20Mbit", "1500Kbit", "1Gbit", "64000bit" (bit/s, decimal multiples).
fn parse_rate(s: &str) -> Option<u64> {
    let s = s.trim().strip_suffix("bit")?;
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(digits);
    let mult: u64 = match unit.trim_start() {
        "" => 1,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return None,
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn example(actor: &str) -> &'static str {
    match actor {
        "set_mark" => "{ set_mark = 2 }",
        "rate_limit" => "{ rate_limit = \"64KiB\" }",
        "redirect" => "{ redirect = \"eth1\" }",
        "set_backup" => "{ set_backup = true }",
        _ => "{ plugin = \"name\" }",
    }
}

fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("\"{s}\""),
        DeValue::Integer(i) => match i.radix() {
            16 => format!("0x{}", i.as_str()),
            8 => format!("0o{}", i.as_str()),
            2 => format!("0b{}", i.as_str()),
            _ => i.as_str().to_owned(),
        },
        DeValue::Float(x) => x.as_str().to_owned(),
        DeValue::Boolean(b) => b.to_string(),
        other => format!("{} {}", article(other.type_str()), other.type_str()),
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn join(field: &str, key: &str) -> String {
    if field.is_empty() {
        key.to_owned()
    } else {
        format!("{field}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_rate, parse_size};

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Some(65536));
        assert_eq!(parse_size("64K"), Some(65536));
        assert_eq!(parse_size("2 MiB"), Some(2 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("fast"), None);
        assert_eq!(parse_size("KiB"), None);
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("20Mbit"), Some(20_000_000));
        assert_eq!(parse_rate("1500Kbit"), Some(1_500_000));
        assert_eq!(parse_rate("1500kbit"), Some(1_500_000));
        assert_eq!(parse_rate("2 Gbit"), Some(2_000_000_000));
        assert_eq!(parse_rate("64000bit"), Some(64_000));
        assert_eq!(parse_rate("Mbit"), None);
        assert_eq!(parse_rate("20MiBbit"), None);
        assert_eq!(parse_rate("20Mbps"), None);
    }
}
