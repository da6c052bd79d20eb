use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use libbpf_rs::{AsRawLibbpf, Link, MapCore, MapFlags, Object, ObjectBuilder};
use serde::Serialize;

use crate::abi::{
    self, emptcp_config, emptcp_conn_ct, emptcp_ct_flags, emptcp_ct_key, emptcp_flow_key,
    emptcp_flow_stats, emptcp_op_stats, emptcp_record, emptcp_shape_stats, emptcp_subflow_ct,
};
use crate::plugin::{PluginMaps, PluginSpec};
use crate::policy::CompiledPolicy;
use crate::{Error, ErrorKind, Hook, Result};

/// The compiled entry object, embedded at build time.
const ENTRY_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/emptcp.bpf.o"));

/// Names of `enum emptcp_entry_counter`, in order.
pub(crate) const ENTRY_COUNTER_NAMES: [&str; 18] = [
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
];

/// A loaded emptcp data plane: the entry programs of generation 0 (no rules:
/// every packet passes), the maps all generations share (flows, counters),
/// and the attachments made from it. Dropping it detaches everything it
/// attached.
pub struct Dataplane {
    obj: Object,
    attachments: Vec<Attachment>,
    load_time: Duration,
    last_generation: u32,
}

/// One entry program attached to one interface, running generation 0 or the
/// generation last applied.
pub struct Attachment {
    /// Interface index, in the namespace the attach ran in.
    pub ifindex: u32,
    /// The hook.
    pub hook: Hook,
    link: Link,
    generation: Option<Generation>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("ifindex", &self.ifindex)
            .field("hook", &self.hook)
            .field("generation", &self.generation.as_ref().map(|g| g.number))
            .finish()
    }
}

impl Attachment {
    /// The generation running (`None`: generation 0, no rules).
    pub fn generation(&self) -> Option<&Generation> {
        self.generation.as_ref()
    }
}

/// One compiled policy set loaded as its own program instance, with its own
/// rule maps; sharing the flow and counter maps of its [`Dataplane`].
/// Applying it to an attachment publishes all of it with one
/// `bpf_link_update` (docs/engine.md).
pub struct Generation {
    // Plugin programs, in the generation's slots while it lives.
    _plugins: Vec<Object>,
    obj: Object,
    number: u32,
    policy: CompiledPolicy,
    load_time: Duration,
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
        let started = Instant::now();
        let mut open = ObjectBuilder::default()
            .open_memory(ENTRY_OBJECT)
            .map_err(|e| Error::bpf("opening the emptcp entry object", e))?;
        if let Some(mut flows) = open.maps_mut().find(|m| m.name() == FLOWS_MAP) {
            flows
                .set_max_entries(options.flow_table_size)
                .map_err(|e| Error::bpf("sizing emptcp_flows", e))?;
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
        let mut loaded = Vec::new();
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
                loaded.push(crate::plugin::load_into(
                    spec,
                    &maps,
                    hook,
                    u32::from(slot),
                )?);
            }
        }
        self.last_generation = number;
        tracing::info!(%hook, number, rules = policy.rule_count(), "generation loaded");
        Ok(Generation {
            _plugins: loaded,
            obj,
            number,
            policy: policy.clone(),
            load_time: started.elapsed(),
        })
    }

    /// Makes `generation` the program of the attachment of its hook on
    /// `ifindex`, with one `bpf_link_update`: every packet runs wholly under
    /// the previous program or wholly under the new one. Returns the
    /// generation it replaced (`None` for generation 0); its counters stay
    /// readable while the caller keeps it.
    pub fn apply(&mut self, ifindex: u32, generation: Generation) -> Result<Option<Generation>> {
        let hook = generation.policy.hook();
        let att = self
            .attachments
            .iter_mut()
            .find(|a| a.hook == hook && a.ifindex == ifindex)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("no {hook} attachment on ifindex {ifindex}"),
                )
            })?;
        let prog = find_program(&generation.obj, hook)?;
        att.link.update_prog(&prog).map_err(|e| {
            Error::bpf(
                format!("replacing the {hook} program on ifindex {ifindex}"),
                e,
            )
        })?;
        tracing::info!(%hook, ifindex, generation = generation.number, "generation applied");
        Ok(att.generation.replace(generation))
    }

    /// Attaches the entry program of `hook` (generation 0) to interface
    /// `ifindex` of the calling thread's network namespace (see
    /// [`crate::netns::NetnsGuard`]).
    ///
    /// TC hooks use tcx links, which sit beside other programs on the device
    /// and never touch qdiscs; XDP uses an XDP link (driver mode where the
    /// device has it), which the kernel refuses when another program is
    /// already attached.
    pub fn attach(&mut self, hook: Hook, ifindex: u32) -> Result<&Attachment> {
        let prog = find_program(&self.obj, hook)?;
        let what = || format!("attaching {hook} program on ifindex {ifindex}");
        let ifindex_c = i32::try_from(ifindex)
            .map_err(|_| Error::new(ErrorKind::NotFound, format!("{}: bad ifindex", what())))?;
        let link = match hook {
            Hook::Xdp => prog
                .attach_xdp(ifindex_c)
                .map_err(|e| Error::bpf(what(), e))?,
            Hook::TcIngress | Hook::TcEgress => {
                let opts = libbpf_rs::libbpf_sys::bpf_tcx_opts {
                    sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_tcx_opts>() as _,
                    ..Default::default()
                };
                // SAFETY: valid program pointer owned by self.obj; opts lives
                // across the call. libbpf returns NULL with errno on error.
                let ptr = unsafe {
                    libbpf_rs::libbpf_sys::bpf_program__attach_tcx(
                        prog.as_libbpf_object().as_ptr(),
                        ifindex_c,
                        &opts,
                    )
                };
                let ptr = NonNull::new(ptr)
                    .ok_or_else(|| Error::io(what(), std::io::Error::last_os_error()))?;
                // SAFETY: a valid, owned bpf_link from libbpf.
                unsafe { Link::from_ptr(ptr) }
            }
        };
        tracing::info!(%hook, ifindex, "attached");
        self.attachments.push(Attachment {
            ifindex,
            hook,
            link,
            generation: None,
        });
        Ok(self.attachments.last().expect("just pushed"))
    }

    /// Detaches the entry program of `hook` from `ifindex`; false when it was
    /// not attached there.
    pub fn detach(&mut self, hook: Hook, ifindex: u32) -> Result<bool> {
        let Some(pos) = self
            .attachments
            .iter()
            .position(|a| a.hook == hook && a.ifindex == ifindex)
        else {
            return Ok(false);
        };
        let att = self.attachments.remove(pos);
        att.link.detach().map_err(|e| {
            Error::bpf(
                format!("detaching {hook} program from ifindex {ifindex}"),
                e,
            )
        })?;
        Ok(true)
    }

    /// Wall time of [`Dataplane::load`]: open, relocate, verify all programs.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// What the kernel reports about the generation-0 entry program of `hook`.
    pub fn program_info(&self, hook: Hook) -> Result<ProgramInfo> {
        program_info(&find_program(&self.obj, hook)?, hook)
    }

    /// The attachments made so far.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Per-flow traffic the entry programs saw, summed over CPUs.
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
        Ok(out)
    }

    /// Runs one packet through the generation-0 entry program of `hook` with
    /// BPF_PROG_TEST_RUN: the real loaded program and maps, no attachment.
    /// State the program keeps (flow stats, counters) carries over between
    /// calls as it would on a live hook.
    pub fn test_run(&self, hook: Hook, packet: &[u8]) -> Result<TestRun> {
        test_run(&find_program(&self.obj, hook)?, hook, packet)
    }

    fn map(&self, name: &str) -> Result<libbpf_rs::Map<'_>> {
        find_map(&self.obj, name)
    }
}

impl Generation {
    /// The generation number (1 and up; unique within its [`Dataplane`]).
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The compiled policy set it runs.
    pub fn policy(&self) -> &CompiledPolicy {
        &self.policy
    }

    /// Wall time of loading it: open, verify, fill the rule maps.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Runs one packet through this generation's program (see
    /// [`Dataplane::test_run`]).
    pub fn test_run(&self, packet: &[u8]) -> Result<TestRun> {
        let hook = self.policy.hook();
        test_run(&find_program(&self.obj, hook)?, hook, packet)
    }

    /// What the kernel reports about this generation's program.
    pub fn program_info(&self) -> Result<ProgramInfo> {
        let hook = self.policy.hook();
        program_info(&find_program(&self.obj, hook)?, hook)
    }

    /// Packets each policy's rules won, by policy name, in set order.
    pub fn policy_hits(&self) -> Result<Vec<(String, u64)>> {
        let map = find_map(&self.obj, "emptcp_rule_hits")?;
        let names = self.policy.policy_names();
        let mut hits = vec![0u64; names.len()];
        for id in 0..self.policy.rule_count() as u32 {
            let n: u64 = lookup_percpu::<u64>(&map, &id.to_ne_bytes())?.iter().sum();
            if let Some(p) = self.policy.policy_of_rule(id) {
                hits[p] += n;
            }
        }
        Ok(names.iter().cloned().zip(hits).collect())
    }

    /// Lookups and hits of each rule-key shape (in shape order), summed
    /// over CPUs: how the selector stages fared when flows were classified.
    pub fn shape_stats(&self) -> Result<Vec<(u64, u64)>> {
        let map = find_map(&self.obj, "emptcp_shape_st")?;
        (0..self.policy.shape_count() as u32)
            .map(|s| {
                let per_cpu = lookup_percpu::<emptcp_shape_stats>(&map, &s.to_ne_bytes())?;
                Ok(per_cpu
                    .iter()
                    .fold((0, 0), |(l, h), c| (l + c.lookups, h + c.hits)))
            })
            .collect()
    }

    /// Counters of each operator of chain slot `chain`, summed over CPUs.
    pub fn op_stats(&self, chain: u32) -> Result<Vec<OpStats>> {
        let map = find_map(&self.obj, "emptcp_op_stats")?;
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
                for cpu in lookup_percpu::<emptcp_op_stats>(&map, &idx.to_ne_bytes())? {
                    total.hits += cpu.hits;
                    for (t, c) in total.reasons.iter_mut().zip(cpu.reasons) {
                        *t += c;
                    }
                }
                Ok(total)
            })
            .collect()
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
fn lookup<T: abi::Pod>(map: &libbpf_rs::Map<'_>, key: &[u8]) -> Result<Option<T>> {
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

/// Sizes chosen when a [`Dataplane`] is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Entries of the flow table (per-CPU LRU hash: one entry per flow
    /// direction and attachment). A full table evicts the least recently
    /// used flows.
    pub flow_table_size: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            flow_table_size: 65_536,
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
];

/// Counters of one operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OpStats {
    /// Packets the operator ran on.
    pub hits: u64,
    /// Packets it could not act on, by `enum emptcp_op_reason`.
    pub reasons: [u64; crate::policy::limits::OP_REASONS],
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
fn lookup_percpu<T: abi::Pod>(map: &libbpf_rs::Map<'_>, key: &[u8]) -> Result<Vec<T>> {
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

fn program_info(prog: &libbpf_rs::ProgramMut<'_>, hook: Hook) -> Result<ProgramInfo> {
    let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: info is a valid bpf_prog_info of len bytes; the kernel fills at
    // most len bytes and leaves the array pointers (null) alone.
    let rc = unsafe {
        libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(
            prog.as_fd().as_raw_fd(),
            &mut info,
            &mut len,
        )
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

fn test_run(prog: &libbpf_rs::ProgramMut<'_>, hook: Hook, packet: &[u8]) -> Result<TestRun> {
    // Room for programs that grow the packet (options inserted).
    let mut out = vec![0u8; packet.len() + 256];
    let skb_size = std::mem::size_of::<crate::skel::types::__sk_buff>();
    let (mut ctx_in, mut ctx_out) = (vec![0u8; skb_size], vec![0u8; skb_size]);
    let tc = hook != Hook::Xdp;
    let input = libbpf_rs::ProgramInput {
        data_in: Some(packet),
        data_out: Some(&mut out),
        context_in: tc.then_some(&mut ctx_in[..]),
        context_out: tc.then_some(&mut ctx_out[..]),
        ..Default::default()
    };
    let res = prog
        .test_run(input)
        .map_err(|e| Error::bpf(format!("test run of {}", hook.program_name()), e))?;
    let len = res.data.as_ref().map_or(0, |d| d.len());
    let verdict = res.return_value;
    let duration = res.duration;
    let mark = res.context.as_ref().and_then(|c| {
        c.get(SKB_MARK_OFFSET..SKB_MARK_OFFSET + 4)
            .and_then(abi::from_bytes::<u32>)
    });
    out.truncate(len);
    Ok(TestRun {
        verdict,
        packet: out,
        duration,
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

impl Serialize for Hook {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
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
