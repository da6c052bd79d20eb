//! The state commands as a user runs them: attach / apply / show / stats /
//! rollback / detach, each a new `emptcp` process working on pinned state in
//! a bpffs directory of its own, on veth devices in namespaces of its own.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{PinDir, emptcp_at, json, netns_name, run, tempdir};

use emptcp::netns::NetnsGuard;
use emptcp::{Hook, tcx_programs};
use emptcp_testbed::traffic::{self, TransferOpts};
use emptcp_testbed::{LinkEnd, LinkSpec, Testbed, Topology};

/// Two hosts, one veth link: a0 (10.99.0.1) -- b0 (10.99.0.2), plus a spare
/// veth pair x0 -- x1 inside b.
fn topology(label: &str) -> Testbed {
    Topology::builder(label)
        .host("a")
        .host("b")
        .link(LinkSpec::new(
            LinkEnd::new("a", "a0").addr("10.99.0.1/24"),
            LinkEnd::new("b", "b0").addr("10.99.0.2/24"),
        ))
        .link(LinkSpec::new(
            LinkEnd::new("b", "x0"),
            LinkEnd::new("b", "x1"),
        ))
        .build()
        .expect("testbed")
}

/// Everything a device shows of what is attached to it, from the tools an
/// operator would use and from BPF_PROG_QUERY for tcx.
fn device_state(tb: &Testbed, host: &str, dev: &str) -> String {
    let h = tb.host(host).unwrap();
    let mut out = String::new();
    for args in [
        vec!["tc", "qdisc", "show", "dev", dev],
        vec!["tc", "filter", "show", "dev", dev, "ingress"],
        vec!["tc", "filter", "show", "dev", dev, "egress"],
        vec!["ip", "-d", "link", "show", "dev", dev],
    ] {
        let o = h.exec(args[0], &args[1..]).unwrap();
        out.push_str(&o.stdout);
    }
    let _ns = NetnsGuard::enter(&h.netns_path()).unwrap();
    let ifindex = emptcp::netns::interface_index(dev).unwrap();
    for hook in [Hook::TcIngress, Hook::TcEgress] {
        out.push_str(&format!(
            "{hook}: {:?}\n",
            tcx_programs(hook, ifindex).unwrap()
        ));
    }
    out
}

/// What this test's process has in /sys/fs/bpf. The machine is shared:
/// entries of other processes come and go, so only ours are compared.
fn bpffs_listing() -> Vec<String> {
    let ours = format!("emptcp-test-{}-att", std::process::id());
    let mut v: Vec<String> = std::fs::read_dir("/sys/fs/bpf")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&ours))
        .collect();
    v.sort();
    v
}

/// iproute2 makes its pin directories (`/sys/fs/bpf/tc/globals`, and `ip`
/// and `xdp` linking to it) when it loads an object. Those it made for this
/// test go again, when still empty; ones that were there stay.
struct IprouteBpfDirs(Vec<&'static str>);

impl IprouteBpfDirs {
    fn note() -> IprouteBpfDirs {
        let absent = ["ip", "xdp", "tc"]
            .into_iter()
            .filter(|n| std::fs::symlink_metadata(Path::new("/sys/fs/bpf").join(n)).is_err())
            .collect();
        IprouteBpfDirs(absent)
    }
}

impl Drop for IprouteBpfDirs {
    fn drop(&mut self) {
        let root = Path::new("/sys/fs/bpf");
        for name in &self.0 {
            let path = root.join(name);
            if *name == "tc" {
                // Empty directories only: remove_dir refuses anything else.
                let _ = std::fs::remove_dir(path.join("globals"));
                let _ = std::fs::remove_dir(&path);
            } else if std::fs::read_link(&path).is_ok() {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// The foreign test object (bpf/tests/foreign.bpf.c) in a file, for iproute2.
fn foreign_object_file(dir: &Path) -> PathBuf {
    let path = dir.join("foreign.bpf.o");
    std::fs::write(
        &path,
        emptcp::testing::object_bytes("tests/foreign").unwrap(),
    )
    .unwrap();
    path
}

#[test]
fn attach_then_detach_leaves_devices_exactly_as_before() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let tb = topology("cli-att");
    let pins = PinDir::new("att");
    let b = tb.host("b").unwrap();
    let ns = netns_name(tb.host("b").unwrap());
    let tmp = tempdir("att");
    let _iproute_dirs = IprouteBpfDirs::note();
    let obj = foreign_object_file(&tmp);
    let obj_s = obj.to_str().unwrap();

    // Programs that are not emptcp's, already there: a tcx program on b0's
    // ingress, a cls_bpf filter on b0's egress (so a clsact qdisc exists),
    // and an XDP program on x1.
    let foreign = emptcp::testing::load_object("tests/foreign").unwrap();
    let _foreign_tcx = {
        let _in_b = NetnsGuard::enter(&b.netns_path()).unwrap();
        let ifindex = emptcp::netns::interface_index("b0").unwrap();
        emptcp::testing::attach_tcx(&foreign, "foreign_tc", Hook::TcIngress, ifindex).unwrap()
    };
    for args in [
        vec!["qdisc", "add", "dev", "b0", "clsact"],
        vec![
            "filter", "add", "dev", "b0", "egress", "bpf", "da", "obj", obj_s, "sec", "tc",
        ],
    ] {
        b.exec("tc", &args).unwrap();
    }
    let xdp = [
        "link",
        "set",
        "dev",
        "x1",
        "xdpgeneric",
        "obj",
        obj_s,
        "sec",
        "xdp",
    ];
    b.exec("ip", xdp).unwrap();

    let before: Vec<String> = ["b0", "x0", "x1"]
        .iter()
        .map(|d| device_state(&tb, "b", d))
        .collect();
    let bpffs_before = bpffs_listing();

    // Every mode: tcx beside the foreign tcx program, clsact beside the
    // foreign filter (qdisc already there), clsact where emptcp makes the
    // qdisc (x0), XDP generic (x0).
    let p = &pins.0;
    let n = Some(ns.as_str());
    run(p, n, &["attach", "b0", "--hook", "tc-ingress"], 0);
    run(
        p,
        n,
        &["attach", "b0", "--hook", "tc-egress", "--tc-mode", "clsact"],
        0,
    );
    run(
        p,
        n,
        &[
            "attach",
            "x0",
            "--hook",
            "tc-ingress",
            "--tc-mode",
            "clsact",
        ],
        0,
    );
    run(
        p,
        n,
        &["attach", "x0", "--hook", "xdp", "--mode", "xdp-generic"],
        0,
    );
    // Refused, naming the program that holds the device; nothing changes.
    let refused = emptcp_at(p, n, &["attach", "x1", "--hook", "xdp"]);
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("foreign_xdp"), "{err}");
    // Attaching twice at one place is refused too.
    assert_eq!(
        emptcp_at(p, n, &["attach", "b0", "--hook", "tc-ingress"])
            .status
            .code(),
        Some(2)
    );

    let policy = write_policy(&tmp, "count_all", "tc-ingress");
    run(p, n, &["apply", "-f", policy.to_str().unwrap(), "b0"], 0);

    // Control: all of it shows on the devices while attached.
    let during: Vec<String> = ["b0", "x0", "x1"]
        .iter()
        .map(|d| device_state(&tb, "b", d))
        .collect();
    assert!(
        during[0].contains("emptcp_tc_in") && during[0].contains("emptcp_tc_eg"),
        "{}",
        during[0]
    );
    assert!(during[0].contains("foreign_tc"), "{}", during[0]);
    assert!(
        during[1].contains("clsact") && during[1].contains("xdpgeneric"),
        "{}",
        during[1]
    );
    assert_ne!(before, during);
    let show = json(p, None, &["show"]);
    assert_eq!(show["attachments"].as_array().unwrap().len(), 4, "{show:#}");

    // Detach one by one, then the rest with --all.
    run(p, n, &["detach", "b0", "--hook", "tc-egress"], 0);
    run(p, n, &["detach", "b0", "--hook", "tc-egress"], 1);
    run(p, n, &["detach", "--all"], 0);
    assert!(!p.exists(), "detach --all leaves no pin directory");
    let after: Vec<String> = ["b0", "x0", "x1"]
        .iter()
        .map(|d| device_state(&tb, "b", d))
        .collect();
    for (i, dev) in ["b0", "x0", "x1"].iter().enumerate() {
        assert_eq!(before[i], after[i], "{dev} differs after detach");
    }
    assert_eq!(bpffs_before, bpffs_listing());
}

#[test]
fn a_new_process_adopts_pinned_state_after_a_kill() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let tb = topology("cli-adopt");
    let pins = PinDir::new("adopt");
    let p = &pins.0;
    let ns = netns_name(tb.host("b").unwrap());
    let n = Some(ns.as_str());
    let tmp = tempdir("adopt");
    let count = write_policy(&tmp, "count_all", "tc-ingress");
    let mark = tmp.join("mark.toml");
    std::fs::write(
        &mark,
        "hook = \"tc-ingress\"\n[[policy]]\nname = \"mark_all\"\nactions = [\"count\", { set_mark = 7 }]\n",
    )
    .unwrap();

    run(p, n, &["attach", "b0", "--hook", "tc-ingress"], 0);
    run(p, n, &["apply", "-f", count.to_str().unwrap(), "b0"], 0);
    let first = json(p, None, &["show"]);
    let att = &first["attachments"][0];
    let (link, prog) = (att["link_id"].clone(), att["prog_id"].clone());
    assert!(link.as_u64().is_some(), "{first:#}");

    // A process holding the state is killed mid-way.
    let mut follower = Command::new(env!("CARGO_BIN_EXE_emptcp"))
        .env("EMPTCP_PIN_DIR", p)
        .args(["events", "--timeout", "60"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    follower.kill().unwrap();
    follower.wait().unwrap();

    let hits = |v: &serde_json::Value| {
        v["attachments"][0]["policies"][0]["packets"]
            .as_u64()
            .unwrap()
    };
    let client = tb.host("a").unwrap();
    let server = tb.host("b").unwrap();
    let send = || {
        let opts = TransferOpts::new("10.99.0.2".parse().unwrap(), 256 << 10);
        traffic::transfer(client, server, &opts).expect("transfer through emptcp")
    };
    send();
    let second = json(p, None, &["show"]);
    assert_eq!(second["attachments"][0]["link_id"], link, "same link");
    assert_eq!(second["attachments"][0]["prog_id"], prog, "same program");
    assert_eq!(second["maps"], first["maps"], "same map ids");
    let h1 = hits(&second);
    assert!(h1 > 0, "traffic counted after the kill: {second:#}");
    send();
    let h2 = hits(&json(p, None, &["show"]));
    assert!(h2 > h1, "counters keep counting: {h1} then {h2}");

    // A new generation, then back: same link throughout, the old program
    // and its counters return.
    run(p, n, &["apply", "-f", mark.to_str().unwrap(), "b0"], 0);
    let third = json(p, None, &["show"]);
    assert_eq!(third["attachments"][0]["link_id"], link);
    assert_eq!(third["attachments"][0]["policies"][0]["name"], "mark_all");
    assert_eq!(third["attachments"][0]["previous_generation"], 1);
    let dry = run(
        p,
        n,
        &["apply", "-f", count.to_str().unwrap(), "b0", "--dry-run"],
        0,
    );
    assert!(
        dry.contains("+ count_all") && dry.contains("- mark_all"),
        "{dry}"
    );
    run(p, n, &["rollback", "b0", "--hook", "tc-ingress"], 0);
    let fourth = json(p, None, &["show"]);
    assert_eq!(fourth["attachments"][0]["link_id"], link);
    assert_eq!(fourth["attachments"][0]["prog_id"], prog);
    assert_eq!(hits(&fourth), h2, "the rolled-back generation's counters");
    let stats = json(p, None, &["stats"]);
    assert!(
        stats["hooks"]["tc-ingress"]["matched"].as_u64().unwrap() >= h2,
        "{stats:#}"
    );
    assert_eq!(stats["hooks"]["tc-ingress"]["missing_chain"], 0);

    run(p, n, &["detach", "--all"], 0);
    assert!(!p.exists());
}

/// `attach --no-quick-pass` sets the data plane up to walk every packet:
/// kept for every later command and attachment, refused against a data
/// plane that runs the other way. Control: the default data plane lets the
/// same traffic take the quick pass.
#[test]
fn no_quick_pass_is_a_setting_of_the_data_plane() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let tb = topology("cli-nqp");
    let pins = PinDir::new("nqp");
    let p = &pins.0;
    let ns = netns_name(tb.host("b").unwrap());
    let n = Some(ns.as_str());
    let (client, server) = (tb.host("a").unwrap(), tb.host("b").unwrap());
    let quick_after_transfer = || {
        let opts = TransferOpts::new("10.99.0.2".parse().unwrap(), 256 << 10);
        traffic::transfer(client, server, &opts).expect("transfer through emptcp");
        let stats = json(p, None, &["stats"]);
        let c = &stats["hooks"]["tc-ingress"];
        assert!(c["tcp"].as_u64().unwrap() > 0, "{stats:#}");
        c["quick_tcp"].as_u64().unwrap() + c["quick_mptcp"].as_u64().unwrap()
    };

    for quick_pass in [false, true] {
        let first: &[&str] = if quick_pass {
            &["attach", "b0", "--hook", "tc-ingress"]
        } else {
            &["attach", "b0", "--hook", "tc-ingress", "--no-quick-pass"]
        };
        run(p, n, first, 0);
        // A later attachment without the flag keeps the data plane's way.
        run(p, n, &["attach", "b0", "--hook", "tc-egress"], 0);
        let shown = json(p, None, &["show"]);
        assert_eq!(shown["options"]["quick_pass"], quick_pass, "{shown:#}");
        let quick = quick_after_transfer();
        if quick_pass {
            assert!(quick > 0, "control: the default data plane's quick pass");
            let refused = emptcp_at(
                p,
                n,
                &["attach", "x0", "--hook", "tc-ingress", "--no-quick-pass"],
            );
            assert_eq!(refused.status.code(), Some(2));
            let err = String::from_utf8_lossy(&refused.stderr);
            assert!(err.contains("runs with the quick pass"), "{err}");
        } else {
            assert_eq!(quick, 0, "every packet walked");
        }
        run(p, n, &["detach", "--all"], 0);
        assert!(!p.exists());
    }
}

/// A pin directory an older emptcp left (no data plane record, shared maps
/// of other shapes: made here by swapping the counters map for a smaller
/// one, as ABI 2's was) is refused with a message that says so, and
/// `detach --all` still takes it down, leaving the device as before.
/// Control: the same directory before the swap opens.
#[test]
fn a_pin_directory_of_another_version_is_refused_and_detach_all_removes_it() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let tb = topology("cli-old");
    let pins = PinDir::new("old");
    let p = &pins.0;
    let ns = netns_name(tb.host("b").unwrap());
    let n = Some(ns.as_str());
    let before = device_state(&tb, "b", "b0");
    run(p, n, &["attach", "b0", "--hook", "tc-ingress"], 0);
    run(p, n, &["show"], 0);

    let counters = p.join("maps/emptcp_counters");
    std::fs::remove_file(p.join("maps/meta")).unwrap();
    std::fs::remove_file(&counters).unwrap();
    let made = Command::new("bpftool")
        .args(["map", "create"])
        .arg(&counters)
        .args([
            "type",
            "percpu_array",
            "key",
            "4",
            "value",
            "8",
            "entries",
            "10",
        ])
        .args(["name", "emptcp_counters"])
        .status()
        .unwrap();
    assert!(made.success());

    for args in [
        &["show"][..],
        &["stats"],
        &["detach", "b0", "--hook", "tc-ingress"],
    ] {
        let out = emptcp_at(p, n, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("pinned by another emptcp version") && err.contains("detach --all"),
            "{args:?}: {err}"
        );
    }
    run(p, n, &["detach", "--all"], 0);
    assert!(!p.exists());
    assert_eq!(device_state(&tb, "b", "b0"), before);
}

#[test]
fn state_commands_refuse_bad_input_clearly() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let tb = topology("cli-bad");
    let pins = PinDir::new("bad");
    let p = &pins.0;
    let ns = netns_name(tb.host("b").unwrap());
    let n = Some(ns.as_str());
    let tmp = tempdir("bad");
    let policy = write_policy(&tmp, "count_all", "tc-ingress");
    let f = policy.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["attach", "nosuchdev", "--hook", "tc-ingress"],
            "no interface nosuchdev",
        ),
        (
            &["attach", "b0", "--hook", "xdp", "--mode", "tcx"],
            "cannot serve hook xdp",
        ),
        (
            &["attach", "b0", "--hook", "tc-ingress", "--mode", "bogus"],
            "unknown attach mode",
        ),
        (
            &["apply", "-f", f, "b0"],
            "not attached at tc-ingress on b0",
        ),
        (
            &["apply", "-f", f, "b0", "--hook", "xdp"],
            "the file is for tc-ingress",
        ),
        (
            &["rollback", "b0", "--hook", "tc-ingress"],
            "no tc-ingress attachment",
        ),
    ];
    for (args, expect) in cases {
        let out = emptcp_at(p, n, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(expect),
            "{args:?}: expected '{expect}' in: {err}"
        );
    }
    // Refusals leave nothing behind: no pin directory was made for them.
    assert!(!p.exists(), "a refused command left {}", p.display());
    run(p, n, &["attach", "b0", "--hook", "tc-ingress"], 0);
    let out = emptcp_at(p, n, &["rollback", "b0", "--hook", "tc-ingress"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no previous generation"));
    run(p, n, &["detach", "--all"], 0);
}

/// A policy file with one policy that counts every TCP packet.
fn write_policy(dir: &Path, name: &str, hook: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("hook = \"{hook}\"\n[[policy]]\nname = \"{name}\"\nactions = [\"count\"]\n"),
    )
    .unwrap();
    path
}
