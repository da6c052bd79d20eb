/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The TC (skb) half of the context layer (ctx.h). Private: operators call
 * the emptcp_ctx_* dispatchers of ctx.h, never these.
 *
 * The skb side owns the CHECKSUM_PARTIAL rule: checksum fields are only ever
 * changed through bpf_l3_csum_replace / bpf_l4_csum_replace, which look at
 * skb->ip_summed. For CHECKSUM_PARTIAL (TC egress of locally generated or
 * veth-forwarded TCP) the TCP check field holds only the pseudo-header sum,
 * so a data change must leave it alone and a pseudo-header change
 * (BPF_F_PSEUDO_HDR) must update it; for CHECKSUM_COMPLETE a pseudo-header
 * change must also update skb->csum. The helpers do exactly that; a manual
 * RFC 1624 update here would corrupt PARTIAL packets (reference 6.1 item 1).
 */
#ifndef __EMPTCP_CTX_SKB_H
#define __EMPTCP_CTX_SKB_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "compiler.h"

#ifndef EMPTCP_CTX_OFF_MAX
#define EMPTCP_CTX_OFF_MAX 0xffff
#endif

/* include/linux/skbuff.h; not in the uapi headers. */
#define EMPTCP_CHECKSUM_PARTIAL 3

/* Only ip_summed is read; CO-RE finds it in the running kernel's sk_buff
 * (libbpf drops the ___emptcp suffix when matching). */
struct sk_buff___emptcp {
	__u8 ip_summed : 2;
} __attribute__((preserve_access_index));

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

static __emptcp_inline void *__emptcp_skb_data(struct __sk_buff *skb)
{
	return (void *)(long)skb->data;
}

static __emptcp_inline void *__emptcp_skb_data_end(struct __sk_buff *skb)
{
	return (void *)(long)skb->data_end;
}

static __emptcp_inline __u32 __emptcp_skb_len(struct __sk_buff *skb)
{
	return skb->len;
}

/* True if skb->ip_summed is CHECKSUM_PARTIAL. Needs the bpf_cast_to_kern_ctx
 * kfunc (kernel >= 6.2) and kernel BTF.
 *
 * Test objects may #define EMPTCP_TEST_MOCK_CSUM_PARTIAL to an expression
 * (say, a global set by the test) before including: BPF_PROG_TEST_RUN cannot
 * make a CHECKSUM_PARTIAL skb (net/bpf/test_run.c sets CHECKSUM_NONE or,
 * with BPF_F_TEST_SKB_CHECKSUM_COMPLETE, CHECKSUM_COMPLETE), so the refusal
 * paths are tested by forcing the answer. */
static __emptcp_inline int __emptcp_skb_csum_partial(struct __sk_buff *skb)
{
	struct sk_buff___emptcp *kskb = bpf_cast_to_kern_ctx(skb);

#ifdef EMPTCP_TEST_MOCK_CSUM_PARTIAL
	if (EMPTCP_TEST_MOCK_CSUM_PARTIAL)
		return 1;
#endif
	return BPF_CORE_READ_BITFIELD(kskb, ip_summed) == EMPTCP_CHECKSUM_PARTIAL;
}

static __emptcp_inline int __emptcp_skb_is_gso(struct __sk_buff *skb)
{
	return skb->gso_size != 0;
}

static __emptcp_inline int __emptcp_skb_check_mtu(struct __sk_buff *skb, __u32 ifindex,
						  __u32 l3_len)
{
	/* A non-zero *mtu_len is the L3 length: tags and GSO totals do not
	 * count (net/core/filter.c, bpf_skb_check_mtu). */
	__u32 mtu_len = l3_len;

	return bpf_check_mtu(skb, ifindex, &mtu_len, 0, 0);
}

#endif /* __EMPTCP_CTX_SKB_H */
