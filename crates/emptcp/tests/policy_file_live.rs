//! The multi-tenant example policy file (examples/policies/multi_tenant.toml)
//! applied live on the two-path testbed: the tenant's path-2 subflow leaves
//! the router by the path-1 link (r3), real kernel MPTCP, verified transfer.

mod common;

use std::path::PathBuf;

use emptcp::netns::NetnsGuard;
use emptcp::policy_file;
use emptcp::{Dataplane, Hook};
use emptcp_testbed::presets;
use emptcp_testbed::root_or_skip;
use emptcp_testbed::traffic::{self, TransferOpts};

const BYTES: u64 = 16 << 20;

#[test]
fn multi_tenant_example_moves_the_path2_subflow_to_r3() {
    if !root_or_skip() {
        return;
    }
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies/multi_tenant.toml");
    let tb = presets::two_path("ptenant", common::paced()).unwrap();
    let mut dp = Dataplane::load().unwrap();
    {
        let _in_router = NetnsGuard::enter(&tb.router.netns_path()).unwrap();
        // Interface names resolve in the router's namespace, as `emptcp
        // apply` would resolve them where it attaches.
        let file = policy_file::load(&path, &|name| {
            tb.router_ifindex(name).map_err(|e| e.to_string())
        })
        .unwrap();
        let compiled = file.compile(None).unwrap();
        assert_eq!(compiled.hook(), Hook::TcIngress);
        // On both client-side links: path 1 arrives on r1, path 2 on r2.
        for iface in ["r1", "r2"] {
            let ifindex = tb.router_ifindex(iface).unwrap();
            dp.attach(Hook::TcIngress, ifindex).unwrap();
            let g = dp.load_generation(&compiled, &[]).unwrap();
            dp.apply(ifindex, g).unwrap();
        }
    }
    let before = common::server_side_tx(&tb);
    let t = traffic::transfer(
        &tb.client,
        &tb.server,
        &TransferOpts::new(tb.server_addr(), BYTES).expect_subflows_with_data(2),
    )
    .expect("transfer with the tenant's path 2 redirected");
    assert!(t.sender.verified);
    let after = common::server_side_tx(&tb);
    let (r3, r4) = (after[0] - before[0], after[1] - before[1]);
    let path2: u64 = t.sender.acked_payload_from("10.77.2.1".parse().unwrap());
    let hits_of = |i: usize| -> std::collections::BTreeMap<String, u64> {
        let g = dp.attachments()[i].generation().unwrap();
        g.policy_hits().unwrap().into_iter().collect()
    };
    let (on_r1, hits) = (hits_of(0), hits_of(1));
    eprintln!(
        "r3 {r3} B, r4 {r4} B, path-2 subflow {path2} B, hits on r1 {on_r1:?}, on r2 {hits:?}"
    );
    assert!(path2 > 0, "the path-2 subflow carried data");
    assert!(r3 >= BYTES, "r3 carried {r3} of {BYTES} bytes");
    assert!(r4 < path2 / 100, "r4 still carried {r4} bytes");
    assert_eq!(hits["tenant_joins"], 1, "{hits:?}");
    assert!(hits["tenant_path2_via_r3"] > 0, "{hits:?}");
    assert_eq!(hits["tenant_path1"], 0, "{hits:?}");
    assert!(on_r1["tenant_path1"] > 0, "{on_r1:?}");
    assert_eq!(
        on_r1["tenant_path2_via_r3"] + on_r1["tenant_joins"],
        0,
        "{on_r1:?}"
    );
    // The redirect chain's operators ran on every packet they got, no skip.
    let g = dp.attachments()[1].generation().unwrap();
    let chain = g.policy().chain_of(0).unwrap();
    let ops = g.op_stats(chain).unwrap();
    assert_eq!(ops[0].hits, ops[1].hits);
    assert_eq!(ops[1].reasons.iter().sum::<u64>(), 0, "{ops:?}");
}
