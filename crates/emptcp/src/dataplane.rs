use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libbpf_rs::{MapCore, MapFlags, MapHandle, Object, ObjectBuilder, ProgramHandle};
use serde::Serialize;

use crate::abi::{
    self, emptcp_config, emptcp_conn_ct, emptcp_ct_flags, emptcp_ct_key, emptcp_flow_key,
    emptcp_flow_stats, emptcp_op_stats, emptcp_record, emptcp_shape_stats, emptcp_subflow_ct,
};
use crate::attach::{AttachMode, ClsactFilter, HookLink};
use crate::pins::{
    AttachmentRecord, DataplaneRecord, GenerationRecord, PinDir, PolicySource, RECORD_VERSION,
    read_record, remove_tree, write_record,
};
use crate::plugin::{PluginMaps, PluginSpec};
use crate::policy::CompiledPolicy;
use crate::{Error, ErrorKind, Hook, Result};

/// The compiled entry object, embedded at build time.
const ENTRY_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/emptcp.bpf.o"));

/// Names of `enum emptcp_entry_counter`, in order.
pub(crate) const ENTRY_COUNTER_NAMES: [&str; 29] = [
    "seen",
    "not_tcp",
    "malformed",
    "fragment",
    "tcp",
    "mptcp",
    "flow_map_full",
    "no_policy",
    "matched",
    "memo_overflow",
    "missing_chain",
    "missing_plugin",
    "ct_connection",
    "ct_subflow",
    "ct_join_unknown",
    "ct_full",
    "ct_closed",
    "events_lost",
    "addr_kept",
    "addr_store_full",
    "addr_carried",
    "ct_fallback",
    "prio_sent",
    "prio_quota_full",
    "ct_fallback_late",
    "quick_tcp",
    "quick_mptcp",
    "paged",
    "pulled",
];

const FLOWS_MAP: &str = "emptcp_flows";
const COUNTERS_MAP: &str = "emptcp_counters";
const PLUGIN_STATE_MAP: &str = "emptcp_pstate";

/// Maps every generation shares with the data plane's generation 0 (flow
/// state, counters, connection tracking, events); all others belong to each
/// generation's own program instance.
const SHARED_MAPS: &[&str] = &[
    FLOWS_MAP,
    COUNTERS_MAP,
    PLUGIN_STATE_MAP,
    "emptcp_ct_sf",
    "emptcp_ct_conn",
    "emptcp_ct_tok",
    "emptcp_events",
    "emptcp_record",
    "emptcp_memo",
    "emptcp_addr_store",
    "emptcp_addr_armed",
    "emptcp_prio_quota",
];

/// A loaded emptcp data plane: the entry programs of generation 0 (no rules:
/// every packet passes), the maps all generations share (flows, counters),
/// and the attachments made from it.
///
/// Loaded with [`Dataplane::load`], it lives as long as the process: dropping
/// it detaches everything it attached. Opened with [`Dataplane::open_pinned`],
/// it keeps its maps, links and generations in bpffs, adopts what an earlier
/// process left there, and detaches only when told to.
///
/// The paper's flow (select, act, attach), with the policy built by the API
/// ([`crate::policy`]) and applied to a pinned data plane; needs root:
///
/// ```no_run
/// use std::path::Path;
/// use emptcp::policy::{Action, ActionChain, Combine, Policy, PolicySet, Selector, SelectorChain, SelectorKind};
/// use emptcp::pins::PolicySource;
/// use emptcp::{Dataplane, Hook, LoadOptions};
///
/// let mut sc = SelectorChain::new();
/// sc.add(SelectorKind::Src, Combine::And);
/// let mut ac = ActionChain::new();
/// ac.add(Action::Count).add(Action::SetMark(2));
/// let mut p = Policy::new("path2", ac);
/// p.select(0, Selector::Src("10.77.2.0/24".parse()?));
/// let set = PolicySet { selectors: sc, policies: vec![p] };
///
/// let mut dp = Dataplane::open_pinned(Path::new("/sys/fs/bpf/emptcp"), &LoadOptions::default())?;
/// let ifindex = emptcp::netns::interface_index("eth0")?;
/// dp.attach(Hook::TcIngress, ifindex)?;
/// let mut generation = dp.load_generation(&set.compile(Hook::TcIngress)?, &[])?;
/// // A pinned generation records its policy file (here the one the set
/// // renders to) so that later processes read its counters by name.
/// generation.set_source(PolicySource::from_set("path2", &set, Hook::TcIngress));
/// dp.apply(ifindex, generation)?;
/// for (policy, packets) in dp.attachments()[0].generation().unwrap().policy_hits()? {
///     println!("{policy}: {packets} packets");
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Dataplane {
    obj: Object,
    attachments: Vec<Attachment>,
    load_time: Duration,
    last_generation: u32,
    pins: Option<PinDir>,
    /// What it was loaded with (for a pinned one: created with).
    options: LoadOptions,
}

/// One entry program attached to one interface, running generation 0 or the
/// generation last applied.
pub struct Attachment {
    /// Interface index, in its network namespace.
    pub ifindex: u32,
    /// The hook.
    pub hook: Hook,
    /// How it is attached.
    pub mode: AttachMode,
    /// Interface name when attached.
    pub ifname: String,
    /// Inode of the interface's network namespace.
    pub netns: u64,
    link: HookLink,
    generation: Option<Generation>,
    record: Option<AttachmentRecord>,
    dir: Option<PathBuf>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("ifindex", &self.ifindex)
            .field("ifname", &self.ifname)
            .field("hook", &self.hook)
            .field("mode", &self.mode)
            .field("generation", &self.generation.as_ref().map(|g| g.number))
            .finish()
    }
}

impl Attachment {
    /// The generation running (`None`: generation 0, no rules).
    pub fn generation(&self) -> Option<&Generation> {
        self.generation.as_ref()
    }

    /// The generation `rollback` would return to (pinned data planes).
    pub fn previous_generation(&self) -> Option<u32> {
        self.record.as_ref().and_then(|r| r.previous)
    }

    /// The kernel's id of the BPF link (tcx, XDP); `None` for clsact.
    pub fn link_id(&self) -> Option<u32> {
        let fd = self.link.link_fd()?;
        let mut info = libbpf_rs::libbpf_sys::bpf_link_info::default();
        let mut len = std::mem::size_of_val(&info) as u32;
        // SAFETY: info is a valid bpf_link_info of len bytes.
        let rc = unsafe {
            libbpf_rs::libbpf_sys::bpf_link_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len)
        };
        (rc == 0).then_some(info.id)
    }

    /// The cls_bpf filter (mode clsact).
    pub fn clsact_filter(&self) -> Option<ClsactFilter> {
        match &self.link {
            HookLink::Clsact(f) => Some(*f),
            HookLink::Link(_) => None,
        }
    }

    /// Where it is pinned (pinned data planes).
    pub fn pin_dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }
}

/// One compiled policy set loaded as its own program instance, with its own
/// rule maps; sharing the flow and counter maps of its [`Dataplane`].
/// Applying it to an attachment publishes all of it with one
/// `bpf_link_update` (docs/engine.md).
pub struct Generation {
    number: u32,
    policy: CompiledPolicy,
    load_time: Duration,
    prog: ProgramHandle,
    /// The generation's own maps (rules, counters, plugin slots), by name.
    maps: Vec<(String, MapHandle)>,
    source: Option<PolicySource>,
    // The objects (entry, plugins) this process loaded, kept while the
    // generation lives; adopted generations have none.
    _objects: Vec<Object>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("number", &self.number)
            .field("hook", &self.policy.hook())
            .field("rules", &self.policy.rule_count())
            .finish()
    }
}

impl Dataplane {
    /// Loads (and verifies) the entry programs of generation 0. Needs root.
    pub fn load() -> Result<Dataplane> {
        Dataplane::load_with(&LoadOptions::default())
    }

    /// [`Dataplane::load`] with explicit sizes.
    pub fn load_with(options: &LoadOptions) -> Result<Dataplane> {
        Dataplane::load_entry(options, None)
    }

    /// Opens the pinned data plane in `dir` (a bpffs directory, created if
    /// missing; see [`crate::pins`]): shares the maps pinned there (or pins
    /// new ones) and adopts every attachment and generation an earlier
    /// process left, so counters keep counting and links keep their ids.
    /// Attachments made or generations applied from here are pinned too, and
    /// stay when the process exits.
    ///
    /// `options` serve a data plane created here; one already pinned keeps
    /// the options it was created with ([`Dataplane::options`] says which).
    ///
    /// A directory pinned by an emptcp of another ABI (its shared maps have
    /// other shapes) is refused with an [`ErrorKind::InvalidInput`] error
    /// that says so; [`Dataplane::open_pinned_to_detach`] still removes it.
    pub fn open_pinned(dir: &Path, options: &LoadOptions) -> Result<Dataplane> {
        let pins = PinDir::open(dir)?;
        let record_path = pins.dataplane_record();
        let recorded = if record_path.exists() {
            let record: DataplaneRecord = read_record(&record_path)?;
            if record.version != RECORD_VERSION || record.abi != abi::ABI_VERSION {
                return Err(other_version(
                    dir,
                    &format!("record version {}, ABI {}", record.version, record.abi),
                ));
            }
            Some(record.options)
        } else if pins.shared_map(COUNTERS_MAP).exists() {
            // Shared maps without a record: pinned before records of the
            // data plane existed (ABI 2 and older).
            return Err(other_version(dir, "no data plane record: ABI 2 or older"));
        } else {
            None
        };
        let options = recorded.unwrap_or(*options);
        let mut dp = Dataplane::load_entry(&options, Some(&pins))?;
        if recorded.is_none() {
            let record = DataplaneRecord {
                version: RECORD_VERSION,
                abi: abi::ABI_VERSION,
                options,
            };
            write_record(&record_path, &record, false)?;
        }
        for att_dir in pins.attachment_dirs()? {
            let att = adopt_attachment(&att_dir)?;
            let newest = [
                att.record.as_ref().and_then(|r| r.current),
                att.previous_generation(),
            ];
            dp.last_generation = newest
                .into_iter()
                .flatten()
                .fold(dp.last_generation, u32::max);
            dp.attachments.push(att);
        }
        tracing::info!(dir = %dir.display(), adopted = dp.attachments.len(), "pinned data plane open");
        dp.pins = Some(pins);
        Ok(dp)
    }

    /// Opens the pinned data plane in `dir` only to take it down with
    /// [`Dataplane::detach_all`], whatever emptcp version pinned it: the
    /// pinned shared maps are not reused (their shapes may differ from this
    /// build's), attachments are adopted from their records, and
    /// generations this build cannot read stay unadopted (their links and
    /// pins still go).
    pub fn open_pinned_to_detach(dir: &Path) -> Result<Dataplane> {
        let pins = PinDir::open(dir)?;
        let mut dp = Dataplane::load_entry(&LoadOptions::default(), None)?;
        for att_dir in pins.attachment_dirs()? {
            dp.attachments.push(adopt_attachment(&att_dir)?);
        }
        dp.pins = Some(pins);
        Ok(dp)
    }

    fn load_entry(options: &LoadOptions, pins: Option<&PinDir>) -> Result<Dataplane> {
        let started = Instant::now();
        let mut open = ObjectBuilder::default()
            .open_memory(ENTRY_OBJECT)
            .map_err(|e| Error::bpf("opening the emptcp entry object", e))?;
        for mut map in open.maps_mut() {
            let name = map.name().to_string_lossy().into_owned();
            if name == FLOWS_MAP {
                map.set_max_entries(options.flow_table_size)
                    .map_err(|e| Error::bpf("sizing emptcp_flows", e))?;
            }
            if name.ends_with(".rodata") {
                let data = map.initial_value_mut().ok_or_else(|| {
                    Error::new(ErrorKind::Load, "entry object has no .rodata data")
                })?;
                let mut config = config_from_rodata(data)?;
                options.configure(&mut config);
                config_slot(data)?.copy_from_slice(abi::as_bytes(&config));
            }
            // libbpf reuses a map pinned at this path (refusing one of
            // another shape), or pins the one it creates.
            if let Some(pins) = pins.filter(|_| SHARED_MAPS.contains(&name.as_str())) {
                map.set_pin_path(pins.shared_map(&name))
                    .map_err(|e| Error::bpf(format!("pinning {name}"), e))?;
            }
        }
        let obj = open
            .load()
            .map_err(|e| load_error("loading the emptcp entry programs", e))?;
        let abi_version = read_abi_version(&obj)?;
        if abi_version != abi::ABI_VERSION {
            return Err(Error::new(
                ErrorKind::Load,
                format!(
                    "entry object has ABI {abi_version}, library expects {}",
                    abi::ABI_VERSION
                ),
            ));
        }
        Ok(Dataplane {
            obj,
            attachments: Vec::new(),
            load_time: started.elapsed(),
            last_generation: 0,
            pins: None,
            options: *options,
        })
    }

    /// Loads a compiled policy set as a new generation for its hook: a new
    /// program instance whose `.rodata` is the compiled configuration, with
    /// new rule maps filled from it, sharing this data plane's flow and
    /// counter maps. Nothing runs it until [`Dataplane::apply`].
    ///
    /// `plugins[i]` serves plugin slot `i` ([`crate::policy::Action::Plugin`]);
    /// it is loaded against this generation's program and attached before
    /// this returns.
    pub fn load_generation(
        &mut self,
        policy: &CompiledPolicy,
        plugins: &[&PluginSpec],
    ) -> Result<Generation> {
        let started = Instant::now();
        let hook = policy.hook();
        let number = self.last_generation + 1;
        let mut config = policy.config;
        config.generation = number;
        self.options.configure(&mut config);

        let mut open = ObjectBuilder::default()
            .open_memory(ENTRY_OBJECT)
            .map_err(|e| Error::bpf("opening the emptcp entry object", e))?;
        for mut prog in open.progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            prog.set_autoload(name == hook.program_name() || name == hook.resume_program_name());
        }
        let sized = |n: usize| u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        for mut map in open.maps_mut() {
            let name = map.name().to_string_lossy().into_owned();
            let set = |r: libbpf_rs::Result<()>| {
                r.map_err(|e| Error::bpf(format!("preparing map {name}"), e))
            };
            match name.as_str() {
                n if SHARED_MAPS.contains(&n) => set(map.reuse_fd(self.map(n)?.as_fd()))?,
                "emptcp_rules" => set(map.set_max_entries(sized(policy.rules.len())))?,
                "emptcp_rule_info" | "emptcp_rule_hits" => {
                    set(map.set_max_entries(sized(policy.rule_info.len())))?
                }
                n if n.ends_with(".rodata") => {
                    let data = map.initial_value_mut().ok_or_else(|| {
                        Error::new(ErrorKind::Load, "entry object has no .rodata data")
                    })?;
                    config_slot(data)?.copy_from_slice(abi::as_bytes(&config));
                }
                _ => {}
            }
        }
        let obj = open
            .load()
            .map_err(|e| load_error(&format!("loading generation {number} for {hook}"), e))?;
        let gen_maps = |name: &str| -> Result<libbpf_rs::Map<'_>> { find_map(&obj, name) };
        let rules = gen_maps("emptcp_rules")?;
        for (key, set) in &policy.rules {
            rules
                .update(abi::as_bytes(key), abi::as_bytes(set), MapFlags::NO_EXIST)
                .map_err(|e| Error::bpf("filling emptcp_rules", e))?;
        }
        let info = gen_maps("emptcp_rule_info")?;
        for (id, rule) in policy.rule_info.iter().enumerate() {
            info.update(
                &(id as u32).to_ne_bytes(),
                abi::as_bytes(rule),
                MapFlags::ANY,
            )
            .map_err(|e| Error::bpf("filling emptcp_rule_info", e))?;
        }
        let mut objects = Vec::new();
        let slots = policy.plugin_slots();
        if !slots.is_empty() {
            let resume = find_map(&obj, "emptcp_resume")?;
            let resume_prog = find_program_named(&obj, hook.resume_program_name())?;
            resume
                .update(
                    &0u32.to_ne_bytes(),
                    &resume_prog.as_fd().as_raw_fd().to_ne_bytes(),
                    MapFlags::ANY,
                )
                .map_err(|e| Error::bpf("installing the resume program", e))?;
            let maps = PluginMaps {
                state: self.map(PLUGIN_STATE_MAP)?,
                resume,
                slots: find_map(&obj, hook.plugin_array_name())?,
            };
            for slot in slots {
                let spec = plugins.get(usize::from(slot)).ok_or_else(|| {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("a chain uses plugin slot {slot}, but no plugin was given for it"),
                    )
                })?;
                objects.push(crate::plugin::load_into(
                    spec,
                    &maps,
                    hook,
                    u32::from(slot),
                )?);
            }
        }
        let prog = ProgramHandle::try_from(&find_program(&obj, hook)?)
            .map_err(|e| Error::bpf("holding the generation's program", e))?;
        let maps = own_maps(&obj)?;
        objects.push(obj);
        self.last_generation = number;
        tracing::info!(%hook, number, rules = policy.rule_count(), "generation loaded");
        Ok(Generation {
            number,
            policy: policy.clone(),
            load_time: started.elapsed(),
            prog,
            maps,
            source: None,
            _objects: objects,
        })
    }

    /// Makes `generation` the program of the attachment of its hook on
    /// `ifindex`, with one atomic replacement (`bpf_link_update`, or a
    /// cls_bpf filter replace): every packet runs wholly under the previous
    /// program or wholly under the new one. Returns the generation it
    /// replaced (`None` for generation 0); its counters stay readable while
    /// the caller keeps it.
    ///
    /// Pinned data planes pin the generation first, keep the one it replaces
    /// for [`Dataplane::rollback`] and unpin the one before; they need the
    /// generation's policy source ([`Generation::set_source`]) so that
    /// another process can adopt it.
    pub fn apply(&mut self, ifindex: u32, generation: Generation) -> Result<Option<Generation>> {
        let hook = generation.policy.hook();
        let pos = self.position(hook, ifindex)?;
        let att = &mut self.attachments[pos];
        if let Some(dir) = &att.dir {
            generation.pin(&dir.join(format!("gen{}", generation.number)))?;
        }
        att.link.update(generation.prog.as_fd(), hook, ifindex)?;
        tracing::info!(%hook, ifindex, generation = generation.number, "generation applied");
        let old_previous = att.record.as_mut().map(|r| {
            let old = r.previous;
            r.previous = r.current;
            r.current = Some(generation.number);
            old
        });
        att.save_record()?;
        if let (Some(Some(old)), Some(dir)) = (old_previous, &att.dir) {
            remove_tree(&dir.join(format!("gen{old}")))?;
        }
        Ok(att.generation.replace(generation))
    }

    /// Puts the attachment of `hook` on `ifindex` back on the generation it
    /// ran before the last apply (pinned data planes), with one atomic
    /// replacement. The rolled-back generation becomes the one a second
    /// rollback returns to. Returns the generation now running.
    pub fn rollback(&mut self, hook: Hook, ifindex: u32) -> Result<u32> {
        let pos = self.position(hook, ifindex)?;
        let att = &mut self.attachments[pos];
        let (Some(dir), Some(record)) = (att.dir.clone(), att.record.as_mut()) else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "rollback needs a pinned data plane (keep the replaced Generation and apply it instead)",
            ));
        };
        let Some(previous) = record.previous else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{hook} on {}: no previous generation to roll back to",
                    att.ifname
                ),
            ));
        };
        let generation = Generation::adopt(&dir.join(format!("gen{previous}")))?;
        att.link.update(generation.prog.as_fd(), hook, ifindex)?;
        record.previous = record.current;
        record.current = Some(previous);
        att.generation = Some(generation);
        att.save_record()?;
        tracing::info!(%hook, ifindex, generation = previous, "rolled back");
        Ok(previous)
    }

    /// Attaches the entry program of `hook` (generation 0) to interface
    /// `ifindex` of the calling thread's network namespace (see
    /// [`crate::netns::NetnsGuard`]), in the hook's default mode
    /// ([`AttachMode::default_for`]).
    ///
    /// tcx links sit beside other programs on the device and never touch
    /// qdiscs; an XDP attach is refused, naming the program, when the device
    /// already runs another.
    pub fn attach(&mut self, hook: Hook, ifindex: u32) -> Result<&Attachment> {
        self.attach_with(hook, ifindex, AttachMode::default_for(hook), None)
    }

    /// [`Dataplane::attach`] in a chosen mode. `netns_path` (a path that
    /// opens the calling thread's namespace, such as `/run/netns/NAME`) is
    /// recorded so that `detach --all` can reach clsact filters from
    /// elsewhere.
    pub fn attach_with(
        &mut self,
        hook: Hook,
        ifindex: u32,
        mode: AttachMode,
        netns_path: Option<&Path>,
    ) -> Result<&Attachment> {
        let netns = crate::netns::current_netns_inode()?;
        let ifname = crate::netns::interface_name(ifindex)?;
        if self
            .attachments
            .iter()
            .any(|a| a.hook == hook && a.ifindex == ifindex && a.netns == netns)
        {
            return Err(Error::new(
                ErrorKind::Busy,
                format!("emptcp is already attached at {hook} on {ifname}"),
            ));
        }
        let prog = find_program(&self.obj, hook)?;
        let link = crate::attach::attach(prog.as_fd(), hook, ifindex, mode)?;
        let mut att = Attachment {
            ifindex,
            hook,
            mode,
            ifname,
            netns,
            link,
            generation: None,
            record: None,
            dir: None,
        };
        if let Some(pins) = &self.pins {
            let dir = pins.attachment_dir(netns, ifindex, hook);
            let pinned = self
                .generation_zero(hook)
                .and_then(|zero| att.pin(&dir, netns_path, zero));
            if let Err(e) = pinned {
                // Leave nothing half made: the device as it was.
                let _ = att.link.detach(hook, ifindex);
                let _ = remove_tree(&dir);
                return Err(e);
            }
        }
        tracing::info!(%hook, ifindex, %mode, "attached");
        self.attachments.push(att);
        Ok(self.attachments.last().expect("just pushed"))
    }

    /// Detaches the entry program of `hook` from `ifindex` (and unpins what
    /// belongs to it); false when it was not attached there.
    pub fn detach(&mut self, hook: Hook, ifindex: u32) -> Result<bool> {
        let Ok(pos) = self.position(hook, ifindex) else {
            return Ok(false);
        };
        self.detach_at(pos)?;
        Ok(true)
    }

    fn detach_at(&mut self, pos: usize) -> Result<()> {
        let att = self.attachments.remove(pos);
        let (netns, ifindex) = (att.netns, att.ifindex);
        if att.detach()? {
            // The other direction's filter keeps the clsact qdisc emptcp
            // made; removing it becomes that attachment's duty.
            let heir = self
                .attachments
                .iter_mut()
                .find(|a| a.netns == netns && a.ifindex == ifindex && a.clsact_filter().is_some());
            if let Some(other) = heir {
                other.link.take_qdisc();
                let filter = other.clsact_filter();
                if let Some(r) = other.record.as_mut() {
                    r.clsact = filter;
                }
                other.save_record()?;
            }
        }
        Ok(())
    }

    /// Detaches every attachment (in every namespace), then removes the
    /// shared map pins and the pin directory: everything emptcp made and
    /// nothing else. Returns what was detached, as "hook on ifname"; entries
    /// that others put in the directory are left, and named in the log.
    pub fn detach_all(mut self) -> Result<Vec<String>> {
        let mut done = Vec::new();
        let mut first_error = None;
        while let Some(att) = self.attachments.first() {
            let what = format!("{} on {}", att.hook, att.ifname);
            // clsact filters are reached in their namespace; a namespace
            // that is gone took them with it.
            let _in_netns = match &att.record {
                Some(AttachmentRecord {
                    netns_path: Some(p),
                    ..
                }) => crate::netns::NetnsGuard::enter(p).ok(),
                _ => None,
            };
            match self.detach_at(0) {
                Ok(()) => done.push(what),
                Err(e) => {
                    tracing::warn!("{what}: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if let Some(pins) = self.pins.take() {
            let left = pins.remove(SHARED_MAPS)?;
            for path in left {
                tracing::warn!(path = %path.display(), "left in the pin directory: not emptcp's");
            }
        }
        Ok(done)
    }

    /// Generation 0 of `hook` as a generation: the entry program with no
    /// rules, pinned with each attachment so that `rollback` can return to
    /// it.
    fn generation_zero(&self, hook: Hook) -> Result<Generation> {
        let policy = crate::policy::PolicySet::default()
            .compile(hook)
            .map_err(|e| Error::new(ErrorKind::Load, format!("compiling the empty policy: {e}")))?;
        let prog = ProgramHandle::try_from(&find_program(&self.obj, hook)?)
            .map_err(|e| Error::bpf("holding the entry program", e))?;
        Ok(Generation {
            number: 0,
            policy,
            load_time: Duration::ZERO,
            prog,
            maps: own_maps(&self.obj)?,
            source: Some(PolicySource {
                file: "(no policies)".into(),
                text: String::new(),
                interfaces: Default::default(),
            }),
            _objects: Vec::new(),
        })
    }

    /// Kernel ids of the maps every generation shares, by name: a process
    /// that adopts pinned state sees the same ids.
    pub fn shared_map_ids(&self) -> Result<BTreeMap<&'static str, u32>> {
        SHARED_MAPS
            .iter()
            .map(|name| {
                let info = self
                    .map(name)?
                    .info()
                    .map_err(|e| Error::bpf(format!("querying {name}"), e))?;
                Ok((*name, info.info.id))
            })
            .collect()
    }

    /// The pin directory (pinned data planes).
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pins.as_ref().map(|p| p.root())
    }

    /// The attachment of `hook` on `ifindex`, the one in the calling
    /// thread's namespace when several namespaces have that ifindex (the one
    /// [`Dataplane::apply`] would change).
    pub fn attachment(&self, hook: Hook, ifindex: u32) -> Option<&Attachment> {
        self.position(hook, ifindex)
            .ok()
            .map(|i| &self.attachments[i])
    }

    fn position(&self, hook: Hook, ifindex: u32) -> Result<usize> {
        let here = crate::netns::current_netns_inode().ok();
        let matching: Vec<usize> = (0..self.attachments.len())
            .filter(|&i| self.attachments[i].hook == hook && self.attachments[i].ifindex == ifindex)
            .collect();
        matching
            .iter()
            .copied()
            .find(|&i| Some(self.attachments[i].netns) == here)
            .or_else(|| (matching.len() == 1).then(|| matching[0]))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("no {hook} attachment on ifindex {ifindex}"),
                )
            })
    }

    /// The options this data plane runs with (for a pinned one, those it
    /// was created with).
    pub fn options(&self) -> LoadOptions {
        self.options
    }

    /// Wall time of [`Dataplane::load`]: open, relocate, verify all programs.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// What the kernel reports about the generation-0 entry program of `hook`.
    pub fn program_info(&self, hook: Hook) -> Result<ProgramInfo> {
        program_info(find_program(&self.obj, hook)?.as_fd(), hook)
    }

    /// The attachments: made by this process, or adopted from pins.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Per-flow traffic the entry programs saw, summed over CPUs; empty
    /// unless the data plane was loaded with [`LoadOptions::account_flows`].
    pub fn flow_stats(&self) -> Result<Vec<(FlowKey, FlowStats)>> {
        let map = self.map(FLOWS_MAP)?;
        let mut out = Vec::new();
        for key_bytes in map.keys() {
            let Some(key) = abi::from_bytes::<emptcp_flow_key>(&key_bytes) else {
                continue;
            };
            let per_cpu: Vec<emptcp_flow_stats> = lookup_percpu(&map, &key_bytes)?;
            let mut total = FlowStats::default();
            for cpu in per_cpu {
                total.packets += cpu.packets;
                total.bytes += cpu.bytes;
                total.payload_bytes += cpu.payload_bytes;
            }
            out.push((FlowKey::from_abi(&key), total));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// MPTCP connections and subflows the data plane has learned from the
    /// handshakes it saw (connection tracking), connections by their
    /// listener's token; subflows not (yet) linked to a connection come
    /// under token 0.
    pub fn connections(&self) -> Result<Vec<TrackedConnection>> {
        let conns = self.map("emptcp_ct_conn")?;
        let subflows = self.map("emptcp_ct_sf")?;
        let mut out: BTreeMap<u32, TrackedConnection> = BTreeMap::new();
        for key in conns.keys() {
            let Some(c) = lookup::<emptcp_conn_ct>(&conns, &key)? else {
                continue;
            };
            out.insert(
                c.token_listener,
                TrackedConnection {
                    token_listener: c.token_listener,
                    token_initiator: (c.key_initiator != 0).then_some(c.token_initiator),
                    key_listener: c.key_listener,
                    key_initiator: (c.key_initiator != 0).then_some(c.key_initiator),
                    subflows_seen: c.subflows,
                    subflows: Vec::new(),
                },
            );
        }
        for key_bytes in subflows.keys() {
            let Some(key) = abi::from_bytes::<emptcp_ct_key>(&key_bytes) else {
                continue;
            };
            let Some(sf) = lookup::<emptcp_subflow_ct>(&subflows, &key_bytes)? else {
                continue;
            };
            let family_v6 = u32::from(key.family) == libc::AF_INET6 as u32;
            let lo = socket(family_v6, key.addr_lo, key.port_lo);
            let hi = socket(family_v6, key.addr_hi, key.port_hi);
            let initiator_lo = sf.flags & emptcp_ct_flags::EMPTCP_CT_INITIATOR_LO.0 != 0;
            let (initiator, responder) = if initiator_lo { (lo, hi) } else { (hi, lo) };
            let (isn_initiator, isn_responder) = if initiator_lo {
                (sf.isn_lo, sf.isn_hi)
            } else {
                (sf.isn_hi, sf.isn_lo)
            };
            let known = sf.flags & emptcp_ct_flags::EMPTCP_CT_KNOWN.0 != 0;
            let conn = out
                .entry(if known { sf.token } else { 0 })
                .or_insert_with(|| TrackedConnection {
                    token_listener: if known { sf.token } else { 0 },
                    ..Default::default()
                });
            conn.subflows.push(TrackedSubflow {
                initiator,
                responder,
                index: (sf.index != 0xff).then_some(sf.index),
                join: sf.flags & emptcp_ct_flags::EMPTCP_CT_JOIN.0 != 0,
                backup: sf.flags & emptcp_ct_flags::EMPTCP_CT_BACKUP.0 != 0,
                address_id: sf.addr_id,
                isn_initiator,
                isn_responder,
            });
        }
        let mut v: Vec<TrackedConnection> = out.into_values().collect();
        for c in &mut v {
            c.subflows.sort_by_key(|s| s.index.unwrap_or(u8::MAX));
        }
        Ok(v)
    }

    /// What `record` operators measured, per subflow.
    pub fn records(&self) -> Result<Vec<SubflowRecord>> {
        let map = self.map("emptcp_record")?;
        let mut out = Vec::new();
        for key_bytes in map.keys() {
            let Some(key) = abi::from_bytes::<emptcp_ct_key>(&key_bytes) else {
                continue;
            };
            let Some(r) = lookup::<emptcp_record>(&map, &key_bytes)? else {
                continue;
            };
            let v6 = u32::from(key.family) == libc::AF_INET6 as u32;
            let side = |d: usize, endpoint: SocketAddr| RecordDirection {
                from: endpoint,
                packets: r.packets[d],
                payload_bytes: r.payload_bytes[d],
                srtt_us: (r.rtt_samples[d] > 0).then_some(r.srtt_us[d]),
                rtt_samples: r.rtt_samples[d],
                data_sent: r.data_sent[d],
                data_acked: r.data_acked[d],
            };
            out.push(SubflowRecord {
                lo: side(0, socket(v6, key.addr_lo, key.port_lo)),
                hi: side(1, socket(v6, key.addr_hi, key.port_hi)),
            });
        }
        Ok(out)
    }

    /// The event map, for an [`crate::events::EventReader`]:
    /// `EventReader::new(&dp.events_map()?)`.
    pub fn events_map(&self) -> Result<libbpf_rs::Map<'_>> {
        self.map("emptcp_events")
    }

    /// Entry program counters of `hook`, summed over CPUs.
    pub fn counters(&self, hook: Hook) -> Result<EntryCounters> {
        let map = self.map(COUNTERS_MAP)?;
        let mut out = EntryCounters::default();
        for (i, name) in ENTRY_COUNTER_NAMES.iter().enumerate() {
            let idx = hook.abi().0 * ENTRY_COUNTER_NAMES.len() as u32 + i as u32;
            let sum = lookup_percpu::<u64>(&map, &idx.to_ne_bytes())?.iter().sum();
            out.0.insert(name, sum);
        }
        // A packet of the quick pass is counted once, as quick_tcp or
        // quick_mptcp (abi.h): it is also TCP, and matched no policy. Not
        // added to `mptcp`, which counts packets seen to carry an MPTCP
        // option: quick_mptcp's packets were not looked at.
        let quick = out.get("quick_tcp") + out.get("quick_mptcp");
        for name in ["tcp", "no_policy"] {
            *out.0.entry(name).or_default() += quick;
        }
        // Every packet ends in exactly one of these (abi.h): the data plane
        // saves an update per packet by not counting "seen" itself.
        let seen = ["not_tcp", "malformed", "fragment", "tcp"]
            .iter()
            .map(|n| out.get(n))
            .sum();
        out.0.insert("seen", seen);
        Ok(out)
    }

    /// The counters of `hook` once no packet has reached it for `quiet`
    /// (reading again until `seen` holds still), or after `limit` at most.
    ///
    /// Counters are read one at a time while packets may pass, so a reading
    /// taken while traffic flows need not add up (a packet counted `tcp`
    /// between the reads of `matched` and `tcp`). After a transfer its
    /// connections' closing packets still cross the hook: reports that
    /// compare counters wait here first.
    pub fn counters_when_quiet(
        &self,
        hook: Hook,
        quiet: Duration,
        limit: Duration,
    ) -> Result<EntryCounters> {
        let deadline = Instant::now() + limit;
        let mut last = self.counters(hook)?;
        loop {
            std::thread::sleep(quiet);
            let now = self.counters(hook)?;
            if now.get("seen") == last.get("seen") || Instant::now() >= deadline {
                return Ok(now);
            }
            last = now;
        }
    }

    /// Runs one packet through the generation-0 entry program of `hook` with
    /// BPF_PROG_TEST_RUN: the real loaded program and maps, no attachment.
    /// State the program keeps (flow stats, counters) carries over between
    /// calls as it would on a live hook.
    pub fn test_run(&self, hook: Hook, packet: &[u8]) -> Result<TestRun> {
        test_run(find_program(&self.obj, hook)?.as_fd(), hook, packet)
    }

    pub(crate) fn map(&self, name: &str) -> Result<libbpf_rs::Map<'_>> {
        find_map(&self.obj, name)
    }
}

impl Attachment {
    /// Pins the link and generation 0 and writes the record under `dir`.
    fn pin(&mut self, dir: &Path, netns_path: Option<&Path>, zero: Generation) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        if let Some(fd) = self.link.link_fd() {
            let path = dir.join("link");
            let c = path_cstring(&path)?;
            // SAFETY: valid link fd and NUL-terminated path.
            let rc = unsafe { libbpf_rs::libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), c.as_ptr()) };
            if rc != 0 {
                return Err(Error::io(
                    format!("pinning {}", path.display()),
                    std::io::Error::from_raw_os_error(-rc),
                ));
            }
        }
        self.record = Some(AttachmentRecord {
            version: RECORD_VERSION,
            ifname: self.ifname.clone(),
            ifindex: self.ifindex,
            netns: self.netns,
            netns_path: netns_path.map(Path::to_owned),
            hook: self.hook,
            mode: self.mode,
            clsact: self.clsact_filter(),
            current: Some(0),
            previous: None,
        });
        zero.pin(&dir.join("gen0"))?;
        self.generation = Some(zero);
        self.dir = Some(dir.to_owned());
        self.save_record()
    }

    fn save_record(&self) -> Result<()> {
        match (&self.dir, &self.record) {
            (Some(dir), Some(record)) => write_record(&dir.join("meta"), record, true),
            _ => Ok(()),
        }
    }

    /// Takes the program off the device and removes the pins; true when a
    /// clsact qdisc emptcp made is kept for filters still on it.
    fn detach(self) -> Result<bool> {
        let here = crate::netns::current_netns_inode()?;
        let netns_path = self.record.as_ref().and_then(|r| r.netns_path.clone());
        // A clsact filter is reached by ifindex, through netlink, in its own
        // namespace; links are reached by their fd from anywhere.
        let _guard = match (&self.link, netns_path) {
            (HookLink::Clsact(_), Some(path)) if self.netns != here => {
                Some(crate::netns::NetnsGuard::enter(&path)?)
            }
            (HookLink::Clsact(_), None) if self.netns != here => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{} on {} is a clsact filter in another network namespace: detach it from there (--netns)",
                        self.hook, self.ifname
                    ),
                ));
            }
            _ => None,
        };
        let kept_qdisc = match self.link.detach(self.hook, self.ifindex) {
            Ok(kept) => kept,
            // The device (or its namespace) is gone, and the program with it.
            Err(e) if self.link.link_fd().is_some() && device_gone(&e) => {
                tracing::info!(hook = %self.hook, ifname = %self.ifname, "device already gone");
                false
            }
            Err(e) => return Err(e),
        };
        if let Some(dir) = &self.dir {
            remove_tree(dir)?;
        }
        tracing::info!(hook = %self.hook, ifname = %self.ifname, "detached");
        Ok(kept_qdisc)
    }
}

/// The maps of an entry object that are not shared between generations
/// (maps with a '.' are its data sections).
fn own_maps(obj: &Object) -> Result<Vec<(String, MapHandle)>> {
    let mut maps = Vec::new();
    for map in obj.maps() {
        let name = map.name().to_string_lossy().into_owned();
        if SHARED_MAPS.contains(&name.as_str()) || name.contains('.') {
            continue;
        }
        let handle =
            MapHandle::try_from(&map).map_err(|e| Error::bpf(format!("holding map {name}"), e))?;
        maps.push((name, handle));
    }
    Ok(maps)
}

fn device_gone(e: &Error) -> bool {
    use std::error::Error as _;
    e.source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .and_then(std::io::Error::raw_os_error)
        .is_some_and(|errno| errno == libc::ENOLINK || errno == libc::ENODEV)
}

/// Opens what an earlier process pinned for one attachment.
fn adopt_attachment(dir: &Path) -> Result<Attachment> {
    let record: AttachmentRecord = read_record(&dir.join("meta"))?;
    if record.version != RECORD_VERSION {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{}: pinned by emptcp with record version {} (this one reads {RECORD_VERSION}): \
                 detach it with that version",
                dir.display(),
                record.version
            ),
        ));
    }
    let link = match record.clsact {
        Some(filter) => HookLink::Clsact(filter),
        None => {
            let path = dir.join("link");
            let c = path_cstring(&path)?;
            // SAFETY: NUL-terminated path; a non-negative result is ours.
            let fd = unsafe { libbpf_rs::libbpf_sys::bpf_obj_get(c.as_ptr()) };
            HookLink::Link(
                crate::attach::owned_fd(fd)
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))?,
            )
        }
    };
    // A generation this build cannot read (another ABI, a policy it no
    // longer accepts) is left running unadopted: the attachment can still be
    // detached, or given a new generation.
    let generation = record.current.and_then(|n| {
        Generation::adopt(&dir.join(format!("gen{n}")))
            .inspect_err(
                |e| tracing::warn!(dir = %dir.display(), "generation {n} not adopted: {e}"),
            )
            .ok()
    });
    Ok(Attachment {
        ifindex: record.ifindex,
        hook: record.hook,
        mode: record.mode,
        ifname: record.ifname.clone(),
        netns: record.netns,
        link,
        generation,
        record: Some(record),
        dir: Some(dir.to_owned()),
    })
}

fn path_cstring(path: &Path) -> Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::new(ErrorKind::InvalidInput, "path has a NUL byte"))
}

impl Generation {
    /// The generation number (1 and up; unique within its [`Dataplane`] and
    /// its pin directory).
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The compiled policy set it runs.
    pub fn policy(&self) -> &CompiledPolicy {
        &self.policy
    }

    /// The policy file it was compiled from, when known.
    pub fn source(&self) -> Option<&PolicySource> {
        self.source.as_ref()
    }

    /// Records the policy file this generation was compiled from (needed to
    /// apply it to a pinned data plane).
    pub fn set_source(&mut self, source: PolicySource) {
        self.source = Some(source);
    }

    /// Wall time of loading it: open, verify, fill the rule maps.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Runs one packet through this generation's program (see
    /// [`Dataplane::test_run`]).
    pub fn test_run(&self, packet: &[u8]) -> Result<TestRun> {
        test_run(self.prog.as_fd(), self.policy.hook(), packet)
    }

    /// What the kernel reports about this generation's program.
    pub fn program_info(&self) -> Result<ProgramInfo> {
        program_info(self.prog.as_fd(), self.policy.hook())
    }

    /// Packets each policy's rules won, by policy name, in set order.
    pub fn policy_hits(&self) -> Result<Vec<(String, u64)>> {
        let map = self.map("emptcp_rule_hits")?;
        let names = self.policy.policy_names();
        let mut hits = vec![0u64; names.len()];
        for id in 0..self.policy.rule_count() as u32 {
            let n: u64 = lookup_percpu::<u64>(map, &id.to_ne_bytes())?.iter().sum();
            if let Some(p) = self.policy.policy_of_rule(id) {
                hits[p] += n;
            }
        }
        Ok(names.iter().cloned().zip(hits).collect())
    }

    /// Lookups and hits of each rule-key shape (in shape order), summed
    /// over CPUs: how the selector stages fared when flows were classified.
    pub fn shape_stats(&self) -> Result<Vec<(u64, u64)>> {
        let map = self.map("emptcp_shape_st")?;
        (0..self.policy.shape_count() as u32)
            .map(|s| {
                let per_cpu = lookup_percpu::<emptcp_shape_stats>(map, &s.to_ne_bytes())?;
                Ok(per_cpu
                    .iter()
                    .fold((0, 0), |(l, h), c| (l + c.lookups, h + c.hits)))
            })
            .collect()
    }

    /// Counters of each operator of chain slot `chain`, summed over CPUs.
    pub fn op_stats(&self, chain: u32) -> Result<Vec<OpStats>> {
        let map = self.map("emptcp_op_stats")?;
        let len = self
            .policy
            .config
            .chains
            .get(chain as usize)
            .map_or(0, |c| c.len);
        let ops_max = crate::policy::limits::CHAIN_OPS as u32;
        (0..len)
            .map(|op| {
                let idx = chain * ops_max + op;
                let mut total = OpStats::default();
                for cpu in lookup_percpu::<emptcp_op_stats>(map, &idx.to_ne_bytes())? {
                    total.hits += cpu.hits;
                    for (t, c) in total.reasons.iter_mut().zip(cpu.reasons) {
                        *t += c;
                    }
                }
                Ok(total)
            })
            .collect()
    }

    fn map(&self, name: &str) -> Result<&MapHandle> {
        self.maps
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
            .ok_or_else(|| Error::new(ErrorKind::Load, format!("generation has no map {name}")))
    }

    /// Pins the program, its own maps and its record under `dir`.
    fn pin(&self, dir: &Path) -> Result<()> {
        let source = self.source.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                "a generation applied to a pinned data plane needs its policy source (Generation::set_source)",
            )
        })?;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let pinned = || -> Result<()> {
            self.prog
                .pin(dir.join("prog"))
                .map_err(|e| Error::bpf(format!("pinning {}/prog", dir.display()), e))?;
            for (name, map) in &self.maps {
                // MapHandle::pin needs &mut; a dup of the fd pins the same map.
                let mut m =
                    MapHandle::try_from(map).map_err(|e| Error::bpf("duplicating a map fd", e))?;
                m.pin(dir.join(name))
                    .map_err(|e| Error::bpf(format!("pinning {}/{name}", dir.display()), e))?;
            }
            let record = GenerationRecord {
                version: RECORD_VERSION,
                abi: abi::ABI_VERSION,
                number: self.number,
                hook: self.policy.hook(),
                source,
            };
            write_record(&dir.join("meta"), &record, false)
        };
        pinned().inspect_err(|_| {
            let _ = remove_tree(dir);
        })
    }

    /// Opens a generation pinned at `dir` by this or another process,
    /// compiling its recorded source again for the policy names and chain
    /// layout its counters are read by.
    fn adopt(dir: &Path) -> Result<Generation> {
        let started = Instant::now();
        let record: GenerationRecord = read_record(&dir.join("meta"))?;
        if record.abi != abi::ABI_VERSION {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{}: written by a data plane of ABI {} (this one is {})",
                    dir.display(),
                    record.abi,
                    abi::ABI_VERSION
                ),
            ));
        }
        let policy = record.source.compile(record.hook).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{}: its recorded policy no longer compiles: {e}",
                    dir.display()
                ),
            )
        })?;
        let prog = ProgramHandle::from_pinned_path(dir.join("prog"))
            .map_err(|e| Error::bpf(format!("opening {}/prog", dir.display()), e))?;
        let mut maps = Vec::new();
        for path in crate::pins::read_dir(dir)? {
            let name = crate::pins::file_name(&path);
            if name == "prog" || name == "meta" {
                continue;
            }
            let map = MapHandle::from_pinned_path(&path)
                .map_err(|e| Error::bpf(format!("opening {}", path.display()), e))?;
            maps.push((name, map));
        }
        Ok(Generation {
            number: record.number,
            policy,
            load_time: started.elapsed(),
            prog,
            maps,
            source: Some(record.source),
            _objects: Vec::new(),
        })
    }
}

/// An MPTCP connection as connection tracking knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrackedConnection {
    /// The listener's token: the connection's id (0: subflows not linked).
    pub token_listener: u32,
    /// The initiator's token, once its key was seen.
    pub token_initiator: Option<u32>,
    /// The listener's key.
    pub key_listener: u64,
    /// The initiator's key, once seen.
    pub key_initiator: Option<u64>,
    /// SYNs seen: the number of subflows indexed so far.
    pub subflows_seen: u32,
    /// Its subflows still tracked, by index.
    pub subflows: Vec<TrackedSubflow>,
}

/// One tracked subflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackedSubflow {
    /// The endpoint that sent the SYN.
    pub initiator: SocketAddr,
    /// The other endpoint.
    pub responder: SocketAddr,
    /// Index in its connection (`None` for a join whose token was unknown).
    pub index: Option<u8>,
    /// Opened by MP_JOIN.
    pub join: bool,
    /// The join asked for a backup subflow.
    pub backup: bool,
    /// The initiator's address id (joins).
    pub address_id: u8,
    /// The initiator's ISN.
    pub isn_initiator: u32,
    /// The responder's ISN (0 until its SYN/ACK was seen).
    pub isn_responder: u32,
}

fn socket(v6: bool, addr: [u8; 16], port_be: u16) -> SocketAddr {
    let ip: IpAddr = if v6 {
        Ipv6Addr::from(addr).into()
    } else {
        Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).into()
    };
    SocketAddr::new(ip, u16::from_be(port_be))
}

/// A value of a (non per-CPU) map, decoded.
pub(crate) fn lookup<T: abi::Pod>(map: &dyn MapCore, key: &[u8]) -> Result<Option<T>> {
    let name = map.name().to_string_lossy().into_owned();
    Ok(map
        .lookup(key, MapFlags::ANY)
        .map_err(|e| Error::bpf(format!("reading {name}"), e))?
        .and_then(|v| abi::from_bytes::<T>(&v)))
}

/// What `record` measured of one subflow, per direction of data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubflowRecord {
    /// Sent by the endpoint whose address (then port) compares lower.
    pub lo: RecordDirection,
    /// Sent by the other endpoint.
    pub hi: RecordDirection,
}

/// One direction of a recorded subflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordDirection {
    /// The sending endpoint.
    pub from: SocketAddr,
    /// Packets (at TC, one GSO/GRO skb counts once).
    pub packets: u64,
    /// TCP payload bytes.
    pub payload_bytes: u64,
    /// Smoothed round trip from the hook to this side's receiver and back
    /// (TCP timestamps), in microseconds, once measured.
    pub srtt_us: Option<u32>,
    /// RTT samples taken.
    pub rtt_samples: u32,
    /// End of the highest DSS mapping sent: bytes into this side's data
    /// stream.
    pub data_sent: u64,
    /// Highest DATA_ACK sent: bytes of the peer's data stream acknowledged.
    pub data_acked: u64,
}

/// Choices made when a [`Dataplane`] is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadOptions {
    /// Entries of the flow table (per-CPU LRU hash: one entry per flow
    /// direction and attachment). A full table evicts the least recently
    /// used flows.
    pub flow_table_size: u32,
    /// Count packets and bytes per flow ([`Dataplane::flow_stats`]). Off by
    /// default: it costs a hash lookup per TCP packet, about half of what
    /// the entry costs otherwise (docs/benchmarks.md); the `record` actor
    /// measures the subflows a policy picks instead.
    pub account_flows: bool,
    /// Let the packets of flows no rule selects pass on their headers, the
    /// TCP option list not walked (the quick pass, docs/engine.md). On by
    /// default: it is most of what such a packet costs. Off, every TCP
    /// packet is walked: `mptcp` then counts every packet that carries an
    /// MPTCP option, and connection tracking reads every option (the quick
    /// pass lets through only packets it would not learn from).
    pub quick_pass: bool,
}

impl LoadOptions {
    /// Writes the options the programs read into a generation's
    /// configuration (the flow table's size is a map's, set apart).
    fn configure(&self, config: &mut emptcp_config) {
        config.account_flows = self.account_flows.into();
        config.quick_pass = self.quick_pass.into();
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            flow_table_size: 65_536,
            account_flows: false,
            quick_pass: true,
        }
    }
}

/// Names of `enum emptcp_op_reason` (abi.h), by value: what
/// [`OpStats::reasons`] counts.
pub const OP_REASON_NAMES: [&str; crate::policy::limits::OP_REASONS] = [
    "wrong_hook",
    "plugin_stop",
    "plugin_bad_verdict",
    "plugin_missing",
    "wscale_unknown",
    "no_ack",
    "redirect_failed",
    "edit_refused",
    "nothing_kept",
    "rtt_unknown",
];

/// Counters of one operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OpStats {
    /// Packets the operator ran on.
    pub hits: u64,
    /// Packets it could not act on, by `enum emptcp_op_reason`.
    pub reasons: [u64; crate::policy::limits::OP_REASONS],
}

/// The error for a pin directory another emptcp version made.
fn other_version(dir: &Path, found: &str) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!(
            "{} holds a data plane pinned by another emptcp version ({found}; this one is ABI {}): \
             `emptcp detach --all` takes it down (every attachment and pin), then attach again",
            dir.display(),
            abi::ABI_VERSION
        ),
    )
}

/// A refused load: EPERM is a missing capability; anything else (EACCES,
/// EINVAL, E2BIG) is the verifier's refusal, logged by libbpf above.
fn load_error(what: &str, e: libbpf_rs::Error) -> Error {
    let eperm = e.to_string().contains("os error 1)");
    let err = Error::bpf(what.to_owned(), e);
    if eperm {
        err.with_kind(ErrorKind::PermissionDenied)
    } else {
        err.with_kind(ErrorKind::Load)
    }
}

fn find_map<'o>(obj: &'o Object, name: &str) -> Result<libbpf_rs::Map<'o>> {
    obj.maps()
        .find(|m| m.name() == name)
        .ok_or_else(|| Error::new(ErrorKind::Load, format!("entry object has no map {name}")))
}

// libbpf-rs offers test_run and attach only on ProgramMut, which
// Object::progs_mut hands out from &self.
fn find_program(obj: &Object, hook: Hook) -> Result<libbpf_rs::ProgramMut<'_>> {
    find_program_named(obj, hook.program_name())
}

fn find_program_named<'o>(obj: &'o Object, name: &str) -> Result<libbpf_rs::ProgramMut<'o>> {
    obj.progs_mut()
        .find(|p| p.name() == name)
        .ok_or_else(|| Error::new(ErrorKind::Load, format!("no program {name}")))
}

/// Per-CPU values of `key` (empty when absent), decoded.
fn lookup_percpu<T: abi::Pod>(map: &dyn MapCore, key: &[u8]) -> Result<Vec<T>> {
    let name = map.name().to_string_lossy().into_owned();
    let values = map
        .lookup_percpu(key, MapFlags::ANY)
        .map_err(|e| Error::bpf(format!("reading {name}"), e))?
        .unwrap_or_default();
    Ok(values
        .iter()
        .filter_map(|v| abi::from_bytes::<T>(v))
        .collect())
}

fn program_info(prog: BorrowedFd<'_>, hook: Hook) -> Result<ProgramInfo> {
    let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: info is a valid bpf_prog_info of len bytes; the kernel fills at
    // most len bytes and leaves the array pointers (null) alone.
    let rc = unsafe {
        libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(prog.as_raw_fd(), &mut info, &mut len)
    };
    if rc != 0 {
        return Err(Error::io(
            format!("querying {}", hook.program_name()),
            std::io::Error::from_raw_os_error(-rc),
        ));
    }
    Ok(ProgramInfo {
        name: hook.program_name(),
        id: info.id,
        verified_insns: info.verified_insns,
        xlated_insns: info.xlated_prog_len / 8,
        jited_bytes: info.jited_prog_len,
    })
}

/// Offset of `mark` in `struct __sk_buff` (uapi: len, pkt_type, mark).
const SKB_MARK_OFFSET: usize = 8;

fn test_run(prog: BorrowedFd<'_>, hook: Hook, packet: &[u8]) -> Result<TestRun> {
    test_run_repeat(prog, hook != Hook::Xdp, packet, 1)
        .map_err(|e| Error::io(format!("test run of {}", hook.program_name()), e))
}

/// One BPF_PROG_TEST_RUN of `repeat` runs of `packet`: TC programs get a
/// zeroed `__sk_buff` and report the mark they left. (With repeat > 1 every
/// run starts from the packet the previous one left: rust-ecosystem.md.)
pub(crate) fn test_run_repeat(
    prog: BorrowedFd<'_>,
    tc: bool,
    packet: &[u8],
    repeat: u32,
) -> std::io::Result<TestRun> {
    use libbpf_rs::libbpf_sys;
    use std::ffi::c_void;
    // Room for programs that grow the packet (options inserted).
    let mut out = vec![0u8; packet.len() + 256];
    let skb_size = std::mem::size_of::<crate::skel::types::__sk_buff>();
    let ctx_in = vec![0u8; skb_size];
    let mut ctx_out = vec![0u8; skb_size];
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
        data_in: packet.as_ptr().cast::<c_void>(),
        data_size_in: packet.len() as u32,
        data_out: out.as_mut_ptr().cast::<c_void>(),
        data_size_out: out.len() as u32,
        repeat: repeat as i32,
        ..Default::default()
    };
    if tc {
        opts.ctx_in = ctx_in.as_ptr().cast::<c_void>();
        opts.ctx_size_in = skb_size as u32;
        opts.ctx_out = ctx_out.as_mut_ptr().cast::<c_void>();
        opts.ctx_size_out = skb_size as u32;
    }
    // SAFETY: every pointer in opts refers to a live buffer of the size
    // given beside it, for the duration of the call.
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(-rc));
    }
    out.truncate(opts.data_size_out as usize);
    let mark = tc.then(|| {
        abi::from_bytes::<u32>(&ctx_out[SKB_MARK_OFFSET..SKB_MARK_OFFSET + 4]).unwrap_or(0)
    });
    Ok(TestRun {
        verdict: opts.retval,
        packet: out,
        duration: Duration::from_nanos(u64::from(opts.duration)),
        mark,
    })
}

/// Where `emptcp_cfg` (bpf/lib/engine.h) sits in `.rodata`, by the layout
/// the skeleton generated from the object's BTF.
const CONFIG_RANGE: std::ops::Range<usize> = {
    let start = std::mem::offset_of!(abi::rodata, emptcp_cfg);
    start..start + std::mem::size_of::<emptcp_config>()
};

fn config_slot(rodata: &mut [u8]) -> Result<&mut [u8]> {
    let len = rodata.len();
    rodata.get_mut(CONFIG_RANGE).ok_or_else(|| {
        Error::new(
            ErrorKind::Load,
            format!(".rodata is {len} bytes, too short for emptcp_cfg"),
        )
    })
}

fn config_from_rodata(bytes: &[u8]) -> Result<emptcp_config> {
    bytes
        .get(CONFIG_RANGE)
        .and_then(abi::from_bytes::<emptcp_config>)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Load,
                format!(".rodata is {} bytes, too short for emptcp_cfg", bytes.len()),
            )
        })
}

fn read_abi_version(obj: &Object) -> Result<u32> {
    let rodata = obj
        .maps()
        .find(|m| m.name().to_string_lossy().ends_with(".rodata"))
        .ok_or_else(|| Error::new(ErrorKind::Load, "entry object has no .rodata"))?;
    let bytes = rodata
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(|e| Error::bpf("reading .rodata", e))?
        .unwrap_or_default();
    Ok(config_from_rodata(&bytes)?.abi_version)
}

/// Size and verification cost of a loaded program.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramInfo {
    /// Program name (as bpftool shows it).
    pub name: &'static str,
    /// Kernel program id.
    pub id: u32,
    /// Instructions the verifier processed (its complexity budget is 1M).
    pub verified_insns: u32,
    /// Instructions after the verifier's rewrites.
    pub xlated_insns: u32,
    /// Size of the JIT-compiled code in bytes.
    pub jited_bytes: u32,
}

/// The result of one [`Dataplane::test_run`].
#[derive(Debug, Clone)]
pub struct TestRun {
    /// The program's return value (XDP_* or TC_ACT_* verdict).
    pub verdict: u32,
    /// The packet as the program left it.
    pub packet: Vec<u8>,
    /// Kernel-reported run time.
    pub duration: std::time::Duration,
    /// The skb mark after the run (TC hooks).
    pub mark: Option<u32>,
}

/// One direction of a TCP flow at one attachment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FlowKey {
    /// Interface index of the attachment.
    pub ifindex: u32,
    /// Hook of the attachment (`None` for a value this library does not know).
    pub hook: Option<Hook>,
    /// Source address.
    pub src: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port.
    pub dport: u16,
}

impl FlowKey {
    fn from_abi(k: &emptcp_flow_key) -> FlowKey {
        let addr = |b: [u8; 16]| -> IpAddr {
            if u32::from(k.family) == libc::AF_INET6 as u32 {
                Ipv6Addr::from(b).into()
            } else {
                Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()
            }
        };
        FlowKey {
            ifindex: k.ifindex,
            hook: Hook::from_abi(k.hook),
            src: addr(k.saddr),
            sport: u16::from_be(k.sport),
            dst: addr(k.daddr),
            dport: u16::from_be(k.dport),
        }
    }
}

/// Traffic counters of one flow key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FlowStats {
    /// Packets (at TC, one GSO/GRO skb counts once).
    pub packets: u64,
    /// IP bytes (header and payload).
    pub bytes: u64,
    /// TCP payload bytes.
    pub payload_bytes: u64,
}

/// Entry program counters by name (`seen`, `tcp`, `mptcp`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EntryCounters(pub BTreeMap<&'static str, u64>);

impl EntryCounters {
    /// A counter's value (0 for an unknown name).
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }
}
