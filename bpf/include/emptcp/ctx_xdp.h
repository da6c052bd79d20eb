/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The XDP half of the context layer (ctx.h). Private: operators call the
 * emptcp_ctx_* dispatchers of ctx.h, never these.
 *
 * XDP sees full checksums only (ingress, before any offload state exists),
 * so the checksum primitives are RFC 1624 updates done in software on the
 * packet. Frags (multi-buffer XDP) are not supported: lengths are of the
 * linear part, and load/store past it fail.
 */
#ifndef __EMPTCP_CTX_XDP_H
#define __EMPTCP_CTX_XDP_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "compiler.h"
#include "csum_ops.h"

/* Packet offsets are masked with this before pointer arithmetic: the
 * verifier allows variable packet offsets up to MAX_PACKET_OFF (0xffff). */
#define EMPTCP_CTX_OFF_MAX 0xffff

static __emptcp_inline void *__emptcp_xdp_data(struct xdp_md *x)
{
	return (void *)(long)x->data;
}

static __emptcp_inline void *__emptcp_xdp_data_end(struct xdp_md *x)
{
	return (void *)(long)x->data_end;
}

static __emptcp_inline __u32 __emptcp_xdp_len(struct xdp_md *x)
{
	/* The barrier keeps the difference a scalar: without it clang 14
	 * reassociates `n - (data_end - data)` into `(n + data) - data_end` in
	 * 32 bits, which the verifier refuses ("R2 32-bit pointer arithmetic
	 * prohibited", kernel 6.18). */
	void *data = __emptcp_xdp_data(x), *end = __emptcp_xdp_data_end(x);
	__u32 len = (long)end - (long)data;

	asm volatile("" : "+r"(len));
	return len;
}

/* Software checksum update of the 16-bit field at `off`. flags as for
 * bpf_l4_csum_replace: the low 4 bits are the size of from/to (0: `to` is a
 * precomputed sum diff, 2, 4); BPF_F_PSEUDO_HDR needs nothing extra with a
 * full checksum. */
static __emptcp_inline int __emptcp_xdp_csum_replace(struct xdp_md *x, __u32 off, __u32 from,
						     __u32 to, __u64 flags)
{
	void *data = __emptcp_xdp_data(x), *end = __emptcp_xdp_data_end(x);
	__sum16 *p = data + (off & EMPTCP_CTX_OFF_MAX);
	__u32 diff;

	if ((void *)(p + 1) > end)
		return -1;
	switch (flags & BPF_F_HDR_FIELD_MASK) {
	case 0:
		diff = to;
		break;
	case 2:
		diff = emptcp_csum_diff16(from, to);
		break;
	case 4:
		diff = emptcp_csum_diff32(from, to);
		break;
	default:
		return -1;
	}
	*p = emptcp_csum_apply(*p, diff);
	return 0;
}

static __emptcp_inline int __emptcp_xdp_check_mtu(struct xdp_md *x, __u32 ifindex, __u32 l3_len)
{
	/* A non-zero *mtu_len is taken as the L3 length (like fib_lookup), so
	 * VLAN tags do not count against the MTU. */
	__u32 mtu_len = l3_len;

	return bpf_check_mtu(x, ifindex, &mtu_len, 0, 0);
}

/* Set the linear length to new_len (grow: new bytes are zeroed by the
 * kernel). */
static __emptcp_inline int __emptcp_xdp_change_tail(struct xdp_md *x, __u32 new_len)
{
	return bpf_xdp_adjust_tail(x, (int)new_len - (int)__emptcp_xdp_len(x));
}

#endif /* __EMPTCP_CTX_XDP_H */
