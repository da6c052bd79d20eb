//! Plugin operators: programs a researcher writes in C with
//! `bpf/include/emptcp/plugin.h`. A chain enters a plugin through a constant
//! tail-call slot of its generation (`emptcp_plugins`), and the plugin
//! returns into the chain through the generation's resume program
//! (`emptcp_resume`), which runs the operators after it.
//!
//! A plugin is loaded anew for every generation that uses it and put into
//! that generation's slots before the generation is published, so a swap
//! never exposes a chain whose plugin is missing (docs/engine.md).

use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapFlags, Object, ObjectBuilder};

use crate::{Error, ErrorKind, Hook, Result};

/// Where to find a plugin and how to configure it.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The name policies use for it.
    pub name: String,
    /// The compiled BPF object.
    pub object: Vec<u8>,
    /// The plugin program in the object (`EMPTCP_PLUGIN_TC(name)` /
    /// `EMPTCP_PLUGIN_XDP(name)`).
    pub program: String,
    /// The plugin's whole `.rodata` (its `const volatile` parameters), written
    /// before load; `None` keeps the compiled defaults.
    pub rodata: Option<Vec<u8>>,
}

impl PluginSpec {
    /// A plugin from an object in memory, with its compiled-in parameters.
    pub fn new(name: impl Into<String>, object: &[u8], program: impl Into<String>) -> Self {
        PluginSpec {
            name: name.into(),
            object: object.to_vec(),
            program: program.into(),
            rodata: None,
        }
    }

    /// Sets the `.rodata` bytes (the plugin's parameters).
    pub fn rodata(mut self, bytes: Vec<u8>) -> Self {
        self.rodata = Some(bytes);
        self
    }
}

/// The maps of a generation a plugin shares.
pub(crate) struct PluginMaps<'a> {
    /// Per-CPU chain state (shared by every generation).
    pub state: libbpf_rs::Map<'a>,
    /// The generation's resume slot.
    pub resume: libbpf_rs::Map<'a>,
    /// The generation's plugin slots.
    pub slots: libbpf_rs::Map<'a>,
}

/// Loads `spec` for a generation at `hook`, sharing its maps, and puts it in
/// plugin slot `slot`. The returned object must live as long as the
/// generation: a program array holds programs only while they exist.
pub(crate) fn load_into(
    spec: &PluginSpec,
    maps: &PluginMaps<'_>,
    hook: Hook,
    slot: u32,
) -> Result<Object> {
    let what = |step: &str| format!("{step} plugin '{}' for slot {slot} at {hook}", spec.name);
    let mut open = ObjectBuilder::default()
        .open_memory(&spec.object)
        .map_err(|e| Error::bpf(what("opening"), e))?;
    let mut found = false;
    for mut prog in open.progs_mut() {
        let ours = prog.name() == spec.program.as_str();
        prog.set_autoload(ours);
        if ours {
            prog.set_attach_type(hook.attach_type());
        }
        found |= ours;
    }
    if !found {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "plugin object '{}' has no program {}",
                spec.name, spec.program
            ),
        ));
    }
    for mut map in open.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        let r = match name.as_str() {
            "emptcp_pstate" => map.reuse_fd(maps.state.as_fd()),
            "emptcp_resume" => map.reuse_fd(maps.resume.as_fd()),
            n if n.ends_with(".rodata") => match &spec.rodata {
                Some(bytes) => map.set_initial_value(bytes),
                None => Ok(()),
            },
            _ => Ok(()),
        };
        r.map_err(|e| Error::bpf(what(&format!("sharing map {name} with")), e))?;
    }
    let obj = open
        .load()
        .map_err(|e| Error::bpf(what("loading"), e).with_kind(ErrorKind::Load))?;
    let prog = obj
        .progs()
        .find(|p| p.name() == spec.program.as_str())
        .expect("the program loaded above");
    let fd = prog.as_fd().as_raw_fd();
    maps.slots
        .update(&slot.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
        .map_err(|e| Error::bpf(what("installing"), e))?;
    Ok(obj)
}
