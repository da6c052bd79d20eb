/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The ADD_ADDRs blk_subflow strips, kept per MPTCP connection for
 * add_subflow (struct emptcp_addr_kept, abi.h).
 *
 * Keyed by the connection's id in connection tracking (the listener's
 * token, emptcp_ct_conn's key), not by a subflow: an ADD_ADDR belongs to
 * the connection (RFC 8684 section 3.4.1: it may travel on any subflow, and
 * its HMAC covers only the keys and the address), so whichever subflow
 * carried it, any subflow's packet in the same direction can carry it back,
 * and a subflow that closes takes nothing with it. The entry names its
 * connection's incarnation (the listener's IDSN): a token reused by a later
 * connection finds an entry of another incarnation and starts afresh.
 *
 * Sized like the connection table and LRU like it: a full store forgets
 * the least recently used connection; an entry it cannot create is counted
 * (addr_store_full). MP_FASTCLOSE, where conntrack forgets the connection,
 * deletes its entry (conntrack.h).
 */
#ifndef __EMPTCP_LIB_ADDR_STORE_H
#define __EMPTCP_LIB_ADDR_STORE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include <emptcp/abi.h>

#include "counters.h"

#define EMPTCP_ADDR_STORE_MAX 32768 /* EMPTCP_CT_CONNS_MAX */

/* Shared by every generation and attachment. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EMPTCP_ADDR_STORE_MAX);
	__type(key, __u32);
	__type(value, struct emptcp_addr_kept);
} emptcp_addr_store SEC(".maps");

/*
 * Slots armed by add_subflow and not yet put back, over all connections: a
 * gate, so that a packet pays for the conntrack and store lookups of the
 * carrier step only while something waits. It only ever saves lookups: an
 * armed entry forgotten by the LRU leaves it too high, never too low.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} emptcp_addr_armed SEC(".maps");

static const struct emptcp_addr_kept emptcp_addr_zero;

/* Slot of the ADD_ADDRs the endpoint with IDSN `idsn` sends. */
static __emptcp_inline __u32 emptcp_addr_slot_of(const struct emptcp_conn_ct *conn, __u64 idsn)
{
	return idsn == conn->idsn_listener ? 0 : 1;
}

/*
 * The store entry of the connection `token` (tracked as `conn`), made
 * afresh when missing (`create`) or left by an earlier connection with the
 * same token. NULL when there is none, or the store refused it (counted).
 */
static __emptcp_inline struct emptcp_addr_kept *
emptcp_addr_entry(enum emptcp_hook hook, __u32 token, const struct emptcp_conn_ct *conn, int create)
{
	struct emptcp_addr_kept *e = bpf_map_lookup_elem(&emptcp_addr_store, &token);

	if (!e) {
		if (!create)
			return NULL;
		/* NOEXIST: a racing CPU's entry stands (its EEXIST is no
		 * failure: the lookup finds it). */
		bpf_map_update_elem(&emptcp_addr_store, &token, &emptcp_addr_zero, BPF_NOEXIST);
		e = bpf_map_lookup_elem(&emptcp_addr_store, &token);
		if (!e) {
			emptcp_count(hook, EMPTCP_CNT_ADDR_STORE_FULL);
			return NULL;
		}
		/* A new entry has incarnation 0: set once, by whoever wins. */
		__sync_val_compare_and_swap(&e->idsn_listener, 0, conn->idsn_listener);
	}
	if (e->idsn_listener != conn->idsn_listener) {
		/* Another connection had this token: nothing of it applies.
		 * Not atomic with respect to a CPU using the old entry, which
		 * can only be a CPU handling that old connection's last
		 * packets. */
		e->slot[0].state = EMPTCP_ADDR_EMPTY;
		e->slot[1].state = EMPTCP_ADDR_EMPTY;
		e->armed = 0;
		e->reported = 0;
		e->idsn_listener = conn->idsn_listener;
	}
	return e;
}

#endif /* __EMPTCP_LIB_ADDR_STORE_H */
