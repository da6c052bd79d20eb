//! Policy files (no root): the TOML form equals the API's set, every bad file
//! is refused with its file, line, field and message, and every example in
//! `examples/policies/` compiles for its hook.

use std::path::PathBuf;

use emptcp::Hook;
use emptcp::policy::{
    Action, ActionChain, Combine, PacketType, Policy, PolicySet, Selector, SelectorChain,
    SelectorKind, Stream,
};
use emptcp::policy_file::{self, PolicyFile};

/// Knows two interfaces, as a router of the two-path testbed would.
fn resolver(name: &str) -> Result<u32, String> {
    match name {
        "r3" => Ok(5),
        "r4" => Ok(6),
        _ => Err(format!("no interface named '{name}'")),
    }
}

fn parse(text: &str) -> Result<PolicyFile, policy_file::FileError> {
    policy_file::parse("policy.toml", text, &resolver)
}

/// The set of `a_file_equals_the_same_set_built_with_the_api`, built with
/// the API: every selector kind, and most actors.
fn every_selector_set() -> PolicySet {
    let mut sc = SelectorChain::new();
    sc.add(SelectorKind::PacketType, Combine::And)
        .add(SelectorKind::Src, Combine::Or)
        .add(SelectorKind::Port, Combine::And)
        .add(SelectorKind::Sequence, Combine::And)
        .add(SelectorKind::Connection, Combine::And)
        .add(SelectorKind::IpPair, Combine::And)
        .add(SelectorKind::Subflow, Combine::And)
        .add(SelectorKind::Dst, Combine::And);
    let chain = |actions: &[Action]| {
        let mut c = ActionChain::new();
        actions.iter().for_each(|a| {
            c.add(*a);
        });
        c
    };
    let mut joins = Policy::new("joins", chain(&[Action::Count, Action::GetSubflow]));
    joins.priority(10).select(
        0,
        Selector::PacketType(vec![PacketType::MpJoinSyn, PacketType::Syn]),
    );
    let mut tenant2 = Policy::new(
        "tenant2",
        chain(&[
            Action::Count,
            Action::SetMark(16),
            Action::Redirect { ifindex: 5 },
        ]),
    );
    tenant2
        .select(1, Selector::Src("10.77.2.0/24".parse().unwrap()))
        .select(
            2,
            Selector::Port {
                local: None,
                remote: Some(5201),
            },
        );
    let mut late = Policy::new(
        "late",
        chain(&[
            Action::RateLimit {
                window_bytes: 65536,
            },
            Action::Redirect { ifindex: 7 },
        ]),
    );
    late.priority(-1)
        .select(
            3,
            Selector::Sequence {
                stream: Stream::Data,
                start: 1 << 20,
                end: u64::MAX,
            },
        )
        .select(
            4,
            Selector::Connection {
                token: Some(0x1a2b_3c4d),
                subflow_index: Some(1),
            },
        );
    let mut pairs = Policy::new("pairs", chain(&[Action::Drop]));
    pairs
        .select(
            5,
            Selector::IpPair {
                local: "fd00::/64".parse().unwrap(),
                remote: "fd01::1".parse().unwrap(),
            },
        )
        .select(
            6,
            Selector::Subflow {
                local: "[fd00::1]:80".parse().unwrap(),
                remote: "[fd01::1]:40000".parse().unwrap(),
            },
        )
        .select(7, Selector::Dst("fd00::2".parse().unwrap()))
        .select(
            3,
            Selector::Sequence {
                stream: Stream::Subflow,
                start: 0,
                end: 4096,
            },
        );
    let everything = Policy::new("everything", chain(&[Action::GetConnect]));
    PolicySet {
        selectors: sc,
        policies: vec![joins, tenant2, late, pairs, everything],
    }
}

#[test]
fn a_file_equals_the_same_set_built_with_the_api() {
    let text = r#"
hook = "tc-ingress"

[[selector]]
kind = "packet_type"
[[selector]]
kind = "src"
combine = "or"
name = "tenant"
[[selector]]
kind = "port"
[[selector]]
kind = "sequence"
[[selector]]
kind = "connection"
[[selector]]
kind = "ip_pair"
[[selector]]
kind = "subflow"
[[selector]]
kind = "dst"

[[policy]]
name = "joins"
priority = 10
select = { packet_type = ["mp_join_syn", "syn"] }
actions = ["count", "get_subflow"]

[[policy]]
name = "tenant2"
select = { tenant = "10.77.2.0/24", 2 = { remote = 5201 } }
actions = ["count", { set_mark = "0x10" }, { redirect = "r3" }]

[[policy]]
name = "late"
priority = -1
actions = [{ rate_limit = "64KiB" }, { redirect = 7 }]
[policy.select]
sequence = { stream = "data", start = "1MiB" }
connection = { token = "0x1a2b3c4d", subflow_index = 1 }

[[policy]]
name = "pairs"
select.ip_pair = { local = "fd00::/64", remote = "fd01::1" }
select.subflow = { local = "[fd00::1]:80", remote = "[fd01::1]:40000" }
select.dst = "fd00::2"
select.3 = { stream = "subflow", start = 0, end = 4096 }
actions = ["drop"]

[[policy]]
name = "everything"
actions = ["get_connect"]
"#;
    let file = parse(text).unwrap();

    let api = every_selector_set();
    assert_eq!(file.set, api);
    assert_eq!(file.hook, Some(Hook::TcIngress));
    assert_eq!(file.policy_line(1), Some(30));

    let compiled = file.compile(None).unwrap();
    let from_api = api.compile(Hook::TcIngress).unwrap();
    assert_eq!(compiled.rule_count(), from_api.rule_count());
    assert_eq!(compiled.shape_count(), from_api.shape_count());
    assert_eq!(compiled.chain_count(), from_api.chain_count());
}

#[test]
fn an_empty_file_is_an_empty_set() {
    for text in ["", "# nothing yet\n", "hook = \"xdp\"\n"] {
        let file = parse(text).unwrap();
        assert_eq!(file.set, PolicySet::default());
        let compiled = file.compile(Some(Hook::Xdp)).unwrap();
        assert_eq!(compiled.rule_count(), 0);
    }
}

#[test]
fn the_hook_comes_from_the_file_or_the_caller_and_they_must_agree() {
    let file = parse("\n\nhook = \"tc-egress\"\n").unwrap();
    assert_eq!(file.compile(None).unwrap().hook(), Hook::TcEgress);
    assert_eq!(
        file.compile(Some(Hook::Xdp)).unwrap_err().to_string(),
        "policy.toml:3: field 'hook': the file is for tc-egress, but xdp was asked for"
    );
    let file = parse("").unwrap();
    assert_eq!(
        file.compile(Some(Hook::TcIngress)).unwrap().hook(),
        Hook::TcIngress
    );
    assert!(
        file.compile(None)
            .unwrap_err()
            .to_string()
            .starts_with("policy.toml: no hook: add hook = \"tc-ingress\"")
    );
}

/// `[[selector]] kind = "src"` then one policy whose body is `body`.
fn one_policy(body: &str) -> String {
    format!(
        "[[selector]]\nkind = \"src\"\n[[selector]]\nkind = \"port\"\n[[policy]]\nname = \"p\"\n{body}\n"
    )
}

#[test]
fn bad_files_are_refused_with_file_line_field_and_message() {
    let seventeen = vec!["\"count\""; 17].join(", ");
    let cases: Vec<(&str, String, Hook, &str)> = vec![
        (
            "unknown selector",
            "[[selector]]\nkind = \"source\"\n".into(),
            Hook::TcIngress,
            "policy.toml:2: field 'selector[0].kind': unknown selector 'source': expected one of \
             subflow, ip_pair, src, dst, port, packet_type, sequence, connection",
        ),
        (
            "unknown actor",
            one_policy("actions = [\"count\", \"mark\"]"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions[1]': unknown actor 'mark': expected one of \
             count, set_mark, drop, rate_limit, redirect, record, blk_subflow, set_backup, add_subflow, get_connect, get_subflow, plugin",
        ),
        (
            "unknown actor with a value",
            one_policy("actions = [{ mark = 2 }]"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions[0].mark': unknown actor 'mark': expected one \
             of count, set_mark, drop, rate_limit, redirect, record, blk_subflow, set_backup, add_subflow, get_connect, get_subflow, plugin",
        ),
        (
            "blk_subflow with a bad value",
            one_policy("actions = [{ blk_subflow = true }]"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions[0].blk_subflow': blk_subflow takes \
             \"refuse_joins\" (also drop MP_JOIN SYNs) or no value, got true",
        ),
        (
            "set_backup without a flag",
            one_policy("actions = [\"set_backup\"]"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions[0]': set_backup needs a value: \
             { set_backup = true }",
        ),
        (
            "set_backup with a number",
            one_policy("actions = [{ set_backup = 1 }]"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions[0].set_backup': set_backup takes true \
             (backup), false (regular) or { backup = true, packets = 5 }, got 1",
        ),
        (
            "set_backup on no packets",
            one_policy("actions = [{ set_backup = { backup = true, packets = 0 } }]"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions[0].set_backup.packets': 0 is out of range: \
             expected 1 to 255",
        ),
        (
            "set_backup on too many packets",
            one_policy("actions = [{ set_backup = { backup = false, packets = 256 } }]"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions[0].set_backup.packets': 256 is out of range: \
             expected 1 to 255",
        ),
        (
            "set_backup without backup",
            one_policy("actions = [{ set_backup = { packets = 5 } }]"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions[0].set_backup': set_backup needs backup: \
             { backup = true, packets = 5 }",
        ),
        (
            "set_backup with an unknown key",
            one_policy("actions = [{ set_backup = { backup = true, times = 5 } }]"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions[0].set_backup.times': unknown key; expected \
             one of backup, packets",
        ),
        (
            "an option reader after blk_subflow",
            one_policy("actions = [\"blk_subflow\", \"record\"]"),
            Hook::TcIngress,
            "policy.toml:6: field 'policy[0]': policy 'p': record cannot follow blk_subflow \
             (it reads options that blk_subflow moves): put it before",
        ),
        (
            "bad prefix",
            one_policy("select = { src = \"10.77.2/24\" }"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].select.src': '10.77.2/24' is not an address or prefix",
        ),
        (
            "host bits set",
            one_policy("select = { src = \"10.77.2.1/24\" }"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].select.src': 10.77.2.1/24 has host bits set",
        ),
        (
            "prefix too long",
            one_policy("select = { src = \"10.77.2.0/33\" }"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].select.src': prefix length 33 is longer than 32",
        ),
        (
            "port out of range",
            one_policy("select = { port = { local = 70000 } }"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].select.port.local': 70000 is out of range: expected \
             1 to 65535",
        ),
        (
            "chain too long",
            one_policy(&format!("actions = [{seventeen}]")),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions': the action chain has 17 actors; at most 16 \
             are supported",
        ),
        (
            "set_mark at xdp",
            one_policy("actions = [\"count\",\n  { set_mark = 2 }]"),
            Hook::Xdp,
            "policy.toml:8: field 'policy[0].actions[1]': actor set_mark does not work at xdp",
        ),
        (
            "duplicate policy name",
            format!(
                "{}[[policy]]\nname = \"p\"\n",
                one_policy("actions = [\"count\"]")
            ),
            Hook::TcIngress,
            "policy.toml:9: field 'policy[1].name': duplicate policy name 'p' (first at line 6)",
        ),
        (
            "stage index out of range",
            one_policy("select = { 2 = \"10.0.0.0/8\" }"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].select.2': stage 2 is out of range: the selector \
             chain has 2 stages",
        ),
        (
            "no such stage",
            one_policy("select = { dst = \"10.0.0.0/8\" }"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].select.dst': no stage 'dst': the stages are src (0), \
             port (1)",
        ),
        (
            "value for the wrong stage kind",
            one_policy("select = { 1 = \"10.0.0.0/8\" }"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].select.1': a port stage takes a table such as \
             { local = 80 } or { remote = 5201 }, got \"10.0.0.0/8\"",
        ),
        (
            "unknown key in a policy",
            one_policy("prio = 3"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].prio': unknown key; expected one of name, priority, \
             select, actions",
        ),
        (
            "unknown top-level key",
            "hook = \"xdp\"\npolicies = []\n".into(),
            Hook::Xdp,
            "policy.toml:2: field 'policies': unknown key; expected one of hook, selector, plugin, \
             policy",
        ),
        (
            "unknown key in a stage value",
            one_policy("select = { port = { locl = 80 } }"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].select.port.locl': unknown key; expected one of \
             local, remote",
        ),
        (
            "bad TOML syntax",
            "hook = \"xdp\"\n\n[[policy]\nname = \"p\"\n".into(),
            Hook::Xdp,
            "policy.toml:3: bad TOML: unclosed array table, expected `]`",
        ),
        (
            "bad rate",
            one_policy("actions = [{ rate_limit = \"fast\" }]"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions[0].rate_limit': expected a size such as \
             65536 or \"64KiB\", got \"fast\", or a rate such as \"20Mbit\"",
        ),
        (
            "bad rate unit",
            one_policy("actions = [{ rate_limit = \"20Tbit\" }]"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions[0].rate_limit': expected a rate such as \
             \"20Mbit\" (bit/s; K, M, G: powers of 1000), got \"20Tbit\"",
        ),
        (
            "zero bit rate",
            one_policy("actions = [{ rate_limit = \"0bit\" }]"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions[0].rate_limit': a rate of 0 bit/s is out of \
             range: expected 1bit to 100Gbit",
        ),
        (
            "too high a rate",
            one_policy("actions = [{ rate_limit = \"101Gbit\" }]"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions[0].rate_limit': a rate of 101000000000 bit/s \
             is out of range: expected 1bit to 100Gbit",
        ),
        (
            "zero rate",
            one_policy("actions = [{ rate_limit = 0 }]"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions[0].rate_limit': 0 is out of range: expected \
             1 to 18446744073709551615",
        ),
        (
            "unknown interface",
            one_policy("actions = [{ redirect = \"eth9\" }]"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions[0].redirect': no interface named 'eth9'",
        ),
        (
            "unknown packet type",
            "[[selector]]\nkind = \"packet_type\"\n[[policy]]\nname = \"p\"\n\
             select = { packet_type = [\"syn\", \"join\"] }\n"
                .into(),
            Hook::TcIngress,
            "policy.toml:5: field 'policy[0].select.packet_type[1]': unknown packet type 'join': \
             expected one of mp_capable_syn, mp_join_syn, mp_capable, mp_join, dss, add_addr, \
             remove_addr, mp_prio, mp_fail, mp_fastclose, mp_tcprst, syn, fin, rst, pure_ack, data",
        ),
        (
            "mixed families",
            "[[selector]]\nkind = \"ip_pair\"\n[[policy]]\nname = \"p\"\n\
             select.ip_pair = { local = \"10.0.0.0/8\", remote = \"fd00::/8\" }\n"
                .into(),
            Hook::TcIngress,
            "policy.toml:5: field 'policy[0].select.ip_pair': local 10.0.0.0/8 and remote \
             fd00::/8 are of different families",
        ),
        (
            "missing name",
            "[[policy]]\nactions = [\"count\"]\n".into(),
            Hook::TcIngress,
            "policy.toml:1: field 'policy[0]': missing key 'name'",
        ),
        (
            "ambiguous stage",
            "[[selector]]\nkind = \"src\"\n[[selector]]\nkind = \"src\"\ncombine = \"or\"\n\
             [[policy]]\nname = \"p\"\nselect = { src = \"10.0.0.0/8\" }\n"
                .into(),
            Hook::TcIngress,
            "policy.toml:8: field 'policy[0].select.src': 2 stages are 'src': give them names, or \
             use the stage index",
        ),
        (
            "unknown plugin",
            one_policy("actions = [{ plugin = \"dscp\" }]"),
            Hook::TcIngress,
            "policy.toml:7: field 'policy[0].actions[0].plugin': no plugin 'dscp' is declared \
             ([[plugin]] name = \"dscp\")",
        ),
        (
            "unknown hook",
            "hook = \"tc\"\n".into(),
            Hook::TcIngress,
            "policy.toml:1: field 'hook': unknown hook 'tc': expected xdp, tc-ingress or tc-egress",
        ),
        (
            "a limit only the compiler knows",
            seventeen_chains(),
            Hook::TcIngress,
            "policy.toml:50: field 'policy[16]': policy 'p16': more than 16 distinct action \
             chains in one policy set",
        ),
    ];
    let mut failures = Vec::new();
    for (what, text, hook, expected) in &cases {
        let got = match parse(text).and_then(|f| f.compile(Some(*hook)).map(drop)) {
            Ok(()) => "accepted".to_owned(),
            Err(e) => e.to_string(),
        };
        if got != *expected {
            failures.push(format!("{what}:\n  expected {expected}\n  got      {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Seventeen policies with distinct action chains: only the compiler knows
/// the limit of 16 chains per set.
fn seventeen_chains() -> String {
    (0..17)
        .map(|i| format!("[[policy]]\nname = \"p{i}\"\nactions = [{{ set_mark = {i} }}]\n"))
        .collect()
}

#[test]
fn every_example_policy_compiles_for_its_hook() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 9, "{files:?}");
    for path in files {
        let file = policy_file::load(&path, &resolver)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(file.hook.is_some(), "{}: no hook", path.display());
        assert!(!file.set.policies.is_empty(), "{}", path.display());
        let compiled = file
            .compile(None)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(compiled.rule_count() > 0, "{}", path.display());
    }
}

/// Compiling is not enough: each example's generation must pass the
/// verifier (a generation with connection, sequence and packet-type stages
/// once took 1M instructions), with its plugins, taken from the objects
/// built from bpf/plugins/ under the name the example gives.
#[test]
fn every_example_policy_passes_the_verifier() {
    if !emptcp_testbed::root_or_skip() {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut dp = emptcp::Dataplane::load().unwrap();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let file = policy_file::load(&path, &resolver).unwrap();
        let specs: Vec<emptcp::plugin::PluginSpec> = file
            .plugins
            .iter()
            .map(|d| {
                let object = d.object.file_name().unwrap().to_string_lossy();
                let stem = object.split('.').next().unwrap();
                let bytes = emptcp::testing::object_bytes(&format!("plugins/{stem}"))
                    .unwrap_or_else(|| panic!("{name}: no plugin object {object}"));
                let spec = emptcp::plugin::PluginSpec::new(&d.name, bytes, &d.program);
                match &d.rodata {
                    Some(r) => spec.rodata(r.clone()),
                    None => spec,
                }
            })
            .collect();
        let refs: Vec<_> = specs.iter().collect();
        let g = dp
            .load_generation(&file.compile(None).unwrap(), &refs)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let info = g.program_info().unwrap();
        eprintln!(
            "{name:<22} {:>8} verified instructions",
            info.verified_insns
        );
        assert!(info.verified_insns < 1_000_000);
    }
}

/// API and file round trips: every example file, and a set built with the
/// API using every selector kind and actor, written back with
/// `policy_file::render` and parsed again, is the same set (and the written
/// file compiles to the same rules).
#[test]
fn sets_round_trip_through_rendered_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let mut sets: Vec<(String, PolicySet, Option<Hook>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let f = policy_file::load(&p, &resolver).unwrap();
            (p.display().to_string(), f.set, f.hook)
        })
        .collect();
    assert!(sets.len() >= 9);

    // The API-built set, plus the actor forms it lacks.
    let mut api = every_selector_set();
    let mut rest = ActionChain::new();
    rest.add(Action::Record)
        .add(Action::RateLimitRate {
            bits_per_second: 1_500_000,
        })
        .add(Action::SetBackup {
            backup: false,
            packets: 5,
        })
        .add(Action::SetBackup {
            backup: true,
            packets: 3,
        })
        .add(Action::BlkSubflow { refuse_joins: true });
    let mut p = Policy::new("with \"quotes\" and \\", rest);
    p.priority(-7);
    api.policies.push(p);
    sets.push(("api".into(), api, Some(Hook::TcEgress)));

    for (name, set, hook) in sets {
        let text = policy_file::render(&set, hook);
        let back = policy_file::parse(&name, &text, &resolver)
            .unwrap_or_else(|e| panic!("{name}: rendered file refused: {e}\n{text}"));
        assert_eq!(back.set, set, "{name}:\n{text}");
        assert_eq!(back.hook, hook, "{name}");
        if let Some(hook) = hook {
            let (x, y) = (set.compile(hook).unwrap(), back.set.compile(hook).unwrap());
            assert_eq!(
                (x.rule_count(), x.shape_count(), x.chain_count()),
                (y.rule_count(), y.shape_count(), y.chain_count())
            );
        }
    }
}
