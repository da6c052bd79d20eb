//! Ready-made topologies.

use std::net::IpAddr;

use anyhow::Result;
use serde::Serialize;

use crate::host::{Host, Offloads};
use crate::topology::{
    DEFAULT_RECEIVE_BUFFER, EndpointFlags, Family, LinkEnd, LinkSpec, MptcpEndpoint, MptcpLimits,
    RateLimit, Route, Rule, Testbed, Topology,
};
use crate::traffic::HeldConnection;

/// Options of [`two_path`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TwoPathOpts {
    /// Rate limit on R's egress towards S on path 1 (r3) and path 2 (r4): the client->server
    /// direction, which carries the data.
    pub rate_limit: [Option<RateLimit>; 2],
    /// Offload switches applied to all eight interfaces (`None`: veth defaults).
    pub offloads: Option<Offloads>,
    /// Address family the traffic helpers target ([`TwoPath::server_addr`]).
    pub family: Family,
    /// Path-manager limits on the client; `subflows: 0` keeps connections single-path.
    pub client_limits: MptcpLimits,
    /// Path-manager limits on the server.
    pub server_limits: MptcpLimits,
    /// `net.mptcp.checksum_enabled` on client and server (`None`: kernel default, off).
    pub checksum: Option<bool>,
    /// MTU of every link (`None`: 1500).
    pub mtu: Option<u32>,
    /// Initial receive buffer of every host's sockets (`None`: the kernel's
    /// default); see [`DEFAULT_RECEIVE_BUFFER`] for why it is raised.
    pub receive_buffer: Option<u32>,
}

impl Default for TwoPathOpts {
    fn default() -> Self {
        let limits = MptcpLimits {
            subflows: 4,
            add_addr_accepted: 4,
        };
        TwoPathOpts {
            rate_limit: [None, None],
            offloads: None,
            family: Family::V4,
            client_limits: limits,
            server_limits: limits,
            checksum: None,
            mtu: None,
            receive_buffer: Some(DEFAULT_RECEIVE_BUFFER),
        }
    }
}

/// Interface names of the two-path topology (fixed: each host is its own namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TwoPathIfaces {
    /// Client, path 1.
    pub c1: &'static str,
    /// Client, path 2.
    pub c2: &'static str,
    /// Router, from the client on path 1.
    pub r1: &'static str,
    /// Router, from the client on path 2.
    pub r2: &'static str,
    /// Router, towards the server on path 1.
    pub r3: &'static str,
    /// Router, towards the server on path 2.
    pub r4: &'static str,
    /// Server, path 1.
    pub s3: &'static str,
    /// Server, path 2.
    pub s4: &'static str,
}

/// The interface names used by [`two_path`].
pub const TWO_PATH_IFACES: TwoPathIfaces = TwoPathIfaces {
    c1: "c1",
    c2: "c2",
    r1: "r1",
    r2: "r2",
    r3: "r3",
    r4: "r4",
    s3: "s3",
    s4: "s4",
};

/// A built [`two_path`] topology.
#[derive(Debug)]
pub struct TwoPath {
    /// The testbed (owns the namespaces; dropping it tears everything down).
    pub testbed: Testbed,
    /// Client C.
    pub client: Host,
    /// Router R, the middle node where programs get attached.
    pub router: Host,
    /// Server S.
    pub server: Host,
    /// Interface names.
    pub ifaces: TwoPathIfaces,
    /// The options it was built with.
    pub opts: TwoPathOpts,
}

/// `10.77.<subnet>.<host>` or `fd77:<subnet>::<host>`.
fn ip(family: Family, subnet: u8, host: u8) -> IpAddr {
    match family {
        Family::V4 => IpAddr::from([10, 77, subnet, host]),
        Family::V6 => IpAddr::from([0xfd77, subnet as u16, 0, 0, 0, 0, 0, host as u16]),
    }
}

fn with_len(family: Family, subnet: u8, host: u8) -> String {
    let len = if family == Family::V4 { 24 } else { 64 };
    format!("{}/{len}", ip(family, subnet, host))
}

fn net(family: Family, subnet: u8) -> String {
    match family {
        Family::V4 => format!("10.77.{subnet}.0/24"),
        Family::V6 => format!("fd77:{subnet}::/64"),
    }
}

impl TwoPath {
    /// The server's address on path 1 (`10.77.3.1` / `fd77:3::1`): the connection target.
    pub fn server_addr(&self) -> IpAddr {
        self.server_addr_of(self.opts.family)
    }

    /// The server's path-1 address of `family`.
    pub fn server_addr_of(&self, family: Family) -> IpAddr {
        ip(family, 3, 1)
    }

    /// The client's address on path `path` (1 or 2) in the traffic family.
    pub fn client_addr(&self, path: u8) -> IpAddr {
        ip(self.opts.family, path, 1)
    }

    /// Which path (1 or 2) a client-side address belongs to.
    pub fn path_of_client_addr(&self, addr: IpAddr) -> Option<u8> {
        [Family::V4, Family::V6]
            .into_iter()
            .flat_map(|f| [(1, ip(f, 1, 1)), (2, ip(f, 2, 1))])
            .find(|(_, a)| *a == addr)
            .map(|(p, _)| p)
    }

    /// An MPTCP connection held open from the client's path-1 address to the server, for
    /// tests that act on a live connection (see [`HeldConnection`]).
    pub fn hold_connection(&self) -> Result<HeldConnection> {
        HeldConnection::open(
            &self.client,
            &self.server,
            self.server_addr(),
            Some(self.client_addr(1)),
        )
    }

    /// Interface index of one of the router's interfaces (`"r1"`..`"r4"`).
    pub fn router_ifindex(&self, iface: &str) -> Result<u32> {
        self.router.ifindex(iface)
    }
}

/// Builds the three-namespace, two-path topology of the end-to-end baseline:
///
/// ```text
///            path 1: 10.77.1.0/24      10.77.3.0/24
///        c1 ----------------- r1  R  r3 ----------------- s3
///   C                            (fwd)                        S
///        c2 ----------------- r2     r4 ----------------- s4
///            path 2: 10.77.2.0/24      10.77.4.0/24
/// ```
/// (plus `fd77:N::/64` on every link). C routes by source address (table 101 for path 1, 102 for
/// path 2); R sends what arrives on r2 out of r4 (`ip rule iif r2 table 102`), also when it is
/// addressed to S's path-1 address; S routes each client subnet back over its own path. The
/// connection targets S's path-1 address; C's `subflow` endpoint on c2 adds the second subflow.
/// rp_filter is off everywhere: path-2 packets reach S's path-1 address through s4.
pub fn two_path(label: &str, opts: TwoPathOpts) -> Result<TwoPath> {
    let i = TWO_PATH_IFACES;
    let families = [Family::V4, Family::V6];
    let end = |host: &str, iface: &str, subnet: u8, h: u8| {
        let mut e = LinkEnd::new(host, iface);
        for f in families {
            e = e.addr(&with_len(f, subnet, h));
        }
        if let Some(o) = opts.offloads {
            e = e.offloads(o);
        }
        e
    };
    let link = |a: LinkEnd, b: LinkEnd| {
        let l = LinkSpec::new(a, b);
        match opts.mtu {
            Some(m) => l.mtu(m),
            None => l,
        }
    };
    let mut r3 = end("router", i.r3, 3, 2);
    let mut r4 = end("router", i.r4, 4, 2);
    if let Some(l) = opts.rate_limit[0] {
        r3 = r3.rate_limit(l);
    }
    if let Some(l) = opts.rate_limit[1] {
        r4 = r4.rate_limit(l);
    }
    let mut b = Topology::builder(label)
        .receive_buffer(opts.receive_buffer)
        .host("client")
        .host("router")
        .host("server")
        .forwarding("router", true)
        .rp_filter("client", 0)
        .rp_filter("router", 0)
        .rp_filter("server", 0)
        .link(link(end("client", i.c1, 1, 1), end("router", i.r1, 1, 2)))
        .link(link(end("client", i.c2, 2, 1), end("router", i.r2, 2, 2)))
        .link(link(r3, end("server", i.s3, 3, 1)))
        .link(link(r4, end("server", i.s4, 4, 1)));
    for f in families {
        let gw = |subnet, h| ip(f, subnet, h).to_string();
        b = b
            // Client: main table for unbound sockets (path 1), one table per source address.
            .route("client", Route::to(&net(f, 3)).via(&gw(1, 2)).dev(i.c1))
            .route("client", Route::to(&net(f, 4)).via(&gw(2, 2)).dev(i.c2))
            .route(
                "client",
                Route::to(&net(f, 3)).via(&gw(1, 2)).dev(i.c1).table(101),
            )
            .route(
                "client",
                Route::to(&net(f, 4)).via(&gw(1, 2)).dev(i.c1).table(101),
            )
            .route(
                "client",
                Route::to(&net(f, 3)).via(&gw(2, 2)).dev(i.c2).table(102),
            )
            .route(
                "client",
                Route::to(&net(f, 4)).via(&gw(2, 2)).dev(i.c2).table(102),
            )
            .rule("client", Rule::from(&ip(f, 1, 1).to_string(), 101))
            .rule("client", Rule::from(&ip(f, 2, 1).to_string(), 102))
            // Router: whatever enters on r2 leaves on r4, S's path-1 subnet included.
            .route(
                "router",
                Route::to(&net(f, 3)).via(&gw(4, 1)).dev(i.r4).table(102),
            )
            .route(
                "router",
                Route::to(&net(f, 4)).via(&gw(4, 1)).dev(i.r4).table(102),
            );
        let iif = Rule::iif(i.r2, 102);
        b = b
            .rule("router", if f == Family::V6 { iif.v6() } else { iif })
            // Server: each client subnet back over its own path.
            .route("server", Route::to(&net(f, 1)).via(&gw(3, 2)).dev(i.s3))
            .route("server", Route::to(&net(f, 2)).via(&gw(4, 2)).dev(i.s4))
            .mptcp_endpoint(
                "client",
                MptcpEndpoint::new(&ip(f, 2, 1).to_string(), i.c2, EndpointFlags::SUBFLOW),
            );
    }
    b = b
        .mptcp_limits("client", opts.client_limits)
        .mptcp_limits("server", opts.server_limits);
    if let Some(on) = opts.checksum {
        let v = if on { "1" } else { "0" };
        b = b.sysctl("client", "net.mptcp.checksum_enabled", v).sysctl(
            "server",
            "net.mptcp.checksum_enabled",
            v,
        );
    }
    let testbed = b.build()?;
    Ok(TwoPath {
        client: testbed.host("client")?.clone(),
        router: testbed.host("router")?.clone(),
        server: testbed.host("server")?.clone(),
        testbed,
        ifaces: i,
        opts,
    })
}
