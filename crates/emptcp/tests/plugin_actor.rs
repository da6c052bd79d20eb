//! An actor plugin in the middle of a chain: `bpf/plugins/strip_add_addr.bpf.c` removes MPTCP
//! ADD_ADDR options through the helper library (tcpopt.h). Chain: count, plugin(0), count; the
//! output is compared byte for byte with the packet built directly with emptcp-wire (without
//! the ADD_ADDR, or with NOPs in its place), and its checksums are verified by emptcp-wire.

mod common;

use emptcp::plugin::PluginSpec;
use emptcp::policy::Action;
use emptcp::{Dataplane, Hook};
use emptcp_testbed::root_or_skip;
use emptcp_wire::tcp_opt::TcpOption;

use common::packets::*;

#[test]
fn strip_add_addr_in_the_middle_of_a_chain() {
    if !root_or_skip() {
        return;
    }
    let mut dp = Dataplane::load().expect("load entry programs");
    let object = emptcp::testing::object_bytes("plugins/strip_add_addr").expect("plugin built");
    for hook in [Hook::TcIngress, Hook::Xdp] {
        let program = if hook == Hook::Xdp {
            "strip_add_addr_xdp"
        } else {
            "strip_add_addr_tc"
        };
        // .rodata of the plugin: strip_add_addr_cfg { nop }.
        for nop in [false, true] {
            let plugin =
                PluginSpec::new("strip_add_addr", object, program).rodata(vec![u8::from(nop)]);
            let compiled = counted_on_port_80(hook, Action::Plugin(0));
            let g = dp
                .load_generation(&compiled, &[&plugin])
                .expect("generation with plugin");
            let mut runs = 0u64;
            for (base_name, base) in bases() {
                for (before, after) in layouts() {
                    let fallback = hook != Hook::Xdp && base_name == "vlan ipv4 payload";
                    let (input, want) = stripped_pair(
                        &base,
                        &before,
                        &[add_addr(1, None)],
                        &after,
                        nop || fallback,
                    );
                    let what = format!(
                        "{hook} nop={nop} {base_name}, ADD_ADDR at {}",
                        before.iter().map(len_of).sum::<usize>()
                    );
                    let r = g.test_run(&input).unwrap();
                    runs += 1;
                    assert_eq!(
                        r.verdict,
                        pass_verdict(hook == Hook::Xdp),
                        "{what}: verdict"
                    );
                    check_same(&what, &r.packet, &want);
                }
            }
            // Without ADD_ADDR (and with a long one, HMAC included): unchanged / removed.
            for (base_name, base) in bases() {
                let input = base.clone().options(vec![prio(), dss()]).build().unwrap();
                let r = g.test_run(&input).unwrap();
                runs += 1;
                assert_eq!(
                    r.packet, input,
                    "{hook} {base_name}: no ADD_ADDR, unchanged"
                );
                let long = add_addr(2, Some(0x1122_3344_5566_7788));
                let input = base
                    .clone()
                    .options(vec![TcpOption::Mss(1460), long.clone(), dss()])
                    .build()
                    .unwrap();
                let mut kept = vec![TcpOption::Mss(1460)];
                let fallback = hook != Hook::Xdp && base_name == "vlan ipv4 payload";
                if nop || fallback {
                    kept.extend(std::iter::repeat_n(TcpOption::Nop, len_of(&long)));
                }
                kept.push(dss());
                let want = base.clone().options(kept).build().unwrap();
                let r = g.test_run(&input).unwrap();
                runs += 1;
                check_same(
                    &format!("{hook} nop={nop} {base_name}: HMAC ADD_ADDR"),
                    &r.packet,
                    &want,
                );
            }
            let stats = g.op_stats(0).unwrap();
            let hits: Vec<u64> = stats.iter().map(|s| s.hits).collect();
            assert_eq!(
                hits,
                vec![runs; 3],
                "{hook} nop={nop}: count, plugin, count"
            );
        }
    }
}
