/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * get_connect and get_subflow: events in the ring buffer emptcp_events
 * (record layout: struct emptcp_event in abi.h).
 *
 *   get_connect  on a packet whose MP_CAPABLE carries keys (SYN/ACK, third
 *                ACK, first data): the keys and their tokens;
 *   get_subflow  on each MPTCP SYN (not SYN/ACK): MP_CAPABLE or MP_JOIN,
 *                with a join's token, random number and address id, and the
 *                subflow's index from connection tracking. The kernel has no
 *                "subflow created" event (mptcp_net-next issue 222); this is
 *                one, seen on the wire.
 *
 * A full ring buffer loses the event and counts it (events_lost): never
 * silently.
 */
#ifndef __EMPTCP_LIB_ACT_EVENTS_H
#define __EMPTCP_LIB_ACT_EVENTS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include <emptcp/abi.h>
#include <emptcp/mptcp.h>
#include <emptcp/parse.h>
#include <emptcp/sha256.h>

#include "conntrack.h"
#include "counters.h"

/* Shared by every generation and attachment; user space reads it. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} emptcp_events SEC(".maps");

static __emptcp_inline struct emptcp_event *__emptcp_event_new(enum emptcp_hook hook, __u32 ifindex,
							     const struct emptcp_pkt *pkt,
							     __u16 kind)
{
	struct emptcp_event *ev = bpf_ringbuf_reserve(&emptcp_events, sizeof(*ev), 0);
	struct emptcp_subflow_ct *ct = NULL;
	struct emptcp_ct_key *key;
	__u32 slot = hook;

	if (!ev) {
		emptcp_count(hook, EMPTCP_CNT_EVENTS_LOST);
		return NULL;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->version = EMPTCP_EVENT_VERSION;
	ev->kind = kind;
	ev->ifindex = ifindex;
	ev->ts_ns = bpf_ktime_get_ns();
	ev->hook = hook;
	ev->family = pkt->family;
	ev->sport = pkt->sport;
	ev->dport = pkt->dport;
	__builtin_memcpy(ev->saddr, pkt->saddr, 16);
	__builtin_memcpy(ev->daddr, pkt->daddr, 16);
	/* The key in the per-CPU slot, not on the stack: this function and
	 * SHA-256 below share the entry's 512-byte stack budget. */
	key = bpf_map_lookup_elem(&emptcp_ct_keybuf, &slot);
	if (key) {
		emptcp_ct_key_of(pkt, key);
		ct = bpf_map_lookup_elem(&emptcp_ct_sf, key);
	}
	ev->index = ct ? ct->index : 0xff;
	ev->connection = ct ? ct->token : 0;
	return ev;
}

/*
 * Emits the event of `op` (EMPTCP_OP_GET_CONNECT or _GET_SUBFLOW) when the
 * packet has what it reports; returns 1 when an event was sent. Not
 * inlined: the option copies and the key stay out of the entry's stack.
 */
static __attribute__((noinline)) int __emptcp_act_event(void *data, void *data_end,
							const struct emptcp_pkt *pkt, __u32 op_hook,
							__u32 ifindex)
{
	__u32 op = op_hook & 0xff, hook = op_hook >> 8;
	struct emptcp_event *ev;


	if (op == EMPTCP_OP_GET_CONNECT) {
		struct emptcp_mptcp_capable cap;
		struct emptcp_sha256_key_hash h = {};

		if (!(pkt->mptcp_subtypes & (1u << EMPTCP_MPTCP_MP_CAPABLE)) ||
		    emptcp_mptcp_read_capable(data, data_end, pkt->off_handshake, &cap) ||
		    cap.len < 12)
			return 0;
		ev = __emptcp_event_new(hook, ifindex, pkt, EMPTCP_EV_CONNECTION);
		if (!ev)
			return 0;
		ev->key_sender = cap.sender_key;
		ev->key_receiver = cap.receiver_key;
		if (!emptcp_sha256_key(cap.sender_key, &h))
			ev->token_sender = h.token;
		if (cap.receiver_key && !emptcp_sha256_key(cap.receiver_key, &h))
			ev->token_receiver = h.token;
		bpf_ringbuf_submit(ev, 0);
		return 1;
	}

	/* get_subflow: an MPTCP SYN, not a SYN/ACK. */
	if (!emptcp_pkt_is_syn(pkt) ||
	    !(pkt->mptcp_subtypes & ((1u << EMPTCP_MPTCP_MP_CAPABLE) | (1u << EMPTCP_MPTCP_MP_JOIN))))
		return 0;
	ev = __emptcp_event_new(hook, ifindex, pkt, EMPTCP_EV_SUBFLOW);
	if (!ev)
		return 0;
	if (pkt->mptcp_subtypes & (1u << EMPTCP_MPTCP_MP_JOIN)) {
		struct emptcp_mptcp_join join;

		ev->join = 1;
		if (!emptcp_mptcp_read_join(data, data_end, pkt->off_handshake, &join)) {
			ev->join_token = join.token;
			ev->join_nonce = join.nonce;
			ev->address_id = join.address_id;
			ev->backup = join.backup;
		}
	}
	bpf_ringbuf_submit(ev, 0);
	return 1;
}

/* The context's fields are read here, where `hook` is a constant: clang 14
 * merges the XDP and skb field loads into one computed ctx offset otherwise,
 * which the verifier refuses ("dereference of modified ctx ptr", kernel
 * 6.18). BPF calls take five arguments, so the operator and the hook share
 * one. */
static __emptcp_inline int emptcp_act_event(void *ctx, enum emptcp_hook hook,
					    const struct emptcp_pkt *pkt, __u32 op)
{
	EMPTCP_CTX_FENCE(ctx);
	if (hook == EMPTCP_HOOK_XDP) {
		struct xdp_md *x = ctx;

		return __emptcp_act_event((void *)(long)x->data, (void *)(long)x->data_end, pkt,
					  op | hook << 8, x->ingress_ifindex);
	}
	{
		struct __sk_buff *skb = ctx;

		return __emptcp_act_event((void *)(long)skb->data, (void *)(long)skb->data_end, pkt,
					  op | hook << 8, skb->ifindex);
	}
}

#endif /* __EMPTCP_LIB_ACT_EVENTS_H */
