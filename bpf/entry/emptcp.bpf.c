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

/* Headers the parser may need: Ethernet, two VLAN tags, IPv6 with a few
 * extension headers, TCP with 40 bytes of options. */
#define EMPTCP_PULL_LEN 256

/*
 * After the parser found the packet cut off at data_end (EMPTCP_PARSE_TRUNCATED),
 * at TC: direct packet access sees only the linear part of an skb, and a
 * driver or a tunnel may leave headers in fragments. Pulls up to
 * EMPTCP_PULL_LEN bytes into the linear part and parses again, the headers
 * or (`options`) the option list of the headers in *pkt: a pull moves no
 * byte of the packet, only where it is stored, so their offsets hold.
 * EMPTCP_PARSE_TRUNCATED again when the linear part already held them (the
 * packet itself is cut short, or its headers run past EMPTCP_PULL_LEN) or
 * the pull failed (the packet is as it was).
 *
 * Asking the parser, not a check of its own, keeps the pull to the skbs
 * that need it whatever their layout (VLAN tags, IPv6 extension headers): a
 * TCP socket's segments keep every header linear, and a pull of such a
 * cloned skb would cost a new head and a copy.
 *
 * Out of line, for the verifier (kernel 6.18, clang 14): with the parse
 * run again inline, by a goto back to the first, each TC entry verified
 * 462k instructions (116k before); with a second inlined call of each
 * parser, 90k, but the entry's stack frame outgrew what add_subflow's call
 * chain leaves it (528 of 512 bytes). Out of line: 89k, the frame as it was.
 */
static __attribute__((noinline)) int tc_pull_parse(struct __sk_buff *skb, enum emptcp_hook hook,
						   struct emptcp_pkt *pkt, int options)
{
	__u32 len = skb->len, want = len < EMPTCP_PULL_LEN ? len : EMPTCP_PULL_LEN;
	void *data, *data_end;

	if (skb->data_end - skb->data >= want || bpf_skb_pull_data(skb, want))
		return EMPTCP_PARSE_TRUNCATED;
	emptcp_count(hook, EMPTCP_CNT_PULLED);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	if (options)
		return emptcp_parse_options(data, data_end, pkt);
	return emptcp_parse_headers(data, data_end, pkt);
}

/* The packet pointers after tc_pull_parse: a pull may move the skb's data,
 * and the verifier forgets every packet pointer across it. */
#define tc_reload(ctx, data, data_end)                                          \
	do {                                                                    \
		data = (void *)(long)((struct __sk_buff *)(ctx))->data;         \
		data_end = (void *)(long)((struct __sk_buff *)(ctx))->data_end; \
	} while (0)

static __emptcp_inline int entry(void *ctx, enum emptcp_hook hook, void *data, void *data_end)
{
	struct emptcp_memo_slot *memo = NULL;
	struct emptcp_pkt pkt;
	__u32 ifindex = 0;
	int parsed;

	parsed = emptcp_parse_headers(data, data_end, &pkt);
	if (hook != EMPTCP_HOOK_XDP && parsed == EMPTCP_PARSE_TRUNCATED) {
		parsed = tc_pull_parse(ctx, hook, &pkt, 0);
		tc_reload(ctx, data, data_end);
	}
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
		 * option walk is most of the rest of a packet's cost. A packet
		 * whose option words are not in the linear part takes the full
		 * path (the quick pass cannot read them). */
		if (emptcp_memo_quick_pass(memo, data, data_end, ifindex, hook, &pkt)) {
			if (emptcp_cfg.account_flows)
				account_flow(ctx, hook, ifindex, &pkt);
			return EMPTCP_VERDICT_PASS;
		}
		parsed = emptcp_parse_options(data, data_end, &pkt);
		if (hook != EMPTCP_HOOK_XDP && parsed == EMPTCP_PARSE_TRUNCATED) {
			parsed = tc_pull_parse(ctx, hook, &pkt, 1);
			tc_reload(ctx, data, data_end);
		}
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
		/* Malformed, or truncated with nothing more to pull. */
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

static __emptcp_inline int tc_entry(struct __sk_buff *skb, enum emptcp_hook hook)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;

	/* Whether its headers are linear too is the parser's to say (tc_pull_parse). */
	if (data_end - data < skb->len)
		emptcp_count(hook, EMPTCP_CNT_PAGED);
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
