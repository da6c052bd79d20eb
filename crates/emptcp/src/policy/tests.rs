//! Compilation semantics: ranking, expansion of AND / OR, unsatisfiable
//! terms, shapes, and every refusal. No kernel involved.

use super::*;

fn chain(kinds: &[(SelectorKind, Combine)]) -> SelectorChain {
    let mut sc = SelectorChain::new();
    for (k, c) in kinds {
        sc.add(*k, *c);
    }
    sc
}

fn actions(a: &[Action]) -> ActionChain {
    let mut ac = ActionChain::new();
    for x in a {
        ac.add(*x);
    }
    ac
}

fn pfx(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn compile(selectors: SelectorChain, policies: Vec<Policy>) -> Result<CompiledPolicy, PolicyError> {
    PolicySet {
        selectors,
        policies,
    }
    .compile(Hook::TcIngress)
}

#[test]
fn prefixes_parse_and_refuse_host_bits() {
    assert_eq!(pfx("10.0.0.0/8").len, 8);
    assert_eq!(pfx("10.1.2.3").len, 32);
    assert_eq!(pfx("fd00::/16").len, 16);
    assert!(
        "10.0.0.1/8"
            .parse::<Prefix>()
            .unwrap_err()
            .contains("host bits")
    );
    assert!("10.0.0.0/33".parse::<Prefix>().is_err());
    assert!("nonsense".parse::<Prefix>().is_err());
    assert!(pfx("10.0.0.0/8").contains(&pfx("10.9.0.0/16")));
    assert!(pfx("10.77.1.0/24").contains_addr("10.77.1.9".parse().unwrap()));
    assert!(!pfx("10.77.1.0/24").contains_addr("10.77.2.9".parse().unwrap()));
    assert!(!pfx("10.77.1.0/24").contains_addr("fd00::1".parse().unwrap()));
    assert!(pfx("::/0").contains_addr("fd00::1".parse().unwrap()));
    assert!(!pfx("10.9.0.0/16").contains(&pfx("10.0.0.0/8")));
}

#[test]
fn rules_are_ranked_by_priority_then_set_order() {
    let sc = chain(&[(SelectorKind::Port, Combine::And)]);
    let port = |p| Selector::Port {
        local: Some(p),
        remote: None,
    };
    let mut a = Policy::new("a", actions(&[Action::Count]));
    a.select(0, port(80));
    let mut b = Policy::new("b", actions(&[Action::Drop]));
    b.select(0, port(80)).priority(10);
    let mut c = Policy::new("c", actions(&[Action::Count]));
    c.select(0, port(80));
    let compiled = compile(sc, vec![a, b, c]).unwrap();
    // Each policy: one rule per family (no address: IPv4 and IPv6).
    assert_eq!(compiled.rule_count(), 6);
    let order: Vec<&str> = (0..6)
        .map(|r| compiled.policy_names()[compiled.policy_of_rule(r).unwrap()].as_str())
        .collect();
    assert_eq!(order, ["b", "b", "a", "a", "c", "c"]);
    // a and c share an action chain.
    assert_eq!(compiled.chain_count(), 2);
    assert_eq!(compiled.chain_of(0), compiled.chain_of(2));
}

#[test]
fn or_expands_into_alternatives_and_missing_values_are_true() {
    let sc = chain(&[
        (SelectorKind::Src, Combine::And),
        (SelectorKind::Port, Combine::Or),
        (SelectorKind::Dst, Combine::And),
    ]);
    // ((src A) OR port 80) AND dst B  ->  (A and B) or (80 and B)
    let mut p = Policy::new("p", ActionChain::new());
    p.select(0, Selector::Src(pfx("10.0.0.0/8")))
        .select(
            1,
            Selector::Port {
                local: None,
                remote: Some(80),
            },
        )
        .select(2, Selector::Dst(pfx("10.9.9.9")));
    let c = compile(sc.clone(), vec![p]).unwrap();
    assert_eq!(c.rule_count(), 2);
    assert_eq!(c.shape_count(), 2);

    // Without a value for stage 1, the stage is left out: A AND B.
    let mut q = Policy::new("q", ActionChain::new());
    q.select(0, Selector::Src(pfx("10.0.0.0/8")))
        .select(2, Selector::Dst(pfx("10.9.9.9")));
    let c = compile(sc.clone(), vec![q]).unwrap();
    assert_eq!(c.rule_count(), 1);
    let (key, _) = c.rules[0];
    // At tc-ingress the destination is local, the source remote.
    assert_eq!(&key.local[..4], &[10, 9, 9, 9]);
    assert_eq!(&key.remote[..4], &[10, 0, 0, 0]);

    // Only stage 1 (an OR stage): the expression is that stage alone.
    let mut r = Policy::new("r", ActionChain::new());
    r.select(
        1,
        Selector::Port {
            local: None,
            remote: Some(80),
        },
    );
    let c = compile(sc.clone(), vec![r]).unwrap();
    assert_eq!((c.rule_count(), c.shape_count()), (2, 2)); // IPv4 and IPv6

    // No values at all: every TCP packet.
    let c = compile(sc, vec![Policy::new("all", ActionChain::new())]).unwrap();
    assert_eq!(c.rule_count(), 2);
    assert!(
        c.rules
            .iter()
            .all(|(k, _)| k.local == [0; 16] && k.local_port == 0)
    );
}

#[test]
fn contradictory_terms_never_match() {
    let sc = chain(&[
        (SelectorKind::Src, Combine::And),
        (SelectorKind::IpPair, Combine::And),
    ]);
    let mut p = Policy::new("p", ActionChain::new());
    p.select(0, Selector::Src(pfx("10.0.0.0/8"))).select(
        1,
        Selector::IpPair {
            local: pfx("10.1.0.0/16"),
            remote: pfx("192.168.0.0/16"),
        },
    );
    // src is remote at ingress: 10/8 and 192.168/16 do not overlap.
    assert_eq!(
        compile(sc.clone(), vec![p.clone()]).unwrap().rule_count(),
        0
    );
    // At egress src is local: 10/8 and 10.1/16 overlap to 10.1/16.
    let c = PolicySet {
        selectors: sc,
        policies: vec![p],
    }
    .compile(Hook::TcEgress)
    .unwrap();
    assert_eq!(c.rule_count(), 1);
    assert_eq!(c.rules[0].0.local[..2], [10, 1]);
}

#[test]
fn packet_types_combine_and_contradictions_drop_out() {
    let sc = chain(&[
        (SelectorKind::PacketType, Combine::And),
        (SelectorKind::PacketType, Combine::And),
    ]);
    let mut p = Policy::new("p", ActionChain::new());
    p.select(
        0,
        Selector::PacketType(vec![PacketType::MpJoinSyn, PacketType::Data]),
    )
    .select(1, Selector::PacketType(vec![PacketType::PureAck]));
    // mp_join_syn AND pure_ack: SYN required and forbidden -> gone.
    // data AND pure_ack: payload required and forbidden -> gone.
    assert_eq!(compile(sc.clone(), vec![p]).unwrap().rule_count(), 0);
    let mut q = Policy::new("q", ActionChain::new());
    q.select(
        0,
        Selector::PacketType(vec![PacketType::MpPrio, PacketType::AddAddr]),
    )
    .select(1, Selector::PacketType(vec![PacketType::PureAck]));
    // Two alternatives, each for IPv4 and IPv6, sharing a key per family.
    let c = compile(sc, vec![q]).unwrap();
    assert_eq!(c.rule_count(), 4);
    assert_eq!(c.rules.len(), 2);
    assert!(c.rules.iter().all(|(_, set)| set.n == 2));
}

#[test]
fn refusals_name_the_policy_and_stage() {
    let sc = chain(&[(SelectorKind::Port, Combine::And)]);
    let mut wrong_kind = Policy::new("w", ActionChain::new());
    wrong_kind.select(0, Selector::Src(pfx("10.0.0.0/8")));
    let e = compile(sc.clone(), vec![wrong_kind]).unwrap_err();
    assert_eq!((e.policy.as_deref(), e.stage), (Some("w"), Some(0)));
    assert!(e.to_string().contains("stage is port"), "{e}");

    let mut out_of_range = Policy::new("o", ActionChain::new());
    out_of_range.select(
        3,
        Selector::Port {
            local: Some(1),
            remote: None,
        },
    );
    assert!(
        compile(sc.clone(), vec![out_of_range])
            .unwrap_err()
            .to_string()
            .contains("1 stages")
    );

    let dup = || Policy::new("d", ActionChain::new());
    assert!(
        compile(sc.clone(), vec![dup(), dup()])
            .unwrap_err()
            .to_string()
            .contains("duplicate")
    );

    let mut empty_port = Policy::new("e", ActionChain::new());
    empty_port.select(
        0,
        Selector::Port {
            local: None,
            remote: None,
        },
    );
    assert!(compile(sc.clone(), vec![empty_port]).is_err());

    let long = Policy::new("l", actions(&[Action::Count; 17]));
    assert!(
        compile(sc.clone(), vec![long])
            .unwrap_err()
            .to_string()
            .contains("at most 16")
    );

    let mark = Policy::new("m", actions(&[Action::SetMark(1)]));
    let e = PolicySet {
        selectors: sc.clone(),
        policies: vec![mark],
    }
    .compile(Hook::Xdp)
    .unwrap_err();
    assert!(e.to_string().contains("does not work at xdp"), "{e}");

    let too_many_stages = chain(&[(SelectorKind::Port, Combine::And); 17]);
    assert!(compile(too_many_stages, vec![]).is_err());

    let mixed = Policy {
        values: [(
            0,
            Selector::IpPair {
                local: pfx("10.0.0.1"),
                remote: pfx("fd00::1"),
            },
        )]
        .into(),
        ..Policy::new("x", ActionChain::new())
    };
    let sc_pair = chain(&[(SelectorKind::IpPair, Combine::And)]);
    assert!(
        compile(sc_pair, vec![mixed])
            .unwrap_err()
            .to_string()
            .contains("one family")
    );
}

#[test]
fn at_most_sixteen_chains_and_eight_shapes() {
    let sc = chain(&[(SelectorKind::Port, Combine::And)]);
    let policies: Vec<Policy> = (0..17u32)
        .map(|i| {
            let mut p = Policy::new(format!("p{i}"), actions(&[Action::SetMark(i)]));
            p.select(
                0,
                Selector::Port {
                    local: Some(i as u16 + 1),
                    remote: None,
                },
            );
            p
        })
        .collect();
    assert!(
        compile(sc, policies)
            .unwrap_err()
            .to_string()
            .contains("16 distinct action chains")
    );

    let sc = chain(&[(SelectorKind::Src, Combine::And)]);
    let policies: Vec<Policy> = (0..5u8)
        .map(|i| {
            let mut p = Policy::new(format!("p{i}"), ActionChain::new());
            p.select(
                0,
                Selector::Src(Prefix::new("10.0.0.0".parse().unwrap(), 8 + i).unwrap()),
            );
            p
        })
        .collect();
    // Five IPv4 shapes fit.
    assert_eq!(compile(sc.clone(), policies).unwrap().shape_count(), 5);
    let policies: Vec<Policy> = (0..9u8)
        .map(|i| {
            let mut p = Policy::new(format!("p{i}"), ActionChain::new());
            p.select(
                0,
                Selector::Src(Prefix::new("10.0.0.0".parse().unwrap(), 8 + i).unwrap()),
            );
            p
        })
        .collect();
    assert!(
        compile(sc, policies)
            .unwrap_err()
            .to_string()
            .contains("key shapes")
    );
}

#[test]
fn many_policies_of_one_shape_share_one_lookup() {
    let sc = chain(&[(SelectorKind::Subflow, Combine::And)]);
    let policies: Vec<Policy> = (0..10_000u32)
        .map(|i| {
            let mut p = Policy::new(format!("sf{i}"), actions(&[Action::Count]));
            let local = SocketAddr::new([10, 0, (i >> 8) as u8, i as u8].into(), 5000);
            p.select(
                0,
                Selector::Subflow {
                    local,
                    remote: "10.9.0.1:80".parse().unwrap(),
                },
            );
            p
        })
        .collect();
    let c = compile(sc, policies).unwrap();
    assert_eq!(
        (c.rule_count(), c.shape_count(), c.chain_count()),
        (10_000, 1, 1)
    );
}

#[test]
fn actor_parameters_are_range_checked_and_encoded() {
    let one = |a: Action| compile(SelectorChain::new(), vec![Policy::new("p", actions(&[a]))]);
    for (a, msg) in [
        (
            Action::SetBackup {
                backup: true,
                packets: 0,
            },
            "set_backup: 0 packets is out of range: expected 1 to 255",
        ),
        (
            Action::RateLimitRate { bits_per_second: 0 },
            "rate_limit: a rate of 0 bit/s is out of range",
        ),
        (
            Action::RateLimitRate {
                bits_per_second: limits::RATE_LIMIT_BPS_MAX + 1,
            },
            "rate_limit: a rate of 100000000001 bit/s is out of range",
        ),
    ] {
        let e = one(a).unwrap_err().to_string();
        assert!(e.contains(msg), "{e}");
    }
    let op = |a: Action| one(a).unwrap().config.chains[0].ops[0];
    let sb = op(Action::SetBackup {
        backup: true,
        packets: 7,
    });
    assert_eq!((sb.arg32, sb.arg64), (1 | 7 << 8, 0));
    let sb = op(Action::SetBackup {
        backup: false,
        packets: 255,
    });
    assert_eq!(sb.arg32, 255 << 8);
    let rl = op(Action::RateLimitRate {
        bits_per_second: 20_000_000,
    });
    assert_eq!((rl.arg32, rl.arg64), (1, 20_000_000));
    let rl = op(Action::RateLimit { window_bytes: 5000 });
    assert_eq!((rl.arg32, rl.arg64), (0, 5000));
}
