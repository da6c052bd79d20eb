/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * set_backup: adds MP_PRIO (RFC 8684 section 3.3.8) to the packet, so that
 * its receiver changes the priority of the subflow the packet travels on:
 * B = 1 asks it to send there only when no regular subflow is left, B = 0
 * makes the subflow regular again. Linux applies it on receipt
 * (mptcp_pm_mp_prio_received), whatever the address; a middle node can thus
 * steer a sender away from a path without either end's configuration.
 *
 * A few packets say it, not every packet: per subflow and direction, at
 * most N (the policy's `packets`, default 3) carry MP_PRIO under one
 * generation; then packets pass unchanged, uncounted (by design, not a
 * skip). A new generation (a policy change) starts a fresh quota. More than
 * one in case one is lost; MP_PRIO is not acknowledged (RFC 8684).
 *
 * The carrier: a packet without payload takes MP_PRIO into NOP room or at
 * the end of its option area, which grows by 4 bytes. A packet with payload
 * takes it into NOP room only: growing it could push a full-sized segment
 * over the path MTU, and at TC a GSO or CHECKSUM_PARTIAL skb cannot be
 * resized; so it is passed over, uncounted, and the quota waits for a pure
 * ACK (heading to the host whose sending should change, these are what it
 * receives). A claim on the quota is taken before the edit and handed back
 * when the edit does not happen, so N holds across CPUs.
 *
 * Not on SYNs, handshake ACKs, FINs or RSTs (emptcp_set_backup_wanted), and
 * not where the packet already carries an MP_PRIO (the sender's own word
 * stands). A packet without payload with no room passes unchanged and is
 * counted (edit_refused).
 */
#ifndef __EMPTCP_LIB_ACT_SET_BACKUP_H
#define __EMPTCP_LIB_ACT_SET_BACKUP_H

#include <emptcp/abi.h>
#include <emptcp/ctx.h>
#include <emptcp/mptcp.h>
#include <emptcp/parse.h>
#include <emptcp/tcpopt.h>

#include "config.h"
#include "conntrack.h"
#include "counters.h"
#include "edit_scratch.h"

/* Kind, length 3, subtype << 4 | B. */
#define EMPTCP_MP_PRIO_LEN 3

/* MP_PRIO sent per subflow and generation: [0] by endpoint lo, [1] by hi
 * (struct emptcp_ct_key's order). Shared by every generation and
 * attachment; LRU, as many subflows as connection tracking holds. */
struct emptcp_prio_sent {
	__u32 sent[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EMPTCP_CT_SUBFLOWS_MAX);
	__type(key, struct emptcp_prio_key);
	__type(value, struct emptcp_prio_sent);
} emptcp_prio_quota SEC(".maps");

static const struct emptcp_prio_sent emptcp_zero_prio_sent;

/*
 * Whether set_backup acts on the packet at all: an established subflow's
 * packet with MPTCP options, not the sender's own MP_PRIO. Not a SYN, nor a
 * handshake's third ACK (MP_CAPABLE, MP_JOIN): the subflow is not
 * established at the receiver yet. Not a FIN or RST: the subflow ends, and
 * Linux reads no MPTCP option on a closing socket (measured: a FIN carrier
 * reached the client's MPTcpExtMPPrioRx in some runs only), so a quota spent
 * there would be lost.
 */
static __emptcp_inline int emptcp_set_backup_wanted(const struct emptcp_pkt *pkt)
{
	const __u32 refused = (1u << EMPTCP_MPTCP_MP_PRIO) | (1u << EMPTCP_MPTCP_MP_CAPABLE) |
			      (1u << EMPTCP_MPTCP_MP_JOIN);

	return !(pkt->tcp_flags & (EMPTCP_TCP_SYN | EMPTCP_TCP_FIN | EMPTCP_TCP_RST)) &&
	       pkt->mptcp_subtypes && !(pkt->mptcp_subtypes & refused);
}

/* 0 when added, -1 when passed over (payload and no NOP room), else an enum
 * emptcp_op_reason + 1. */
static __emptcp_inline int emptcp_set_backup_edit(const struct emptcp_ctx *c,
						  struct emptcp_edit_scratch *s, __u32 backup)
{
	int payload = (__u32)s->pkt.l3_off + s->pkt.l3_len > s->pkt.payload_off, placed;

	s->opt[0] = EMPTCP_TCPOPT_MPTCP;
	s->opt[1] = EMPTCP_MP_PRIO_LEN;
	s->opt[2] = EMPTCP_MPTCP_MP_PRIO << 4 | (backup & EMPTCP_SET_BACKUP_B);
	if (emptcp_tcpopt_load(c, &s->pkt, &s->area))
		return EMPTCP_REASON_EDIT_REFUSED + 1;
	placed = emptcp_tcpopt_insert(&s->area, s->opt, EMPTCP_MP_PRIO_LEN) >= 0;
	if (payload && (!placed || s->area.cur_len != s->area.orig_len))
		return -1;
	if (!placed || emptcp_tcpopt_commit(c, &s->pkt, &s->area))
		return EMPTCP_REASON_EDIT_REFUSED + 1;
	return 0;
}

/* The packet's quota entry, created when missing; NULL when the map
 * refuses it (counted). *d: the sender's side. */
static __emptcp_inline struct emptcp_prio_sent *
__emptcp_prio_quota(enum emptcp_hook hook, struct emptcp_edit_scratch *s, __u32 *d)
{
	struct emptcp_prio_sent *q;

	*d = !emptcp_ct_key_of(&s->pkt, &s->prio_key.subflow);
	s->prio_key.generation = emptcp_cfg.generation;
	q = bpf_map_lookup_elem(&emptcp_prio_quota, &s->prio_key);
	if (q)
		return q;
	bpf_map_update_elem(&emptcp_prio_quota, &s->prio_key, &emptcp_zero_prio_sent, BPF_NOEXIST);
	q = bpf_map_lookup_elem(&emptcp_prio_quota, &s->prio_key);
	if (!q)
		emptcp_count(hook, EMPTCP_CNT_PRIO_QUOTA_FULL);
	return q;
}

/* set_backup on the packet in s->pkt (arg: enum emptcp_set_backup_arg):
 * 0 (added, or left alone by design), else an enum emptcp_op_reason + 1. */
static __emptcp_inline int emptcp_set_backup(const struct emptcp_ctx *c, enum emptcp_hook hook,
					     struct emptcp_edit_scratch *s, __u32 arg)
{
	__u32 packets = arg >> EMPTCP_SET_BACKUP_PACKETS_SHIFT, d;
	struct emptcp_prio_sent *q = __emptcp_prio_quota(hook, s, &d);
	int r;

	if (!q)
		return 0;
	d &= 1;
	if (q->sent[d] >= packets)
		return 0;
	/* Claim one of the quota; another CPU may have taken the last. */
	if (__sync_fetch_and_add(&q->sent[d], 1) >= packets) {
		__sync_fetch_and_add(&q->sent[d], -1);
		return 0;
	}
	r = emptcp_set_backup_edit(c, s, arg);
	if (r) {
		__sync_fetch_and_add(&q->sent[d], -1);
		return r < 0 ? 0 : r;
	}
	emptcp_count(hook, EMPTCP_CNT_PRIO_SENT);
	return 0;
}

#endif /* __EMPTCP_LIB_ACT_SET_BACKUP_H */
