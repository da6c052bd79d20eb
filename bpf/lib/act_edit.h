/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The actors that edit TCP options (blk_subflow, set_backup, add_subflow's
 * carrier step) run here: out
 * of line, one function per context type (the option helpers are global
 * functions typed by context), with their state in the per-CPU scratch
 * (edit_scratch.h) rather than on the entry's stack.
 *
 * An edit moves options, and the chain's parse is not redone: the policy
 * compiler refuses operators that read options after an editing actor.
 */
#ifndef __EMPTCP_LIB_ACT_EDIT_H
#define __EMPTCP_LIB_ACT_EDIT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include <emptcp/abi.h>
#include <emptcp/ctx.h>
#include <emptcp/parse.h>

#include "edit_scratch.h"
#include "act_blk_subflow.h"
#include "act_set_backup.h"
#include "act_add_subflow.h"

/* `kind` and `arg` are constants at each call site: the verifier walks one
 * edit per call. */
static __emptcp_inline int __emptcp_edit(const struct emptcp_ctx *c, __u32 slot,
					 const struct emptcp_pkt *pkt, __u32 kind, __u32 arg)
{
	struct emptcp_edit_scratch *s = bpf_map_lookup_elem(&emptcp_edit, &slot);

	if (!s)
		return EMPTCP_REASON_EDIT_REFUSED + 1;
	/* The carrier parses the packet afresh (arg: the interface index,
	 * for its events). */
	if (kind == EMPTCP_OP_ADD_SUBFLOW)
		return emptcp_add_subflow_carry(c, slot, arg, s);
	__builtin_memcpy(&s->pkt, pkt, sizeof(s->pkt));
	if (kind == EMPTCP_OP_SET_BACKUP)
		return emptcp_set_backup(c, slot, s, arg);
	return emptcp_blk_subflow_edit(c, slot, s);
}

static __attribute__((noinline)) int __emptcp_edit_xdp(struct xdp_md *ctx,
						       const struct emptcp_pkt *pkt, __u32 kind,
						       __u32 arg)
{
	struct emptcp_ctx c = EMPTCP_CTX_XDP(ctx);

	return __emptcp_edit(&c, EMPTCP_HOOK_XDP, pkt, kind, arg);
}

static __attribute__((noinline)) int __emptcp_edit_skb(struct __sk_buff *skb,
						       const struct emptcp_pkt *pkt, __u32 slot,
						       __u32 kind, __u32 arg)
{
	struct emptcp_ctx c = EMPTCP_CTX_SKB(skb);

	return __emptcp_edit(&c, slot, pkt, kind, arg);
}

/* Runs the editing actor `kind` (EMPTCP_OP_BLK_SUBFLOW, _SET_BACKUP, or
 * _ADD_SUBFLOW's carrier step) on the packet if it concerns it: 0, or an
 * enum emptcp_op_reason + 1. */
static __emptcp_inline int emptcp_act_edit(void *ctx, enum emptcp_hook hook,
					   const struct emptcp_pkt *pkt, __u32 kind, __u32 arg)
{
	if (kind == EMPTCP_OP_SET_BACKUP && !emptcp_set_backup_wanted(pkt))
		return 0;
	if (kind == EMPTCP_OP_BLK_SUBFLOW && !(pkt->mptcp_subtypes & (1u << EMPTCP_MPTCP_ADD_ADDR)))
		return 0;
	if (kind == EMPTCP_OP_ADD_SUBFLOW &&
	    ((pkt->tcp_flags & (EMPTCP_TCP_ACK | EMPTCP_TCP_SYN | EMPTCP_TCP_RST)) != EMPTCP_TCP_ACK ||
	     !pkt->mptcp_subtypes || !emptcp_add_subflow_waiting()))
		return 0;
	if (hook == EMPTCP_HOOK_XDP)
		return __emptcp_edit_xdp(ctx, pkt, kind, arg);
	return __emptcp_edit_skb(ctx, pkt,
				 hook == EMPTCP_HOOK_TC_EGRESS ? EMPTCP_HOOK_TC_EGRESS
							       : EMPTCP_HOOK_TC_INGRESS,
				 kind, arg);
}

#endif /* __EMPTCP_LIB_ACT_EDIT_H */
