/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The ABI between the data plane and user space: every map key and value that
 * user space reads or writes. This header is the single source of truth; the
 * Rust side uses the types libbpf-cargo generates from the objects' BTF and
 * never declares them a second time.
 *
 * Rules (docs/abi.md): fixed-width fields, explicit padding, a size assertion
 * per struct, enums (not #defines) for constants so that they reach BTF, and a
 * __MAX sentinel on every enum.
 */
#ifndef __EMPTCP_ABI_H
#define __EMPTCP_ABI_H

#include <linux/types.h>
#include "compiler.h"

/* Bumped on any incompatible change of a type in this file. */
enum emptcp_abi {
	EMPTCP_ABI_VERSION = 1,
};

/* Where an entry program runs. */
enum emptcp_hook {
	EMPTCP_HOOK_XDP = 0,
	EMPTCP_HOOK_TC_INGRESS = 1,
	EMPTCP_HOOK_TC_EGRESS = 2,
	EMPTCP_HOOK__MAX,
};

/*
 * One direction of one TCP flow as seen at one attachment. Addresses are
 * 16 bytes; IPv4 uses the first 4 and leaves the rest zero, so a key is never
 * ambiguous between families (family is part of the key).
 */
struct emptcp_flow_key {
	__u32 ifindex;
	__u8 hook;   /* enum emptcp_hook */
	__u8 family; /* AF_INET or AF_INET6 */
	__be16 sport;
	__be16 dport;
	__u16 _pad;
	__u8 saddr[16];
	__u8 daddr[16];
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_flow_key) != 44);

/* Per-CPU traffic counters of one flow key; user space sums the CPUs. */
struct emptcp_flow_stats {
	__u64 packets;
	/* Bytes of IP packets (L3 and up); at TC one GSO skb counts in full. */
	__u64 bytes;
	/* TCP payload bytes. */
	__u64 payload_bytes;
	__u64 last_seen_ns;
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_flow_stats) != 32);

/* Packet counters of an entry program, indexed by enum emptcp_entry_counter. */
enum emptcp_entry_counter {
	EMPTCP_CNT_SEEN = 0,     /* every packet the entry ran on */
	EMPTCP_CNT_NOT_TCP,      /* left at once: not IPv4/IPv6 TCP */
	EMPTCP_CNT_MALFORMED,    /* headers truncated or inconsistent */
	EMPTCP_CNT_FRAGMENT,     /* IP fragments: passed untouched */
	EMPTCP_CNT_TCP,          /* TCP packets parsed */
	EMPTCP_CNT_MPTCP,        /* ... of which carry an MPTCP option */
	EMPTCP_CNT_FLOW_MAP_FULL,/* flow stats update failed */
	EMPTCP_CNT__MAX,
};

#endif /* __EMPTCP_ABI_H */
