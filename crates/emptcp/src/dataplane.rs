use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use libbpf_rs::{AsRawLibbpf, Link, MapCore, MapFlags, Object, ObjectBuilder};
use serde::Serialize;

use crate::abi::{self, emptcp_flow_key, emptcp_flow_stats};
use crate::{Error, ErrorKind, Hook, Result};

/// The compiled entry object, embedded at build time.
const ENTRY_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/emptcp.bpf.o"));

/// Names of `enum emptcp_entry_counter`, in order.
pub(crate) const ENTRY_COUNTER_NAMES: [&str; 7] = [
    "seen",
    "not_tcp",
    "malformed",
    "fragment",
    "tcp",
    "mptcp",
    "flow_map_full",
];

const FLOWS_MAP: &str = "emptcp_flows";
const COUNTERS_MAP: &str = "emptcp_counters";

/// A loaded emptcp data plane: the entry programs and their maps, and the
/// attachments made from it. Dropping it detaches everything it attached.
pub struct Dataplane {
    obj: Object,
    attachments: Vec<Attachment>,
    load_time: Duration,
}

/// One entry program attached to one interface.
pub struct Attachment {
    /// Interface index, in the namespace the attach ran in.
    pub ifindex: u32,
    /// The hook.
    pub hook: Hook,
    link: Link,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("ifindex", &self.ifindex)
            .field("hook", &self.hook)
            .finish()
    }
}

impl Dataplane {
    /// Loads (and verifies) the entry programs. Needs root.
    pub fn load() -> Result<Dataplane> {
        let started = Instant::now();
        let open = ObjectBuilder::default()
            .open_memory(ENTRY_OBJECT)
            .map_err(|e| Error::bpf("opening the emptcp entry object", e))?;
        let obj = open.load().map_err(|e| {
            let err = Error::bpf("loading the emptcp entry programs", e);
            if err.kind() == ErrorKind::PermissionDenied {
                err
            } else {
                err.with_kind(ErrorKind::Load)
            }
        })?;
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
        })
    }

    /// Attaches the entry program of `hook` to interface `ifindex` of the
    /// calling thread's network namespace (see [`crate::netns::NetnsGuard`]).
    ///
    /// TC hooks use tcx links, which sit beside other programs on the device
    /// and never touch qdiscs; XDP uses an XDP link (driver mode where the
    /// device has it), which the kernel refuses when another program is
    /// already attached.
    pub fn attach(&mut self, hook: Hook, ifindex: u32) -> Result<&Attachment> {
        let prog = self
            .obj
            .progs_mut()
            .find(|p| p.name() == hook.program_name())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Load,
                    format!("no program {}", hook.program_name()),
                )
            })?;
        let what = || format!("attaching {} program on ifindex {ifindex}", hook);
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

    /// What the kernel reports about the loaded entry program of `hook`.
    pub fn program_info(&self, hook: Hook) -> Result<ProgramInfo> {
        let prog = self.program(hook)?;
        let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of_val(&info) as u32;
        // SAFETY: info is a valid bpf_prog_info of len bytes; the kernel
        // fills at most len bytes and leaves the array pointers (null) alone.
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

    /// The attachments made so far.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Per-flow traffic the entry programs saw, summed over CPUs.
    pub fn flow_stats(&self) -> Result<Vec<(FlowKey, FlowStats)>> {
        let map = self.map(FLOWS_MAP)?;
        let mut out = Vec::new();
        for key_bytes in map.keys() {
            let Some(per_cpu) = map
                .lookup_percpu(&key_bytes, MapFlags::ANY)
                .map_err(|e| Error::bpf("reading emptcp_flows", e))?
            else {
                continue; // evicted between keys() and lookup
            };
            let Some(key) = abi::from_bytes::<emptcp_flow_key>(&key_bytes) else {
                continue;
            };
            let mut total = FlowStats::default();
            for cpu in per_cpu
                .iter()
                .filter_map(|v| abi::from_bytes::<emptcp_flow_stats>(v))
            {
                total.packets += cpu.packets;
                total.bytes += cpu.bytes;
                total.payload_bytes += cpu.payload_bytes;
            }
            out.push((FlowKey::from_abi(&key), total));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Entry program counters of `hook`, summed over CPUs.
    pub fn counters(&self, hook: Hook) -> Result<EntryCounters> {
        let map = self.map(COUNTERS_MAP)?;
        let mut out = EntryCounters::default();
        for (i, name) in ENTRY_COUNTER_NAMES.iter().enumerate() {
            let idx = hook.abi().0 * ENTRY_COUNTER_NAMES.len() as u32 + i as u32;
            let per_cpu = map
                .lookup_percpu(&idx.to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| Error::bpf("reading emptcp_counters", e))?
                .unwrap_or_default();
            let sum = per_cpu
                .iter()
                .filter_map(|v| abi::from_bytes::<u64>(v))
                .sum();
            out.0.insert(name, sum);
        }
        Ok(out)
    }

    /// Runs one packet through the entry program of `hook` with
    /// BPF_PROG_TEST_RUN: the real loaded program and maps, no attachment.
    /// State the program keeps (flow stats, counters) carries over between
    /// calls as it would on a live hook.
    pub fn test_run(&self, hook: Hook, packet: &[u8]) -> Result<TestRun> {
        let prog = self.program(hook)?;
        // Room for programs that grow the packet (options inserted).
        let mut out = vec![0u8; packet.len() + 256];
        let input = libbpf_rs::ProgramInput {
            data_in: Some(packet),
            data_out: Some(&mut out),
            ..Default::default()
        };
        let res = prog
            .test_run(input)
            .map_err(|e| Error::bpf(format!("test run of {}", hook.program_name()), e))?;
        let len = res.data.as_ref().map_or(0, |d| d.len());
        let verdict = res.return_value;
        let duration = res.duration;
        out.truncate(len);
        Ok(TestRun {
            verdict,
            packet: out,
            duration,
        })
    }

    // libbpf-rs offers test_run and attach only on ProgramMut, which
    // Object::progs_mut hands out from &self.
    fn program(&self, hook: Hook) -> Result<libbpf_rs::ProgramMut<'_>> {
        self.obj
            .progs_mut()
            .find(|p| p.name() == hook.program_name())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Load,
                    format!("no program {}", hook.program_name()),
                )
            })
    }

    fn map(&self, name: &str) -> Result<libbpf_rs::Map<'_>> {
        self.obj
            .maps()
            .find(|m| m.name() == name)
            .ok_or_else(|| Error::new(ErrorKind::Load, format!("entry object has no map {name}")))
    }
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
    // abi_version is the first member of emptcp_abi_info, the only .rodata variable.
    bytes
        .get(..4)
        .and_then(abi::from_bytes::<u32>)
        .ok_or_else(|| Error::new(ErrorKind::Load, ".rodata too short"))
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
