/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The policy engine of the entry programs (docs/engine.md).
 *
 * One generation of one attachment is one loaded program: its .rodata
 * (emptcp_cfg) holds the shapes of the rule keys and the action chains, which
 * the verifier sees as constants, so only what the generation uses is
 * verified and kept. Rules (emptcp_rules, emptcp_rule_info) are maps of that
 * program instance: a new generation brings new maps, and replacing the
 * attached program with one bpf_link_update publishes all of it at once.
 *
 * A packet's policy: the rules whose flow-invariant key matches (one hash
 * lookup per shape, remembered per flow and generation) and whose packet-type
 * test passes; the lowest rule id wins (the control plane numbers rules by
 * priority, then file order). Exactly one action chain runs.
 */
#ifndef __EMPTCP_LIB_ENGINE_H
#define __EMPTCP_LIB_ENGINE_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include <emptcp/abi.h>
#include <emptcp/parse.h>

#include "config.h"
#include "counters.h"
#include "conntrack.h"
#include "act_rate_limit.h"
#include "act_events.h"
#include "act_record.h"
#include "act_edit.h"
#include "act_redirect.h"
#include "memo.h"
#include <emptcp/plugin.h>

/* Anchors the actors' argument enums in BTF for the generated Rust types
 * (see emptcp_abi_anchor in the entry). */
struct emptcp_actor_arg_anchor {
	enum emptcp_set_backup_arg set_backup;
	enum emptcp_rate_limit_arg rate_limit;
};
struct emptcp_actor_arg_anchor emptcp_actor_arg_anchor __attribute__((unused));

/* Sized by the control plane before load; no prealloc, so a generation
 * with few rules costs little memory. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct emptcp_rule_key);
	__type(value, struct emptcp_rule_set);
} emptcp_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct emptcp_rule);
} emptcp_rule_info SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} emptcp_rule_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMPTCP_CHAINS_MAX * EMPTCP_CHAIN_OPS_MAX);
	__type(key, __u32);
	__type(value, struct emptcp_op_stats);
} emptcp_op_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMPTCP_SHAPES_MAX);
	__type(key, __u32);
	__type(value, struct emptcp_shape_stats);
} emptcp_shape_st SEC(".maps");

/* Plugin programs of this generation, by slot (bpf/include/emptcp/plugin.h);
 * maps of the generation's own program instance, filled by the control plane
 * before the generation is published. One map per hook: the kernel gives a
 * program array the type and expected attach type of the first program that
 * uses it, and refuses programs that differ (EINVAL after a successful
 * verification, with no message; kernel 6.18). The loader gives plugins and
 * the resume program the attach type of the hook. */
#define EMPTCP_PLUGIN_ARRAY(name)                          \
	struct {                                           \
		__uint(type, BPF_MAP_TYPE_PROG_ARRAY);     \
		__uint(max_entries, EMPTCP_PLUGIN_SLOTS);  \
		__type(key, __u32);                        \
		__type(value, __u32);                      \
	} name SEC(".maps")
EMPTCP_PLUGIN_ARRAY(emptcp_plug_xdp);
EMPTCP_PLUGIN_ARRAY(emptcp_plug_tci);
EMPTCP_PLUGIN_ARRAY(emptcp_plug_tce);

/* Saves where the chain stands before entering a plugin; false when there is
 * no state slot (then the plugin is skipped). */
static __emptcp_inline int emptcp_plugin_save(enum emptcp_hook hook, const struct emptcp_pkt *pkt,
					      __u32 chain, __u32 op)
{
	struct emptcp_plugin_state *ps = emptcp_plugin_state(hook);

	if (!ps)
		return 0;
	__builtin_memcpy(&ps->pkt, pkt, sizeof(ps->pkt));
	ps->generation = emptcp_cfg.generation;
	ps->chain = chain;
	ps->op = op;
	ps->hook = hook;
	ps->verdict = EMPTCP_PLUGIN_CONTINUE;
	return 1;
}

/* Constant slots: the JIT patches each into a direct jump (Cilium's
 * tail_call_static), no indirect branch per plugin. */
#define __EMPTCP_TAIL_CALL_SLOT(ctx, map, slot)                 \
	switch (slot) {                                         \
	case 0: bpf_tail_call(ctx, &map, 0); break;             \
	case 1: bpf_tail_call(ctx, &map, 1); break;             \
	case 2: bpf_tail_call(ctx, &map, 2); break;             \
	case 3: bpf_tail_call(ctx, &map, 3); break;             \
	}

static __emptcp_inline void emptcp_tail_call_plugin(void *ctx, enum emptcp_hook hook, __u32 slot)
{
	if (hook == EMPTCP_HOOK_XDP) {
		__EMPTCP_TAIL_CALL_SLOT(ctx, emptcp_plug_xdp, slot);
	} else if (hook == EMPTCP_HOOK_TC_INGRESS) {
		__EMPTCP_TAIL_CALL_SLOT(ctx, emptcp_plug_tci, slot);
	} else {
		__EMPTCP_TAIL_CALL_SLOT(ctx, emptcp_plug_tce, slot);
	}
}
EMPTCP_BUILD_BUG_ON(EMPTCP_PLUGIN_SLOTS != 4);

/* Verdict of an action chain. */
enum emptcp_verdict {
	EMPTCP_VERDICT_PASS = 0,
	EMPTCP_VERDICT_DROP,
	EMPTCP_VERDICT_REDIRECT,  /* bpf_redirect_neigh (TC) or bpf_redirect (XDP) set where it goes */
};

static __emptcp_inline __u32 emptcp_pkt_types(const struct emptcp_pkt *pkt)
{
	__u32 types = pkt->mptcp_subtypes & 0x1ff;

	types |= (__u32)pkt->tcp_flags << 16;
	if ((__u32)pkt->l3_off + pkt->l3_len > pkt->payload_off)
		types |= EMPTCP_PT_PAYLOAD;
	return types;
}

/* Network-order mask of the first `plen` bits of 32-bit word `w` of an
 * address. */
static __emptcp_inline __u32 __emptcp_prefix_word(__u32 plen, __u32 w)
{
	if (plen >= 32 * (w + 1))
		return 0xffffffff;
	if (plen <= 32 * w)
		return 0;
	return bpf_htonl(0xffffffff << (32 - (plen - 32 * w)));
}

static __emptcp_inline void __emptcp_mask_addr(__u8 *out, const __u8 *in, __u32 plen)
{
	__u32 *o = (__u32 *)out;
	const __u32 *i = (const __u32 *)in;
	int w;

#pragma unroll
	for (w = 0; w < 4; w++)
		o[w] = i[w] & __emptcp_prefix_word(plen, w);
}

/* Every candidate a packet can have: one rule set per shape. */
#define EMPTCP_CANDS_MAX (EMPTCP_SHAPES_MAX * EMPTCP_RULE_SLOTS)

/* Where the packet stands in its subflow's and its connection's byte
 * streams (sequence selectors). */
struct emptcp_seq_pos {
	__u64 subflow;  /* valid when has_subflow */
	__u64 data;     /* valid when has_data */
	__u8 has_subflow;
	__u8 has_data;
};

/*
 * What the engine works on while it classifies a packet, per CPU and hook:
 * a per-CPU array lookup is inlined (~1 ns), and it keeps 160 bytes off the
 * stack (the entry and its calls share 512 bytes). Being map memory, it is
 * also untracked by the verifier: values kept here (how many candidates,
 * whether the stream positions are known) do not split verifier states the
 * way constants on the stack would, so the chain dispatch after them is
 * verified once, not once per combination.
 */
struct emptcp_scratch {
	__u32 cands[EMPTCP_CANDS_MAX];
	__u32 n;
	__u32 pad;
	struct emptcp_seq_pos pos;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMPTCP_HOOK__MAX);
	__type(key, __u32);
	__type(value, struct emptcp_scratch);
} emptcp_cands SEC(".maps");
EMPTCP_BUILD_BUG_ON(EMPTCP_CANDS_MAX & (EMPTCP_CANDS_MAX - 1));
EMPTCP_BUILD_BUG_ON(EMPTCP_MEMO_MAX > EMPTCP_CANDS_MAX);

/*
 * `n`, with the verifier's knowledge of it dropped: stored and loaded back
 * through the scratch map (volatile, so that clang keeps both). Paths that
 * counted different numbers of candidates then meet as one verifier state;
 * without this, every later loop and the whole chain dispatch are verified
 * once per count.
 */
static __emptcp_inline __u32 __emptcp_forget(struct emptcp_scratch *scratch, __u32 n)
{
	*(volatile __u32 *)&scratch->n = n;
	return *(volatile __u32 *)&scratch->n;
}

/*
 * Collects the ids of rules whose flow-invariant key matches into
 * cands[EMPTCP_CANDS_MAX] and returns how many there are.
 */
static __emptcp_inline __u32 emptcp_classify(const struct emptcp_pkt *pkt, int ingress,
					     const struct emptcp_subflow_ct *ct, __u32 *cands)
{
	const __u8 *local = ingress ? pkt->daddr : pkt->saddr;
	const __u8 *remote = ingress ? pkt->saddr : pkt->daddr;
	__be16 lport = ingress ? pkt->dport : pkt->sport;
	__be16 rport = ingress ? pkt->sport : pkt->dport;
	__u32 n = 0, s, j;

#pragma unroll
	for (s = 0; s < EMPTCP_SHAPES_MAX; s++) {
		struct emptcp_rule_key key = {};
		struct emptcp_shape_stats *shape_st;
		struct emptcp_rule_set *set;
		__u32 shape_idx;

		if (s >= emptcp_cfg.n_shapes)
			break;
		if (emptcp_cfg.shapes[s].family != pkt->family)
			continue;
		key.shape = s;
		key.family = pkt->family;
		if (emptcp_cfg.shapes[s].local_port)
			key.local_port = lport;
		if (emptcp_cfg.shapes[s].remote_port)
			key.remote_port = rport;
		/* Unknown token 0 and index 0xff match no rule. */
		if (emptcp_cfg.shapes[s].token)
			key.token = ct ? ct->token : 0;
		if (emptcp_cfg.shapes[s].index)
			key.index = ct ? ct->index : 0xff;
		__emptcp_mask_addr(key.local, local, emptcp_cfg.shapes[s].local_plen);
		__emptcp_mask_addr(key.remote, remote, emptcp_cfg.shapes[s].remote_plen);
		set = bpf_map_lookup_elem(&emptcp_rules, &key);
		/* A policy may name the connection by either side's token. */
		if (!set && emptcp_cfg.shapes[s].token && ct && ct->token_initiator) {
			key.token = ct->token_initiator;
			set = bpf_map_lookup_elem(&emptcp_rules, &key);
		}
		/* A copy: taking the loop counter's address stops clang 14
		 * from unrolling the loop. */
		shape_idx = s;
		shape_st = bpf_map_lookup_elem(&emptcp_shape_st, &shape_idx);
		if (shape_st) {
			shape_st->lookups++;
			if (set)
				shape_st->hits++;
		}
		if (!set)
			continue;
#pragma unroll
		for (j = 0; j < EMPTCP_RULE_SLOTS; j++) {
			if (j >= set->n)
				break;
			cands[n & (EMPTCP_CANDS_MAX - 1)] = set->ids[j];
			n++;
		}
	}
	return n;
}

static __emptcp_inline int __emptcp_seq_ok(const struct emptcp_rule *r,
					   const struct emptcp_seq_pos *pos)
{
	switch (r->seq_kind) {
	case EMPTCP_SEQ_SUBFLOW:
		return pos->has_subflow && pos->subflow >= r->seq_lo && pos->subflow < r->seq_hi;
	case EMPTCP_SEQ_DATA:
		return pos->has_data && pos->data >= r->seq_lo && pos->data < r->seq_hi;
	default:
		return 1;
	}
}

/* The winning rule among candidates for this packet: the lowest id whose
 * packet-type and sequence tests pass. Returns its rule or NULL. */
static __emptcp_inline const struct emptcp_rule *
emptcp_select(const __u32 *cands, __u32 n, __u32 types, const struct emptcp_seq_pos *pos,
	      __u32 *winner)
{
	const struct emptcp_rule *best = NULL;
	__u32 k, best_id = 0xffffffff;

	for (k = 0; k < EMPTCP_CANDS_MAX; k++) {
		const struct emptcp_rule *r;
		__u32 id;

		if (k >= n)
			break;
		id = cands[k];
		r = bpf_map_lookup_elem(&emptcp_rule_info, &id);
		if (!r || id >= best_id)
			continue;
		if ((types & r->type_require) != r->type_require || (types & r->type_forbid))
			continue;
		if (!__emptcp_seq_ok(r, pos))
			continue;
		best = r;
		best_id = id;
	}
	*winner = best_id;
	return best;
}

/*
 * The packet's subflow entry (`ct` when the caller has it, else looked up)
 * and where the packet stands in its streams (`pos`). Not inlined, to keep
 * its key and option copies out of the entry's stack frame (the entry and
 * its calls share 512 bytes); only generations with connection or sequence
 * selectors call it.
 */
static __attribute__((noinline)) struct emptcp_subflow_ct *
emptcp_ct_position(void *data, void *data_end, const struct emptcp_pkt *pkt,
		   struct emptcp_subflow_ct *ct, struct emptcp_seq_pos *pos)
{
	struct emptcp_mptcp_dss dss;
	struct emptcp_ct_key key;
	int sender_lo;

	pos->has_subflow = 0;
	pos->has_data = 0;
	sender_lo = emptcp_ct_key_of(pkt, &key);
	if (!ct)
		ct = bpf_map_lookup_elem(&emptcp_ct_sf, &key);
	if (!ct)
		return NULL;
	/* Byte 0 of the stream is the one after the SYN. */
	pos->subflow = (__u32)(pkt->seq - (sender_lo ? ct->isn_lo : ct->isn_hi) - 1);
	pos->has_subflow = 1;
	if (!(ct->flags & EMPTCP_CT_KNOWN) || !(pkt->mptcp_subtypes & (1u << EMPTCP_MPTCP_DSS)))
		return ct;
	if (emptcp_mptcp_read_dss(data, data_end, pkt->off_dss, &dss) || !dss.dsn_len)
		return ct;
	/* The data stream starts at IDSN + 1 (RFC 8684 section 3.3.1); a
	 * 4-byte DSN is the low half, so is its offset. */
	pos->data = dss.dsn - (sender_lo ? ct->idsn_lo : ct->idsn_hi) - 1;
	if (dss.dsn_len == 4)
		pos->data = (__u32)pos->data;
	pos->has_data = 1;
	return ct;
}

/* The interface a packet came in on (XDP, TC ingress) or goes out of (TC
 * egress). `hook` is a constant at each call: see emptcp_act_event. */
static __emptcp_inline __u32 __emptcp_ifindex(void *ctx, enum emptcp_hook hook)
{
	if (hook == EMPTCP_HOOK_XDP)
		return ((struct xdp_md *)ctx)->ingress_ifindex;
	return ((struct __sk_buff *)ctx)->ifindex;
}

/* The add_subflow operator (arm; act_add_subflow.h). */
static __emptcp_inline int emptcp_act_add_subflow(void *ctx, enum emptcp_hook hook,
						  const struct emptcp_pkt *pkt)
{
	return __emptcp_add_subflow_arm(pkt, hook, __emptcp_ifindex(ctx, hook));
}

static __emptcp_inline struct emptcp_op_stats *__emptcp_op_stats(__u32 chain, __u32 op)
{
	__u32 idx = chain * EMPTCP_CHAIN_OPS_MAX + op;

	return bpf_map_lookup_elem(&emptcp_op_stats, &idx);
}

/*
 * Runs operators `start`.. of action chain `c` (a constant: each chain is its
 * own unrolled copy, so every operator kind below is a constant the verifier
 * resolves, and operators the generation does not use are not verified).
 *
 * A plugin operator saves where the chain stands (emptcp_plugin_state) and
 * tail-calls the plugin's constant slot; the plugin returns into the chain
 * through the generation's resume program, which calls this again with
 * `start` after the plugin. Tail calls, not function replacement: kernels
 * with lockdown refuse trampoline programs (freplace, fentry) with EPERM, as
 * this project's VM does (docs/engine.md).
 */
static __emptcp_inline int emptcp_run_ops(void *ctx, enum emptcp_hook hook,
					  enum emptcp_hook count_hook, __u32 c, __u32 start,
					  const struct emptcp_pkt *pkt)
{
	__u32 i;

#pragma unroll
	for (i = 0; i < EMPTCP_CHAIN_OPS_MAX; i++) {
		struct emptcp_op_stats *st;
		__u32 kind;

		if (i >= emptcp_cfg.chains[c].len)
			break;
		if (i < start)
			continue;
		kind = emptcp_cfg.chains[c].ops[i].kind;
		st = __emptcp_op_stats(c, i);
		if (st)
			st->hits++;
		switch (kind) {
		case EMPTCP_OP_COUNT:
			break;
		case EMPTCP_OP_SET_MARK:
			if (hook == EMPTCP_HOOK_XDP) {
				if (st)
					st->reasons[EMPTCP_REASON_WRONG_HOOK]++;
				break;
			}
			((struct __sk_buff *)ctx)->mark = emptcp_cfg.chains[c].ops[i].arg32;
			break;
		case EMPTCP_OP_DROP:
			return EMPTCP_VERDICT_DROP;
		case EMPTCP_OP_RATE_LIMIT: {
			int skip = emptcp_act_rate_limit(ctx, hook, pkt,
							 emptcp_cfg.chains[c].ops[i].arg32,
							 emptcp_cfg.chains[c].ops[i].arg64);

			if (skip > 0 && skip <= EMPTCP_OP_REASONS && st)
				st->reasons[skip - 1]++;
			break;
		}
		case EMPTCP_OP_REDIRECT:
			if (hook == EMPTCP_HOOK_XDP) {
				if (__emptcp_xdp_redirect(ctx, pkt, emptcp_cfg.chains[c].ops[i].arg32) ==
				    XDP_REDIRECT)
					return EMPTCP_VERDICT_REDIRECT;
				if (st)
					st->reasons[EMPTCP_REASON_REDIRECT_FAILED]++;
				break;
			}
			/* The neighbour of the packet's destination on the
			 * target link gives the MAC addresses (no FIB lookup:
			 * the policy chose the link). */
			if (bpf_redirect_neigh(emptcp_cfg.chains[c].ops[i].arg32, NULL, 0, 0) ==
			    TC_ACT_REDIRECT)
				return EMPTCP_VERDICT_REDIRECT;
			if (st)
				st->reasons[EMPTCP_REASON_REDIRECT_FAILED]++;
			break;
		case EMPTCP_OP_BLK_SUBFLOW: {
			int skip;

			/* A join's SYN refused: dropped, never stripped. */
			if (emptcp_cfg.chains[c].ops[i].arg32 && emptcp_pkt_is_syn(pkt) &&
			    (pkt->mptcp_subtypes & (1u << EMPTCP_MPTCP_MP_JOIN)))
				return EMPTCP_VERDICT_DROP;
			skip = emptcp_act_edit(ctx, hook, pkt, EMPTCP_OP_BLK_SUBFLOW, 0);
			if (skip > 0 && skip <= EMPTCP_OP_REASONS && st)
				st->reasons[skip - 1]++;
			break;
		}
		case EMPTCP_OP_SET_BACKUP: {
			int skip = emptcp_act_edit(ctx, hook, pkt, EMPTCP_OP_SET_BACKUP,
						   emptcp_cfg.chains[c].ops[i].arg32);

			if (skip > 0 && skip <= EMPTCP_OP_REASONS && st)
				st->reasons[skip - 1]++;
			break;
		}
		case EMPTCP_OP_ADD_SUBFLOW: {
			int skip = emptcp_act_add_subflow(ctx, hook, pkt);

			if (skip > 0 && skip <= EMPTCP_OP_REASONS && st)
				st->reasons[skip - 1]++;
			break;
		}
		case EMPTCP_OP_RECORD: {
			int skip = emptcp_act_record(ctx, hook, pkt);

			if (skip > 0 && skip <= EMPTCP_OP_REASONS && st)
				st->reasons[skip - 1]++;
			break;
		}
		case EMPTCP_OP_GET_CONNECT:
		case EMPTCP_OP_GET_SUBFLOW:
			emptcp_act_event(ctx, hook, pkt, kind);
			break;
		case EMPTCP_OP_PLUGIN:
			if (emptcp_plugin_save(count_hook, pkt, c, i))
				emptcp_tail_call_plugin(ctx, hook, emptcp_cfg.chains[c].ops[i].arg32);
			/* Still here: the slot is empty (or the state could not
			 * be saved). The chain goes on without the plugin. */
			if (st)
				st->reasons[EMPTCP_REASON_PLUGIN_MISSING]++;
			emptcp_count(count_hook, EMPTCP_CNT_MISSING_PLUGIN);
			break;
		default:
			break;
		}
	}
	return EMPTCP_VERDICT_PASS;
}

/*
 * After a chain let the packet pass: add_subflow's carrier step, in
 * generations that have the operator (a constant), counted on the first
 * one's counters. Any packet of the generation's attachment may carry, not
 * only those the add_subflow policy picks: the packet that arms and the one
 * that carries travel opposite ways as a rule (data one way, the ADD_ADDR
 * on the other's ACKs).
 */
static __emptcp_inline void emptcp_after_chain(void *ctx, enum emptcp_hook hook,
					       const struct emptcp_pkt *pkt, int verdict)
{
	__u32 idx = emptcp_cfg.add_subflow_op - 1;
	struct emptcp_op_stats *st;
	int skip;

	if (!emptcp_cfg.add_subflow_op || verdict != EMPTCP_VERDICT_PASS)
		return;
	skip = emptcp_act_edit(ctx, hook, pkt, EMPTCP_OP_ADD_SUBFLOW, __emptcp_ifindex(ctx, hook));
	if (skip <= 0 || skip > EMPTCP_OP_REASONS)
		return;
	st = bpf_map_lookup_elem(&emptcp_op_stats, &idx);
	if (st)
		st->reasons[skip - 1]++;
}

/* Dispatches to the chain a rule names; the switch over constants keeps each
 * chain's operators constant (see emptcp_run_ops). */
static __emptcp_inline int emptcp_run_chain(void *ctx, enum emptcp_hook hook,
					    enum emptcp_hook count_hook, __u32 chain, __u32 start,
					    const struct emptcp_pkt *pkt, int *missing)
{
	__u32 c;

#pragma unroll
	for (c = 0; c < EMPTCP_CHAINS_MAX; c++) {
		if (c >= emptcp_cfg.n_chains)
			break;
		if (c == chain)
			return emptcp_run_ops(ctx, hook, count_hook, c, start, pkt);
	}
	*missing = 1;
	return EMPTCP_VERDICT_PASS;
}

/*
 * Resumes the chain after a plugin: the body of the generation's resume
 * programs, one per hook (`kind_hook`, a constant). Returns an enum
 * emptcp_verdict.
 */
static __emptcp_inline int emptcp_resume_chain(void *ctx, enum emptcp_hook kind_hook)
{
	struct emptcp_plugin_state *ps = emptcp_plugin_state(kind_hook);
	struct emptcp_op_stats *st;
	struct emptcp_pkt pkt;
	__u32 chain, op;
	int missing = 0, verdict;

	if (!ps || ps->generation != emptcp_cfg.generation)
		return EMPTCP_VERDICT_PASS;
	chain = ps->chain;
	op = ps->op;
	verdict = ps->verdict;
	__builtin_memcpy(&pkt, &ps->pkt, sizeof(pkt));
	/* The plugin's verdict, counted on the plugin operator. */
	if (verdict != EMPTCP_PLUGIN_CONTINUE) {
		st = __emptcp_op_stats(chain & (EMPTCP_CHAINS_MAX - 1), op & (EMPTCP_CHAIN_OPS_MAX - 1));
		if (verdict == EMPTCP_PLUGIN_DROP)
			return EMPTCP_VERDICT_DROP;
		if (st)
			st->reasons[verdict == EMPTCP_PLUGIN_STOP ? EMPTCP_REASON_PLUGIN_STOP
								  : EMPTCP_REASON_PLUGIN_BAD_VERDICT]++;
		if (verdict == EMPTCP_PLUGIN_STOP)
			return EMPTCP_VERDICT_PASS;
	}
	verdict = emptcp_run_chain(ctx, kind_hook, kind_hook, chain, op + 1, &pkt, &missing);
	if (missing)
		emptcp_count(kind_hook, EMPTCP_CNT_MISSING_CHAIN);
	emptcp_after_chain(ctx, kind_hook, &pkt, verdict);
	return verdict;
}

/*
 * Chooses and runs the action chain of a TCP packet that came in on (or goes
 * out of) interface `ifindex`. Returns an enum emptcp_verdict and counts
 * what happened.
 */
static __emptcp_inline int emptcp_engine(void *ctx, enum emptcp_hook hook, void *data,
					 void *data_end, const struct emptcp_pkt *pkt, __u32 ifindex,
					 struct emptcp_subflow_ct *ct, struct emptcp_memo_slot *memo)
{
	__u32 n, winner, k, ct_version = 0, scratch_key = hook;
	struct emptcp_scratch *scratch;
	const struct emptcp_rule *rule;
	int missing = 0, verdict;
	__u32 *cands;
	__u64 *hits;

	scratch = bpf_map_lookup_elem(&emptcp_cands, &scratch_key);
	if (!scratch)
		return EMPTCP_VERDICT_PASS;
	cands = scratch->cands;

	/* A constant: generations without connection or sequence selectors
	 * verify none of this (and have no rule that reads the positions). */
	if (emptcp_cfg.uses_conntrack) {
		ct = emptcp_ct_position(data, data_end, pkt, ct, &scratch->pos);
		ct_version = ct ? ct->version : 0;
	}

	if (memo && memo->generation == emptcp_memo_tag() && memo->ct_version == ct_version &&
	    memo->n <= EMPTCP_MEMO_MAX && __emptcp_memo_is(memo, ifindex, hook, pkt)) {
		/* Copied to the scratch array so that one selection loop,
		 * bounded by that array, serves both cases: clang 14 turns
		 * `k < n` into `k != n`, and the verifier then cannot bound a
		 * loop over the shorter memo ("invalid access to map value",
		 * kernel 6.18). */
		n = memo->n;
#pragma unroll
		for (k = 0; k < EMPTCP_MEMO_MAX; k++)
			if (k < n)
				cands[k] = memo->ids[k];
		emptcp_memo_note(memo, data, data_end, pkt, n);
	} else {
		n = emptcp_classify(pkt, hook != EMPTCP_HOOK_TC_EGRESS, ct, cands);
		n = __emptcp_forget(scratch, n);
		if (memo) {
			emptcp_flow_key_of(&memo->key, ifindex, hook, pkt);
			memo->generation = emptcp_memo_tag();
			memo->ct_version = ct_version;
			memo->n = n;
			emptcp_memo_note(memo, data, data_end, pkt, n);
#pragma unroll
			for (k = 0; k < EMPTCP_MEMO_MAX; k++)
				if (k < n)
					memo->ids[k] = cands[k];
		}
		if (n > EMPTCP_MEMO_MAX)
			emptcp_count(hook, EMPTCP_CNT_MEMO_OVERFLOW);
	}
	n = __emptcp_forget(scratch, n);
	rule = emptcp_select(cands, n, emptcp_pkt_types(pkt), &scratch->pos, &winner);
	if (!rule) {
		emptcp_count(hook, EMPTCP_CNT_NO_POLICY);
		emptcp_after_chain(ctx, hook, pkt, EMPTCP_VERDICT_PASS);
		return EMPTCP_VERDICT_PASS;
	}
	hits = bpf_map_lookup_elem(&emptcp_rule_hits, &winner);
	if (hits)
		(*hits)++;
	verdict = emptcp_run_chain(ctx, hook, hook, rule->chain, 0, pkt, &missing);
	emptcp_count(hook, missing ? EMPTCP_CNT_MISSING_CHAIN : EMPTCP_CNT_MATCHED);
	emptcp_after_chain(ctx, hook, pkt, verdict);
	return verdict;
}

#endif /* __EMPTCP_LIB_ENGINE_H */
