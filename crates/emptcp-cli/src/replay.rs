//! `emptcp replay`: run every packet of a capture, in order, through the real
//! loaded programs of one hook (BPF_PROG_TEST_RUN) and write what comes out.
//!
//! One `Dataplane` and one `Generation` run all packets, so the state the
//! programs keep (flow table, connection tracking, counters) carries from
//! packet to packet as on a live hook. Input: pcap or pcapng; link types
//! Ethernet, Linux cooked (SLL, SLL2) and raw IP, converted to Ethernet
//! before the run. Output: a pcap of Ethernet frames.
//!
//! - Dropped packets are left out of the output; redirected ones are written
//!   (as the program left them) and counted, since a test run only reports
//!   the redirect.
//! - Truncated frames (captured length below the original length, e.g.
//!   tcpdump `-s 200`) are written unchanged and not run: the program would
//!   see an IP length beyond the frame. They are counted.
//! - `--local PREFIX`: at a live hook only one direction passes (at xdp and
//!   tc-ingress packets arrive, at tc-egress they leave). With it, only the
//!   packets of the hook's direction run (destination inside PREFIX at
//!   xdp / tc-ingress, source inside it at tc-egress); the others are written
//!   unchanged and counted. Without it every packet runs, both directions.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use emptcp::policy::Prefix;
use emptcp::{Dataplane, Hook};
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::{Block, PcapNgReader};
use serde::Serialize;

use crate::check::{self, describe_action};

pub const EXAMPLES: &str = "Examples:\n  \
    emptcp replay --policy examples/policies/count.toml --hook tc-ingress \\\n      \
    --in capture.pcapng --out out.pcap\n  \
    emptcp replay --policy clamp.toml --hook tc-ingress --local 10.77.1.0/24 \\\n      \
    --in capture.pcap --out out.pcap --json\n\n\
    Needs root (BPF_PROG_TEST_RUN). Exit status: 0 some packet matched a policy,\n\
    1 none did, 2 error.";

/// Arguments of `emptcp replay`.
#[derive(Args)]
pub struct ReplayArgs {
    /// The policy file (TOML; docs/policy-files.md).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// The hook whose program runs the packets; must agree with the file's
    /// `hook` if it has one.
    #[arg(long)]
    pub hook: Option<Hook>,
    /// The capture to replay (pcap or pcapng; Ethernet, Linux SLL / SLL2 or
    /// raw IP).
    #[arg(long = "in", value_name = "IN")]
    pub input: PathBuf,
    /// Where to write the resulting packets (pcap, Ethernet).
    #[arg(long = "out", value_name = "OUT")]
    pub output: PathBuf,
    /// The local side: only packets of the hook's direction run (destination
    /// inside PREFIX at xdp / tc-ingress, source inside it at tc-egress);
    /// others are written unchanged.
    #[arg(long, value_name = "PREFIX")]
    pub local: Option<Prefix>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One frame of the capture, as Ethernet.
struct Frame {
    timestamp: Duration,
    orig_len: u32,
    data: Vec<u8>,
    truncated: bool,
}

/// Packets by what happened to them.
#[derive(Serialize, Default)]
struct Packets {
    read: u64,
    run: u64,
    written: u64,
    passed: u64,
    dropped: u64,
    redirected: u64,
    truncated_not_run: u64,
    other_direction_not_run: u64,
    marked: u64,
}

#[derive(Serialize)]
struct OpRow {
    actor: String,
    hits: u64,
    /// Non-zero skip reasons by name.
    skipped: Vec<(String, u64)>,
}

#[derive(Serialize)]
struct PolicyRow {
    name: String,
    packets: u64,
    /// The action chain it runs (chains are shared by policies with equal
    /// actors, and so are their operator counters).
    chain: u32,
}

#[derive(Serialize)]
struct ChainRow {
    chain: u32,
    policies: Vec<String>,
    operators: Vec<OpRow>,
}

#[derive(Serialize)]
struct Report {
    policy: String,
    hook: Hook,
    input: String,
    output: String,
    link_type: String,
    packets: Packets,
    policies: Vec<PolicyRow>,
    chains: Vec<ChainRow>,
    entry_counters: emptcp::EntryCounters,
}

use emptcp::OP_REASON_NAMES as REASONS;

pub fn run(args: &ReplayArgs) -> Result<ExitCode> {
    let (file, _) = check::load(&args.policy)?;
    let hook = file.resolve_hook(args.hook)?;
    let compiled = file.compile(Some(hook))?;
    let base = args.policy.parent().unwrap_or(Path::new("."));
    let specs = file.plugin_specs(base)?;
    let spec_refs: Vec<_> = specs.iter().collect();

    let (frames, link_type) =
        read_capture(&args.input).with_context(|| format!("reading {}", args.input.display()))?;

    let mut dp = Dataplane::load().context("loading the emptcp data plane (needs root)")?;
    let generation = dp
        .load_generation(&compiled, &spec_refs)
        .context("loading the policy's generation")?;

    let out = File::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let header = PcapHeader {
        snaplen: 262_144,
        datalink: DataLink::ETHERNET,
        ..Default::default()
    };
    let mut writer = PcapWriter::with_header(BufWriter::new(out), header)
        .with_context(|| format!("writing {}", args.output.display()))?;

    let mut n = Packets::default();
    for frame in &frames {
        n.read += 1;
        let run = if frame.truncated {
            n.truncated_not_run += 1;
            false
        } else if !in_direction(&frame.data, hook, args.local) {
            n.other_direction_not_run += 1;
            false
        } else {
            true
        };
        let (data, orig_len) = if run {
            n.run += 1;
            let r = generation
                .test_run(&frame.data)
                .with_context(|| format!("running packet {}", n.read))?;
            if r.mark.is_some_and(|m| m != 0) {
                n.marked += 1;
            }
            match verdict(hook, r.verdict) {
                Verdict::Drop => {
                    n.dropped += 1;
                    continue;
                }
                Verdict::Redirect => n.redirected += 1,
                Verdict::Pass => n.passed += 1,
            }
            let len = r.packet.len() as u32;
            (r.packet, len)
        } else {
            (frame.data.clone(), frame.orig_len)
        };
        writer
            .write_packet(&PcapPacket::new(frame.timestamp, orig_len, &data))
            .with_context(|| format!("writing {}", args.output.display()))?;
        n.written += 1;
    }
    drop(writer);

    let policies: Vec<PolicyRow> = generation
        .policy_hits()?
        .into_iter()
        .enumerate()
        .map(|(i, (name, packets))| PolicyRow {
            name,
            packets,
            chain: compiled.chain_of(i).unwrap_or_default(),
        })
        .collect();
    let mut chains = Vec::new();
    for chain in 0..compiled.chain_count() as u32 {
        let operators = compiled
            .chain_actions(chain)
            .iter()
            .zip(generation.op_stats(chain)?)
            .map(|(a, s)| OpRow {
                actor: describe_action(a),
                hits: s.hits,
                skipped: s
                    .reasons
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .map(|(r, c)| {
                        let name = REASONS
                            .get(r)
                            .map_or(format!("reason_{r}"), |s| s.to_string());
                        (name, *c)
                    })
                    .collect(),
            })
            .collect();
        chains.push(ChainRow {
            chain,
            policies: policies
                .iter()
                .filter(|p| p.chain == chain)
                .map(|p| p.name.clone())
                .collect(),
            operators,
        });
    }
    let report = Report {
        policy: args.policy.display().to_string(),
        hook,
        input: args.input.display().to_string(),
        output: args.output.display().to_string(),
        link_type,
        packets: n,
        policies,
        chains,
        entry_counters: dp.counters(hook)?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    let matched = report.policies.iter().any(|p| p.packets > 0);
    Ok(if matched {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print(r: &Report) {
    let n = &r.packets;
    println!(
        "{} ({}) through {} at {} -> {}",
        r.input, r.link_type, r.policy, r.hook, r.output
    );
    println!(
        "packets: {} read, {} run, {} written; {} passed, {} dropped, {} redirected, {} marked; \
         not run: {} truncated, {} other direction",
        n.read,
        n.run,
        n.written,
        n.passed,
        n.dropped,
        n.redirected,
        n.marked,
        n.truncated_not_run,
        n.other_direction_not_run
    );
    println!();
    println!("{:<24} {:>9} {:>6}", "policy", "packets", "chain");
    for p in &r.policies {
        println!("{:<24} {:>9} {:>6}", p.name, p.packets, p.chain);
    }
    println!();
    println!("chain  operator hits (skipped)");
    for c in &r.chains {
        let ops: Vec<String> = c
            .operators
            .iter()
            .map(|o| {
                let skipped: Vec<String> =
                    o.skipped.iter().map(|(r, c)| format!("{r} {c}")).collect();
                if skipped.is_empty() {
                    format!("{} {}", o.actor, o.hits)
                } else {
                    format!("{} {} (skipped: {})", o.actor, o.hits, skipped.join(", "))
                }
            })
            .collect();
        println!("{:>5}  {}", c.chain, ops.join(" -> "));
    }
    println!();
    let counters: Vec<String> = r
        .entry_counters
        .0
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!("entry counters: {}", counters.join(", "));
}

enum Verdict {
    Pass,
    Drop,
    Redirect,
}

fn verdict(hook: Hook, v: u32) -> Verdict {
    match (hook, v) {
        // XDP_ABORTED, XDP_DROP
        (Hook::Xdp, 0 | 1) => Verdict::Drop,
        // XDP_TX, XDP_REDIRECT
        (Hook::Xdp, 3 | 4) => Verdict::Redirect,
        (Hook::Xdp, _) => Verdict::Pass,
        // TC_ACT_SHOT, TC_ACT_STOLEN
        (_, 2 | 4) => Verdict::Drop,
        // TC_ACT_REDIRECT
        (_, 7) => Verdict::Redirect,
        _ => Verdict::Pass,
    }
}

/// Whether the frame travels in the hook's direction given the local prefix
/// (always true without one, and for frames that are not IP).
fn in_direction(frame: &[u8], hook: Hook, local: Option<Prefix>) -> bool {
    let Some(local) = local else { return true };
    let Some((src, dst)) = ip_addrs(frame) else {
        return true;
    };
    let addr = if hook == Hook::TcEgress { src } else { dst };
    local.contains_addr(addr)
}

/// Source and destination of an Ethernet frame's IP header (up to two VLAN
/// tags).
fn ip_addrs(f: &[u8]) -> Option<(IpAddr, IpAddr)> {
    let mut off = 12;
    let mut proto = u16::from_be_bytes(f.get(off..off + 2)?.try_into().ok()?);
    for _ in 0..2 {
        if proto != 0x8100 && proto != 0x88a8 {
            break;
        }
        off += 4;
        proto = u16::from_be_bytes(f.get(off..off + 2)?.try_into().ok()?);
    }
    let ip = off + 2;
    match proto {
        0x0800 => {
            let s: [u8; 4] = f.get(ip + 12..ip + 16)?.try_into().ok()?;
            let d: [u8; 4] = f.get(ip + 16..ip + 20)?.try_into().ok()?;
            Some((IpAddr::from(s), IpAddr::from(d)))
        }
        0x86dd => {
            let s: [u8; 16] = f.get(ip + 8..ip + 24)?.try_into().ok()?;
            let d: [u8; 16] = f.get(ip + 24..ip + 40)?.try_into().ok()?;
            Some((IpAddr::from(s), IpAddr::from(d)))
        }
        _ => None,
    }
}

/// Every frame of a pcap or pcapng file, as Ethernet, and the link type
/// name(s) it had.
fn read_capture(path: &Path) -> Result<(Vec<Frame>, String)> {
    let mut file = BufReader::new(File::open(path)?);
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)
        .context("too short for a capture")?;
    let file = BufReader::new(File::open(path)?);
    let mut frames = Vec::new();
    let mut link_types: Vec<String> = Vec::new();
    let mut note = |dl: DataLink| {
        let name = format!("{dl:?}");
        if !link_types.contains(&name) {
            link_types.push(name);
        }
    };
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut reader = PcapNgReader::new(file).context("not a pcapng file")?;
        while let Some(block) = reader.next_block() {
            let (interface, timestamp, orig_len, data) = match block? {
                Block::EnhancedPacket(p) => (
                    p.interface_id,
                    p.timestamp,
                    p.original_len,
                    p.data.into_owned(),
                ),
                Block::SimplePacket(p) => (0, Duration::ZERO, p.original_len, p.data.into_owned()),
                _ => continue,
            };
            let Some(dl) = reader
                .interfaces()
                .get(interface as usize)
                .map(|i| i.linktype)
            else {
                bail!(
                    "packet {} names interface {interface}, which the file does not describe",
                    frames.len() + 1
                );
            };
            note(dl);
            frames.push(to_ethernet(
                dl,
                timestamp,
                orig_len,
                &data,
                frames.len() + 1,
            )?);
        }
    } else {
        let mut reader = PcapReader::new(file).context("not a pcap or pcapng file")?;
        let dl = reader.header().datalink;
        note(dl);
        while let Some(p) = reader.next_packet() {
            let p = p?;
            frames.push(to_ethernet(
                dl,
                p.timestamp,
                p.orig_len,
                &p.data,
                frames.len() + 1,
            )?);
        }
    }
    Ok((frames, link_types.join("+")))
}

/// Placeholder MAC addresses for frames built from cooked or raw captures
/// (locally administered).
const MAC_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const MAC_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn to_ethernet(
    dl: DataLink,
    timestamp: Duration,
    orig_len: u32,
    data: &[u8],
    number: usize,
) -> Result<Frame> {
    let truncated = (data.len() as u64) < u64::from(orig_len);
    let ether = |src: &[u8], proto: [u8; 2], payload: &[u8], header_len: usize| {
        let mut out = Vec::with_capacity(14 + payload.len());
        out.extend_from_slice(&MAC_DST);
        out.extend_from_slice(src);
        out.extend_from_slice(&proto);
        out.extend_from_slice(payload);
        Frame {
            timestamp,
            // The original frame had `header_len` bytes of cooked header
            // where Ethernet has 14.
            orig_len: (orig_len + 14).saturating_sub(header_len as u32),
            data: out,
            truncated,
        }
    };
    let short = || anyhow::anyhow!("packet {number}: too short for its {dl:?} header");
    Ok(match dl {
        DataLink::ETHERNET => Frame {
            timestamp,
            orig_len,
            data: data.to_vec(),
            truncated,
        },
        DataLink::LINUX_SLL => {
            // packet type, ARPHRD, address length, 8 address bytes, protocol.
            let h = data.get(..16).ok_or_else(short)?;
            let alen = usize::from(u16::from_be_bytes([h[4], h[5]]));
            let src = if alen == 6 { &h[6..12] } else { &MAC_SRC[..] };
            ether(src, [h[14], h[15]], &data[16..], 16)
        }
        DataLink::LINUX_SLL2 => {
            // protocol, reserved, ifindex, ARPHRD, packet type, address
            // length, 8 address bytes.
            let h = data.get(..20).ok_or_else(short)?;
            let alen = usize::from(h[11]);
            let src = if alen == 6 { &h[12..18] } else { &MAC_SRC[..] };
            ether(src, [h[0], h[1]], &data[20..], 20)
        }
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => {
            let proto = match data.first().map(|b| b >> 4) {
                Some(4) => [0x08, 0x00],
                Some(6) => [0x86, 0xdd],
                _ => bail!("packet {number}: raw packet is neither IPv4 nor IPv6"),
            };
            ether(&MAC_SRC, proto, data, 0)
        }
        other => bail!(
            "packet {number}: link type {other:?} is not supported (Ethernet, LINUX_SLL, \
             LINUX_SLL2, RAW)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooked_frames_become_ethernet() {
        let ip = [0x45u8, 0, 0, 20];
        let mut sll = vec![0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&ip);
        let f = to_ethernet(DataLink::LINUX_SLL, Duration::ZERO, 20, &sll, 1).unwrap();
        assert_eq!(&f.data[6..14], &[1, 2, 3, 4, 5, 6, 0x08, 0x00]);
        assert_eq!(&f.data[14..], &ip);
        assert_eq!(f.orig_len, 18);
        let mut sll2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
        ];
        sll2.extend_from_slice(&ip);
        let f = to_ethernet(DataLink::LINUX_SLL2, Duration::ZERO, 24, &sll2, 1).unwrap();
        assert_eq!(&f.data[6..14], &[1, 2, 3, 4, 5, 6, 0x08, 0x00]);
        assert_eq!(f.data.len(), 18);
    }
}
