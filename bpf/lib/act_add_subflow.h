/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * add_subflow: puts an ADD_ADDR that blk_subflow stripped (addr_store.h)
 * back into a later packet of the same connection, once, so that its
 * receiver learns the address then and, its path manager willing, opens a
 * subflow to it (RFC 8684 section 3.4.1). The option is the one the real
 * sender built: its HMAC, over the connection's keys and the address, is
 * valid. No packet is forged and nothing comes from user space.
 *
 * Two steps:
 *  - arm: the operator, when its chain runs on a packet of the connection
 *    (e.g. after N bytes: a sequence selector), marks the connection's kept
 *    ADD_ADDRs to go back (`armed`); with nothing kept it counts
 *    nothing_kept and sends one event per connection;
 *  - carry: after the chain, in every generation that has add_subflow, the
 *    next packet of the connection that travels the way the ADD_ADDR did
 *    (from its announcer) and has room gets it. Room: the option goes into
 *    NOP room or at the end of the option area, which grows; on a pure ACK
 *    whose DSS holds only a data ACK it may take the DSS's place instead,
 *    as Linux sends an ADD_ADDR on a pure ACK (net/mptcp/options.c,
 *    mptcp_established_options_add_addr drops the other suboptions; the
 *    next ACK carries the data ACK again). At TC only packets without
 *    payload grow (at the tail; MTU checked). A carrier that cannot take it
 *    is left unchanged and counted (edit_refused on the generation's first
 *    add_subflow operator, one event per connection); the next one tries.
 *
 * Once: a CPU claims the slot (KEPT -> CARRYING, compare and exchange)
 * before it edits; success makes it DONE for good, failure gives it back.
 */
#ifndef __EMPTCP_LIB_ACT_ADD_SUBFLOW_H
#define __EMPTCP_LIB_ACT_ADD_SUBFLOW_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include <emptcp/abi.h>
#include <emptcp/ctx.h>
#include <emptcp/mptcp.h>
#include <emptcp/parse.h>
#include <emptcp/tcpopt.h>

#include "act_blk_subflow.h"
#include "act_events.h"
#include "addr_store.h"
#include "conntrack.h"
#include "counters.h"
#include "edit_scratch.h"

/* One event of `outcome` per connection (`reported` bits). */
static __emptcp_inline void __emptcp_addsub_event(enum emptcp_hook hook, __u32 ifindex,
						  const struct emptcp_pkt *pkt,
						  struct emptcp_addr_kept *e, __u32 outcome,
						  __u8 address_id)
{
	struct emptcp_event *ev;

	if (__sync_fetch_and_or(&e->reported, 1u << outcome) & (1u << outcome))
		return;
	ev = __emptcp_event_new(hook, ifindex, pkt, EMPTCP_EV_ADD_SUBFLOW);
	if (!ev)
		return;
	ev->outcome = outcome;
	ev->address_id = address_id;
	bpf_ringbuf_submit(ev, 0);
}

static __emptcp_inline void __emptcp_addsub_pending(__s64 delta)
{
	__u32 zero = 0;
	__u64 *pending = bpf_map_lookup_elem(&emptcp_addr_armed, &zero);

	if (pending)
		__sync_fetch_and_add(pending, delta);
}

/*
 * The operator: arms the connection's kept ADD_ADDRs. 0, or an enum
 * emptcp_op_reason + 1 (nothing_kept). Not inlined: its lookups stay out
 * of the entry's stack frame.
 */
static __attribute__((noinline)) int __emptcp_add_subflow_arm(const struct emptcp_pkt *pkt,
							       __u32 hook, __u32 ifindex)
{
	struct emptcp_addr_kept *e;
	__u32 want = 0, fresh, d = 0;
	__u64 idsn = 0;
	int done = 0;

	hook = hook == EMPTCP_HOOK_TC_EGRESS ? EMPTCP_HOOK_TC_EGRESS
	       : hook == EMPTCP_HOOK_TC_INGRESS ? EMPTCP_HOOK_TC_INGRESS
						: EMPTCP_HOOK_XDP;
	e = emptcp_addr_entry_of(hook, pkt, 1, &idsn, &d);
	if (!e)
		return EMPTCP_REASON_NOTHING_KEPT + 1;
#pragma unroll
	for (d = 0; d < 2; d++) {
		__u32 st = e->slot[d].state;

		if (st == EMPTCP_ADDR_KEPT || st == EMPTCP_ADDR_WRITING || st == EMPTCP_ADDR_CARRYING)
			want |= 1u << d;
		else if (st == EMPTCP_ADDR_DONE)
			done = 1;
	}
	if (!want) {
		if (done)
			return 0;
		__emptcp_addsub_event(hook, ifindex, pkt, e, EMPTCP_ADDSUB_NOTHING_KEPT, 0);
		return EMPTCP_REASON_NOTHING_KEPT + 1;
	}
	fresh = want & ~__sync_fetch_and_or(&e->armed, want);
	if (fresh)
		__emptcp_addsub_pending(fresh == 3 ? 2 : 1);
	return 0;
}

/* Whether the packet's options can take the place of a pure ACK's DSS: a
 * DSS with a data ACK and nothing else (no mapping, no DATA_FIN). */
static __emptcp_inline int __emptcp_addsub_dss_off(const struct emptcp_tcpopt_area *a)
{
	__u32 len;
	int off = emptcp_tcpopt_find(a, EMPTCP_TCPOPT_MPTCP, EMPTCP_MPTCP_DSS, &len);
	__u8 flags;

	if (off < 0 || len < 4)
		return -1;
	flags = a->cur[__EMPTCP_TCPOPT_IDX(off + 3)];
	if (flags & (EMPTCP_MPTCP_DSS_FLAG_M | EMPTCP_MPTCP_DSS_FLAG_F))
		return -1;
	return off;
}

/* emptcp_parse out of line: its locals would otherwise add to the frame
 * under tcpopt's commit (512 bytes for the whole call chain; at TC the
 * inlined parse made it 528). */
static __attribute__((noinline)) int __emptcp_addsub_parse(void *data, void *data_end,
							   struct emptcp_pkt *pkt)
{
	return emptcp_parse(data, data_end, pkt);
}

/*
 * The carrier step on one packet (s->pkt is parsed afresh: an editing
 * actor of the chain may have moved the options). 0 when nothing was to
 * be done or the ADD_ADDR went out, else an enum emptcp_op_reason + 1.
 */
static __emptcp_inline int emptcp_add_subflow_carry(const struct emptcp_ctx *c,
						    enum emptcp_hook hook, __u32 ifindex,
						    struct emptcp_edit_scratch *s)
{
	struct emptcp_addr_slot *slot = NULL;
	struct emptcp_ctx fresh = *c;
	struct emptcp_addr_kept *e;
	__u32 d = 0, len, k, payload;
	__u64 idsn = 0;
	__u8 address_id;
	int r, off;

	/* The parse and the option helpers below read data_end apart. */
	EMPTCP_CTX_FENCE(fresh.ctx);
	if (__emptcp_addsub_parse(emptcp_ctx_data(&fresh), emptcp_ctx_data_end(&fresh), &s->pkt) !=
	    EMPTCP_PARSE_TCP)
		return 0;
	/* Not on handshakes (Linux sends none there either), nor beside an
	 * ADD_ADDR the sender sent. */
	if ((s->pkt.tcp_flags & (EMPTCP_TCP_ACK | EMPTCP_TCP_SYN | EMPTCP_TCP_RST)) !=
		    EMPTCP_TCP_ACK ||
	    !s->pkt.mptcp_subtypes ||
	    (s->pkt.mptcp_subtypes &
	     ((1u << EMPTCP_MPTCP_MP_CAPABLE) | (1u << EMPTCP_MPTCP_MP_JOIN) |
	      (1u << EMPTCP_MPTCP_ADD_ADDR))))
		return 0;
	e = emptcp_addr_entry_of(hook, &s->pkt, 0, &idsn, &d);
	if (!e || !idsn)
		return 0;
	/* The slot of this packet's sender, if armed: the packet travels the
	 * way the ADD_ADDR did. */
	d &= 1;
	if (((e->armed >> d) & 1) && e->slot[d].announcer_idsn == idsn)
		slot = &e->slot[d];
	if (!slot || __sync_val_compare_and_swap(&slot->state, EMPTCP_ADDR_KEPT,
						 EMPTCP_ADDR_CARRYING) != EMPTCP_ADDR_KEPT)
		return 0;
	len = slot->len;
	address_id = slot->opt[3];
#pragma unroll
	for (k = 0; k < 32; k++)
		s->opt[k] = slot->opt[k];
	payload = (__u32)s->pkt.l3_off + s->pkt.l3_len > s->pkt.payload_off;

	r = emptcp_tcpopt_load(c, &s->pkt, &s->area);
	if (!r && (len < 16 || len > 30))
		r = EMPTCP_SKIP(INVAL);
	if (!r) {
		r = emptcp_tcpopt_insert(&s->area, s->opt, len);
		if (r == EMPTCP_SKIP(NO_ROOM) && !payload &&
		    !(s->pkt.tcp_flags & EMPTCP_TCP_FIN)) {
			off = __emptcp_addsub_dss_off(&s->area);
			if (off >= 0)
				r = emptcp_tcpopt_replace(&s->area, off, s->opt, len,
							  EMPTCP_TCPOPT_F_NOP);
		}
	}
	/* TC grows only packets without payload (at the tail). */
	if (r >= 0 && c->kind == EMPTCP_CTX_KIND_SKB && payload &&
	    s->area.cur_len > s->area.orig_len)
		r = EMPTCP_SKIP(UNSUPPORTED);
	if (r >= 0)
		r = emptcp_tcpopt_commit(c, &s->pkt, &s->area);
	if (r < 0) {
		__sync_lock_test_and_set(&slot->state, EMPTCP_ADDR_KEPT);
		__emptcp_addsub_event(hook, ifindex, &s->pkt, e, EMPTCP_ADDSUB_NO_ROOM, address_id);
		return EMPTCP_REASON_EDIT_REFUSED + 1;
	}
	__sync_lock_test_and_set(&slot->state, EMPTCP_ADDR_DONE);
	__emptcp_addsub_pending(-1);
	emptcp_count(hook, EMPTCP_CNT_ADDR_CARRIED);
	__emptcp_addsub_event(hook, ifindex, &s->pkt, e, EMPTCP_ADDSUB_CARRIED, address_id);
	return 0;
}

/* Whether anything waits to be carried (the gate of the carrier step). */
static __emptcp_inline int emptcp_add_subflow_waiting(void)
{
	__u32 zero = 0;
	__u64 *pending = bpf_map_lookup_elem(&emptcp_addr_armed, &zero);

	return pending && *pending;
}

#endif /* __EMPTCP_LIB_ACT_ADD_SUBFLOW_H */
