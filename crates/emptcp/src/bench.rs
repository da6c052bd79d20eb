//! The data-plane benchmark (docs/benchmarks.md): what a packet costs in
//! emptcp's entry program, beside an empty program and a tail-call-per-operator
//! engine built the eMPTCP paper's way (`bpf/tests/bench_baseline.bpf.c`),
//! all measured in the same run.
//!
//! How it measures:
//!
//! - every figure is the kernel-reported ns/packet of one BPF_PROG_TEST_RUN
//!   with `repeat` runs of the same packet (caches stay hot: this is the cost
//!   of the code, not of DRAM misses on a million flows);
//! - each subject (program + packet) is measured `runs` times; the runs are
//!   interleaved (round `r` measures every subject once, starting at a
//!   rotating position) so that drift of the machine affects all subjects
//!   alike; the report gives the median and the range;
//! - the calling thread is pinned to one CPU (the one asked for, or the one it is on);
//! - **before any timing, every subject is run once on a fresh packet and its
//!   effect is checked** (the chain really ran: policy and operator counters,
//!   the skb mark at TC, the verdict, the baseline's own counters). A failed
//!   check fails the benchmark: a figure for code that did not do its work
//!   is worthless.
//!
//! Cases, at XDP and at TC (tc-ingress):
//!
//! - `non-TCP`: a UDP packet (the TCP packet with IP protocol 17);
//! - `TCP, no match`: a TCP packet of a flow no rule names;
//! - `chain N` for N = 1, 2, 4, 8, 16: N/2 selector stages, all matching,
//!   joined by AND (subflow, ip_pair, port, src, dst, packet_type, port, src
//!   for emptcp; subflow, ip_pair, port, src repeated for the tail-call
//!   engine) and N/2 actors (count and set_mark alternating at TC, ending
//!   with set_mark; count at XDP); N = 1 is one actor under a policy that
//!   matches every packet;
//! - `chain 8, F flows, accounted`: the flow table pre-filled with F entries
//!   (emptcp: a data plane that accounts flows, its per-CPU LRU flow table;
//!   tail-call engine: its flow->chain, subflow and ip_pair hash maps);
//! - `chain 2, P policies`: P one-subflow policies, the packet matching the
//!   last (compare with `chain 2`, one such policy);
//! - `TCP, generation 0 (no rules)` (emptcp only): parse and connection
//!   tracking's check, without the engine;
//!
//! plus probes (the building blocks of emptcp's per-packet path, each alone
//! in an XDP program: parse, flow-table lookup, clock read), the time to
//! publish a new chain 8 (compile, load the generation, `bpf_link_update` on
//! a live tcx or XDP attachment), and what the verifier says about each
//! program.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object, ObjectBuilder, libbpf_sys};
use serde::Serialize;

use crate::policy::{
    Action, ActionChain, Combine, PacketType, Policy, PolicySet, Prefix, Selector, SelectorChain,
    SelectorKind,
};
use crate::{Dataplane, Generation, Hook, LoadOptions, ProgramInfo, TestRun};

const XDP_PASS: u32 = 2;
const TC_ACT_UNSPEC: u32 = -1i32 as u32;

/// The chain lengths measured.
pub const CHAIN_LENGTHS: [usize; 5] = [1, 2, 4, 8, 16];

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Packets per BPF_PROG_TEST_RUN call.
    pub repeat: u32,
    /// Measurements per subject (the report gives median and range).
    pub runs: usize,
    /// Pin the measuring thread to this CPU; `None`: to the CPU it is on.
    /// Pinned either way: the flow memo is per CPU, and the checks run a
    /// packet twice expecting the second run to find what the first left.
    pub cpu: Option<usize>,
    /// Flow-table fillings measured beside the single flow (chain 8).
    pub flow_counts: Vec<u32>,
    /// Number of policies of the many-policies case (chain 2).
    pub policies: u32,
    /// Rounds of the publish measurement.
    pub publish_rounds: usize,
    /// Where to measure `apply` (needs a live attachment); `None`: only
    /// compile and load are measured.
    pub publish_target: Option<PublishTarget>,
}

/// An interface to attach to for the publish measurement: a device of a
/// network namespace of the caller's own (a veth end).
#[derive(Debug, Clone)]
pub struct PublishTarget {
    /// The namespace file (`/run/netns/NAME`).
    pub netns: PathBuf,
    /// The interface index inside it.
    pub ifindex: u32,
}

impl BenchOptions {
    /// The full benchmark: repeat 1,000,000, 7 runs, 100k and 1M flows, 10k
    /// policies, 20 publish rounds, pinned to the last CPU.
    pub fn full() -> BenchOptions {
        BenchOptions {
            repeat: 1_000_000,
            runs: 7,
            cpu: last_cpu(),
            flow_counts: vec![100_000, 1_000_000],
            policies: 10_000,
            publish_rounds: 20,
            publish_target: None,
        }
    }

    /// Every case of [`BenchOptions::full`] with fewer packets and runs
    /// (about 10 s instead of a minute); figures are noisier.
    pub fn quick() -> BenchOptions {
        BenchOptions {
            repeat: 100_000,
            runs: 3,
            publish_rounds: 5,
            ..BenchOptions::full()
        }
    }
}

fn last_cpu() -> Option<usize> {
    std::thread::available_parallelism()
        .ok()
        .map(|n| n.get() - 1)
}

/// A measurement: kernel-reported ns/packet over `runs` runs.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    /// Median of the runs.
    pub median: f64,
    /// Fastest run.
    pub min: u32,
    /// Slowest run.
    pub max: u32,
    /// Every run, in order.
    pub samples: Vec<u32>,
}

impl Measure {
    fn of(samples: &[u32]) -> Measure {
        let mut s = samples.to_vec();
        s.sort_unstable();
        let n = s.len();
        let median = if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            f64::from(s[n / 2])
        } else {
            (f64::from(s[n / 2 - 1]) + f64::from(s[n / 2])) / 2.0
        };
        Measure {
            median,
            min: s.first().copied().unwrap_or(0),
            max: s.last().copied().unwrap_or(0),
            samples: samples.to_vec(),
        }
    }

    fn cell(&self) -> String {
        if self.min == self.max {
            format!("{} ({})", fmt_ns(self.median), self.min)
        } else {
            format!("{} ({}-{})", fmt_ns(self.median), self.min, self.max)
        }
    }
}

fn fmt_ns(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// One row of the table: a case at a hook, with the hook's empty program.
#[derive(Debug, Clone, Serialize)]
pub struct CaseRow {
    /// The hook.
    pub hook: Hook,
    /// The case (`non-TCP`, `TCP, no match`, `chain 8`, ...).
    pub case: String,
    /// The empty program of the hook (same for every row of a hook).
    pub empty: Measure,
    /// emptcp's entry program (a generation of the policy set of the case).
    pub emptcp: Measure,
    /// The tail-call-per-operator engine (`None`: the case has no
    /// counterpart there).
    pub tail_call: Option<Measure>,
    /// What was checked on a fresh packet before timing.
    pub checked: String,
}

/// The cost of one building block of emptcp's per-packet path, measured
/// alone in a program of its own at XDP.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    /// The building block.
    pub what: String,
    /// ns/packet of the probe program.
    pub probe: Measure,
    /// Probe median minus the empty program's median.
    pub added_ns: f64,
}

/// What the kernel says about one loaded program.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramRow {
    /// What it is.
    pub what: String,
    /// Instructions the verifier processed.
    pub verified_insns: u32,
    /// Instructions after the verifier's rewrites.
    pub xlated_insns: u32,
    /// JIT-compiled bytes.
    pub jited_bytes: u32,
    /// Wall time of the load (open, verify, fill maps), when known.
    pub load_ms: Option<f64>,
}

/// The time to publish a new chain, per hook.
#[derive(Debug, Clone, Serialize)]
pub struct PublishRow {
    /// The hook.
    pub hook: Hook,
    /// Rounds measured.
    pub rounds: usize,
    /// `PolicySet::compile`, microseconds: median, min, max.
    pub compile_us: [f64; 3],
    /// `Dataplane::load_generation`, ms: median, min, max.
    pub load_ms: [f64; 3],
    /// `Dataplane::apply` (one `bpf_link_update`), microseconds: median,
    /// min, max; `None` when no attachment was available.
    pub apply_us: Option<[f64; 3]>,
}

/// A goal of the issue and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// The goal as stated.
    pub goal: String,
    /// Target, ns.
    pub target_ns: f64,
    /// Measured median, ns.
    pub measured_ns: f64,
    /// Whether the measurement is within the target.
    pub met: bool,
}

/// Where the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `uname -r`.
    pub kernel: String,
    /// CPU model name.
    pub cpu_model: String,
    /// Online CPUs.
    pub cpus: usize,
    /// The CPU the measuring thread was pinned to.
    pub pinned_cpu: Option<usize>,
}

/// Everything the benchmark measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where.
    pub machine: Machine,
    /// Packets per BPF_PROG_TEST_RUN call.
    pub repeat: u32,
    /// Runs per subject.
    pub runs: usize,
    /// The cases.
    pub cases: Vec<CaseRow>,
    /// Building blocks of the per-packet path, alone (XDP).
    pub components: Vec<Component>,
    /// Verifier figures of the programs involved.
    pub programs: Vec<ProgramRow>,
    /// Publish times.
    pub publish: Vec<PublishRow>,
    /// The goals of the issue against this run.
    pub goals: Vec<Goal>,
    /// Correctness checks run (and passed) before timing.
    pub checks_passed: usize,
}

// ---------------------------------------------------------------------------
// Packets.

/// Local (ingress: destination) address and port of every benchmark packet.
const LOCAL: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 9, 0, 1), 80);
/// Remote address of the benchmark packets.
const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// Source port of the chain-`n` packet at `hook` (each hook has its own flows).
fn chain_sport(hook: Hook, n: usize) -> u16 {
    let base = if hook == Hook::Xdp { 40_000 } else { 41_000 };
    base + n as u16
}
/// A flow no rule names.
fn nomatch_sport(hook: Hook) -> u16 {
    chain_sport(hook, 0) + 900
}
fn policies_sport(hook: Hook) -> u16 {
    if hook == Hook::Xdp { 7000 } else { 7001 }
}

/// The remote address of policy `i` of the many-policies case: 10.0.x.y.
fn policy_remote(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8)
}

/// A 66-byte Ethernet/IPv4/TCP ACK from `src:sport` to `dst:dport` carrying
/// an MPTCP DSS option with a 4-byte data ACK (data offset 8), the packet of
/// the reference measurements. Checksums are valid.
pub fn tcp_packet(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(66);
    p.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // dst MAC
    p.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // src MAC
    p.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip_start = p.len();
    let total_len: u16 = 20 + 32;
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total_len.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0x40, 0]); // id 1, DF
    p.extend_from_slice(&[64, 6, 0, 0]); // TTL, TCP, checksum
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let ip_csum = csum(&p[ip_start..ip_start + 20], 0);
    p[ip_start + 10..ip_start + 12].copy_from_slice(&ip_csum.to_be_bytes());
    let tcp_start = p.len();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&1000u32.to_be_bytes()); // seq
    p.extend_from_slice(&2000u32.to_be_bytes()); // ack
    p.extend_from_slice(&[0x80, 0x10]); // doff 8, ACK
    p.extend_from_slice(&64240u16.to_be_bytes()); // window
    p.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    // NOP, NOP, then DSS (kind 30, len 8, subtype 2, flag A) with data ACK,
    // then two NOPs to the 12-byte option block.
    p.extend_from_slice(&[1, 1, 30, 8, 0x20, 0x01, 0, 0, 0, 7, 1, 1]);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&32u16.to_be_bytes());
    let tcp_csum = csum(&p[tcp_start..], sum16(&pseudo));
    p[tcp_start + 16..tcp_start + 18].copy_from_slice(&tcp_csum.to_be_bytes());
    p
}

/// The same packet as UDP: IP protocol 17 (the IP checksum fixed); the
/// bytes after the IP header are left as they are.
pub fn non_tcp_packet(tcp: &[u8]) -> Vec<u8> {
    let mut p = tcp.to_vec();
    p[14 + 9] = 17;
    p[14 + 10] = 0;
    p[14 + 11] = 0;
    let c = csum(&p[14..34], 0);
    p[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    p
}

fn sum16(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn csum(bytes: &[u8], init: u32) -> u16 {
    let mut s = init + sum16(bytes);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn bench_packet(sport: u16) -> Vec<u8> {
    tcp_packet(REMOTE_IP, sport, *LOCAL.ip(), LOCAL.port())
}

// ---------------------------------------------------------------------------
// Running a program.

/// One BPF_PROG_TEST_RUN of `repeat` runs of `packet`.
fn test_run(fd: BorrowedFd<'_>, packet: &[u8], tc: bool, repeat: u32) -> Result<TestRun> {
    crate::dataplane::test_run_repeat(fd, tc, packet, repeat).context("BPF_PROG_TEST_RUN")
}

fn prog_fd_by_id(id: u32) -> Result<OwnedFd> {
    // SAFETY: plain syscall wrapper; a non-negative result is a new fd we own.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    ensure!(
        fd >= 0,
        "no program with id {id}: {}",
        std::io::Error::from_raw_os_error(-fd)
    );
    // SAFETY: fd is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn info_of_fd(fd: BorrowedFd<'_>) -> Result<libbpf_sys::bpf_prog_info> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: info is a valid bpf_prog_info of len bytes; array pointers are null.
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    ensure!(
        rc == 0,
        "bpf_prog_get_info_by_fd: {}",
        std::io::Error::from_raw_os_error(-rc)
    );
    Ok(info)
}

/// The map named `name` that program `prog_id` uses.
fn map_of_prog(prog_id: u32, name: &str) -> Result<MapHandle> {
    let fd = prog_fd_by_id(prog_id)?;
    let info = info_of_fd(fd.as_fd())?;
    let mut ids = vec![0u32; info.nr_map_ids as usize];
    let mut info2 = libbpf_sys::bpf_prog_info {
        nr_map_ids: info.nr_map_ids,
        map_ids: ids.as_mut_ptr() as u64,
        ..Default::default()
    };
    let mut len = std::mem::size_of_val(&info2) as u32;
    // SAFETY: map_ids points to nr_map_ids u32s that live across the call.
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info2, &mut len) };
    ensure!(rc == 0, "bpf_prog_get_info_by_fd (maps)");
    for id in ids {
        let map = MapHandle::from_map_id(id).context("opening a map by id")?;
        if map.name() == name {
            return Ok(map);
        }
    }
    bail!("program {prog_id} uses no map {name}")
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        ensure!(
            rc == 0,
            "sched_setaffinity({cpu}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Pins the calling thread to the CPU it is on now, and returns that CPU:
/// consecutive test runs then share one CPU's per-CPU maps (the flow memo).
pub fn pin_to_current_cpu() -> Result<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).context("sched_getcpu")?;
    pin_to_cpu(cpu)?;
    Ok(cpu)
}

fn pass_verdict(hook: Hook) -> u32 {
    if hook == Hook::Xdp {
        XDP_PASS
    } else {
        TC_ACT_UNSPEC
    }
}

// ---------------------------------------------------------------------------
// emptcp side: policy sets.

fn chain_of(actions: &[Action]) -> ActionChain {
    let mut c = ActionChain::new();
    for a in actions {
        c.add(*a);
    }
    c
}

/// The actors of a chain of `n_actors` at `hook`: count and set_mark
/// alternating, ending with set_mark, at TC; count at XDP.
fn actors(hook: Hook, n_actors: usize, mark: u32) -> Vec<Action> {
    (0..n_actors)
        .map(|j| {
            let mark_here = hook != Hook::Xdp && (j % 2 == 1 || j + 1 == n_actors);
            if mark_here {
                Action::SetMark(mark)
            } else {
                Action::Count
            }
        })
        .collect()
}

fn mark_of(n: usize) -> u32 {
    1000 + n as u32
}

/// The policy set of the chain-`n` case at `hook` (its only policy is
/// "chain"), all of whose selectors match the chain-`n` packet.
pub fn chain_policy(hook: Hook, n: usize, mark: u32) -> PolicySet {
    let sport = chain_sport(hook, n);
    let n_sel = n / 2;
    let n_act = if n == 1 { 1 } else { n - n_sel };
    let mut sc = SelectorChain::new();
    let mut p = Policy::new("chain", chain_of(&actors(hook, n_act, mark)));
    let pfx = |s: &str| -> Prefix { s.parse().expect("prefix") };
    for stage in 0..n_sel {
        let value = match stage % 8 {
            0 => Selector::Subflow {
                local: SocketAddr::V4(LOCAL),
                remote: SocketAddr::V4(SocketAddrV4::new(REMOTE_IP, sport)),
            },
            1 => Selector::IpPair {
                local: pfx("10.9.0.0/16"),
                remote: pfx("10.0.0.0/8"),
            },
            2 | 6 => Selector::Port {
                local: Some(LOCAL.port()),
                remote: None,
            },
            3 | 7 => Selector::Src(pfx("10.0.0.0/8")),
            4 => Selector::Dst(pfx("10.9.0.0/16")),
            _ => Selector::PacketType(vec![PacketType::Dss]),
        };
        sc.add(value.kind(), Combine::And);
        p.select(stage, value);
    }
    PolicySet {
        selectors: sc,
        policies: vec![p],
    }
}

/// `count` one-subflow policies; policy `i` names remote 10.0.x.y:port; the
/// last one's chain sets mark 2 at TC, the others mark 1 (count at XDP).
fn many_policies(hook: Hook, count: u32) -> PolicySet {
    let mut sc = SelectorChain::new();
    sc.add(SelectorKind::Subflow, Combine::And);
    let policies = (0..count)
        .map(|i| {
            let mark = if i + 1 == count { 2 } else { 1 };
            let mut p = Policy::new(format!("sf{i}"), chain_of(&actors(hook, 1, mark)));
            p.select(
                0,
                Selector::Subflow {
                    local: SocketAddr::V4(LOCAL),
                    remote: SocketAddr::V4(SocketAddrV4::new(
                        policy_remote(i),
                        policies_sport(hook),
                    )),
                },
            );
            p
        })
        .collect();
    PolicySet {
        selectors: sc,
        policies,
    }
}

// ---------------------------------------------------------------------------
// The tail-call engine (bpf/tests/bench_baseline.bpf.c).

/// Operator program indexes (`enum bl_op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlOp {
    Subflow = 0,
    IpPair = 1,
    Port = 2,
    Src = 3,
    Count = 4,
    Mark = 5,
}

/// `enum bl_counter`.
const BL_NOT_TCP: usize = 1;
const BL_NO_CHAIN: usize = 2;
const BL_STARTED: usize = 3;
const BL_COMPLETED: usize = 4;
const BL_SEL_MISS: usize = 5;
const BL_TAIL_FAIL: usize = 6;
const BL_COUNTERS: usize = 7;
const BL_CHAIN_MAX: usize = 16;

/// (op, plen, arg) of the tail-call chain of length `n` at `hook`: the same
/// structure as [`chain_policy`].
fn bl_chain(hook: Hook, n: usize, mark: u32) -> Vec<(BlOp, u8, u32)> {
    let n_sel = n / 2;
    let n_act = if n == 1 { 1 } else { n - n_sel };
    let mut ops = Vec::new();
    for s in 0..n_sel {
        ops.push(match s % 4 {
            0 => (BlOp::Subflow, 0, 0),
            1 => (BlOp::IpPair, 0, 0),
            2 => (BlOp::Port, 0, u32::from(LOCAL.port())),
            _ => (BlOp::Src, 8, u32::from_ne_bytes([10, 0, 0, 0])),
        });
    }
    for a in actors(hook, n_act, mark) {
        ops.push(match a {
            Action::SetMark(m) => (BlOp::Mark, 0, m),
            _ => (BlOp::Count, 0, 0),
        });
    }
    ops
}

fn bl_chain_bytes(ops: &[(BlOp, u8, u32)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + 8 * BL_CHAIN_MAX);
    v.extend_from_slice(&(ops.len() as u32).to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes());
    for i in 0..BL_CHAIN_MAX {
        let (op, plen, arg) = ops.get(i).copied().unwrap_or((BlOp::Count, 0, 0));
        v.extend_from_slice(&(op as u16).to_ne_bytes());
        v.push(plen);
        v.push(0);
        v.extend_from_slice(&arg.to_ne_bytes());
    }
    v
}

/// `struct bl_tuple`: packet-order addresses and ports.
fn bl_tuple(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[0..4].copy_from_slice(&src.octets());
    k[4..8].copy_from_slice(&dst.octets());
    k[8..10].copy_from_slice(&sport.to_be_bytes());
    k[10..12].copy_from_slice(&dport.to_be_bytes());
    k
}

/// One loaded instance of the tail-call engine with its own maps.
struct TailEngine {
    obj: Object,
    label: String,
}

impl TailEngine {
    fn load(capacity: u32, label: &str) -> Result<TailEngine> {
        let bytes = crate::testing::object_bytes("tests/bench_baseline")
            .context("the bench_baseline object is not embedded")?;
        let mut open = ObjectBuilder::default()
            .open_memory(bytes)
            .context("opening bench_baseline")?;
        for mut map in open.maps_mut() {
            let name = map.name().to_string_lossy().into_owned();
            if matches!(name.as_str(), "bl_flows" | "bl_subflows" | "bl_ip_pairs") {
                map.set_max_entries(capacity.max(64))
                    .with_context(|| format!("sizing {name}"))?;
            }
        }
        let obj = open.load().context("loading bench_baseline")?;
        let e = TailEngine {
            obj,
            label: label.to_owned(),
        };
        for (array, progs) in [
            (
                "bl_xdp_ops",
                &[
                    "bl_xdp_subflow",
                    "bl_xdp_ip_pair",
                    "bl_xdp_port",
                    "bl_xdp_src",
                    "bl_xdp_count",
                ][..],
            ),
            (
                "bl_tc_ops",
                &[
                    "bl_tc_subflow",
                    "bl_tc_ip_pair",
                    "bl_tc_port",
                    "bl_tc_src",
                    "bl_tc_count",
                    "bl_tc_mark",
                ][..],
            ),
        ] {
            let map = e.map(array)?;
            for (i, prog) in progs.iter().enumerate() {
                let fd = e.prog_fd(prog)?;
                map.update(
                    &(i as u32).to_ne_bytes(),
                    &fd.as_raw_fd().to_ne_bytes(),
                    MapFlags::ANY,
                )
                .with_context(|| format!("{array}[{i}] = {prog}"))?;
            }
        }
        Ok(e)
    }

    fn map(&self, name: &str) -> Result<libbpf_rs::Map<'_>> {
        self.obj
            .maps()
            .find(|m| m.name() == name)
            .with_context(|| format!("bench_baseline has no map {name}"))
    }

    fn prog_fd(&self, name: &str) -> Result<OwnedFd> {
        let prog = self
            .obj
            .progs()
            .find(|p| p.name() == name)
            .with_context(|| format!("bench_baseline has no program {name}"))?;
        Ok(prog.as_fd().try_clone_to_owned()?)
    }

    /// Installs `ops` for the flow `tuple` and makes its selectors match.
    fn set_chain(&self, tuple: [u8; 12], ops: &[(BlOp, u8, u32)]) -> Result<()> {
        self.map("bl_flows")?
            .update(&tuple, &bl_chain_bytes(ops), MapFlags::ANY)
            .context("bl_flows")?;
        self.map("bl_subflows")?
            .update(&tuple, &1u32.to_ne_bytes(), MapFlags::ANY)
            .context("bl_subflows")?;
        self.map("bl_ip_pairs")?
            .update(&tuple[..8], &1u32.to_ne_bytes(), MapFlags::ANY)
            .context("bl_ip_pairs")?;
        Ok(())
    }

    /// Adds `n` flows (remote 11.x.y.z) with chain `ops` to all three maps.
    fn prefill(&self, n: u32, ops: &[(BlOp, u8, u32)]) -> Result<()> {
        let chain = bl_chain_bytes(ops);
        const BATCH: u32 = 50_000;
        let mut start = 0;
        while start < n {
            let count = BATCH.min(n - start);
            let (mut keys, mut pairs, mut chains, mut ones) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for i in start..start + count {
                let src = Ipv4Addr::from(0x0b00_0000u32 + i);
                let t = bl_tuple(src, 9000, *LOCAL.ip(), LOCAL.port());
                keys.extend_from_slice(&t);
                pairs.extend_from_slice(&t[..8]);
                chains.extend_from_slice(&chain);
                ones.extend_from_slice(&1u32.to_ne_bytes());
            }
            let none = MapFlags::empty();
            self.map("bl_flows")?
                .update_batch(&keys, &chains, count, none, none)
                .context("prefilling bl_flows")?;
            self.map("bl_subflows")?
                .update_batch(&keys, &ones, count, none, none)
                .context("prefilling bl_subflows")?;
            self.map("bl_ip_pairs")?
                .update_batch(&pairs, &ones, count, none, none)
                .context("prefilling bl_ip_pairs")?;
            start += count;
        }
        Ok(())
    }

    fn percpu_sum(&self, map: &str, idx: u32) -> Result<u64> {
        let vals = self
            .map(map)?
            .lookup_percpu(&idx.to_ne_bytes(), MapFlags::ANY)
            .with_context(|| format!("reading {map}"))?
            .unwrap_or_default();
        Ok(vals
            .iter()
            .map(|v| u64::from_ne_bytes(v[..8].try_into().expect("8 bytes")))
            .sum())
    }

    fn counters(&self) -> Result<[u64; BL_COUNTERS]> {
        let mut c = [0u64; BL_COUNTERS];
        for (i, v) in c.iter_mut().enumerate() {
            *v = self.percpu_sum("bl_counters", i as u32)?;
        }
        Ok(c)
    }

    fn op_hits(&self) -> Result<Vec<u64>> {
        (0..BL_CHAIN_MAX as u32)
            .map(|i| self.percpu_sum("bl_op_hits", i))
            .collect()
    }
}

fn bl_entry_name(hook: Hook) -> &'static str {
    if hook == Hook::Xdp {
        "bl_xdp_entry"
    } else {
        "bl_tc_entry"
    }
}

/// What the tail-call engine must do with one packet.
#[derive(Clone, Copy)]
enum BlExpect {
    NotTcp,
    NoChain,
    /// The chain ran to its end; the mark it leaves (TC).
    Chain(usize, u32),
}

fn check_tail(
    e: &TailEngine,
    hook: Hook,
    packet: &[u8],
    expect: BlExpect,
    ops: &[(BlOp, u8, u32)],
) -> Result<String> {
    let fd = e.prog_fd(bl_entry_name(hook))?;
    let (c0, h0) = (e.counters()?, e.op_hits()?);
    let out = test_run(fd.as_fd(), packet, hook != Hook::Xdp, 1)?;
    let (c1, h1) = (e.counters()?, e.op_hits()?);
    let d = |i: usize| c1[i] - c0[i];
    let what = format!("tail-call[{}] {hook}", e.label);
    ensure!(
        out.verdict == pass_verdict(hook),
        "{what}: verdict {}",
        out.verdict
    );
    ensure!(d(BL_TAIL_FAIL) == 0, "{what}: a tail call fell through");
    match expect {
        BlExpect::NotTcp => {
            ensure!(
                d(BL_NOT_TCP) == 1 && d(BL_STARTED) == 0,
                "{what}: not counted as non-TCP"
            );
            Ok("not_tcp +1, no chain".into())
        }
        BlExpect::NoChain => {
            ensure!(
                d(BL_NO_CHAIN) == 1 && d(BL_STARTED) == 0,
                "{what}: not counted as no chain"
            );
            Ok("no_chain +1".into())
        }
        BlExpect::Chain(n, mark) => {
            ensure!(
                d(BL_STARTED) == 1 && d(BL_COMPLETED) == 1 && d(BL_SEL_MISS) == 0,
                "{what}: chain {n} did not run to its end (counters {c0:?} -> {c1:?})"
            );
            for (i, (op, _, _)) in ops.iter().enumerate() {
                let want = u64::from(*op == BlOp::Count);
                ensure!(
                    h1[i] - h0[i] == want,
                    "{what}: count actor at {i} ran {} times",
                    h1[i] - h0[i]
                );
            }
            if hook != Hook::Xdp {
                ensure!(
                    out.mark == Some(mark),
                    "{what}: mark {:?}, want {mark}",
                    out.mark
                );
            }
            Ok(format!(
                "chain of {n} ran to its end, count actors +1{}",
                if hook == Hook::Xdp {
                    String::new()
                } else {
                    format!(", mark {mark}")
                }
            ))
        }
    }
}

// ---------------------------------------------------------------------------
// emptcp checks.

#[derive(Clone, Copy)]
enum Expect {
    NotTcp,
    NoPolicy,
    /// Policy `policy` won; its chain ran every operator; mark (TC).
    Chain {
        policy: usize,
        mark: u32,
    },
}

fn check_emptcp(dp: &Dataplane, g: &Generation, packet: &[u8], expect: Expect) -> Result<String> {
    let hook = g.policy().hook();
    let what = format!("emptcp {hook} generation {}", g.number());
    let counters0 = dp.counters(hook)?;
    let hits0 = match expect {
        Expect::Chain { policy, .. } => g.policy_hits()?[policy].1,
        _ => 0,
    };
    let chain = match expect {
        Expect::Chain { policy, .. } => g.policy().chain_of(policy),
        _ => None,
    };
    let ops0 = match chain {
        Some(c) => g.op_stats(c)?,
        None => Vec::new(),
    };
    let r = g.test_run(packet)?;
    let counters1 = dp.counters(hook)?;
    let d = |name: &str| counters1.get(name) - counters0.get(name);
    ensure!(
        r.verdict == pass_verdict(hook),
        "{what}: verdict {}",
        r.verdict
    );
    ensure!(r.packet == packet, "{what}: the packet was changed");
    ensure!(
        d("missing_chain") == 0 && d("missing_plugin") == 0,
        "{what}: missing chain"
    );
    match expect {
        Expect::NotTcp => {
            ensure!(
                d("not_tcp") == 1 && d("tcp") == 0,
                "{what}: not counted as non-TCP"
            );
            Ok("not_tcp +1".into())
        }
        Expect::NoPolicy => {
            ensure!(
                d("no_policy") == 1 && d("matched") == 0,
                "{what}: not counted as no_policy"
            );
            // The timed runs repeat the packet: from the second on, its
            // flow takes the quick pass.
            let again = g.test_run(packet)?;
            let counters2 = dp.counters(hook)?;
            let quick = |name: &str| counters2.get(name) - counters1.get(name);
            ensure!(
                again.verdict == r.verdict
                    && again.packet == packet
                    && quick("no_policy") == 1
                    && quick("quick_tcp") + quick("quick_mptcp") == 1,
                "{what}: a repeated packet of a flow no rule selects did not take the quick pass"
            );
            if hook != Hook::Xdp {
                ensure!(
                    r.mark == Some(0),
                    "{what}: mark {:?} on a packet no policy matches",
                    r.mark
                );
            }
            Ok("no_policy +1, then the quick pass".into())
        }
        Expect::Chain { policy, mark } => {
            ensure!(d("matched") == 1, "{what}: matched +{}", d("matched"));
            let hits1 = g.policy_hits()?[policy].1;
            ensure!(
                hits1 == hits0 + 1,
                "{what}: policy {policy} hits {hits0} -> {hits1}"
            );
            let ops1 = g.op_stats(chain.expect("a chain"))?;
            ensure!(!ops1.is_empty(), "{what}: empty chain");
            for (i, (a, b)) in ops0.iter().zip(&ops1).enumerate() {
                ensure!(
                    b.hits == a.hits + 1,
                    "{what}: operator {i} hits {} -> {}",
                    a.hits,
                    b.hits
                );
                ensure!(b.reasons == a.reasons, "{what}: operator {i} skipped");
            }
            if hook != Hook::Xdp {
                ensure!(
                    r.mark == Some(mark),
                    "{what}: mark {:?}, want {mark}",
                    r.mark
                );
            }
            Ok(format!(
                "policy hit +1, {} actors +1{}",
                ops1.len(),
                if hook == Hook::Xdp {
                    String::new()
                } else {
                    format!(", mark {mark}")
                }
            ))
        }
    }
}

/// Inserts `n` flow entries (remote 11.x.y.z, alternately at XDP and
/// tc-ingress) into the data plane's flow table, zeroed on every CPU.
fn prefill_flows(dp: &Dataplane, n: u32) -> Result<()> {
    let map = map_of_prog(dp.program_info(Hook::Xdp)?.id, "emptcp_flows")?;
    let key_size = map.key_size() as usize;
    let value_size = (map.value_size() as usize).next_multiple_of(8);
    ensure!(key_size == 44, "emptcp_flows key is {key_size} bytes");
    let ncpu = libbpf_rs::num_possible_cpus()?;
    const BATCH: u32 = 50_000;
    let mut start = 0;
    while start < n {
        let mut count = BATCH.min(n - start);
        let mut keys = Vec::with_capacity(count as usize * key_size);
        for i in start..start + count {
            let mut k = [0u8; 44];
            k[0..4].copy_from_slice(&1u32.to_ne_bytes()); // ifindex
            k[4] = if i % 2 == 0 { 0 } else { 1 }; // hook: xdp, tc-ingress
            k[5] = libc::AF_INET as u8;
            k[6..8].copy_from_slice(&9000u16.to_be_bytes());
            k[8..10].copy_from_slice(&LOCAL.port().to_be_bytes());
            k[12..16].copy_from_slice(&(0x0b00_0000u32 + i).to_be_bytes());
            k[28..32].copy_from_slice(&LOCAL.ip().octets());
            keys.extend_from_slice(&k);
        }
        let values = vec![0u8; count as usize * value_size * ncpu];
        let opts = libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
            ..Default::default()
        };
        // SAFETY: keys holds count keys and values count per-CPU values, as
        // the kernel reads them; count is updated in place.
        let rc = unsafe {
            libbpf_sys::bpf_map_update_batch(
                map.as_fd().as_raw_fd(),
                keys.as_ptr().cast(),
                values.as_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        ensure!(
            rc == 0,
            "prefilling emptcp_flows at {start}: {}",
            std::io::Error::from_raw_os_error(-rc)
        );
        start += count;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The run.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Column {
    Empty,
    Emptcp,
    Tail,
    Probe,
}

struct Subject {
    row: usize,
    column: Column,
    fd: OwnedFd,
    packet: Vec<u8>,
    tc: bool,
    samples: Vec<u32>,
}

struct Row {
    hook: Hook,
    case: String,
    checked: Vec<String>,
}

const HOOKS: [Hook; 2] = [Hook::Xdp, Hook::TcIngress];

fn program_row(what: String, info: &ProgramInfo, load: Option<Duration>) -> ProgramRow {
    ProgramRow {
        what,
        verified_insns: info.verified_insns,
        xlated_insns: info.xlated_insns,
        jited_bytes: info.jited_bytes,
        load_ms: load.map(|d| d.as_secs_f64() * 1e3),
    }
}

/// Runs the benchmark. Needs root. Every case is checked on a fresh packet
/// before it is timed; a failed check is an error.
pub fn run(opts: &BenchOptions) -> Result<Report> {
    let cpu = match opts.cpu {
        Some(cpu) => {
            pin_to_cpu(cpu)?;
            cpu
        }
        None => pin_to_current_cpu()?,
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut subjects: Vec<Subject> = Vec::new();
    let mut programs: Vec<ProgramRow> = Vec::new();
    let mut checks = 0usize;

    // Data planes: the default one (flows not accounted), and one per
    // pre-filled flow-table size, accounting flows.
    let mut dp = Dataplane::load_with(&LoadOptions::default()).context("loading the data plane")?;
    for hook in [Hook::Xdp, Hook::TcIngress, Hook::TcEgress] {
        programs.push(program_row(
            format!("emptcp generation 0, {hook}"),
            &dp.program_info(hook)?,
            Some(dp.load_time()),
        ));
    }
    let mut flow_dps = Vec::new();
    for &n in &opts.flow_counts {
        let size = (2 * n).max(65_536);
        let fdp = Dataplane::load_with(&LoadOptions {
            flow_table_size: size,
            account_flows: true,
            ..LoadOptions::default()
        })
        .with_context(|| format!("loading a data plane with a {size}-entry flow table"))?;
        prefill_flows(&fdp, n)?;
        flow_dps.push((n, fdp));
    }
    // Tail-call engines: base, one per flow count, one for many policies.
    let tail = TailEngine::load(1024, "base")?;
    let mut tail_flows = Vec::new();
    for &n in &opts.flow_counts {
        let e = TailEngine::load(n + 1024, &format!("{n} flows"))?;
        e.prefill(n, &bl_chain(Hook::TcIngress, 8, mark_of(8)))?;
        tail_flows.push((n, e));
    }
    let tail_pol = TailEngine::load(2 * opts.policies + 1024, "policies")?;
    for name in [
        "bl_xdp_entry",
        "bl_xdp_subflow",
        "bl_tc_entry",
        "bl_tc_mark",
    ] {
        let fd = tail.prog_fd(name)?;
        let info = info_of_fd(fd.as_fd())?;
        programs.push(ProgramRow {
            what: format!("tail-call engine: {name}"),
            verified_insns: info.verified_insns,
            xlated_insns: info.xlated_prog_len / 8,
            jited_bytes: info.jited_prog_len,
            load_ms: None,
        });
    }

    let mut generations: Vec<Generation> = Vec::new();
    for hook in HOOKS {
        let tc = hook != Hook::Xdp;
        // Empty program: its own subject, shown on every row of the hook.
        let empty_fd = tail.prog_fd(if tc { "bl_tc_empty" } else { "bl_xdp_empty" })?;
        let probe = bench_packet(chain_sport(hook, 8));
        let out = test_run(empty_fd.as_fd(), &probe, tc, 1)?;
        ensure!(
            out.verdict == pass_verdict(hook),
            "empty {hook}: verdict {}",
            out.verdict
        );
        checks += 1;
        let empty_row = rows.len();
        rows.push(Row {
            hook,
            case: "(empty)".into(),
            checked: vec![],
        });
        subjects.push(Subject {
            row: empty_row,
            column: Column::Empty,
            fd: empty_fd,
            packet: probe,
            tc,
            samples: vec![],
        });

        // Generation 0 (no rules) on a TCP packet: parse and flow
        // accounting without the engine. The timed runs repeat the packet,
        // so the one checked is the second: the quick pass.
        {
            let packet = bench_packet(chain_sport(hook, 8));
            dp.test_run(hook, &packet)?;
            let c0 = dp.counters(hook)?;
            let r = dp.test_run(hook, &packet)?;
            let c1 = dp.counters(hook)?;
            let d = |n: &str| c1.get(n) - c0.get(n);
            ensure!(
                r.verdict == pass_verdict(hook)
                    && r.packet == packet
                    && d("tcp") == 1
                    && d("quick_mptcp") == 1
                    && d("no_policy") == 1
                    && d("matched") == 0,
                "emptcp generation 0 {hook}: verdict {}, counters {:?} -> {:?}",
                r.verdict,
                c0,
                c1
            );
            checks += 1;
            let row = rows.len();
            rows.push(Row {
                hook,
                case: "TCP, generation 0 (no rules)".into(),
                checked: vec!["emptcp: quick pass (quick_mptcp +1), packet unchanged".into()],
            });
            subjects.push(Subject {
                row,
                column: Column::Emptcp,
                fd: prog_fd_by_id(dp.program_info(hook)?.id)?,
                packet,
                tc,
                samples: vec![],
            });
        }
        if hook == Hook::Xdp {
            let key = {
                let mut k = [0u8; 44];
                k[0] = 1;
                k
            };
            let ncpu = libbpf_rs::num_possible_cpus()?;
            for name in ["bl_probe_lru", "bl_probe_pchash"] {
                let m = tail.map(name)?;
                m.update_percpu(
                    &key,
                    &vec![vec![0u8; m.value_size() as usize]; ncpu],
                    MapFlags::ANY,
                )
                .context(name)?;
            }
            let m = tail.map("bl_probe_hash")?;
            m.update(&key, &vec![0u8; m.value_size() as usize], MapFlags::ANY)
                .context("bl_probe_hash")?;
            for (prog, what) in [
                (
                    "bl_xdp_probe_parse",
                    "emptcp_parse() of the packet (Ethernet, IPv4, TCP options)",
                ),
                (
                    "bl_xdp_probe_headers",
                    "emptcp_parse_headers(): the same up to the TCP header (no option walk)",
                ),
                (
                    "bl_xdp_probe_lru",
                    "flow lookup: LRU per-CPU hash hit, 44-byte key, value updated",
                ),
                (
                    "bl_xdp_probe_pchash",
                    "the same in a per-CPU hash (not LRU)",
                ),
                (
                    "bl_xdp_probe_hash",
                    "the same in a plain hash (not per-CPU, not LRU)",
                ),
                ("bl_xdp_probe_ktime", "bpf_ktime_get_ns()"),
                ("bl_xdp_probe_coarse", "bpf_ktime_get_coarse_ns()"),
            ] {
                let fd = tail.prog_fd(prog)?;
                let packet = bench_packet(chain_sport(hook, 8));
                let before = tail.percpu_sum("bl_probe_out", 0)?;
                let out = test_run(fd.as_fd(), &packet, false, 1)?;
                let after = tail.percpu_sum("bl_probe_out", 0)?;
                ensure!(
                    out.verdict == XDP_PASS && after == before + 1,
                    "probe {prog} did not do its work"
                );
                checks += 1;
                let row = rows.len();
                rows.push(Row {
                    hook,
                    case: what.into(),
                    checked: vec![],
                });
                subjects.push(Subject {
                    row,
                    column: Column::Probe,
                    fd,
                    packet,
                    tc: false,
                    samples: vec![],
                });
            }
        }

        let add_row = |rows: &mut Vec<Row>,
                       subjects: &mut Vec<Subject>,
                       case: String,
                       em: (OwnedFd, Vec<u8>, String),
                       tl: (OwnedFd, Vec<u8>, String)| {
            let row = rows.len();
            rows.push(Row {
                hook,
                case,
                checked: vec![format!("emptcp: {}", em.2), format!("tail-call: {}", tl.2)],
            });
            subjects.push(Subject {
                row,
                column: Column::Emptcp,
                fd: em.0,
                packet: em.1,
                tc,
                samples: vec![],
            });
            subjects.push(Subject {
                row,
                column: Column::Tail,
                fd: tl.0,
                packet: tl.1,
                tc,
                samples: vec![],
            });
        };

        // Chains.
        let mut chain8: Option<usize> = None;
        for &n in &CHAIN_LENGTHS {
            let set = chain_policy(hook, n, mark_of(n));
            let compiled = set
                .compile(hook)
                .map_err(|e| anyhow::anyhow!("chain {n} at {hook}: {e:?}"))?;
            let g = dp
                .load_generation(&compiled, &[])
                .with_context(|| format!("loading chain {n} at {hook}"))?;
            programs.push(program_row(
                format!("emptcp chain {n}, {hook}"),
                &g.program_info()?,
                Some(g.load_time()),
            ));
            let packet = bench_packet(chain_sport(hook, n));
            let em_check = check_emptcp(
                &dp,
                &g,
                &packet,
                Expect::Chain {
                    policy: 0,
                    mark: mark_of(n),
                },
            )?;
            let ops = bl_chain(hook, n, mark_of(n));
            tail.set_chain(
                bl_tuple(REMOTE_IP, chain_sport(hook, n), *LOCAL.ip(), LOCAL.port()),
                &ops,
            )?;
            let tl_check = check_tail(&tail, hook, &packet, BlExpect::Chain(n, mark_of(n)), &ops)?;
            checks += 2;
            let em_fd = prog_fd_by_id(g.program_info()?.id)?;
            add_row(
                &mut rows,
                &mut subjects,
                format!("chain {n}"),
                (em_fd, packet.clone(), em_check),
                (tail.prog_fd(bl_entry_name(hook))?, packet, tl_check),
            );
            if n == 8 {
                chain8 = Some(generations.len());
            }
            generations.push(g);
        }
        let g8 = &generations[chain8.context("chain 8 is measured")?];
        let g8_fd = || -> Result<OwnedFd> { prog_fd_by_id(g8.program_info()?.id) };

        // Non-TCP, through the chain-8 generation and engine.
        let udp = non_tcp_packet(&bench_packet(chain_sport(hook, 8)));
        let em = check_emptcp(&dp, g8, &udp, Expect::NotTcp)?;
        let tl = check_tail(&tail, hook, &udp, BlExpect::NotTcp, &[])?;
        checks += 2;
        add_row(
            &mut rows,
            &mut subjects,
            "non-TCP".into(),
            (g8_fd()?, udp.clone(), em),
            (tail.prog_fd(bl_entry_name(hook))?, udp, tl),
        );

        // TCP matching nothing: a flow the chain-8 rules do not name.
        let other = bench_packet(nomatch_sport(hook));
        let em = check_emptcp(&dp, g8, &other, Expect::NoPolicy)?;
        let tl = check_tail(&tail, hook, &other, BlExpect::NoChain, &[])?;
        checks += 2;
        add_row(
            &mut rows,
            &mut subjects,
            "TCP, no match".into(),
            (g8_fd()?, other.clone(), em),
            (tail.prog_fd(bl_entry_name(hook))?, other, tl),
        );

        // Chain 8 with pre-filled flow tables.
        for ((n, fdp), (_, te)) in flow_dps.iter_mut().zip(&tail_flows) {
            let compiled = chain_policy(hook, 8, mark_of(8))
                .compile(hook)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let g = fdp.load_generation(&compiled, &[])?;
            let packet = bench_packet(chain_sport(hook, 8));
            let em = check_emptcp(
                fdp,
                &g,
                &packet,
                Expect::Chain {
                    policy: 0,
                    mark: mark_of(8),
                },
            )?;
            let ops = bl_chain(hook, 8, mark_of(8));
            te.set_chain(
                bl_tuple(REMOTE_IP, chain_sport(hook, 8), *LOCAL.ip(), LOCAL.port()),
                &ops,
            )?;
            let tl = check_tail(te, hook, &packet, BlExpect::Chain(8, mark_of(8)), &ops)?;
            checks += 2;
            add_row(
                &mut rows,
                &mut subjects,
                format!("chain 8, {} flows, accounted", thousands(*n)),
                (prog_fd_by_id(g.program_info()?.id)?, packet.clone(), em),
                (te.prog_fd(bl_entry_name(hook))?, packet, tl),
            );
            generations.push(g);
        }

        // Many policies, the packet matching the last.
        let p = opts.policies;
        let compiled = many_policies(hook, p)
            .compile(hook)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let g = dp.load_generation(&compiled, &[])?;
        programs.push(program_row(
            format!("emptcp {} policies, {hook}", thousands(p)),
            &g.program_info()?,
            Some(g.load_time()),
        ));
        let last = tcp_packet(
            policy_remote(p - 1),
            policies_sport(hook),
            *LOCAL.ip(),
            LOCAL.port(),
        );
        let em = check_emptcp(
            &dp,
            &g,
            &last,
            Expect::Chain {
                policy: p as usize - 1,
                mark: 2,
            },
        )?;
        for i in 0..p {
            let mark = if i + 1 == p { 2 } else { 1 };
            tail_pol.set_chain(
                bl_tuple(
                    policy_remote(i),
                    policies_sport(hook),
                    *LOCAL.ip(),
                    LOCAL.port(),
                ),
                &bl_chain(hook, 2, mark),
            )?;
        }
        let tl = check_tail(
            &tail_pol,
            hook,
            &last,
            BlExpect::Chain(2, 2),
            &bl_chain(hook, 2, 2),
        )?;
        checks += 2;
        add_row(
            &mut rows,
            &mut subjects,
            format!("chain 2, {} policies", thousands(p)),
            (prog_fd_by_id(g.program_info()?.id)?, last.clone(), em),
            (tail_pol.prog_fd(bl_entry_name(hook))?, last, tl),
        );
        generations.push(g);
    }

    // Timing: interleaved rounds.
    let n = subjects.len();
    for round in 0..opts.runs {
        let offset = (round * 7) % n.max(1);
        for k in 0..n {
            let s = &mut subjects[(k + offset) % n];
            let out = test_run(s.fd.as_fd(), &s.packet, s.tc, opts.repeat)?;
            s.samples.push(out.duration.as_nanos() as u32);
        }
    }

    // Publish.
    let publish = measure_publish(opts, &mut checks)?;

    // Assemble.
    let mut empty_of = std::collections::BTreeMap::new();
    for s in &subjects {
        if s.column == Column::Empty {
            empty_of.insert(rows[s.row].hook.name(), Measure::of(&s.samples));
        }
    }
    let mut cases = Vec::new();
    let mut components = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let col = |c: Column| {
            subjects
                .iter()
                .find(|s| s.row == i && s.column == c)
                .map(|s| Measure::of(&s.samples))
        };
        let empty = empty_of[row.hook.name()].clone();
        if let Some(probe) = col(Column::Probe) {
            components.push(Component {
                what: row.case.clone(),
                added_ns: probe.median - empty.median,
                probe,
            });
            continue;
        }
        let Some(emptcp) = col(Column::Emptcp) else {
            continue; // the empty program's own row
        };
        cases.push(CaseRow {
            hook: row.hook,
            case: row.case.clone(),
            empty,
            emptcp,
            tail_call: col(Column::Tail),
            checked: row.checked.join("; "),
        });
    }
    let goals = goals(&cases);
    drop(generations);
    Ok(Report {
        machine: machine(Some(cpu)),
        repeat: opts.repeat,
        runs: opts.runs,
        cases,
        components,
        programs,
        publish,
        goals,
        checks_passed: checks,
    })
}

fn goals(cases: &[CaseRow]) -> Vec<Goal> {
    let find = |hook: Hook, case: &str| cases.iter().find(|c| c.hook == hook && c.case == case);
    let mut out = Vec::new();
    let mut push = |goal: String, target: f64, measured: f64| {
        out.push(Goal {
            goal,
            target_ns: target,
            measured_ns: measured,
            met: measured <= target,
        })
    };
    if let Some(c) = find(Hook::Xdp, "chain 8") {
        push("XDP chain 8 <= 70 ns".into(), 70.0, c.emptcp.median);
    }
    if let Some(c) = find(Hook::TcIngress, "chain 8") {
        push("TC chain 8 <= 105 ns".into(), 105.0, c.emptcp.median);
    }
    for hook in HOOKS {
        if let Some(c) = find(hook, "non-TCP") {
            push(
                format!("{hook} non-TCP <= empty + 2"),
                c.empty.median + 2.0,
                c.emptcp.median,
            );
        }
        if let Some(c) = find(hook, "TCP, no match") {
            push(
                format!("{hook} no match <= empty + 5"),
                c.empty.median + 5.0,
                c.emptcp.median,
            );
        }
    }
    out
}

fn stats(v: &mut [f64]) -> [f64; 3] {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return [f64::NAN; 3];
    }
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    [median, v[0], v[n - 1]]
}

/// The program attached at `hook` on `ifindex` (the caller is in the
/// interface's namespace).
fn attached_prog_id(hook: Hook, ifindex: u32) -> Result<u32> {
    let mut id = 0u32;
    let rc = if hook == Hook::Xdp {
        // SAFETY: id is a valid out pointer.
        unsafe { libbpf_sys::bpf_xdp_query_id(ifindex as i32, 0, &mut id) }
    } else {
        let mut ids = [0u32; 8];
        let mut cnt = ids.len() as u32;
        let mut flags = 0u32;
        let ty = if hook == Hook::TcIngress {
            libbpf_sys::BPF_TCX_INGRESS
        } else {
            libbpf_sys::BPF_TCX_EGRESS
        };
        // SAFETY: out pointers valid; ids has cnt slots.
        let rc = unsafe {
            libbpf_sys::bpf_prog_query(
                ifindex as i32,
                ty,
                0,
                &mut flags,
                ids.as_mut_ptr(),
                &mut cnt,
            )
        };
        ensure!(
            cnt == 1,
            "{cnt} programs on the tcx hook, expected ours alone"
        );
        id = ids[0];
        rc
    };
    ensure!(
        rc == 0,
        "querying the {hook} attachment: {}",
        std::io::Error::from_raw_os_error(-rc)
    );
    Ok(id)
}

fn measure_publish(opts: &BenchOptions, checks: &mut usize) -> Result<Vec<PublishRow>> {
    let mut out = Vec::new();
    let mut dp = Dataplane::load().context("loading the publish data plane")?;
    let _guard = match &opts.publish_target {
        Some(t) => Some(crate::netns::NetnsGuard::enter(&t.netns)?),
        None => None,
    };
    for hook in HOOKS {
        let ifindex = opts.publish_target.as_ref().map(|t| t.ifindex);
        if let Some(ifindex) = ifindex {
            dp.attach(hook, ifindex)
                .with_context(|| format!("attaching {hook} for the publish measurement"))?;
        }
        let (mut compile, mut load, mut apply) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..opts.publish_rounds {
            let set = chain_policy(hook, 8, 5000 + r as u32);
            let t0 = Instant::now();
            let compiled = set.compile(hook).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            compile.push(t0.elapsed().as_secs_f64() * 1e6);
            let t1 = Instant::now();
            let g = dp.load_generation(&compiled, &[])?;
            load.push(t1.elapsed().as_secs_f64() * 1e3);
            if let Some(ifindex) = ifindex {
                let id = g.program_info()?.id;
                let t2 = Instant::now();
                let old = dp.apply(ifindex, g)?;
                apply.push(t2.elapsed().as_secs_f64() * 1e6);
                drop(old);
                let running = attached_prog_id(hook, ifindex)?;
                ensure!(
                    running == id,
                    "after apply, {hook} runs program {running}, not {id}"
                );
                *checks += 1;
            }
        }
        if let Some(ifindex) = ifindex {
            dp.detach(hook, ifindex)?;
        }
        out.push(PublishRow {
            hook,
            rounds: opts.publish_rounds,
            compile_us: stats(&mut compile),
            load_ms: stats(&mut load),
            apply_us: (!apply.is_empty()).then(|| stats(&mut apply)),
        });
    }
    Ok(out)
}

/// Where a benchmark runs (`pinned`: the CPU the measuring thread is pinned to).
pub fn machine(pinned: Option<usize>) -> Machine {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_owned();
    Machine {
        kernel,
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        pinned_cpu: pinned,
    }
}

fn thousands(n: u32) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

impl Report {
    /// The report as Markdown tables (the format of docs/benchmarks.md).
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(
            s,
            "Kernel {}, {} x {}, pinned to CPU {}. BPF_PROG_TEST_RUN, kernel-reported ns/packet, \
             median (min-max) of {} runs x repeat {}, runs interleaved. {} correctness checks passed \
             before timing.\n",
            m.kernel,
            m.cpus,
            m.cpu_model,
            m.pinned_cpu.map_or("-".into(), |c| c.to_string()),
            self.runs,
            self.repeat,
            self.checks_passed
        );
        for hook in HOOKS {
            let rows: Vec<&CaseRow> = self.cases.iter().filter(|c| c.hook == hook).collect();
            let Some(first) = rows.first() else { continue };
            let _ = writeln!(s, "**{hook}** (empty program: {})\n", first.empty.cell());
            let _ = writeln!(
                s,
                "| case | emptcp | emptcp - empty | tail-call engine | tail-call - empty | emptcp / tail-call |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|");
            for c in rows {
                let e = c.empty.median;
                let (tail, tail_d, ratio) = match &c.tail_call {
                    Some(t) => (
                        t.cell(),
                        format!("{:+}", t.median - e),
                        format!("{:.2}", c.emptcp.median / t.median),
                    ),
                    None => ("-".into(), "-".into(), "-".into()),
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {:+} | {tail} | {tail_d} | {ratio} |",
                    c.case,
                    c.emptcp.cell(),
                    c.emptcp.median - e,
                );
            }
            s.push('\n');
        }
        if !self.components.is_empty() {
            let _ = writeln!(
                s,
                "**Building blocks of emptcp's per-packet path, each alone in a program (XDP)**\n\n| block | probe | added to empty |\n|---|---|---|"
            );
            for c in &self.components {
                let _ = writeln!(s, "| {} | {} | {:+} |", c.what, c.probe.cell(), c.added_ns);
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "**Goals**\n\n| goal | target (ns) | measured (ns) | met |\n|---|---|---|---|"
        );
        for g in &self.goals {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                g.goal,
                fmt_ns(g.target_ns),
                fmt_ns(g.measured_ns),
                if g.met { "yes" } else { "**no**" }
            );
        }
        let _ = writeln!(
            s,
            "\n**Publishing a new chain 8** (median (min-max) of {} rounds)\n\n| hook | compile | load_generation | apply (bpf_link_update) |\n|---|---|---|---|",
            self.publish.first().map_or(0, |p| p.rounds)
        );
        for p in &self.publish {
            let _ = writeln!(
                s,
                "| {} | {:.0} us ({:.0}-{:.0}) | {:.1} ms ({:.1}-{:.1}) | {} |",
                p.hook,
                p.compile_us[0],
                p.compile_us[1],
                p.compile_us[2],
                p.load_ms[0],
                p.load_ms[1],
                p.load_ms[2],
                p.apply_us
                    .map_or("not measured (no attachment)".into(), |a| format!(
                        "{:.1} us ({:.1}-{:.1})",
                        a[0], a[1], a[2]
                    ))
            );
        }
        let _ = writeln!(
            s,
            "\n**Programs**\n\n| program | verified insns | xlated insns | JIT bytes | load (ms) |\n|---|---|---|---|---|"
        );
        for p in &self.programs {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                p.what,
                p.verified_insns,
                p.xlated_insns,
                p.jited_bytes,
                p.load_ms.map_or("-".into(), |l| format!("{l:.1}"))
            );
        }
        s
    }
}
