//! `emptcp pm`, run as a user runs it, inside namespaces of a two-path testbed; iproute2 and
//! the kernel's counters are the judges.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use emptcp_testbed::presets::{TwoPath, TwoPathOpts, two_path};

fn pm(tp_host: &emptcp_testbed::Host, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_emptcp"))
        .args(["pm", "--netns", tp_host.netns()])
        .args(args)
        .output()
        .expect("running emptcp")
}

fn ok(out: Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(out: Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8(out.stderr).unwrap()
}

/// Lines with iproute2's trailing blanks trimmed.
fn lines(text: &str) -> Vec<String> {
    text.lines().map(|l| l.trim_end().to_owned()).collect()
}

fn testbed(label: &str) -> Option<TwoPath> {
    emptcp_testbed::root_or_skip().then(|| two_path(label, TwoPathOpts::default()).unwrap())
}

#[test]
fn endpoints_print_as_iproute2_does_through_add_set_del_flush() {
    let Some(tp) = testbed("pmcliep") else {
        return;
    };
    let c = &tp.client;
    ok(pm(c, &["flush"]));
    ok(pm(
        c,
        &[
            "add",
            "10.77.1.1",
            "--id",
            "3",
            "--flags",
            "signal,backup",
            "--port",
            "4321",
        ],
    ));
    ok(pm(
        c,
        &[
            "add",
            "10.77.2.1",
            "--id",
            "4",
            "--flags",
            "subflow",
            "--dev",
            "c2",
        ],
    ));
    ok(pm(c, &["add", "fd77:2::1", "--flags", "subflow,fullmesh"]));
    let judge = || lines(&c.ip(["mptcp", "endpoint", "show"]).unwrap());
    let shown = lines(&ok(pm(c, &["endpoints"])));
    assert_eq!(shown, judge());
    assert_eq!(
        shown[..2],
        [
            "10.77.1.1 port 4321 id 3 signal backup",
            "10.77.2.1 id 4 subflow dev c2"
        ]
    );

    let json: serde_json::Value =
        serde_json::from_str(&ok(pm(c, &["endpoints", "--json"]))).unwrap();
    assert_eq!(json[1]["addr"], "10.77.2.1");
    assert_eq!(json[1]["dev"], "c2");
    assert_eq!(json[1]["flags"], serde_json::json!(["subflow"]));
    assert_eq!(json[0]["port"], 4321);

    ok(pm(c, &["set", "--id", "4", "--flags", "backup"]));
    ok(pm(c, &["del", "--id", "3"]));
    let shown = lines(&ok(pm(c, &["endpoints"])));
    assert_eq!(shown, judge());
    assert_eq!(shown[0], "10.77.2.1 id 4 subflow backup dev c2");
    assert_eq!(shown.len(), 2);

    ok(pm(c, &["flush"]));
    assert_eq!(ok(pm(c, &["endpoints"])), "");
    assert!(judge().is_empty());
}

#[test]
fn limits_and_bad_input() {
    let Some(tp) = testbed("pmclilim") else {
        return;
    };
    let s = &tp.server;
    let json: serde_json::Value = serde_json::from_str(&ok(pm(
        s,
        &[
            "limits",
            "--subflows",
            "3",
            "--add-addr-accepted",
            "5",
            "--json",
        ],
    )))
    .unwrap();
    assert_eq!(
        json,
        serde_json::json!({"subflows": 3, "add_addr_accepted": 5})
    );
    let judged = s.ip(["mptcp", "limits", "show"]).unwrap();
    assert_eq!(lines(&ok(pm(s, &["limits"]))), lines(&judged));

    let e = refused(pm(s, &["limits", "--subflows", "9"]));
    assert!(
        e.contains("setting limits: limit greater than maximum (8)"),
        "{e}"
    );
    ok(pm(
        s,
        &["add", "10.77.3.1", "--id", "5", "--flags", "signal"],
    ));
    let e = refused(pm(
        s,
        &["add", "10.77.4.1", "--id", "5", "--flags", "signal"],
    ));
    assert!(e.contains("duplicate") && e.contains("os error 16"), "{e}");
    let e = refused(pm(s, &["add", "10.77.4.300"]));
    assert!(e.contains("invalid IP address syntax"), "{e}");
    let e = refused(pm(s, &["add", "10.77.4.1", "--flags", "signal,bakup"]));
    assert!(e.contains("unknown endpoint flag \"bakup\""), "{e}");
    let e = refused(pm(s, &["add", "10.77.4.1", "--id", "0"]));
    assert!(e.contains("--id"), "{e}");
    let e = refused(pm(
        s,
        &["announce", "--token", "0xnope", "--id", "1", "10.77.4.1"],
    ));
    assert!(e.contains("is not a 32-bit token"), "{e}");
    // Nothing refused changed anything.
    assert_eq!(lines(&ok(pm(s, &["limits"]))), lines(&judged));
    assert_eq!(lines(&ok(pm(s, &["endpoints"]))), ["10.77.3.1 id 5 signal"]);
    let e = refused(
        Command::new(env!("CARGO_BIN_EXE_emptcp"))
            .args(["pm", "--netns", "emtb-no-such-namespace", "endpoints"])
            .output()
            .unwrap(),
    );
    assert!(e.contains("/run/netns/emtb-no-such-namespace"), "{e}");
}

#[test]
fn events_print_json_lines_for_a_real_connection() {
    let Some(tp) = testbed("pmcliev") else {
        return;
    };
    // A quiet namespace: --timeout ends the watch with status 1 (the control for the run
    // below, where --count ends it with 0).
    let quiet = pm(&tp.router, &["events", "--count", "1", "--timeout", "0.3"]);
    assert_eq!(quiet.status.code(), Some(1), "{quiet:?}");
    assert!(quiet.stdout.is_empty());

    let mut watch = Command::new(env!("CARGO_BIN_EXE_emptcp"))
        .args(["pm", "--netns", tp.client.netns(), "events", "--json"])
        .args(["--count", "4", "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(watch.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(
        first.contains("listening for path-manager events"),
        "{first}"
    );

    // Held until its join is up, then closed: the four events of a two-subflow connection.
    let mut conn = tp.hold_connection().unwrap();
    conn.client_to_server(64 << 10).unwrap();
    conn.wait_client_subflows(2, Duration::from_secs(10))
        .unwrap();
    let token = conn.client_info().unwrap().token;
    let (local, remote) = (conn.client.local_addr().unwrap(), conn.target);
    drop(conn);
    let out = watch.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let events: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<_> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["created", "established", "sub_established", "closed"],
        "{events:#?}"
    );
    for e in &events {
        assert_eq!(e["token"], token, "{e}");
    }
    assert_eq!(events[0]["saddr"], local.ip().to_string());
    assert_eq!(events[0]["sport"], local.port());
    assert_eq!(events[0]["dport"], remote.port());
    assert_eq!(events[2]["saddr"], tp.client_addr(2).to_string());
}

#[test]
fn announce_by_token_reaches_the_client() {
    let Some(tp) = testbed("pmcliua") else {
        return;
    };
    tp.server.sysctl_set("net.mptcp.pm_type", "1").unwrap();
    let mut conn = tp.hold_connection().unwrap();
    conn.client_to_server(64 << 10).unwrap();
    let token = format!("{:#010x}", conn.server_info().unwrap().token);
    // Control: no announcement, no ADD_ADDR.
    assert_eq!(tp.client.nstat().unwrap().get("MPTcpExtAddAddr"), 0);
    ok(pm(
        &tp.server,
        &["announce", "--token", &token, "--id", "4", "10.77.4.1"],
    ));
    conn.client_to_server(64 << 10).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tp.client.nstat().unwrap().get("MPTcpExtAddAddr") == 0 {
        assert!(Instant::now() < deadline, "no ADD_ADDR reached the client");
        std::thread::sleep(Duration::from_millis(20));
    }
    let listed = lines(&ok(pm(&tp.server, &["endpoints", "--token", &token])));
    assert!(
        listed.contains(&"10.77.4.1 id 4 signal".to_owned()),
        "{listed:?}"
    );
    ok(pm(&tp.server, &["remove", "--token", &token, "--id", "4"]));
    // The client runs the in-kernel PM: a command on its connection is refused in the
    // kernel's words.
    let client_token = conn.client_info().unwrap().token.to_string();
    let e = refused(pm(
        &tp.client,
        &[
            "announce",
            "--token",
            &client_token,
            "--id",
            "4",
            "10.77.2.1",
        ],
    ));
    assert!(e.contains("userspace PM not selected"), "{e}");
}
