//! Events of a real MPTCP connection between two namespaces, as `emptcp_pm` decodes them,
//! checked against the tokens MPTCP_INFO reports and the addresses the testbed assigned.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{events_until, subscribe, with_pm};
use emptcp_pm::{EndpointFlags, Event, EventKind};
use emptcp_testbed::Family;
use emptcp_testbed::presets::{TwoPathOpts, two_path};

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.event).collect()
}

fn one(events: &[Event], kind: EventKind) -> &Event {
    let found: Vec<_> = events.iter().filter(|e| e.event == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} expected in {events:#?}");
    found[0]
}

fn ends(e: &Event) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(e.saddr.unwrap(), e.sport.unwrap()),
        SocketAddr::new(e.daddr.unwrap(), e.dport.unwrap()),
    )
}

#[test]
fn a_two_subflow_ipv4_connection_reports_its_lifecycle_on_both_ends() {
    lifecycle(Family::V4);
}

#[test]
fn a_two_subflow_ipv6_connection_reports_its_lifecycle_on_both_ends() {
    lifecycle(Family::V6);
}

fn lifecycle(family: Family) {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let opts = TwoPathOpts {
        family,
        ..Default::default()
    };
    let tp = two_path("pmev", opts).unwrap();
    let mut client_events = subscribe(&tp.client).unwrap();
    let mut server_events = subscribe(&tp.server).unwrap();
    let c2_endpoint = with_pm(&tp.client, |pm| pm.endpoints())
        .unwrap()
        .into_iter()
        .find(|e| e.addr == tp.client_addr(2))
        .expect("two_path gives the client a subflow endpoint on c2");

    // A held connection: closed only once its join is up, whatever the machine's load.
    let mut conn = tp.hold_connection().unwrap();
    conn.client_to_server(256 << 10).unwrap();
    let subflows = conn
        .wait_client_subflows(2, Duration::from_secs(10))
        .unwrap();
    let client_token = conn.client_info().unwrap().token;
    let server_token = conn.server_info().unwrap().token;
    let first = (
        conn.client.local_addr().unwrap(),
        conn.client.peer_addr().unwrap(),
    );
    drop(conn);
    let limit = Duration::from_secs(10);
    let client_seen = events_until(&mut client_events, limit, |e| {
        e.event == EventKind::Closed && e.token == Some(client_token)
    })
    .unwrap();
    let server_seen = events_until(&mut server_events, limit, |e| {
        e.event == EventKind::Closed && e.token == Some(server_token)
    })
    .unwrap();
    for e in client_seen.iter().chain(&server_seen) {
        println!("{e}");
    }

    use EventKind::*;
    let client_kinds = kinds(&client_seen);
    assert_eq!(
        client_kinds[..2],
        [Created, Established],
        "{client_seen:#?}"
    );
    assert_eq!(client_kinds.last(), Some(&Closed));
    for e in &client_seen {
        assert_eq!(e.token, Some(client_token), "{e}");
    }
    let created = one(&client_seen, Created);
    assert_eq!(ends(created), first);
    assert_eq!(
        created.server_side, None,
        "only the accepting end says server_side"
    );
    assert_eq!(ends(one(&client_seen, Established)), first);
    let join = one(&client_seen, SubEstablished);
    let (join_local, join_remote) = ends(join);
    assert_eq!(join_local.ip(), tp.client_addr(2));
    assert_eq!(join_remote, first.1);
    assert_eq!(join.loc_id, Some(c2_endpoint.id));
    assert_eq!(
        join.rem_id,
        Some(0),
        "the server's initial address has id 0"
    );
    assert_eq!(join.backup, Some(false));
    assert_eq!(join.ifindex, Some(tp.client.ifindex("c2").unwrap() as i32));
    // The join is one of the subflows the client's kernel listed.
    assert!(
        subflows
            .iter()
            .any(|sf| sf.local == Some(join_local) && sf.remote == Some(join_remote)),
        "{subflows:?}"
    );

    // The server's listen() comes first: listener events carry an address, no token.
    let listener = &server_seen[0];
    assert_eq!(listener.event, ListenerCreated, "{server_seen:#?}");
    assert_eq!(listener.sport, Some(first.1.port()));
    assert_eq!(listener.token, None);
    for e in &server_seen[1..] {
        if e.event != ListenerClosed {
            assert_eq!(e.token, Some(server_token), "{e}");
        }
    }
    let created = one(&server_seen, Created);
    assert_eq!(created.token, Some(server_token));
    assert_eq!(created.server_side, Some(true));
    assert_eq!(
        ends(created),
        (first.1, first.0),
        "the server sees the mirror image"
    );
    let join = one(&server_seen, SubEstablished);
    assert_eq!(ends(join), (join_remote, join_local));
    assert_eq!(
        join.rem_id,
        Some(c2_endpoint.id),
        "the client's join came from its endpoint"
    );
    assert_ne!(client_token, server_token);
}

#[test]
fn an_endpoint_turned_backup_sends_mp_prio_on_its_live_subflow() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let tp = two_path("pmprio", TwoPathOpts::default()).unwrap();
    let mut server_events = subscribe(&tp.server).unwrap();
    let mut conn = tp.hold_connection().unwrap();
    conn.client_to_server(256 << 10).unwrap();
    let join = common::wait_for(Duration::from_secs(10), "the c2 join", || {
        Ok(conn
            .client_subflows()?
            .into_iter()
            .find(|sf| sf.local.map(|l| l.ip()) == Some(tp.client_addr(2))))
    })
    .unwrap();
    let c2_id = with_pm(&tp.client, |pm| pm.endpoints())
        .unwrap()
        .into_iter()
        .find(|e| e.addr == tp.client_addr(2))
        .unwrap()
        .id;
    // Control: nothing asked for a priority change yet.
    assert_eq!(tp.server.nstat().unwrap().get("MPTcpExtMPPrioRx"), 0);

    with_pm(&tp.client, |pm| {
        pm.set_endpoint_flags(c2_id, EndpointFlags::BACKUP)
    })
    .unwrap();
    let seen = events_until(&mut server_events, Duration::from_secs(10), |e| {
        e.event == EventKind::SubPriority
    })
    .unwrap();
    let prio = seen.last().unwrap();
    assert_eq!(prio.backup, Some(true), "{prio}");
    assert_eq!(prio.daddr, join.local.map(|l| l.ip()), "{prio}");
    assert_eq!(prio.dport, join.local.map(|l| l.port()), "{prio}");
    assert_eq!(tp.server.nstat().unwrap().get("MPTcpExtMPPrioRx"), 1);
    assert_eq!(
        common::iproute2_endpoints(&tp.client)
            .unwrap()
            .into_iter()
            .find(|e| e.0 == tp.client_addr(2).to_string())
            .unwrap()
            .3,
        ["subflow", "backup"].map(String::from).into()
    );
}
