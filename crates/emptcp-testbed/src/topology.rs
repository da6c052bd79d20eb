//! Topology descriptions and the testbed built from them.

use std::fmt;
use std::net::IpAddr;
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::Serialize;

use crate::cmd;
use crate::host::{Host, Offloads};
use crate::names::{NAME_PREFIX, fresh_id};

/// How long [`TopologyBuilder::build`] waits for links to become ready.
pub const LINK_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Initial TCP/MPTCP receive buffer of every host (the middle of
/// `net.ipv4.tcp_rmem`), unless [`TopologyBuilder::receive_buffer`] says
/// otherwise.
///
/// Why not the kernel's 128 KiB: Linux 6.18's MPTCP receive path corrupts
/// about one two-subflow connection in 1000-5000 on these testbeds with it
/// (the application gets the right length with a region of misplaced stream
/// bytes, early in the connection, while the receive window is nearly
/// closed). The sender is not at fault (a capture shows every segment's bytes
/// match its DSS mapping) and no BPF program is needed: the `soak` example
/// reproduces it with none. With this buffer it is rare (1 corrupted
/// connection in 30000, against 36 with the kernel's default in the same
/// runs); receivers that wait for the joins they expect
/// ([`crate::traffic::ReceiverOpts::wait_subflows`]) avoid it altogether.
/// docs/kernel-issues.md has the evidence and the likely mechanism. Tests
/// must see corruption that emptcp causes, not the kernel's.
pub const DEFAULT_RECEIVE_BUFFER: u32 = 16 << 20;

/// An IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: &IpAddr) -> Self {
        if ip.is_ipv6() { Family::V6 } else { Family::V4 }
    }
}

/// An interface address with its prefix length, e.g. `10.77.1.1/24` or `fd77:1::1/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Addr {
    /// The address.
    pub ip: IpAddr,
    /// Prefix length of the on-link subnet.
    pub prefix_len: u8,
}

impl Addr {
    /// True for an IPv6 address.
    pub fn is_ipv6(&self) -> bool {
        self.ip.is_ipv6()
    }
}

impl FromStr for Addr {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let (ip, len) = s
            .split_once('/')
            .ok_or_else(|| anyhow!("address {s:?} has no prefix length (expected ADDR/LEN)"))?;
        let ip: IpAddr = ip.parse().with_context(|| format!("address {s:?}"))?;
        let prefix_len: u8 = len
            .parse()
            .with_context(|| format!("prefix length of {s:?}"))?;
        let max = if ip.is_ipv6() { 128 } else { 32 };
        ensure!(prefix_len <= max, "prefix length of {s:?} exceeds {max}");
        Ok(Addr { ip, prefix_len })
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix_len)
    }
}

/// The queueing discipline used for a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Qdisc {
    /// Hierarchical token bucket: one class at `rate` with `ceil == rate`, all traffic in it.
    Htb,
    /// Token bucket filter.
    Tbf,
}

/// An egress rate limit on one end of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    /// Which qdisc enforces it.
    pub qdisc: Qdisc,
    /// Rate in bit/s.
    pub rate_bps: u64,
    /// Bucket size in bytes; `None` picks max(rate x 4 ms, 32 KiB).
    pub burst_bytes: Option<u64>,
}

impl RateLimit {
    /// HTB at `mbit` Mbit/s.
    pub fn htb_mbit(mbit: u64) -> Self {
        RateLimit {
            qdisc: Qdisc::Htb,
            rate_bps: mbit * 1_000_000,
            burst_bytes: None,
        }
    }

    /// TBF at `mbit` Mbit/s.
    pub fn tbf_mbit(mbit: u64) -> Self {
        RateLimit {
            qdisc: Qdisc::Tbf,
            rate_bps: mbit * 1_000_000,
            burst_bytes: None,
        }
    }

    fn burst(&self) -> u64 {
        // 4 ms of tokens covers one timer tick at HZ=250; 32 KiB lets a GSO burst through
        // without the qdisc having to split it.
        self.burst_bytes
            .unwrap_or_else(|| (self.rate_bps / 8 / 250).max(32 * 1024))
    }

    /// The `tc` command lines (without `tc -n NS`) that install this limit on `dev`.
    fn tc_commands(&self, dev: &str) -> Vec<Vec<String>> {
        let rate = format!("{}bit", self.rate_bps);
        let burst = self.burst().to_string();
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match self.qdisc {
            Qdisc::Htb => vec![
                s(&[
                    "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "1",
                ]),
                s(&[
                    "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate",
                    &rate, "ceil", &rate, "burst", &burst, "cburst", &burst,
                ]),
            ],
            Qdisc::Tbf => vec![s(&[
                "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate, "burst", &burst,
                "latency", "50ms",
            ])],
        }
    }
}

/// One end of a veth link: the host it lives in, its interface name and its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkEnd {
    /// Host name (as given to [`TopologyBuilder::host`]).
    pub host: String,
    /// Interface name inside that host (max 15 bytes). It only needs to be unique in the host:
    /// the veth is created directly inside the namespaces, never in the root namespace.
    pub iface: String,
    /// Addresses, `ADDR/LEN`, IPv4 or IPv6.
    pub addrs: Vec<String>,
    /// Egress rate limit on this end.
    pub rate_limit: Option<RateLimit>,
    /// Offload switches for this end.
    pub offloads: Offloads,
}

impl LinkEnd {
    /// An end on `host` named `iface`.
    pub fn new(host: &str, iface: &str) -> Self {
        LinkEnd {
            host: host.to_owned(),
            iface: iface.to_owned(),
            addrs: Vec::new(),
            rate_limit: None,
            offloads: Offloads::default(),
        }
    }

    /// Adds an address `ADDR/LEN` (IPv6 addresses are added with `nodad`).
    pub fn addr(mut self, addr: &str) -> Self {
        self.addrs.push(addr.to_owned());
        self
    }

    /// Limits this end's egress rate.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// Sets offload switches on this end.
    pub fn offloads(mut self, offloads: Offloads) -> Self {
        self.offloads = offloads;
        self
    }
}

/// A veth pair between two hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkSpec {
    /// First end.
    pub a: LinkEnd,
    /// Second end.
    pub b: LinkEnd,
    /// MTU of both ends (`None`: the veth default, 1500).
    pub mtu: Option<u32>,
}

impl LinkSpec {
    /// A link between two ends.
    pub fn new(a: LinkEnd, b: LinkEnd) -> Self {
        LinkSpec { a, b, mtu: None }
    }

    /// Sets the MTU of both ends.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }
}

fn family_flag(ipv6: bool) -> &'static str {
    if ipv6 { "-6" } else { "-4" }
}

fn looks_v6(s: &str) -> bool {
    s.contains(':')
}

/// A route, installed with `ip route add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Destination prefix (`10.77.3.0/24`, `fd77:3::/64`) or `default`.
    pub dst: String,
    /// Gateway.
    pub via: Option<String>,
    /// Output device.
    pub dev: Option<String>,
    /// Preferred source address.
    pub src: Option<String>,
    /// Routing table (`None`: main).
    pub table: Option<u32>,
    /// Force IPv6 (needed only for `default` without a v6 gateway or source).
    pub ipv6: bool,
}

impl Route {
    /// A route to `dst`.
    pub fn to(dst: &str) -> Self {
        Route {
            dst: dst.to_owned(),
            via: None,
            dev: None,
            src: None,
            table: None,
            ipv6: false,
        }
    }

    /// Through gateway `via`.
    pub fn via(mut self, via: &str) -> Self {
        self.via = Some(via.to_owned());
        self
    }

    /// Out of device `dev`.
    pub fn dev(mut self, dev: &str) -> Self {
        self.dev = Some(dev.to_owned());
        self
    }

    /// With preferred source `src`.
    pub fn src(mut self, src: &str) -> Self {
        self.src = Some(src.to_owned());
        self
    }

    /// In routing table `table`.
    pub fn table(mut self, table: u32) -> Self {
        self.table = Some(table);
        self
    }

    /// As an IPv6 route.
    pub fn v6(mut self) -> Self {
        self.ipv6 = true;
        self
    }

    fn is_v6(&self) -> bool {
        self.ipv6
            || looks_v6(&self.dst)
            || self.via.as_deref().is_some_and(looks_v6)
            || self.src.as_deref().is_some_and(looks_v6)
    }

    fn ip_args(&self) -> Vec<String> {
        let mut a = vec![
            family_flag(self.is_v6()).to_owned(),
            "route".into(),
            "add".into(),
        ];
        a.push(self.dst.clone());
        for (key, val) in [("via", &self.via), ("dev", &self.dev), ("src", &self.src)] {
            if let Some(v) = val {
                a.push(key.into());
                a.push(v.clone());
            }
        }
        if let Some(t) = self.table {
            a.push("table".into());
            a.push(t.to_string());
        }
        a
    }
}

/// A policy routing rule, installed with `ip rule add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Match on source prefix.
    pub from: Option<String>,
    /// Match on input interface.
    pub iif: Option<String>,
    /// Table to look up.
    pub table: u32,
    /// Rule priority (`None`: the kernel picks one below the last).
    pub pref: Option<u32>,
    /// IPv6 rule (implied by an IPv6 `from`).
    pub ipv6: bool,
}

impl Rule {
    /// `from <prefix> table <table>`: source-based routing.
    pub fn from(prefix: &str, table: u32) -> Self {
        Rule {
            from: Some(prefix.to_owned()),
            iif: None,
            table,
            pref: None,
            ipv6: looks_v6(prefix),
        }
    }

    /// `iif <dev> table <table>` for IPv4; add [`Rule::v6`] for the IPv6 rule.
    pub fn iif(dev: &str, table: u32) -> Self {
        Rule {
            from: None,
            iif: Some(dev.to_owned()),
            table,
            pref: None,
            ipv6: false,
        }
    }

    /// As an IPv6 rule.
    pub fn v6(mut self) -> Self {
        self.ipv6 = true;
        self
    }

    /// With priority `pref`.
    pub fn pref(mut self, pref: u32) -> Self {
        self.pref = Some(pref);
        self
    }

    fn ip_args(&self) -> Vec<String> {
        let mut a = vec![
            family_flag(self.ipv6).to_owned(),
            "rule".into(),
            "add".into(),
        ];
        if let Some(f) = &self.from {
            a.extend(["from".into(), f.clone()]);
        }
        if let Some(i) = &self.iif {
            a.extend(["iif".into(), i.clone()]);
        }
        if let Some(p) = self.pref {
            a.extend(["pref".into(), p.to_string()]);
        }
        a.extend(["table".into(), self.table.to_string()]);
        a
    }
}

/// Flags of an MPTCP endpoint (`ip mptcp endpoint add ... FLAGS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EndpointFlags {
    /// Announce this address to the peer (ADD_ADDR); for servers.
    pub signal: bool,
    /// Open a subflow from this address; for clients.
    pub subflow: bool,
    /// Subflows from this address are backup (MP_PRIO / MP_JOIN backup bit).
    pub backup: bool,
    /// Open subflows from this address to every address the peer announced.
    pub fullmesh: bool,
}

impl EndpointFlags {
    /// Only `subflow`.
    pub const SUBFLOW: Self = EndpointFlags {
        signal: false,
        subflow: true,
        backup: false,
        fullmesh: false,
    };
    /// Only `signal`.
    pub const SIGNAL: Self = EndpointFlags {
        signal: true,
        subflow: false,
        backup: false,
        fullmesh: false,
    };
}

/// An in-kernel path manager endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MptcpEndpoint {
    /// Local address.
    pub addr: String,
    /// Device the address lives on.
    pub dev: Option<String>,
    /// Endpoint flags.
    pub flags: EndpointFlags,
    /// Endpoint id (`None`: kernel-assigned).
    pub id: Option<u8>,
}

impl MptcpEndpoint {
    /// An endpoint for `addr` on `dev` with `flags`.
    pub fn new(addr: &str, dev: &str, flags: EndpointFlags) -> Self {
        MptcpEndpoint {
            addr: addr.to_owned(),
            dev: Some(dev.to_owned()),
            flags,
            id: None,
        }
    }

    fn ip_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "mptcp".into(),
            "endpoint".into(),
            "add".into(),
            self.addr.clone(),
        ];
        if let Some(id) = self.id {
            a.extend(["id".into(), id.to_string()]);
        }
        if let Some(dev) = &self.dev {
            a.extend(["dev".into(), dev.clone()]);
        }
        for (on, word) in [
            (self.flags.signal, "signal"),
            (self.flags.subflow, "subflow"),
            (self.flags.backup, "backup"),
            (self.flags.fullmesh, "fullmesh"),
        ] {
            if on {
                a.push(word.into());
            }
        }
        a
    }
}

/// Limits of the in-kernel path manager (`ip mptcp limits set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MptcpLimits {
    /// Extra subflows per connection (besides the initial one).
    pub subflows: u32,
    /// ADD_ADDR announcements accepted per connection.
    pub add_addr_accepted: u32,
}

#[derive(Debug, Clone)]
struct HostSpec {
    name: String,
    forwarding: bool,
    rp_filter: Option<u8>,
}

#[derive(Debug, Clone)]
enum Step {
    Sysctl(String, String, String),
    Route(String, Route),
    Rule(String, Rule),
    Endpoint(String, MptcpEndpoint),
    Limits(String, MptcpLimits),
    Ip(String, Vec<String>),
}

/// Entry point: `Topology::builder("demo")`.
#[derive(Debug)]
pub struct Topology;

impl Topology {
    /// Starts a topology description; `label` becomes part of every namespace name
    /// (keep it short and shell-safe).
    pub fn builder(label: &str) -> TopologyBuilder {
        TopologyBuilder {
            label: label.to_owned(),
            hosts: Vec::new(),
            links: Vec::new(),
            steps: Vec::new(),
            errors: Vec::new(),
            receive_buffer: Some(DEFAULT_RECEIVE_BUFFER),
        }
    }
}

/// Sets the middle ("default") value of `net.ipv4.tcp_rmem` in `host`, which
/// also serves IPv6 and MPTCP sockets, raising the maximum to match if needed.
fn set_receive_buffer(host: &Host, bytes: u32) -> Result<()> {
    let now = host.sysctl_get("net.ipv4.tcp_rmem")?;
    let v: Vec<u64> = now
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("net.ipv4.tcp_rmem is {now:?}"))?;
    let [min, _, max] = v[..] else {
        bail!("net.ipv4.tcp_rmem is {now:?}, not three numbers");
    };
    let bytes = u64::from(bytes);
    host.sysctl_set(
        "net.ipv4.tcp_rmem",
        &format!("{min} {bytes} {}", max.max(bytes)),
    )
}

/// A topology under construction; [`TopologyBuilder::build`] creates it.
///
/// Build order: namespaces (lo up, DAD off, forwarding, rp_filter), links (veths, MTU, addresses,
/// offloads, rate limits), then sysctls, routes, rules, MPTCP limits and endpoints, raw `ip`
/// commands, in the order they were given.
#[derive(Debug, Clone)]
pub struct TopologyBuilder {
    label: String,
    hosts: Vec<HostSpec>,
    links: Vec<LinkSpec>,
    steps: Vec<Step>,
    errors: Vec<String>,
    receive_buffer: Option<u32>,
}

impl TopologyBuilder {
    /// Initial receive buffer of every host's TCP and MPTCP sockets, in bytes
    /// (`None`: the kernel's default). Default: [`DEFAULT_RECEIVE_BUFFER`],
    /// which explains why.
    pub fn receive_buffer(mut self, bytes: Option<u32>) -> Self {
        self.receive_buffer = bytes;
        self
    }

    /// Adds a host (a network namespace with `lo` up).
    pub fn host(mut self, name: &str) -> Self {
        self.hosts.push(HostSpec {
            name: name.to_owned(),
            forwarding: false,
            rp_filter: None,
        });
        self
    }

    fn host_mut(&mut self, name: &str) -> Option<&mut HostSpec> {
        self.hosts.iter_mut().find(|h| h.name == name)
    }

    /// Turns IPv4 and IPv6 forwarding on or off in `host` (`net.ipv4.ip_forward`,
    /// `net.ipv6.conf.all.forwarding`). The host must have been added before.
    pub fn forwarding(mut self, host: &str, on: bool) -> Self {
        match self.host_mut(host) {
            Some(h) => h.forwarding = on,
            None => self
                .errors
                .push(format!("forwarding: host {host:?} is not declared (yet)")),
        }
        self
    }

    /// Sets `rp_filter` (0 off, 1 strict, 2 loose) for `all`, `default` and every interface of
    /// `host`. The kernel uses the maximum of `all` and the interface's value, hence all three.
    pub fn rp_filter(mut self, host: &str, mode: u8) -> Self {
        match self.host_mut(host) {
            Some(h) => h.rp_filter = Some(mode),
            None => self
                .errors
                .push(format!("rp_filter: host {host:?} is not declared (yet)")),
        }
        self
    }

    /// Adds a veth link.
    pub fn link(mut self, link: LinkSpec) -> Self {
        self.links.push(link);
        self
    }

    /// Sets a sysctl in `host` after the links exist (so interface keys like
    /// `net.ipv4.conf.r1.rp_filter` work), e.g. `net.mptcp.checksum_enabled = 1`.
    pub fn sysctl(mut self, host: &str, key: &str, value: &str) -> Self {
        self.steps.push(Step::Sysctl(
            host.to_owned(),
            key.to_owned(),
            value.to_owned(),
        ));
        self
    }

    /// Adds a route in `host`.
    pub fn route(mut self, host: &str, route: Route) -> Self {
        self.steps.push(Step::Route(host.to_owned(), route));
        self
    }

    /// Adds a policy routing rule in `host`.
    pub fn rule(mut self, host: &str, rule: Rule) -> Self {
        self.steps.push(Step::Rule(host.to_owned(), rule));
        self
    }

    /// Adds an MPTCP path-manager endpoint in `host`.
    pub fn mptcp_endpoint(mut self, host: &str, endpoint: MptcpEndpoint) -> Self {
        self.steps.push(Step::Endpoint(host.to_owned(), endpoint));
        self
    }

    /// Sets the MPTCP path-manager limits in `host`.
    pub fn mptcp_limits(mut self, host: &str, limits: MptcpLimits) -> Self {
        self.steps.push(Step::Limits(host.to_owned(), limits));
        self
    }

    /// Runs `ip <args>` in `host` as the last step (anything the typed steps do not cover).
    pub fn ip(mut self, host: &str, args: &[&str]) -> Self {
        let args = args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        self.steps.push(Step::Ip(host.to_owned(), args));
        self
    }

    fn validate(&self) -> Result<()> {
        if let Some(e) = self.errors.first() {
            bail!("{e}");
        }
        let mut seen = std::collections::HashSet::new();
        for h in &self.hosts {
            ensure!(
                !h.name.is_empty()
                    && h.name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "host name {:?}: use letters, digits and '_'",
                h.name
            );
            ensure!(
                seen.insert(h.name.as_str()),
                "host {:?} is declared twice",
                h.name
            );
        }
        let known = |h: &str| seen.contains(h);
        let mut ifaces = std::collections::HashSet::new();
        for l in &self.links {
            for end in [&l.a, &l.b] {
                ensure!(
                    known(&end.host),
                    "link {}-{}: unknown host {:?}",
                    l.a.iface,
                    l.b.iface,
                    end.host
                );
                ensure!(
                    !end.iface.is_empty() && end.iface.len() <= 15,
                    "link {}-{}: interface name {:?} must be 1 to 15 bytes",
                    l.a.iface,
                    l.b.iface,
                    end.iface
                );
                ensure!(
                    ifaces.insert((end.host.as_str(), end.iface.as_str())),
                    "interface {} declared twice on host {}",
                    end.iface,
                    end.host
                );
                for a in &end.addrs {
                    a.parse::<Addr>().with_context(|| {
                        format!(
                            "link {}-{}: address of {} on {}",
                            l.a.iface, l.b.iface, end.iface, end.host
                        )
                    })?;
                }
            }
        }
        for step in &self.steps {
            let host = match step {
                Step::Sysctl(h, ..)
                | Step::Route(h, _)
                | Step::Rule(h, _)
                | Step::Endpoint(h, _)
                | Step::Limits(h, _)
                | Step::Ip(h, _) => h,
            };
            ensure!(known(host), "step {step:?} names unknown host {host:?}");
        }
        Ok(())
    }

    /// Creates everything. On error, what was already created is torn down before returning.
    pub fn build(self) -> Result<Testbed> {
        self.validate()
            .with_context(|| format!("invalid topology {:?}", self.label))?;
        let id = fresh_id();
        let mut tb = Testbed {
            id: id.clone(),
            label: self.label.clone(),
            hosts: Vec::new(),
            links: self.links.clone(),
            owned_netns: Vec::new(),
            torn_down: false,
        };
        // Any `?` below drops `tb`, which deletes the namespaces created so far.
        for spec in &self.hosts {
            let netns = format!("{NAME_PREFIX}{id}-{}-{}", self.label, spec.name);
            let mut c = Command::new("ip");
            c.args(["netns", "add", &netns]);
            cmd::run_checked(&mut c)
                .with_context(|| format!("creating netns for host {}", spec.name))?;
            tb.owned_netns.push(netns.clone());
            let host = Host::new(&spec.name, netns);
            host.ip(["link", "set", "lo", "up"])?;
            // Duplicate address detection would keep new IPv6 addresses "tentative" (unusable as
            // source) for about a second; our links are point-to-point and addresses unique.
            host.sysctl_set("net.ipv6.conf.all.accept_dad", "0")?;
            host.sysctl_set("net.ipv6.conf.default.accept_dad", "0")?;
            if let Some(bytes) = self.receive_buffer {
                set_receive_buffer(&host, bytes)?;
            }
            if spec.forwarding {
                host.sysctl_set("net.ipv4.ip_forward", "1")?;
                host.sysctl_set("net.ipv6.conf.all.forwarding", "1")?;
            }
            if let Some(mode) = spec.rp_filter {
                host.sysctl_set("net.ipv4.conf.all.rp_filter", &mode.to_string())?;
                host.sysctl_set("net.ipv4.conf.default.rp_filter", &mode.to_string())?;
            }
            tb.hosts.push(host);
        }
        for link in &self.links {
            tb.create_link(link).with_context(|| {
                format!(
                    "creating link {}:{} - {}:{}",
                    link.a.host, link.a.iface, link.b.host, link.b.iface
                )
            })?;
        }
        for spec in &self.hosts {
            if let Some(mode) = spec.rp_filter {
                let host = tb.host(&spec.name)?.clone();
                for link in &self.links {
                    for end in [&link.a, &link.b]
                        .into_iter()
                        .filter(|e| e.host == spec.name)
                    {
                        host.sysctl_set(
                            &format!("net.ipv4.conf.{}.rp_filter", end.iface),
                            &mode.to_string(),
                        )?;
                    }
                }
            }
        }
        for step in &self.steps {
            tb.apply(step)
                .with_context(|| format!("topology {:?}", self.label))?;
        }
        tb.wait_links_ready(LINK_READY_TIMEOUT)?;
        Ok(tb)
    }
}

/// A built topology. Dropping it deletes its namespaces (and with them the veths, qdiscs,
/// routes and endpoints inside); [`Testbed::teardown`] does the same and reports errors.
#[derive(Debug)]
pub struct Testbed {
    id: String,
    label: String,
    hosts: Vec<Host>,
    links: Vec<LinkSpec>,
    owned_netns: Vec<String>,
    torn_down: bool,
}

impl Testbed {
    /// This testbed's unique id (`<pid>-<n>`), part of every namespace name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The label given to [`Topology::builder`].
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Result<&Host> {
        self.hosts
            .iter()
            .find(|h| h.name() == name)
            .ok_or_else(|| anyhow!("testbed {:?} has no host {name:?}", self.label))
    }

    /// All hosts, in declaration order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The links as described.
    pub fn links(&self) -> &[LinkSpec] {
        &self.links
    }

    /// Addresses configured on `iface` of `host`.
    pub fn addrs(&self, host: &str, iface: &str) -> Vec<Addr> {
        self.links
            .iter()
            .flat_map(|l| [&l.a, &l.b])
            .filter(|e| e.host == host && e.iface == iface)
            .flat_map(|e| e.addrs.iter().filter_map(|a| a.parse().ok()))
            .collect()
    }

    /// Waits until every link end is operationally up and, where it has IPv6 addresses, has its
    /// link-local address (IPv6 is "ready").
    ///
    /// Why: a veth's carrier reaches the operstate through the kernel's linkwatch work, which
    /// runs at most about once a second when many links change at once. Until then the device
    /// shows NO-CARRIER and IPv6 ignores it: neighbour solicitations go unanswered and the first
    /// SYN waits for a 1 s retransmission. IPv4 does not wait for the operstate.
    pub fn wait_links_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for link in &self.links {
            for end in [&link.a, &link.b] {
                let host = self.host(&end.host)?;
                let wants_v6 = end.addrs.iter().any(|a| looks_v6(a));
                loop {
                    let link_line = host.ip(["-o", "link", "show", "dev", &end.iface])?;
                    let up = link_line.contains("state UP");
                    let v6_ready = !wants_v6 || {
                        let addrs = host.ip([
                            "-6", "-o", "addr", "show", "dev", &end.iface, "scope", "link",
                        ])?;
                        addrs.contains("fe80") && !addrs.contains("tentative")
                    };
                    if up && v6_ready {
                        break;
                    }
                    if Instant::now() >= deadline {
                        bail!(
                            "{} on host {} not ready after {timeout:?}: {}",
                            end.iface,
                            end.host,
                            link_line.trim()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        Ok(())
    }

    fn create_link(&self, link: &LinkSpec) -> Result<()> {
        let a = self.host(&link.a.host)?;
        let b = self.host(&link.b.host)?;
        let mtu = link.mtu.map(|m| m.to_string());
        let mut args: Vec<&str> = vec!["link", "add", &link.a.iface];
        if let Some(m) = &mtu {
            args.extend(["mtu", m]);
        }
        args.extend(["type", "veth", "peer", "name", &link.b.iface]);
        if let Some(m) = &mtu {
            args.extend(["mtu", m]);
        }
        // Created straight into both namespaces: the names never exist in the root namespace,
        // so they cannot collide with anyone else's interfaces.
        args.extend(["netns", b.netns()]);
        a.ip(&args)?;
        for (host, end) in [(a, &link.a), (b, &link.b)] {
            for addr in &end.addrs {
                let addr: Addr = addr.parse()?;
                let s = addr.to_string();
                let mut args = vec!["addr", "add", s.as_str(), "dev", &end.iface];
                if addr.is_ipv6() {
                    args.push("nodad");
                }
                host.ip(&args)?;
            }
            host.set_offloads(&end.iface, &end.offloads)?;
            if let Some(limit) = &end.rate_limit {
                for tc_args in limit.tc_commands(&end.iface) {
                    host.tc(&tc_args)?;
                }
            }
            host.ip(["link", "set", &end.iface, "up"])?;
        }
        Ok(())
    }

    fn apply(&self, step: &Step) -> Result<()> {
        match step {
            Step::Sysctl(h, k, v) => self.host(h)?.sysctl_set(k, v),
            Step::Route(h, r) => self.host(h)?.ip(r.ip_args()).map(drop),
            Step::Rule(h, r) => self.host(h)?.ip(r.ip_args()).map(drop),
            Step::Endpoint(h, e) => self.host(h)?.ip(e.ip_args()).map(drop),
            Step::Limits(h, l) => self
                .host(h)?
                .ip([
                    "mptcp",
                    "limits",
                    "set",
                    "subflows",
                    &l.subflows.to_string(),
                    "add_addr_accepted",
                    &l.add_addr_accepted.to_string(),
                ])
                .map(drop),
            Step::Ip(h, args) => self.host(h)?.ip(args).map(drop),
        }
    }

    /// Deletes every namespace of this testbed and reports the first failure.
    ///
    /// Namespace names disappear at once; the veths inside are destroyed by the kernel
    /// asynchronously (up to ~2 s), which is harmless because their names were never global.
    pub fn teardown(mut self) -> Result<()> {
        self.delete_all()
    }

    fn delete_all(&mut self) -> Result<()> {
        self.torn_down = true;
        let mut first_err = None;
        for netns in self.owned_netns.drain(..).rev() {
            let mut c = Command::new("ip");
            c.args(["netns", "del", &netns]);
            if let Err(e) = cmd::run_checked(&mut c) {
                tracing::warn!(netns, error = %format!("{e:#}"), "deleting netns failed");
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e.context(format!("tearing down testbed {:?}", self.label))),
            None => Ok(()),
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if !self.torn_down {
            let _ = self.delete_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        let a: Addr = "10.77.1.1/24".parse().unwrap();
        assert_eq!(a.to_string(), "10.77.1.1/24");
        assert!("fd77:1::1/64".parse::<Addr>().unwrap().is_ipv6());
        assert!("10.0.0.1".parse::<Addr>().is_err());
        assert!("10.0.0.1/33".parse::<Addr>().is_err());
        assert!("fd::1/129".parse::<Addr>().is_err());
    }

    #[test]
    fn renders_ip_commands() {
        let r = Route::to("fd77:3::/64")
            .via("fd77:1::2")
            .dev("c1")
            .table(101);
        assert_eq!(
            r.ip_args().join(" "),
            "-6 route add fd77:3::/64 via fd77:1::2 dev c1 table 101"
        );
        assert_eq!(
            Rule::iif("r2", 102).ip_args().join(" "),
            "-4 rule add iif r2 table 102"
        );
        assert_eq!(
            Rule::from("10.77.2.1", 102).ip_args().join(" "),
            "-4 rule add from 10.77.2.1 table 102"
        );
        let e = MptcpEndpoint::new("10.77.2.1", "c2", EndpointFlags::SUBFLOW);
        assert_eq!(
            e.ip_args().join(" "),
            "mptcp endpoint add 10.77.2.1 dev c2 subflow"
        );
    }

    #[test]
    fn renders_rate_limits() {
        let htb = RateLimit::htb_mbit(100).tc_commands("r3");
        assert_eq!(htb.len(), 2);
        assert!(
            htb[1]
                .join(" ")
                .contains("rate 100000000bit ceil 100000000bit")
        );
        let tbf = RateLimit::tbf_mbit(10).tc_commands("r3");
        assert!(
            tbf[0]
                .join(" ")
                .starts_with("qdisc replace dev r3 root tbf rate 10000000bit burst 32768")
        );
    }

    #[test]
    fn rejects_bad_topologies() {
        let e = Topology::builder("x")
            .host("a")
            .host("a")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("declared twice"));
        let e = Topology::builder("x")
            .forwarding("nope", true)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("nope"));
        let long = LinkEnd::new("a", "an-interface-name-too-long");
        let e = Topology::builder("x")
            .host("a")
            .host("b")
            .link(LinkSpec::new(long, LinkEnd::new("b", "b0")))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("1 to 15 bytes"));
    }
}
