/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Per-hook packet counters of the entry programs (enum emptcp_entry_counter). */
#ifndef __EMPTCP_LIB_COUNTERS_H
#define __EMPTCP_LIB_COUNTERS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include <emptcp/abi.h>

/* Shared by every generation and attachment of the entry programs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMPTCP_HOOK__MAX * EMPTCP_CNT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} emptcp_counters SEC(".maps");

static __emptcp_inline void emptcp_count(enum emptcp_hook hook, enum emptcp_entry_counter c)
{
	__u32 idx = hook * EMPTCP_CNT__MAX + c;
	__u64 *v = bpf_map_lookup_elem(&emptcp_counters, &idx);

	/* Per-CPU value: a plain add, no atomics. */
	if (v)
		(*v)++;
}

#endif /* __EMPTCP_LIB_COUNTERS_H */
