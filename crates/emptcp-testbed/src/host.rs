//! One network namespace of a testbed, and the ways to run things inside it.

use std::ffi::OsStr;
use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::thread::JoinHandle;

use anyhow::{Context, Result, anyhow};
use nix::sched::{CloneFlags, setns};
use serde::Serialize;

use crate::cmd::{self, Output};

/// A host of a testbed: one network namespace under `/run/netns`.
///
/// Cheap to clone; a clone does not own the namespace (the [`crate::Testbed`] does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    name: String,
    netns: String,
}

/// Offload switches of an interface, as `ethtool -K` names them; `None` leaves a switch as is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Offloads {
    /// Transmit checksum offload (`tx`). Off also turns TSO off, which depends on it.
    pub tx_checksum: Option<bool>,
    /// Receive checksum offload (`rx`).
    pub rx_checksum: Option<bool>,
    /// TCP segmentation offload (`tso`).
    pub tso: Option<bool>,
    /// Generic segmentation offload (`gso`).
    pub gso: Option<bool>,
    /// Generic receive offload (`gro`).
    pub gro: Option<bool>,
}

impl Offloads {
    /// Every switch on: tx/rx checksum, TSO, GSO and GRO.
    pub fn all_on() -> Self {
        Self::all(true)
    }

    /// Every switch off: the stack segments and checksums each packet in software, so packets on
    /// the wire have their final size and checksum when a program sees them.
    pub fn all_off() -> Self {
        Self::all(false)
    }

    fn all(on: bool) -> Self {
        Offloads {
            tx_checksum: Some(on),
            rx_checksum: Some(on),
            tso: Some(on),
            gso: Some(on),
            gro: Some(on),
        }
    }

    /// The `ethtool -K` feature words, e.g. `["tx", "on", "tso", "off"]`.
    pub(crate) fn ethtool_args(&self) -> Vec<&'static str> {
        let onoff = |b: bool| if b { "on" } else { "off" };
        let mut args = Vec::new();
        for (key, val) in [
            ("tx", self.tx_checksum),
            ("rx", self.rx_checksum),
            ("tso", self.tso),
            ("gso", self.gso),
            ("gro", self.gro),
        ] {
            if let Some(v) = val {
                args.push(key);
                args.push(onoff(v));
            }
        }
        args
    }
}

impl Host {
    pub(crate) fn new(name: &str, netns: String) -> Self {
        Host {
            name: name.to_owned(),
            netns,
        }
    }

    /// The name given in the topology (e.g. `"client"`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's unique name under `/run/netns`.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// `/run/netns/<netns>`: the file to open for `setns` or to give to `nsenter --net=`.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }

    fn enter_forever(&self) -> Result<()> {
        let path = self.netns_path();
        let file = File::open(&path)
            .with_context(|| format!("opening {} of host {}", path.display(), self.name))?;
        setns(&file, CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("setns into the netns of host {}", self.name))?;
        Ok(())
    }

    /// Runs `f` on a fresh thread that has entered this host's network namespace, and returns
    /// its result. Sockets created inside stay in the namespace wherever they are used later.
    ///
    /// Only the network namespace changes (`setns(CLONE_NEWNET)`), so `/sys/fs/bpf` stays visible
    /// (unlike `ip netns exec`). Inside, read `/proc/thread-self/net/...`, not `/proc/net/...`:
    /// the latter follows the main thread's namespace. A panic in `f` is resumed in the caller.
    pub fn run<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| -> Result<T> {
                self.enter_forever()?;
                Ok(f())
            });
            match handle.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Like [`Host::run`], but in the background: returns the thread's handle at once.
    pub fn spawn<F, T>(&self, f: F) -> Result<JoinHandle<Result<T>>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let host = self.clone();
        std::thread::Builder::new()
            .name(format!("netns-{}", self.name))
            .spawn(move || -> Result<T> {
                host.enter_forever()?;
                Ok(f())
            })
            .with_context(|| format!("spawning a thread for host {}", self.name))
    }

    /// Moves the calling thread into this host's network namespace until the guard drops.
    ///
    /// For work whose results are not `Send` (e.g. attaching a BPF program by ifindex, which
    /// the kernel resolves in the caller's namespace). Links and sockets made meanwhile stay in
    /// this namespace after the guard restores the previous one.
    pub fn enter(&self) -> Result<NetnsGuard> {
        let previous =
            File::open("/proc/thread-self/ns/net").context("opening the current thread's netns")?;
        self.enter_forever()?;
        Ok(NetnsGuard {
            previous,
            _not_send: std::marker::PhantomData,
        })
    }

    /// A command that runs `program` inside this host: `nsenter --net=/run/netns/<netns> program`.
    ///
    /// Only the network namespace is switched, so bpffs stays visible to the child. Run it with
    /// [`cmd::run_with_timeout`] (or spawn it and enforce a timeout yourself).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns_path().display()))
            .arg(program);
        c
    }

    /// Runs `program args...` inside this host with the default timeout; fails with the command
    /// line and stderr unless it exits with 0.
    pub fn exec<I, S>(&self, program: &str, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command(program);
        c.args(args);
        cmd::run_checked(&mut c).with_context(|| format!("on host {}", self.name))
    }

    /// Runs `ip <args>` in this host (as `ip -n <netns>`) and returns its stdout.
    pub fn ip<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new("ip");
        c.arg("-n").arg(&self.netns).args(args);
        let out = cmd::run_checked(&mut c).with_context(|| format!("on host {}", self.name))?;
        Ok(out.stdout)
    }

    /// Runs `tc <args>` in this host (as `tc -n <netns>`) and returns its stdout.
    pub fn tc<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new("tc");
        c.arg("-n").arg(&self.netns).args(args);
        let out = cmd::run_checked(&mut c).with_context(|| format!("on host {}", self.name))?;
        Ok(out.stdout)
    }

    /// The interface index of `iface` in this host (for attaching programs by ifindex).
    pub fn ifindex(&self, iface: &str) -> Result<u32> {
        let iface_owned = iface.to_owned();
        self.run(move || nix::net::if_::if_nametoindex(iface_owned.as_str()))?
            .with_context(|| format!("looking up ifindex of {iface} on host {}", self.name))
    }

    /// Sets a sysctl of this namespace, e.g. `("net.mptcp.checksum_enabled", "1")`.
    ///
    /// Only per-netns sysctls (`net.*`) are meaningful here; others are global.
    pub fn sysctl_set(&self, key: &str, value: &str) -> Result<()> {
        let path = sysctl_path(key);
        let value = value.to_owned();
        self.run(|| std::fs::write(&path, value.as_bytes()))?
            .with_context(|| format!("setting sysctl {key} on host {}", self.name))
    }

    /// Reads a sysctl of this namespace, trimmed.
    pub fn sysctl_get(&self, key: &str) -> Result<String> {
        let path = sysctl_path(key);
        let value = self
            .run(|| std::fs::read_to_string(&path))?
            .with_context(|| format!("reading sysctl {key} on host {}", self.name))?;
        Ok(value.trim().to_owned())
    }

    /// Sets offload switches of `iface` with `ethtool -K`.
    pub fn set_offloads(&self, iface: &str, offloads: &Offloads) -> Result<()> {
        let words = offloads.ethtool_args();
        if words.is_empty() {
            return Ok(());
        }
        let mut args = vec!["-K", iface];
        args.extend(words);
        self.exec("ethtool", &args)
            .with_context(|| format!("setting offloads of {iface}"))?;
        Ok(())
    }

    /// Reads the current offload switches of `iface` (`ethtool -k`); all fields are `Some`.
    pub fn offloads(&self, iface: &str) -> Result<Offloads> {
        let out = self
            .exec("ethtool", ["-k", iface])
            .with_context(|| format!("reading offloads of {iface}"))?;
        let feature = |name: &str| -> Result<bool> {
            out.stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().starts_with("on"))
                .ok_or_else(|| anyhow!("ethtool -k {iface} on host {} lists no {name}", self.name))
        };
        Ok(Offloads {
            tx_checksum: Some(feature("tx-checksumming")?),
            rx_checksum: Some(feature("rx-checksumming")?),
            tso: Some(feature("tcp-segmentation-offload")?),
            gso: Some(feature("generic-segmentation-offload")?),
            gro: Some(feature("generic-receive-offload")?),
        })
    }
}

/// Byte and packet counters of one interface (`/proc/net/dev`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IfaceCounters {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Packets dropped on transmit.
    pub tx_dropped: u64,
}

impl IfaceCounters {
    /// `self - earlier`, field by field (saturating).
    pub fn delta(&self, earlier: &IfaceCounters) -> IfaceCounters {
        IfaceCounters {
            rx_bytes: self.rx_bytes.saturating_sub(earlier.rx_bytes),
            rx_packets: self.rx_packets.saturating_sub(earlier.rx_packets),
            rx_dropped: self.rx_dropped.saturating_sub(earlier.rx_dropped),
            tx_bytes: self.tx_bytes.saturating_sub(earlier.tx_bytes),
            tx_packets: self.tx_packets.saturating_sub(earlier.tx_packets),
            tx_dropped: self.tx_dropped.saturating_sub(earlier.tx_dropped),
        }
    }
}

impl Host {
    /// Counters of `iface`, from `/proc/thread-self/net/dev` read inside the host.
    pub fn iface_counters(&self, iface: &str) -> Result<IfaceCounters> {
        let text = self
            .run(|| std::fs::read_to_string("/proc/thread-self/net/dev"))?
            .with_context(|| format!("reading interface counters of host {}", self.name))?;
        for line in text.lines().skip(2) {
            let Some((name, rest)) = line.split_once(':') else {
                continue;
            };
            if name.trim() != iface {
                continue;
            }
            // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets
            // errs drop ...
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse().unwrap_or(0))
                .collect();
            if v.len() < 16 {
                anyhow::bail!("short /proc/net/dev line for {iface}: {line:?}");
            }
            return Ok(IfaceCounters {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_dropped: v[11],
            });
        }
        Err(anyhow!("host {} has no interface {iface}", self.name))
    }
}

/// Restores the thread's previous network namespace on drop; see [`Host::enter`].
#[derive(Debug)]
pub struct NetnsGuard {
    previous: File,
    // setns affects only the calling thread, so the guard must drop on the thread that made it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.previous, CloneFlags::CLONE_NEWNET) {
            tracing::error!(error = %e, "restoring the thread's netns failed");
        }
    }
}

fn sysctl_path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}
