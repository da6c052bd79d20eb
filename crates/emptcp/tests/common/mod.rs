//! Shared by the live tests: emptcp on the two-path testbed's router.
#![allow(dead_code)] // each test binary uses its own part

pub mod packets;
pub mod tshark;

use emptcp::netns::NetnsGuard;
use emptcp::policy::CompiledPolicy;
use emptcp::{Dataplane, Hook, OpStats};
use emptcp_testbed::RateLimit;
use emptcp_testbed::presets::{TwoPath, TwoPathOpts};

/// Two paths of 200 Mbit/s: a transfer of a few MiB then lasts long enough
/// (~100 ms) for the join to carry data on every run. Unlimited veth paths
/// move 4 MiB in a few ms, sometimes before the join is up, which fails the
/// "two subflows carried data" check now and then.
pub fn paced() -> TwoPathOpts {
    TwoPathOpts {
        rate_limit: [Some(RateLimit::htb_mbit(200)); 2],
        ..Default::default()
    }
}

/// Attaches `hook` on each of the router's `ifaces` and, when given, applies
/// `policy` there (one generation per attachment).
pub fn attach_router(
    dp: &mut Dataplane,
    tb: &TwoPath,
    hook: Hook,
    ifaces: &[&str],
    policy: Option<&CompiledPolicy>,
) {
    let _in_router = NetnsGuard::enter(&tb.router.netns_path()).expect("enter router netns");
    for iface in ifaces {
        let ifindex = tb.router_ifindex(iface).unwrap();
        dp.attach(hook, ifindex)
            .unwrap_or_else(|e| panic!("attach {hook} on {iface}: {e:#}"));
        if let Some(policy) = policy {
            let g = dp.load_generation(policy, &[]).expect("load generation");
            dp.apply(ifindex, g).expect("apply generation");
        }
    }
}

/// The entry counters of `hook` once the traffic through it has stopped
/// (the closing packets of a verified transfer still cross the router).
pub fn settled_counters(dp: &Dataplane, hook: Hook) -> emptcp::EntryCounters {
    dp.counters_when_quiet(
        hook,
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(10),
    )
    .expect("counters")
}

/// Bytes the router has sent out of its server-side links, r3 (path 1) and r4 (path 2).
pub fn server_side_tx(tb: &TwoPath) -> [u64; 2] {
    ["r3", "r4"].map(|iface| tb.router.iface_counters(iface).unwrap().tx_bytes)
}

/// Operator counters of chain 0 of every attachment's generation.
pub fn chain0_ops(dp: &Dataplane) -> Vec<OpStats> {
    chain_ops(dp, 0)
}

/// Operator counters of action chain `chain` of every attachment's generation.
pub fn chain_ops(dp: &Dataplane, chain: u32) -> Vec<OpStats> {
    dp.attachments()
        .iter()
        .filter_map(|a| a.generation())
        .flat_map(|g| g.op_stats(chain).unwrap())
        .collect()
}

/// `examples/policies/<name>`, compiled for its own hook, interface names resolved in the
/// router's namespace (as `emptcp apply` would resolve them where it attaches).
pub fn example_policy(tb: &TwoPath, name: &str) -> CompiledPolicy {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/policies")
        .join(name);
    let _in_router = NetnsGuard::enter(&tb.router.netns_path()).expect("enter router netns");
    emptcp::policy_file::load(&path, &|iface| {
        tb.router_ifindex(iface).map_err(|e| e.to_string())
    })
    .and_then(|f| f.compile(None))
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The server's second address: [`announcing_two_path`] announces it with a `signal` endpoint.
pub const ANNOUNCED: &str = "10.77.4.1";

/// The paced two-path testbed whose server announces [`ANNOUNCED`] (on s4) to its clients.
pub fn announcing_two_path(label: &str) -> TwoPath {
    announcing_two_path_with(label, None)
}

/// [`announcing_two_path`] with every link's offloads set (`None`: veth's defaults, checksum
/// offload, TSO and GSO on).
pub fn announcing_two_path_with(
    label: &str,
    offloads: Option<emptcp_testbed::Offloads>,
) -> TwoPath {
    let opts = emptcp_testbed::presets::TwoPathOpts {
        offloads,
        ..paced()
    };
    let tb = emptcp_testbed::presets::two_path(label, opts).unwrap();
    tb.server
        .ip(["mptcp", "endpoint", "add", ANNOUNCED, "dev", "s4", "signal"])
        .unwrap();
    tb
}

/// What one transfer did: the report, and the client's and the server's nstat counters
/// over it.
pub struct MeasuredTransfer {
    pub report: emptcp_testbed::traffic::TransferReport,
    pub client: emptcp_testbed::nstat::Counters,
    pub server: emptcp_testbed::nstat::Counters,
}

/// Moves `bytes` from the client to the server's path-1 address and checks the data.
pub fn measured_transfer(tb: &TwoPath, label: &str, bytes: u64) -> MeasuredTransfer {
    use emptcp_testbed::traffic::{self, TransferOpts};

    let (client0, server0) = (tb.client.nstat().unwrap(), tb.server.nstat().unwrap());
    let report = traffic::transfer(
        &tb.client,
        &tb.server,
        &TransferOpts::new(tb.server_addr(), bytes),
    )
    .expect("transfer");
    assert!(report.sender.verified, "{label}: data verified");
    MeasuredTransfer {
        client: tb.client.nstat().unwrap().delta(&client0),
        server: tb.server.nstat().unwrap().delta(&server0),
        report,
    }
}
