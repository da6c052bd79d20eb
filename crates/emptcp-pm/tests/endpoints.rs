//! Endpoints and limits through `emptcp_pm`, judged by iproute2 (`ip mptcp`) in a namespace
//! the test makes; and the kernel's own words for bad requests.

mod common;

use std::collections::BTreeSet;

use common::{EndpointView, iproute2_endpoints, pair, pm_endpoints, with_pm};
use emptcp_pm::{Endpoint, EndpointFlags, Limits};

fn view(addr: &str, id: u8, port: Option<u16>, flags: &[&str], dev: Option<&str>) -> EndpointView {
    (
        addr.to_owned(),
        id,
        port,
        flags.iter().map(|f| f.to_string()).collect(),
        dev.map(str::to_owned),
    )
}

#[test]
fn endpoints_add_list_change_delete_flush_agree_with_iproute2() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let tb = pair("pmep").unwrap();
    let a = tb.host("a").unwrap();
    let a1 = a.ifindex("a1").unwrap() as i32;

    with_pm(a, |pm| {
        pm.add_endpoint(&Endpoint {
            id: 3,
            addr: "10.78.1.1".parse().unwrap(),
            port: Some(1234),
            flags: EndpointFlags::SIGNAL | EndpointFlags::BACKUP,
            ifindex: None,
        })?;
        pm.add_endpoint(&Endpoint {
            id: 4,
            addr: "10.78.2.1".parse().unwrap(),
            port: None,
            flags: EndpointFlags::SUBFLOW | EndpointFlags::FULLMESH,
            ifindex: Some(a1),
        })?;
        pm.add_endpoint(&Endpoint {
            id: 5,
            addr: "fd78:1::1".parse().unwrap(),
            port: None,
            flags: EndpointFlags::SUBFLOW,
            ifindex: None,
        })?;
        // No id: the kernel picks a free one.
        pm.add_endpoint(&Endpoint::new(
            "10.78.3.1".parse().unwrap(),
            EndpointFlags::SIGNAL,
        ))
    })
    .unwrap();
    // One added by iproute2 must show up in ours as well.
    a.ip([
        "mptcp",
        "endpoint",
        "add",
        "10.78.4.1",
        "id",
        "9",
        "subflow",
        "backup",
    ])
    .unwrap();

    let judged = iproute2_endpoints(a).unwrap();
    let picked = judged
        .iter()
        .find(|e| e.0 == "10.78.3.1")
        .map(|e| e.1)
        .expect("iproute2 lists the endpoint added without an id");
    assert!(
        ![0, 3, 4, 5, 9].contains(&picked),
        "kernel picked id {picked}"
    );
    let expected: BTreeSet<_> = [
        view("10.78.1.1", 3, Some(1234), &["signal", "backup"], None),
        view("10.78.2.1", 4, None, &["subflow", "fullmesh"], Some("a1")),
        view("fd78:1::1", 5, None, &["subflow"], None),
        view("10.78.3.1", picked, None, &["signal"], None),
        view("10.78.4.1", 9, None, &["subflow", "backup"], None),
    ]
    .into();
    assert_eq!(judged, expected);
    assert_eq!(pm_endpoints(a).unwrap(), expected);

    with_pm(a, |pm| {
        pm.set_endpoint_flags(5, EndpointFlags::BACKUP)?;
        pm.delete_endpoint(4)
    })
    .unwrap();
    let expected: BTreeSet<_> = [
        view("10.78.1.1", 3, Some(1234), &["signal", "backup"], None),
        view("fd78:1::1", 5, None, &["subflow", "backup"], None),
        view("10.78.3.1", picked, None, &["signal"], None),
        view("10.78.4.1", 9, None, &["subflow", "backup"], None),
    ]
    .into();
    assert_eq!(iproute2_endpoints(a).unwrap(), expected);
    assert_eq!(pm_endpoints(a).unwrap(), expected);

    with_pm(a, |pm| pm.flush_endpoints()).unwrap();
    assert_eq!(iproute2_endpoints(a).unwrap(), BTreeSet::new());
    assert_eq!(pm_endpoints(a).unwrap(), BTreeSet::new());
}

#[test]
fn limits_set_and_get_agree_with_iproute2() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let tb = pair("pmlim").unwrap();
    let a = tb.host("a").unwrap();
    let shown = || a.ip(["mptcp", "limits", "show"]).unwrap();

    with_pm(a, |pm| pm.set_limits(Some(3), Some(5))).unwrap();
    assert_eq!(shown().trim(), "add_addr_accepted 5 subflows 3");
    // One limit alone keeps the other.
    with_pm(a, |pm| pm.set_limits(Some(7), None)).unwrap();
    assert_eq!(shown().trim(), "add_addr_accepted 5 subflows 7");

    a.ip([
        "mptcp",
        "limits",
        "set",
        "subflows",
        "1",
        "add_addr_accepted",
        "2",
    ])
    .unwrap();
    assert_eq!(
        with_pm(a, |pm| pm.limits()).unwrap(),
        Limits {
            subflows: 1,
            add_addr_accepted: 2
        }
    );
}

#[test]
fn bad_requests_come_back_with_the_kernels_message() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let tb = pair("pmbad").unwrap();
    let a = tb.host("a").unwrap();
    let errors = with_pm(a, |pm| {
        let ep = Endpoint {
            id: 2,
            ..Endpoint::new("10.78.1.1".parse().unwrap(), EndpointFlags::SUBFLOW)
        };
        pm.add_endpoint(&ep)?;
        let duplicate_id = pm
            .add_endpoint(&Endpoint {
                addr: "10.78.1.9".parse().unwrap(),
                ..ep.clone()
            })
            .unwrap_err();
        let too_many = pm.set_limits(Some(9), None).unwrap_err();
        let unknown_id = pm.delete_endpoint(77).unwrap_err();
        // A port is only meaningful on an announced address (the kernel opens a listener).
        let port_without_signal = pm
            .add_endpoint(&Endpoint {
                id: 3,
                addr: "10.78.1.3".parse().unwrap(),
                port: Some(4000),
                ..ep.clone()
            })
            .unwrap_err();
        Ok((duplicate_id, too_many, unknown_id, port_without_signal))
    })
    .unwrap();
    let (duplicate_id, too_many, unknown_id, port_without_signal) = errors;
    eprintln!("{duplicate_id}\n{too_many}\n{unknown_id}\n{port_without_signal}");

    assert_eq!(duplicate_id.errno(), Some(libc::EBUSY), "{duplicate_id}");
    assert!(
        duplicate_id.kernel_message().unwrap().contains("duplicate"),
        "{duplicate_id}"
    );
    assert_eq!(too_many.errno(), Some(libc::EINVAL));
    assert!(
        too_many
            .to_string()
            .starts_with("setting limits: limit greater than maximum (8)"),
        "{too_many}"
    );
    assert_eq!(unknown_id.errno(), Some(libc::EINVAL), "{unknown_id}");
    assert_eq!(
        unknown_id.to_string(),
        "deleting endpoint id 77: address not found (Invalid argument (os error 22))"
    );
    assert_eq!(port_without_signal.errno(), Some(libc::EINVAL));
    assert!(
        port_without_signal.kernel_message().is_some(),
        "{port_without_signal}"
    );
    // The endpoint list is what it was: the refused requests changed nothing.
    assert_eq!(
        pm_endpoints(a).unwrap(),
        [view("10.78.1.1", 2, None, &["subflow"], None)].into()
    );
}
