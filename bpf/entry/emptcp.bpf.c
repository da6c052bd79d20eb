// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * emptcp entry programs: XDP ingress, TC ingress and TC egress.
 *
 * Each parses the packet once, accounts it to its flow, and, when the
 * generation has rules, runs the action chain of the winning rule
 * (bpf/lib/engine.h, docs/engine.md). With no rules every packet passes
 * unchanged: the pass-through the demo attaches on a middle node.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>

#include <emptcp/abi.h>
#include <emptcp/parse.h>

#include "counters.h"
#include "engine.h"

/* Sized for a busy middle node; LRU so that a full table evicts the oldest
 * flows instead of failing updates (failures are still counted). */
#define EMPTCP_FLOWS_MAX 65536

/* Shared by every generation and attachment: a flow keeps its counters
 * across policy updates (its rule memo is tagged with the generation). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, EMPTCP_FLOWS_MAX);
	__type(key, struct emptcp_flow_key);
	__type(value, struct emptcp_flow_stats);
} emptcp_flows SEC(".maps");

/* Anchors ABI enums that no map or variable names in BTF, so that the
 * generated Rust types contain them (style-anchors 3.3). */
struct emptcp_abi_anchor {
	enum emptcp_abi abi;
	enum emptcp_hook hook;
	enum emptcp_entry_counter counter;
	enum emptcp_limits limits;
	enum emptcp_op_kind op;
	enum emptcp_pkt_type pkt_type;
	enum emptcp_op_reason reason;
	enum emptcp_plugin_verdict plugin;
	enum emptcp_seq_kind seq;
	enum emptcp_event_version event_version;
	enum emptcp_event_kind event_kind;
	struct emptcp_event event;
	struct emptcp_shape_stats shape_stats;
	struct emptcp_record record;
	struct emptcp_edit_scratch edit;
	enum emptcp_ct_flags ct;
	struct emptcp_ct_key ct_key;
	struct emptcp_subflow_ct ct_subflow;
	struct emptcp_conn_ct ct_conn;
	struct emptcp_token_ct ct_token;
	enum emptcp_addr_state addr_state;
	enum emptcp_add_subflow_outcome add_subflow_outcome;
	struct emptcp_addr_kept addr_kept;
};
struct emptcp_abi_anchor emptcp_abi_anchor __attribute__((unused));

/* A new flow's first value, from .rodata rather than the stack: the stack
 * of the entry and its calls must stay within 512 bytes together. */
static const struct emptcp_flow_stats emptcp_zero_flow;

static __emptcp_inline void account_flow(void *ctx, enum emptcp_hook hook, __u32 ifindex,
					 const struct emptcp_pkt *pkt)
{
	/* The whole packet: at TC the skb's length (its linear part may be
	 * shorter), at XDP the frame (the fields as numbers, not pointers). */
	__u64 wire_len = hook == EMPTCP_HOOK_XDP
				 ? ((struct xdp_md *)ctx)->data_end - ((struct xdp_md *)ctx)->data
				 : ((struct __sk_buff *)ctx)->len;
	struct emptcp_flow_key key;
	struct emptcp_flow_stats *st;
	__u64 payload = 0;

	emptcp_flow_key_of(&key, ifindex, hook, pkt);
	if (wire_len > pkt->payload_off)
		payload = wire_len - pkt->payload_off;
	st = bpf_map_lookup_elem(&emptcp_flows, &key);
	if (!st) {
		/* EEXIST from a racing CPU is fine: the lookup below finds it. */
		bpf_map_update_elem(&emptcp_flows, &key, &emptcp_zero_flow, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&emptcp_flows, &key);
		if (!st) {
			emptcp_count(hook, EMPTCP_CNT_FLOW_MAP_FULL);
			return;
		}
	}
	st->packets++;
	st->bytes += wire_len - pkt->l3_off;
	st->payload_bytes += payload;
}

static __emptcp_inline int entry(void *ctx, enum emptcp_hook hook, void *data, void *data_end)
{
	struct emptcp_memo_slot *memo = NULL;
	struct emptcp_pkt pkt;
	__u32 ifindex = 0;
	int parsed;

	parsed = emptcp_parse_headers(data, data_end, &pkt);
	if (parsed == EMPTCP_PARSE_TCP) {
		/* Read here, not before the parse: the interface index is a
		 * chain of loads (device, then index) that non-TCP packets do
		 * not need. */
		ifindex = __emptcp_ifindex(ctx, hook);
		memo = emptcp_memo_slot(ifindex, hook, &pkt);
		/* Never NULL (a masked index into an array), but the verifier
		 * must be told: a pointer that may be NULL would split every
		 * state after this in two (~80k more verified instructions). */
		if (!memo)
			return EMPTCP_VERDICT_PASS;
		/* Flows no rule selects pass on their headers (memo.h): the
		 * option walk is most of the rest of a packet's cost. */
		if (emptcp_memo_quick_pass(memo, data, data_end, ifindex, hook, &pkt)) {
			if (emptcp_cfg.account_flows)
				account_flow(ctx, hook, ifindex, &pkt);
			return EMPTCP_VERDICT_PASS;
		}
		parsed = emptcp_parse_options(data, data_end, &pkt);
	}
	switch (parsed) {
	case EMPTCP_PARSE_TCP:
		break;
	case EMPTCP_PARSE_NOT_TCP:
		emptcp_count(hook, EMPTCP_CNT_NOT_TCP);
		return EMPTCP_VERDICT_PASS;
	case EMPTCP_PARSE_FRAGMENT:
		emptcp_count(hook, EMPTCP_CNT_FRAGMENT);
		return EMPTCP_VERDICT_PASS;
	default:
		emptcp_count(hook, EMPTCP_CNT_MALFORMED);
		return EMPTCP_VERDICT_PASS;
	}
	emptcp_count(hook, EMPTCP_CNT_TCP);
	if (pkt.mptcp_subtypes)
		emptcp_count(hook, EMPTCP_CNT_MPTCP);
	/* Constants: a data plane that does not account flows, or a generation
	 * without rules, verifies none of that code. */
	if (emptcp_cfg.account_flows)
		account_flow(ctx, hook, ifindex, &pkt);
	if (emptcp_ct_interesting(data, data_end, &pkt)) {
		if (hook == EMPTCP_HOOK_XDP)
			emptcp_ct_learn_xdp(ctx, &pkt);
		else
			emptcp_ct_learn_tc(ctx, &pkt, hook);
	}
	if (emptcp_cfg.n_shapes == 0) {
		/* No rules: the engine would find no candidate either. */
		emptcp_count(hook, EMPTCP_CNT_NO_POLICY);
		emptcp_memo_fill_none(memo, data, data_end, ifindex, hook, &pkt);
		return EMPTCP_VERDICT_PASS;
	}
	return emptcp_engine(ctx, hook, data, data_end, &pkt, ifindex, NULL, memo);
}

/* The XDP return code of an engine verdict. */
static __emptcp_inline int xdp_verdict(int verdict)
{
	switch (verdict) {
	case EMPTCP_VERDICT_DROP:
		return XDP_DROP;
	case EMPTCP_VERDICT_REDIRECT:
		return XDP_REDIRECT;
	default:
		return XDP_PASS;
	}
}

SEC("xdp")
int emptcp_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	return xdp_verdict(
		entry(ctx, EMPTCP_HOOK_XDP, data, data_end));
}

/* TC programs return TC_ACT_UNSPEC to pass: on a tcx hook that hands the
 * packet to the next program, as if emptcp were not there. The tc/ingress
 * and tc/egress sections give the programs the tcx attach types; the same
 * programs also attach through clsact. */
/* Headers the parser may need: Ethernet, two VLAN tags, IPv6 with a few
 * extension headers, TCP with 40 bytes of options. */
#define EMPTCP_PULL_LEN 256

/* The TC return code of an engine verdict. */
static __emptcp_inline int tc_verdict(int verdict)
{
	switch (verdict) {
	case EMPTCP_VERDICT_DROP:
		return TC_ACT_SHOT;
	case EMPTCP_VERDICT_REDIRECT:
		return TC_ACT_REDIRECT;
	default:
		return TC_ACT_UNSPEC;
	}
}

/*
 * Whether the linear part of an skb already holds all the parser reads of a
 * TCP packet without VLAN tags or IPv6 extension headers: Ethernet, IP and
 * the TCP header with its options; or shows an IPv4 packet that is not TCP.
 * The usual skb with data in fragments (a GSO segment from a TCP socket, a
 * GRO aggregate) has its headers linear, and then needs no pull.
 */
static __emptcp_inline int tc_headers_linear(void *data, void *data_end)
{
	__u8 *l3 = data + sizeof(struct ethhdr), *th;
	__be16 proto;
	__u32 l4;

	if ((void *)(l3 + sizeof(struct ipv6hdr)) > data_end)
		return 0;
	proto = emptcp_eth_proto(data);
	if (proto == bpf_htons(ETH_P_IP)) {
		if (l3[9] != IPPROTO_TCP)
			return 1;
		l4 = sizeof(struct ethhdr) + (l3[0] & 0xf) * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6) && l3[6] == IPPROTO_TCP) {
		l4 = sizeof(struct ethhdr) + sizeof(struct ipv6hdr);
	} else {
		return 0;
	}
	th = data + l4;
	if ((void *)(th + sizeof(struct tcphdr)) > data_end)
		return 0;
	return (void *)(th + (th[12] >> 4) * 4) <= data_end;
}

static __emptcp_inline int tc_entry(struct __sk_buff *skb, enum emptcp_hook hook)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	__u32 linear = data_end - data;

	/* Direct packet access sees only the linear part of an skb; a driver
	 * or a tunnel may leave headers in fragments. Pulling them in costs a
	 * helper call, and on a cloned skb (every segment a TCP socket sends
	 * is one) a new head and a copy: only when the headers are not all
	 * linear already. A failed pull leaves the packet as it was: the
	 * parser then counts it as malformed and passes it. */
	if (linear < skb->len) {
		emptcp_count(hook, EMPTCP_CNT_PAGED);
		if (linear < EMPTCP_PULL_LEN && !tc_headers_linear(data, data_end)) {
			bpf_skb_pull_data(skb, skb->len < EMPTCP_PULL_LEN ? skb->len
									  : EMPTCP_PULL_LEN);
			emptcp_count(hook, EMPTCP_CNT_PULLED);
			data = (void *)(long)skb->data;
			data_end = (void *)(long)skb->data_end;
		}
	}
	return tc_verdict(entry(skb, hook, data, data_end));
}

SEC("tc/ingress")
int emptcp_tc_in(struct __sk_buff *skb)
{
	return tc_entry(skb, EMPTCP_HOOK_TC_INGRESS);
}

SEC("tc/egress")
int emptcp_tc_eg(struct __sk_buff *skb)
{
	return tc_entry(skb, EMPTCP_HOOK_TC_EGRESS);
}

/* Where a chain resumes after a plugin (bpf/include/emptcp/plugin.h); each
 * generation puts its own in its plugins' emptcp_resume slot. One per hook:
 * a resumed chain may enter the hook's next plugin slot, and a program array
 * takes programs of one attach type only. */
SEC("tc/ingress")
int emptcp_tci_res(struct __sk_buff *skb)
{
	return tc_verdict(emptcp_resume_chain(skb, EMPTCP_HOOK_TC_INGRESS));
}

SEC("tc/egress")
int emptcp_tce_res(struct __sk_buff *skb)
{
	return tc_verdict(emptcp_resume_chain(skb, EMPTCP_HOOK_TC_EGRESS));
}

SEC("xdp")
int emptcp_xdp_res(struct xdp_md *ctx)
{
	return xdp_verdict(emptcp_resume_chain(ctx, EMPTCP_HOOK_XDP));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
