/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Writing a plugin operator: a TC or XDP program that a chain enters through
 * a constant tail-call slot, and that returns into the chain, which resumes
 * after it (docs/writing-operators.md).
 *
 * API:
 *   EMPTCP_PLUGIN_TC(name) { ... }   a plugin for TC hooks; the body sees
 *                                    `struct __sk_buff *skb` and
 *                                    `struct emptcp_pkt *pkt`
 *   EMPTCP_PLUGIN_XDP(name) { ... }  the same for XDP, with `struct xdp_md *ctx`
 *   return EMPTCP_PLUGIN_CONTINUE    the chain goes on with the next operator
 *   return EMPTCP_PLUGIN_STOP        the chain ends, the packet passes (how a
 *                                    plugin selector says "no match")
 *   return EMPTCP_PLUGIN_DROP        the chain ends, the packet is dropped
 *
 * `pkt` is the entry's parse of the packet (parse.h): offsets from the start
 * of the packet, addresses, ports, flags, MPTCP subtypes. Writing it changes
 * what later operators of the chain see; a plugin that resizes the packet
 * must keep its offsets right. Packet pointers come from the context and are
 * checked against data_end, as in any program.
 *
 * Parameters: a plugin's `const volatile` globals (.rodata) are set by the
 * loader before load (emptcp::plugin::PluginSpec::rodata).
 *
 * Example (a selector: the chain goes on only for packets with URG set):
 *
 *   EMPTCP_PLUGIN_TC(match_urg)
 *   {
 *           return pkt->tcp_flags & EMPTCP_TCP_URG ? EMPTCP_PLUGIN_CONTINUE
 *                                         : EMPTCP_PLUGIN_STOP;
 *   }
 */
#ifndef __EMPTCP_PLUGIN_H
#define __EMPTCP_PLUGIN_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "abi.h"
#include "parse.h"

/* Where a chain stands while one of its plugins runs. */
struct emptcp_plugin_state {
	struct emptcp_pkt pkt;
	__u32 generation;
	__u32 chain;
	__u32 op;       /* the plugin operator's index in the chain */
	__u32 hook;     /* enum emptcp_hook */
	__s32 verdict;  /* enum emptcp_plugin_verdict, written by the plugin */
	__u32 _pad;
};

/*
 * One state per CPU and kind of hook (XDP, TC): a packet's trip entry ->
 * plugin -> resume runs on one CPU without interruption by another packet of
 * the same kind (softirq, or BH disabled on TC egress). Shared by every
 * generation and plugin (the loader reuses one map).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct emptcp_plugin_state);
} emptcp_pstate SEC(".maps");

/* Slot 0: the resume program of the generation the plugin was loaded for. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} emptcp_resume SEC(".maps");

static __emptcp_inline struct emptcp_plugin_state *emptcp_plugin_state(enum emptcp_hook hook)
{
	__u32 key = hook == EMPTCP_HOOK_XDP ? 0 : 1;

	return bpf_map_lookup_elem(&emptcp_pstate, &key);
}

#define EMPTCP_PLUGIN_TC(name)                                                        \
	static __emptcp_inline int name##_body(struct __sk_buff *skb,                 \
					       struct emptcp_pkt *pkt);               \
	SEC("tc") int name(struct __sk_buff *skb)                                     \
	{                                                                             \
		struct emptcp_plugin_state *ps =                                      \
			emptcp_plugin_state(EMPTCP_HOOK_TC_INGRESS);                  \
		int verdict;                                                          \
		if (!ps)                                                              \
			return TC_ACT_UNSPEC;                                         \
		verdict = name##_body(skb, &ps->pkt);                                 \
		ps->verdict = verdict;                                                \
		bpf_tail_call(skb, &emptcp_resume, 0);                                \
		/* No resume program: end the chain here. */                          \
		return verdict == EMPTCP_PLUGIN_DROP ? TC_ACT_SHOT : TC_ACT_UNSPEC;   \
	}                                                                             \
	static __emptcp_inline int name##_body(struct __sk_buff *skb, struct emptcp_pkt *pkt)

#define EMPTCP_PLUGIN_XDP(name)                                                       \
	static __emptcp_inline int name##_body(struct xdp_md *ctx,                    \
					       struct emptcp_pkt *pkt);               \
	SEC("xdp") int name(struct xdp_md *ctx)                                       \
	{                                                                             \
		struct emptcp_plugin_state *ps = emptcp_plugin_state(EMPTCP_HOOK_XDP); \
		int verdict;                                                          \
		if (!ps)                                                              \
			return XDP_PASS;                                              \
		verdict = name##_body(ctx, &ps->pkt);                                 \
		ps->verdict = verdict;                                                \
		bpf_tail_call(ctx, &emptcp_resume, 0);                                \
		return verdict == EMPTCP_PLUGIN_DROP ? XDP_DROP : XDP_PASS;           \
	}                                                                             \
	static __emptcp_inline int name##_body(struct xdp_md *ctx, struct emptcp_pkt *pkt)

#endif /* __EMPTCP_PLUGIN_H */
