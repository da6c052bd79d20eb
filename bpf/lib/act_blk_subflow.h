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
 * The stripped options are not kept yet (add_subflow, which would put them
 * back, is not built).
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

/* 0 when stripped, else an enum emptcp_op_reason + 1. */
static __emptcp_inline int emptcp_blk_subflow_edit(const struct emptcp_ctx *c,
						   struct emptcp_edit_scratch *s)
{
	struct emptcp_dss_ack64 *built = (struct emptcp_dss_ack64 *)s->opt;
	const struct emptcp_dss_ack64 *dss = __emptcp_blk_dss(&s->pkt, built) ? built : NULL;

	if (emptcp_tcpopt_load(c, &s->pkt, &s->area) ||
	    __emptcp_strip_add_addr(&s->area, EMPTCP_TCPOPT_F_SHRINK, dss) <= 0)
		return EMPTCP_REASON_EDIT_REFUSED + 1;
	if (emptcp_tcpopt_commit(c, &s->pkt, &s->area) == 0)
		return 0;
	/* The shrink was refused and the packet is unchanged: NOPs need no
	 * resize. */
	if (emptcp_tcpopt_load(c, &s->pkt, &s->area) ||
	    __emptcp_strip_add_addr(&s->area, EMPTCP_TCPOPT_F_NOP, dss) <= 0 ||
	    emptcp_tcpopt_commit(c, &s->pkt, &s->area))
		return EMPTCP_REASON_EDIT_REFUSED + 1;
	return 0;
}

#endif /* __EMPTCP_LIB_ACT_BLK_SUBFLOW_H */
