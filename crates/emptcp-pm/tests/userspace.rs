//! Userspace path manager (`net.mptcp.pm_type=1`): commands on a live connection named by its
//! token, with the peer's kernel counters and events as the judges.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{events_until, subscribe, wait_for, with_pm};
use emptcp_pm::{EndpointFlags, EventKind, Subflow};
use emptcp_testbed::presets::{TwoPathOpts, two_path};
use emptcp_testbed::traffic::SenderReport;

const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn announce_and_remove_reach_the_peer() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let tp = two_path("pmua", TwoPathOpts::default()).unwrap();
    tp.server.sysctl_set("net.mptcp.pm_type", "1").unwrap();
    let mut client_events = subscribe(&tp.client).unwrap();
    let mut conn = tp.hold_connection().unwrap();
    let client_token = conn.client_info().unwrap().token;
    let server_token = conn.server_info().unwrap().token;
    conn.client_to_server(256 << 10).unwrap();
    // Control: an established connection whose server announces nothing gives no ADD_ADDR.
    assert_eq!(tp.client.nstat().unwrap().get("MPTcpExtAddAddr"), 0);

    // The server's path-2 address, which the connection does not use.
    let s4: std::net::IpAddr = "10.77.4.1".parse().unwrap();
    with_pm(&tp.server, |pm| pm.announce(server_token, 7, s4, None)).unwrap();
    wait_for(LIMIT, "MPTcpExtAddAddr on the client", || {
        Ok((tp.client.nstat()?.get("MPTcpExtAddAddr") >= 1).then_some(()))
    })
    .unwrap();
    let seen = events_until(&mut client_events, LIMIT, |e| {
        e.event == EventKind::Announced
    })
    .unwrap();
    let e = seen.last().unwrap();
    assert_eq!(e.token, Some(client_token));
    assert_eq!(e.rem_id, Some(7));
    assert_eq!(e.daddr, Some(s4));
    // The server's userspace PM lists what it announced on that connection.
    let listed = with_pm(&tp.server, |pm| pm.connection_endpoints(server_token)).unwrap();
    assert!(
        listed
            .iter()
            .any(|e| e.id == 7 && e.addr == s4 && e.flags.contains(EndpointFlags::SIGNAL)),
        "{listed:?}"
    );

    with_pm(&tp.server, |pm| pm.remove(server_token, 7)).unwrap();
    wait_for(LIMIT, "MPTcpExtRmAddr on the client", || {
        Ok((tp.client.nstat()?.get("MPTcpExtRmAddr") >= 1).then_some(()))
    })
    .unwrap();
    let seen = events_until(&mut client_events, LIMIT, |e| e.event == EventKind::Removed).unwrap();
    assert_eq!(seen.last().unwrap().rem_id, Some(7));
    conn.client_to_server(256 << 10).unwrap();

    // The client runs the in-kernel PM: the same command on its connection is refused, in
    // the kernel's words.
    let refused = with_pm(&tp.client, |pm| {
        Ok(pm
            .announce(client_token, 7, tp.client_addr(2), None)
            .unwrap_err())
    })
    .unwrap();
    assert_eq!(refused.errno(), Some(libc::EINVAL));
    assert_eq!(
        refused.kernel_message(),
        Some("userspace PM not selected"),
        "{refused}"
    );
}

#[test]
fn subflow_create_joins_carries_data_and_destroy_closes_it() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let tp = two_path("pmus", TwoPathOpts::default()).unwrap();
    tp.client.sysctl_set("net.mptcp.pm_type", "1").unwrap();
    let mut server_events = subscribe(&tp.server).unwrap();
    let mut conn = tp.hold_connection().unwrap();
    let token = conn.client_info().unwrap().token;
    conn.client_to_server(256 << 10).unwrap();
    // Control: under the userspace PM the client's c2 `subflow` endpoint opens nothing.
    assert_eq!(tp.server.nstat().unwrap().mp_join_syn_rx(), 0);
    assert_eq!(conn.client_subflows().unwrap().len(), 1);

    let initial = conn.client_subflows().unwrap()[0].clone();
    let initial = Subflow {
        token,
        local: initial.local.unwrap(),
        remote: initial.remote.unwrap(),
    };
    with_pm(&tp.client, |pm| {
        pm.subflow_create(token, 2, tp.client_addr(2), None, conn.target)
    })
    .unwrap();
    let join_local: SocketAddr = wait_for(LIMIT, "the join on the client", || {
        Ok(conn
            .client_subflows()?
            .iter()
            .filter_map(|sf| sf.local)
            .find(|l| l.ip() == tp.client_addr(2)))
    })
    .unwrap();
    assert_eq!(tp.server.nstat().unwrap().mp_join_syn_rx(), 1);

    // The initial subflow becomes backup, so the scheduler sends on the join.
    with_pm(&tp.client, |pm| pm.set_subflow_backup(initial, true)).unwrap();
    let seen = events_until(&mut server_events, LIMIT, |e| {
        e.event == EventKind::SubPriority
    })
    .unwrap();
    assert_eq!(seen.last().unwrap().backup, Some(true), "{seen:#?}");
    conn.client_to_server(4 << 20).unwrap();
    let acked = |local: SocketAddr| {
        conn.client_subflows()
            .unwrap()
            .iter()
            .filter(|sf| sf.local == Some(local))
            .map(SenderReport::acked_payload)
            .sum::<u64>()
    };
    let on_join = acked(join_local);
    assert!(on_join >= 4 << 20, "join carried {on_join} bytes");

    with_pm(&tp.client, |pm| {
        pm.subflow_destroy(Subflow {
            token,
            local: join_local,
            remote: conn.target,
        })
    })
    .unwrap();
    wait_for(LIMIT, "the join to close", || {
        let subflows = conn.client_subflows()?;
        Ok((subflows.iter().all(|sf| sf.local != Some(join_local))).then_some(subflows))
    })
    .unwrap();
    let seen = events_until(&mut server_events, LIMIT, |e| {
        e.event == EventKind::SubClosed
    })
    .unwrap();
    assert_eq!(
        seen.last().unwrap().daddr,
        Some(join_local.ip()),
        "{seen:#?}"
    );
    // The connection lives on over the (backup) initial subflow.
    conn.client_to_server(256 << 10).unwrap();

    let gone = with_pm(&tp.client, |pm| {
        Ok(pm
            .subflow_destroy(Subflow {
                token,
                local: join_local,
                remote: conn.target,
            })
            .unwrap_err())
    })
    .unwrap();
    assert_eq!(gone.errno(), Some(libc::ESRCH), "{gone}");
}
