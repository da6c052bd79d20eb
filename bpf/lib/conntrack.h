/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * MPTCP connection tracking, learned only from the handshakes the data plane
 * itself sees (docs/engine.md, "Connection tracking"):
 *
 *   MP_CAPABLE SYN       a subflow, index 0, the initiator's ISN
 *   MP_CAPABLE SYN/ACK   the listener's ISN; with the listener's key (v1):
 *                        its token and IDSN (SHA-256, RFC 8684 section 3.2)
 *                        -> the connection, named by the listener's token
 *   MP_CAPABLE ACK/data  both keys: the initiator's token and IDSN too
 *   MP_JOIN SYN          the token it carries names the connection; the
 *                        subflow gets the next index (order of SYNs seen)
 *   FIN both ways, RST, MP_TCPRST: the subflow is forgotten;
 *   SYN/ACK without MP_CAPABLE / MP_JOIN: fallback to TCP or a refused
 *                        join: the subflow is forgotten (ct_fallback);
 *   MP_FASTCLOSE: the connection, its tokens and its kept ADD_ADDRs
 *   (addr_store.h) are forgotten;
 *   an infinite mapping (DSS mapping with data-level length 0), or MP_FAIL
 *   without RST: fallback after the handshake (RFC 8684 section 3.7): the
 *                        subflow is forgotten (ct_fallback_late), and with
 *                        it the connection, its tokens and kept ADD_ADDRs
 *                        when no join of the connection was ever seen.
 *
 * Why the connection goes too: section 3.7 allows the infinite mapping
 * only while a single subflow is in use, and MP_FAIL without RST is its
 * single-subflow form (with other subflows the receiver MUST answer a bad
 * checksum with RST + MP_FAIL, which is a plain close here); it is followed
 * by the infinite mapping or by RST (Linux resets the subflow when its
 * MP_FAIL goes unanswered). Either way the connection can never
 * carry MPTCP options again, so its tokens name no future join. The tracker
 * counts SYNs, not live subflows (and the LRU forgets silently), so when it
 * saw a join it cannot prove the join closed: it keeps the connection
 * rather than trust the peer, and the LRU ages it out. MP_FAIL and the
 * infinite mapping travel in opposite directions (the receiver of the bad
 * data sends the first, the data's sender the second), so an attachment
 * that sees one direction only still sees one of them.
 *
 * The tokens are derived here, on the packet that carries the key, so a
 * join's connection is known before the join's SYN passes: the key travels
 * in the MP_CAPABLE handshake, which the peer completes before its path
 * manager opens a join (counter ct_join_unknown says when it was not so).
 * SHA-256 costs ~250 ns and runs at most twice per connection.
 */
#ifndef __EMPTCP_LIB_CONNTRACK_H
#define __EMPTCP_LIB_CONNTRACK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include <emptcp/abi.h>
#include <emptcp/mptcp.h>
#include <emptcp/parse.h>
#include <emptcp/sha256.h>

#include "addr_store.h"
#include "counters.h"

#define EMPTCP_CT_SUBFLOWS_MAX 65536
#define EMPTCP_CT_CONNS_MAX 32768

/* All three shared by every generation and attachment (LRU: a full table
 * forgets the oldest entries; refusals are counted as ct_full). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EMPTCP_CT_SUBFLOWS_MAX);
	__type(key, struct emptcp_ct_key);
	__type(value, struct emptcp_subflow_ct);
} emptcp_ct_sf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EMPTCP_CT_CONNS_MAX);
	__type(key, __u32);
	__type(value, struct emptcp_conn_ct);
} emptcp_ct_conn SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 2 * EMPTCP_CT_CONNS_MAX);
	__type(key, __u32);
	__type(value, struct emptcp_token_ct);
} emptcp_ct_tok SEC(".maps");

/* Scratch for emptcp_ct_learn's key, per CPU and hook. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMPTCP_HOOK__MAX);
	__type(key, __u32);
	__type(value, struct emptcp_ct_key);
} emptcp_ct_keybuf SEC(".maps");

/* First values of new entries, from .rodata (see __emptcp_ct_capable). */
static const struct emptcp_conn_ct emptcp_ct_zero_conn;
static const struct emptcp_subflow_ct emptcp_ct_zero_subflow;

/* Fills the canonical key of the packet's subflow; returns 1 when the
 * packet's sender is endpoint "lo". */
static __emptcp_inline int emptcp_ct_key_of(const struct emptcp_pkt *pkt, struct emptcp_ct_key *key)
{
	const __u32 *s = (const __u32 *)pkt->saddr, *d = (const __u32 *)pkt->daddr;
	int sender_lo = 0, decided = 0, w;

#pragma unroll
	for (w = 0; w < 4; w++) {
		__u32 a = bpf_ntohl(s[w]), b = bpf_ntohl(d[w]);

		if (!decided && a != b) {
			sender_lo = a < b;
			decided = 1;
		}
	}
	if (!decided)
		sender_lo = bpf_ntohs(pkt->sport) <= bpf_ntohs(pkt->dport);

	__builtin_memset(key, 0, sizeof(*key));
	key->family = pkt->family;
	if (sender_lo) {
		__builtin_memcpy(key->addr_lo, pkt->saddr, 16);
		__builtin_memcpy(key->addr_hi, pkt->daddr, 16);
		key->port_lo = pkt->sport;
		key->port_hi = pkt->dport;
	} else {
		__builtin_memcpy(key->addr_lo, pkt->daddr, 16);
		__builtin_memcpy(key->addr_hi, pkt->saddr, 16);
		key->port_lo = pkt->dport;
		key->port_hi = pkt->sport;
	}
	return sender_lo;
}

/* Registers `token` as naming connection `conn`. */
static __emptcp_inline void __emptcp_ct_token(enum emptcp_hook hook, __u32 token, __u32 conn,
					       __u32 listener)
{
	struct emptcp_token_ct t = { .conn = conn, .listener = listener };

	if (bpf_map_update_elem(&emptcp_ct_tok, &token, &t, BPF_ANY))
		emptcp_count(hook, EMPTCP_CNT_CT_FULL);
}

/*
 * Learns from an MP_CAPABLE option carrying keys: the listener's key (on the
 * SYN/ACK, sent by the listener) and, on the third ACK or first data (sent by
 * the initiator), both. Updates the connection and the subflow `sf`.
 */
static __emptcp_inline void __emptcp_ct_capable(enum emptcp_hook hook, void *data, void *data_end,
						const struct emptcp_pkt *pkt, int sender_lo,
						struct emptcp_subflow_ct *sf)
{
	struct emptcp_mptcp_capable cap;
	struct emptcp_sha256_key_hash h = {};
	struct emptcp_conn_ct *conn;
	__u64 key_listener, key_initiator = 0;
	int initiator_lo = !!(sf->flags & EMPTCP_CT_INITIATOR_LO);
	__u32 id;

	if (emptcp_mptcp_read_capable(data, data_end, pkt->off_handshake, &cap) || cap.len < 12)
		return;
	if (pkt->tcp_flags & EMPTCP_TCP_SYN) {
		/* SYN/ACK: the sender is the listener. */
		key_listener = cap.sender_key;
	} else if (cap.len >= 20) {
		/* ACK or first data: sender = initiator, receiver = listener. */
		key_initiator = cap.sender_key;
		key_listener = cap.receiver_key;
	} else {
		return;
	}
	if (sf->flags & EMPTCP_CT_KNOWN) {
		id = sf->token;
	} else {
		if (emptcp_sha256_key(key_listener, &h))
			return;
		id = h.token;
		/* Created zeroed and filled in place: a value built on the
		 * stack would push the entry, this function and SHA-256 past
		 * the verifier's 512-byte combined stack. NOEXIST: a racing
		 * CPU may have created it; keep theirs. */
		if (bpf_map_update_elem(&emptcp_ct_conn, &id, &emptcp_ct_zero_conn, BPF_NOEXIST) == 0) {
			conn = bpf_map_lookup_elem(&emptcp_ct_conn, &id);
			if (conn) {
				conn->key_listener = key_listener;
				conn->token_listener = id;
				conn->idsn_listener = h.idsn;
				conn->subflows = 1;
			}
			__emptcp_ct_token(hook, id, id, 1);
			emptcp_count(hook, EMPTCP_CNT_CT_CONNECTION);
		}
	}
	conn = bpf_map_lookup_elem(&emptcp_ct_conn, &id);
	if (!conn) {
		emptcp_count(hook, EMPTCP_CNT_CT_FULL);
		return;
	}
	if (key_initiator && !conn->key_initiator) {
		if (emptcp_sha256_key(key_initiator, &h))
			return;
		conn->key_initiator = key_initiator;
		conn->token_initiator = h.token;
		conn->idsn_initiator = h.idsn;
		__emptcp_ct_token(hook, h.token, id, 0);
	}
	sf->token = id;
	sf->token_initiator = conn->token_initiator;
	sf->flags |= EMPTCP_CT_KNOWN;
	sf->idsn_lo = initiator_lo ? conn->idsn_initiator : conn->idsn_listener;
	sf->idsn_hi = initiator_lo ? conn->idsn_listener : conn->idsn_initiator;
	sf->version++;
}

/* A new subflow from its SYN (or SYN/ACK when the SYN passed elsewhere),
 * created zeroed and filled in place (see __emptcp_ct_capable); its version
 * is set last, so a reader on another CPU never remembers a half-made
 * entry as final. Not inlined: its MP_JOIN copy then does not share the
 * stack frame that calls SHA-256 (512 bytes for the whole call chain). */
static __attribute__((noinline)) struct emptcp_subflow_ct *
__emptcp_ct_open(enum emptcp_hook hook, void *data, void *data_end, const struct emptcp_pkt *pkt,
		 const struct emptcp_ct_key *key)
{
	/* BPF calls take five arguments: which endpoint sent the packet is
	 * read back from the key. */
	const __u32 *s = (const __u32 *)pkt->saddr, *lo = (const __u32 *)key->addr_lo;
	int sender_lo = pkt->sport == key->port_lo && s[0] == lo[0] && s[1] == lo[1] &&
			s[2] == lo[2] && s[3] == lo[3];
	struct emptcp_subflow_ct *sf;
	int synack = pkt->tcp_flags & EMPTCP_TCP_ACK;
	int initiator_lo = synack ? !sender_lo : sender_lo;

	if (bpf_map_update_elem(&emptcp_ct_sf, key, &emptcp_ct_zero_subflow, BPF_NOEXIST))
		return bpf_map_lookup_elem(&emptcp_ct_sf, key);
	sf = bpf_map_lookup_elem(&emptcp_ct_sf, key);
	if (!sf)
		return NULL;
	emptcp_count(hook, EMPTCP_CNT_CT_SUBFLOW);
	sf->flags = initiator_lo ? EMPTCP_CT_INITIATOR_LO : 0;
	if (sender_lo)
		sf->isn_lo = pkt->seq;
	else
		sf->isn_hi = pkt->seq;
	sf->index = 0xff;
	if (pkt->mptcp_subtypes & (1u << EMPTCP_MPTCP_MP_JOIN)) {
		struct emptcp_mptcp_join join;
		struct emptcp_token_ct *tok;
		struct emptcp_conn_ct *conn;

		sf->flags |= EMPTCP_CT_JOIN;
		if (!synack &&
		    !emptcp_mptcp_read_join(data, data_end, pkt->off_handshake, &join) &&
		    join.form == EMPTCP_MPTCP_JOIN_SYN) {
			sf->addr_id = join.address_id;
			if (join.backup)
				sf->flags |= EMPTCP_CT_BACKUP;
			tok = bpf_map_lookup_elem(&emptcp_ct_tok, &join.token);
			conn = tok ? bpf_map_lookup_elem(&emptcp_ct_conn, &tok->conn) : NULL;
			if (conn) {
				/* The receiver of the SYN owns the token: when it
				 * is the listener, the join's initiator is the
				 * connection's initiator. */
				int lo_is_conn_initiator = initiator_lo == (int)tok->listener;

				sf->token = conn->token_listener;
				sf->token_initiator = conn->token_initiator;
				sf->flags |= EMPTCP_CT_KNOWN;
				sf->index = __sync_fetch_and_add(&conn->subflows, 1);
				sf->idsn_lo = lo_is_conn_initiator ? conn->idsn_initiator
								   : conn->idsn_listener;
				sf->idsn_hi = lo_is_conn_initiator ? conn->idsn_listener
								   : conn->idsn_initiator;
			} else {
				emptcp_count(hook, EMPTCP_CNT_CT_JOIN_UNKNOWN);
			}
		}
	} else {
		sf->index = 0;
	}
	sf->version = 1;
	return sf;
}

/* Forgets connection `id` (its entry `conn`, NULL if gone), its tokens and
 * its kept ADD_ADDRs. */
static __emptcp_inline void __emptcp_ct_forget_conn(__u32 id, const struct emptcp_conn_ct *conn)
{
	if (conn) {
		bpf_map_delete_elem(&emptcp_ct_tok, &conn->token_initiator);
		bpf_map_delete_elem(&emptcp_ct_tok, &conn->token_listener);
	}
	bpf_map_delete_elem(&emptcp_ct_conn, &id);
	bpf_map_delete_elem(&emptcp_addr_store, &id);
}

/* Learns from one TCP packet; see emptcp_ct_learn_xdp / _tc. Returns the
 * subflow's entry, NULL when the subflow is not tracked. */
static __emptcp_inline struct emptcp_subflow_ct *
__emptcp_ct_learn(enum emptcp_hook hook, void *data, void *data_end, const struct emptcp_pkt *pkt)
{
	const __u32 handshake = (1u << EMPTCP_MPTCP_MP_CAPABLE) | (1u << EMPTCP_MPTCP_MP_JOIN);
	__u32 slot = hook;
	struct emptcp_subflow_ct *sf;
	struct emptcp_ct_key *key;
	__u8 flags = pkt->tcp_flags;
	int sender_lo;

	/* The key lives in a per-CPU slot, not on the stack: the entry, this
	 * function and SHA-256 share the verifier's 512-byte stack budget. */
	key = bpf_map_lookup_elem(&emptcp_ct_keybuf, &slot);
	if (!key)
		return NULL;
	sender_lo = emptcp_ct_key_of(pkt, key);
	sf = bpf_map_lookup_elem(&emptcp_ct_sf, key);
	if (!sf) {
		/* Only an MPTCP SYN or SYN/ACK opens an entry. */
		if (!(flags & EMPTCP_TCP_SYN) || !(pkt->mptcp_subtypes & handshake))
			return NULL;
		sf = __emptcp_ct_open(hook, data, data_end, pkt, key);
		if (!sf) {
			emptcp_count(hook, EMPTCP_CNT_CT_FULL);
			return NULL;
		}
	}
	sf->last_seen_ns = bpf_ktime_get_ns();
	if (flags & EMPTCP_TCP_SYN) {
		/* A SYN's window scale (RFC 7323), or none: shift 0. */
		__u8 ws = pkt->wscale ? pkt->wscale : 1;

		if (sender_lo)
			sf->wscale_lo = ws;
		else
			sf->wscale_hi = ws;
	}
	if ((flags & (EMPTCP_TCP_SYN | EMPTCP_TCP_ACK)) == (EMPTCP_TCP_SYN | EMPTCP_TCP_ACK) &&
	    !(pkt->mptcp_subtypes & handshake)) {
		/* An MPTCP SYN answered without MP_CAPABLE is plain TCP (RFC
		 * 8684 section 3.1: fallback); without MP_JOIN, a join refused
		 * (section 3.2). Either way no MPTCP subflow to track. */
		bpf_map_delete_elem(&emptcp_ct_sf, key);
		emptcp_count(hook, EMPTCP_CNT_CT_FALLBACK);
		return NULL;
	}
	if ((flags & (EMPTCP_TCP_SYN | EMPTCP_TCP_ACK)) == (EMPTCP_TCP_SYN | EMPTCP_TCP_ACK)) {
		/* SYN/ACK: the responder's ISN. */
		if (sender_lo)
			sf->isn_lo = pkt->seq;
		else
			sf->isn_hi = pkt->seq;
	}
	if ((pkt->mptcp_subtypes & (1u << EMPTCP_MPTCP_MP_CAPABLE)) && !(sf->flags & EMPTCP_CT_JOIN))
		__emptcp_ct_capable(hook, data, data_end, pkt, sender_lo, sf);

	if (pkt->mptcp_subtypes & (1u << EMPTCP_MPTCP_MP_FASTCLOSE))
		__emptcp_ct_forget_conn(sf->token, bpf_map_lookup_elem(&emptcp_ct_conn, &sf->token));
	if (!(flags & EMPTCP_TCP_RST) &&
	    ((pkt->mptcp_subtypes & (1u << EMPTCP_MPTCP_MP_FAIL)) ||
	     emptcp_mptcp_dss_infinite(data, data_end, pkt->off_dss))) {
		/* Fallback after the handshake (RFC 8684 section 3.7); what
		 * goes and why: the top of this file. With RST, MP_FAIL is a
		 * subflow's close, below. */
		if (sf->flags & EMPTCP_CT_KNOWN) {
			struct emptcp_conn_ct *conn = bpf_map_lookup_elem(&emptcp_ct_conn, &sf->token);

			if (conn && conn->subflows <= 1)
				__emptcp_ct_forget_conn(sf->token, conn);
		}
		bpf_map_delete_elem(&emptcp_ct_sf, key);
		emptcp_count(hook, EMPTCP_CNT_CT_FALLBACK_LATE);
		return NULL;
	}
	if (flags & EMPTCP_TCP_FIN)
		sf->flags |= sender_lo ? EMPTCP_CT_FIN_LO : EMPTCP_CT_FIN_HI;
	if ((flags & EMPTCP_TCP_RST) || (pkt->mptcp_subtypes & (1u << EMPTCP_MPTCP_MP_TCPRST)) ||
	    (pkt->mptcp_subtypes & (1u << EMPTCP_MPTCP_MP_FASTCLOSE)) ||
	    (sf->flags & (EMPTCP_CT_FIN_LO | EMPTCP_CT_FIN_HI)) ==
		    (EMPTCP_CT_FIN_LO | EMPTCP_CT_FIN_HI)) {
		bpf_map_delete_elem(&emptcp_ct_sf, key);
		emptcp_count(hook, EMPTCP_CNT_CT_CLOSED);
		return NULL;
	}
	return sf;
}

/*
 * Learns from one TCP packet (`hook`: where it was seen); returns 1 when its
 * subflow is tracked. Only handshake, teardown and fallback packets change
 * the tables (emptcp_ct_interesting); the entry calls this for those alone.
 *
 * Global functions, one per context type: the verifier checks each once,
 * whatever state the entry is in at the call, instead of once per path
 * reaching it (kernel 6.18: a TC entry verified 114k instructions with a
 * static function, 97k this way; a 16-operator generation 180k and 113k,
 * loading in 400 and 170 ms); and their frames keep the
 * tracker's keys and options off the entry's stack (512 bytes for the whole
 * call chain). They run on the few handshake, teardown and fallback packets only, so
 * the ~9 ns of a call do not matter.
 */
__attribute__((noinline)) int emptcp_ct_learn_xdp(struct xdp_md *ctx, const struct emptcp_pkt *pkt)
{
	/* The verifier passes a global function's pointers as maybe-NULL. */
	if (!ctx || !pkt)
		return 0;
	return !!__emptcp_ct_learn(EMPTCP_HOOK_XDP, (void *)(long)ctx->data,
				   (void *)(long)ctx->data_end, pkt);
}

__attribute__((noinline)) int emptcp_ct_learn_tc(struct __sk_buff *skb, const struct emptcp_pkt *pkt,
						 __u32 hook)
{
	if (!skb || !pkt)
		return 0;
	return !!__emptcp_ct_learn(hook == EMPTCP_HOOK_TC_EGRESS ? EMPTCP_HOOK_TC_EGRESS
								   : EMPTCP_HOOK_TC_INGRESS,
				   (void *)(long)skb->data, (void *)(long)skb->data_end, pkt);
}

/* Whether a packet can teach the tracker something. Runs on every TCP
 * packet: an ordinary DSS costs a byte load and a test (no mapping) or a
 * few more loads (emptcp_mptcp_dss_infinite); no map is touched. */
static __emptcp_inline int emptcp_ct_interesting(void *data, void *data_end,
						 const struct emptcp_pkt *pkt)
{
	const __u32 subtypes = (1u << EMPTCP_MPTCP_MP_CAPABLE) | (1u << EMPTCP_MPTCP_MP_JOIN) |
			       (1u << EMPTCP_MPTCP_MP_FASTCLOSE) | (1u << EMPTCP_MPTCP_MP_TCPRST) |
			       (1u << EMPTCP_MPTCP_MP_FAIL);

	/* SYN, FIN, RST, a handshake / teardown / failure option, or a
	 * fallback's infinite mapping. */
	return (pkt->tcp_flags & (EMPTCP_TCP_FIN | EMPTCP_TCP_SYN | EMPTCP_TCP_RST)) ||
	       (pkt->mptcp_subtypes & subtypes) ||
	       emptcp_mptcp_dss_infinite(data, data_end, pkt->off_dss);
}

#endif /* __EMPTCP_LIB_CONNTRACK_H */
