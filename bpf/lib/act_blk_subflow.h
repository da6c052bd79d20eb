/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * blk_subflow: strips every ADD_ADDR (RFC 8684 section 3.4.1: IPv4 or IPv6,
 * with or without port and HMAC, echo or not, at any alignment) so that the
 * packet's receiver learns of no further address, and, when asked, refuses
 * MP_JOIN SYNs: drops them (stripping MP_JOIN would turn a join into a stray
 * plain TCP connection). Retransmitted ADD_ADDRs are stripped again.
 *
 * The option area shrinks; where the hook cannot resize (TC:
 * CHECKSUM_PARTIAL or GSO with payload, an in-band VLAN tag with payload)
 * the options become NOPs instead. Every checksum is right either way
 * (tcpopt.h). A packet the helpers refuse passes unchanged and is counted.
 *
 * A lone ADD_ADDR (Linux's only kind) becomes a DSS with an old data ACK
 * rather than nothing: see struct emptcp_dss_ack64.
 *
 * The first ADD_ADDR of a packet that announces (not an echo: an echo
 * carries no HMAC and is the peer's acknowledgement) is kept per connection
 * once the strip is committed (addr_store.h), for add_subflow to put back;
 * a retransmission overwrites it.
 */
#ifndef __EMPTCP_LIB_ACT_BLK_SUBFLOW_H
#define __EMPTCP_LIB_ACT_BLK_SUBFLOW_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include <emptcp/abi.h>
#include <emptcp/ctx.h>
#include <emptcp/mptcp.h>
#include <emptcp/parse.h>
#include <emptcp/tcpopt.h>

#include "addr_store.h"
#include "conntrack.h"
#include "edit_scratch.h"

/* Linux sends at most one ADD_ADDR per segment; a few more are removed
 * too, and any beyond this limit stay. */
#define EMPTCP_STRIP_ADD_ADDR_MAX 4

/*
 * Linux sends an ADD_ADDR on a pure ACK and drops every other MPTCP option
 * from it (net/mptcp/options.c: "drop_other_suboptions"). Stripped, it
 * leaves a plain ACK, and a client that is not yet fully established falls
 * back to TCP on a first in-sequence packet without a data ACK (RFC 8684
 * section 3.1; seen live here). So a lone ADD_ADDR becomes a DSS carrying
 * an old data ACK instead: the receiver's IDSN + 1 (from conntrack), which
 * establishes the subflow and, never newer than what the receiver has had
 * acknowledged, moves nothing (a 64-bit ACK: no wrap to reason about).
 */
struct emptcp_dss_ack64 {
	__u8 kind;
	__u8 len;
	__u8 subtype;   /* subtype << 4 */
	__u8 flags;     /* A | a: a 64-bit data ACK, no mapping */
	__be32 ack_hi;  /* network order, 4-byte aligned halves */
	__be32 ack_lo;
} __attribute__((packed));

/* Removes the ADD_ADDRs of the area (the first becomes `dss` when given):
 * how many, or a negative skip. */
static __emptcp_inline int __emptcp_strip_add_addr(struct emptcp_tcpopt_area *area, __u32 flags,
						   const struct emptcp_dss_ack64 *dss)
{
	int i, off, n = 0;
	__u32 len;

#pragma unroll
	for (i = 0; i < EMPTCP_STRIP_ADD_ADDR_MAX; i++) {
		off = emptcp_tcpopt_find(area, EMPTCP_TCPOPT_MPTCP, EMPTCP_MPTCP_ADD_ADDR, &len);
		if (off < 0)
			return n ? n : off;
		if (i == 0 && dss && len >= sizeof(*dss)) {
			if (emptcp_tcpopt_replace(area, off, (const __u8 *)dss, sizeof(*dss), flags) < 0)
				return EMPTCP_SKIP(INVAL);
		} else if (emptcp_tcpopt_remove(area, off, flags) < 0) {
			return n ? n : EMPTCP_SKIP(INVAL);
		}
		n++;
	}
	return n;
}

/* The DSS that stands in for a lone ADD_ADDR; 0 when none is needed (the
 * packet has a DSS) or known (conntrack missed the handshake or the
 * receiver's key: then the ADD_ADDR is only removed). */
static __emptcp_inline int __emptcp_blk_dss(const struct emptcp_pkt *pkt,
					    struct emptcp_dss_ack64 *dss)
{
	struct emptcp_subflow_ct *ct;
	struct emptcp_ct_key key;
	__u64 idsn;
	int sender_lo;

	if (pkt->mptcp_subtypes & (1u << EMPTCP_MPTCP_DSS))
		return 0;
	sender_lo = emptcp_ct_key_of(pkt, &key);
	ct = bpf_map_lookup_elem(&emptcp_ct_sf, &key);
	if (!ct || !(ct->flags & EMPTCP_CT_KNOWN))
		return 0;
	/* The receiver's data stream. Its key, hence IDSN, is learned from
	 * packets the receiver sent (its third ACK, for a client): zero until
	 * then, and a guessed data ACK is not an old one. */
	idsn = sender_lo ? ct->idsn_hi : ct->idsn_lo;
	if (!idsn)
		return 0;
	idsn += 1;
	dss->kind = EMPTCP_TCPOPT_MPTCP;
	dss->len = sizeof(*dss);
	dss->subtype = EMPTCP_MPTCP_DSS << 4;
	dss->flags = EMPTCP_MPTCP_DSS_FLAG_A | EMPTCP_MPTCP_DSS_FLAG_a;
	dss->ack_hi = bpf_htonl(idsn >> 32);
	dss->ack_lo = bpf_htonl((__u32)idsn);
	return 1;
}

/* RFC 8684 ADD_ADDR lengths with a truncated HMAC: IPv4, IPv4 + port,
 * IPv6, IPv6 + port. */
static __emptcp_inline int __emptcp_add_addr_has_hmac(__u32 len)
{
	return len == 16 || len == 18 || len == 28 || len == 30;
}

/* Copies the area's first ADD_ADDR to `out` when it announces (has an HMAC,
 * not an echo): its length, or 0. */
static __emptcp_inline __u32 __emptcp_addr_pick(const struct emptcp_tcpopt_area *area, __u8 *out)
{
	__u32 len, k;
	int off = emptcp_tcpopt_find(area, EMPTCP_TCPOPT_MPTCP, EMPTCP_MPTCP_ADD_ADDR, &len);

	if (off < 0 || !__emptcp_add_addr_has_hmac(len) ||
	    (area->cur[__EMPTCP_TCPOPT_IDX(off + 2)] & 1))
		return 0;
#pragma unroll
	for (k = 0; k < 32; k++)
		out[k] = k < len ? area->cur[__EMPTCP_TCPOPT_IDX(off + k)] : 0;
	return len;
}

/*
 * The store entry of the packet's connection (made when missing and
 * `create`), the IDSN of the packet's sender (*idsn, 0 when conntrack has
 * not learned its key) and the slot of the ADD_ADDRs it sends (*slot). NULL
 * when conntrack does not know the connection.
 */
static __emptcp_inline struct emptcp_addr_kept *
emptcp_addr_entry_of(enum emptcp_hook hook, const struct emptcp_pkt *pkt, int create, __u64 *idsn,
		     __u32 *slot)
{
	struct emptcp_subflow_ct *sf;
	struct emptcp_conn_ct *conn;
	struct emptcp_ct_key *key;
	__u32 kslot = hook, token;
	int sender_lo;

	key = bpf_map_lookup_elem(&emptcp_ct_keybuf, &kslot);
	if (!key)
		return NULL;
	sender_lo = emptcp_ct_key_of(pkt, key);
	sf = bpf_map_lookup_elem(&emptcp_ct_sf, key);
	if (!sf || !(sf->flags & EMPTCP_CT_KNOWN))
		return NULL;
	*idsn = sender_lo ? sf->idsn_lo : sf->idsn_hi;
	token = sf->token;
	conn = bpf_map_lookup_elem(&emptcp_ct_conn, &token);
	if (!conn)
		return NULL;
	*slot = emptcp_addr_slot_of(conn, *idsn);
	return emptcp_addr_entry(hook, token, conn, create);
}

/*
 * Keeps `opt` (`len` bytes), an ADD_ADDR the packet's sender announced, in
 * its connection's slot for that sender. Not when the connection or the
 * sender's key is unknown to conntrack (then nothing can name the
 * direction), nor over a slot being put back or already put back (once per
 * connection). The state is claimed before the bytes are written, so a
 * carrier on another CPU never reads half of them.
 */
static __emptcp_inline void __emptcp_addr_keep(enum emptcp_hook hook, const struct emptcp_pkt *pkt,
					       const __u8 *opt, __u32 len)
{
	struct emptcp_addr_kept *e;
	struct emptcp_addr_slot *slot;
	__u64 idsn = 0;
	__u32 k, d = 0;

	e = emptcp_addr_entry_of(hook, pkt, 1, &idsn, &d);
	if (!e || !idsn)
		return;
	slot = &e->slot[d & 1];
	if (__sync_val_compare_and_swap(&slot->state, EMPTCP_ADDR_EMPTY, EMPTCP_ADDR_WRITING) !=
		    EMPTCP_ADDR_EMPTY &&
	    __sync_val_compare_and_swap(&slot->state, EMPTCP_ADDR_KEPT, EMPTCP_ADDR_WRITING) !=
		    EMPTCP_ADDR_KEPT)
		return;
#pragma unroll
	for (k = 0; k < 32; k++)
		slot->opt[k] = opt[k];
	slot->len = len;
	slot->announcer_idsn = idsn;
	slot->kept++;
	/* An exchange, not a store: a full barrier before the state says KEPT. */
	__sync_lock_test_and_set(&slot->state, EMPTCP_ADDR_KEPT);
	emptcp_count(hook, EMPTCP_CNT_ADDR_KEPT);
}

/* 0 when stripped, else an enum emptcp_op_reason + 1. */
static __emptcp_inline int emptcp_blk_subflow_edit(const struct emptcp_ctx *c,
						   enum emptcp_hook hook,
						   struct emptcp_edit_scratch *s)
{
	struct emptcp_dss_ack64 *built = (struct emptcp_dss_ack64 *)s->opt;
	const struct emptcp_dss_ack64 *dss = __emptcp_blk_dss(&s->pkt, built) ? built : NULL;
	__u32 kept;

	if (emptcp_tcpopt_load(c, &s->pkt, &s->area))
		return EMPTCP_REASON_EDIT_REFUSED + 1;
	kept = __emptcp_addr_pick(&s->area, s->kept);
	if (__emptcp_strip_add_addr(&s->area, EMPTCP_TCPOPT_F_SHRINK, dss) <= 0)
		return EMPTCP_REASON_EDIT_REFUSED + 1;
	if (emptcp_tcpopt_commit(c, &s->pkt, &s->area)) {
		/* The shrink was refused and the packet is unchanged: NOPs
		 * need no resize. */
		if (emptcp_tcpopt_load(c, &s->pkt, &s->area) ||
		    __emptcp_strip_add_addr(&s->area, EMPTCP_TCPOPT_F_NOP, dss) <= 0 ||
		    emptcp_tcpopt_commit(c, &s->pkt, &s->area))
			return EMPTCP_REASON_EDIT_REFUSED + 1;
	}
	/* Kept only once it is stripped: an ADD_ADDR that went through needs
	 * no putting back. */
	if (kept)
		__emptcp_addr_keep(hook, &s->pkt, s->kept, kept);
	return 0;
}

#endif /* __EMPTCP_LIB_ACT_BLK_SUBFLOW_H */
