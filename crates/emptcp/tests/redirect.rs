//! redirect: a middle node puts a subflow on another link (the paper's
//! multi-tenant use case), live on real kernel MPTCP, with a control run.

mod common;

use emptcp::{Dataplane, Hook};
use emptcp_testbed::presets;
use emptcp_testbed::root_or_skip;
use emptcp_testbed::traffic::{self, TransferOpts};

const BYTES: u64 = 16 << 20;

/// Bytes the router sent out of r3 and r4 during a transfer, and the bytes
/// the server acknowledged on the path-2 subflow; with or without a policy
/// that redirects path 2's client->server packets (arriving on r2) out of r3.
fn run(redirect: bool) -> (u64, u64, u64, Vec<emptcp::OpStats>) {
    let tb = presets::two_path("redir", common::paced()).unwrap();
    let mut dp = Dataplane::load().unwrap();
    // examples/policies/redirect.toml: count, then redirect out of r3, for 10.77.2.0/24.
    let policy = redirect.then(|| common::example_policy(&tb, "redirect.toml"));
    common::attach_router(&mut dp, &tb, Hook::TcIngress, &["r2"], policy.as_ref());
    let before = common::server_side_tx(&tb);
    let t = traffic::transfer(
        &tb.client,
        &tb.server,
        &TransferOpts::new(tb.server_addr(), BYTES).expect_subflows_with_data(2),
    )
    .expect("transfer with path 2 redirected");
    assert!(t.sender.verified);
    let after = common::server_side_tx(&tb);
    let path2: u64 = t.sender.acked_payload_from("10.77.2.1".parse().unwrap());
    let ops = common::chain0_ops(&dp);
    (after[0] - before[0], after[1] - before[1], path2, ops)
}

#[test]
fn redirect_puts_the_path2_subflow_on_the_path1_link() {
    if !root_or_skip() {
        return;
    }
    // Control: path 2's data leaves through r4.
    let (r3, r4, path2, _) = run(false);
    eprintln!("control: r3 {r3} B, r4 {r4} B, path-2 subflow {path2} B");
    assert!(
        path2 > 0 && r4 >= path2,
        "control: r4 carried {r4} of path 2's {path2} bytes"
    );

    let (r3, r4, path2, ops) = run(true);
    eprintln!("redirected: r3 {r3} B, r4 {r4} B, path-2 subflow {path2} B, ops {ops:?}");
    assert!(path2 > 0, "the path-2 subflow still carried data");
    // Everything the client sent crossed r3; r4 saw none of path 2's data.
    assert!(r3 >= BYTES, "r3 carried {r3} of {BYTES} bytes");
    assert!(r4 < path2 / 100, "r4 still carried {r4} bytes");
    let (count, redirect) = (ops[0], ops[1]);
    assert!(redirect.hits > 0 && redirect.hits == count.hits);
    assert_eq!(redirect.reasons.iter().sum::<u64>(), 0, "{redirect:?}");
}
