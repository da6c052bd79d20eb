/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Per-CPU room for the actors that edit TCP options (blk_subflow,
 * set_backup): the option area, a copy of the parse the edit may change,
 * an option being built and one being kept: 300 bytes the entry's stack cannot spare (512
 * bytes for the entry and its calls together, tcpopt's commit among them).
 * One slot per hook: a TC program may run inside an XDP one's softirq.
 */
#ifndef __EMPTCP_LIB_EDIT_SCRATCH_H
#define __EMPTCP_LIB_EDIT_SCRATCH_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include <emptcp/abi.h>
#include <emptcp/parse.h>
#include <emptcp/tcpopt.h>

/* set_backup's quota entry: one subflow (keyed as connection tracking
 * keys it) under one generation, so a new generation starts afresh and
 * the old one's entries age out of the LRU. */
struct emptcp_prio_key {
	struct emptcp_ct_key subflow;
	__u32 generation;
};

struct emptcp_edit_scratch {
	struct emptcp_tcpopt_area area;
	struct emptcp_pkt pkt;
	__u8 opt[EMPTCP_TCPOPT_MAX_LEN];
	/* blk_subflow: the ADD_ADDR it keeps, copied before the strip. */
	__u8 kept[32];
	/* set_backup: its quota entry's key. */
	struct emptcp_prio_key prio_key;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMPTCP_HOOK__MAX);
	__type(key, __u32);
	__type(value, struct emptcp_edit_scratch);
} emptcp_edit SEC(".maps");

#endif /* __EMPTCP_LIB_EDIT_SCRATCH_H */
