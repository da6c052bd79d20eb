/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * TCP and IPv4 checksum updates that are right at every hook: full
 * checksums (XDP ingress, TC ingress: RFC 1624 incremental updates) and
 * CHECKSUM_PARTIAL skbs (TC egress), through the context layer (ctx.h).
 * Pure arithmetic is in csum_ops.h.
 *
 * The rule, once: a change of bytes that the TCP checksum covers (header,
 * options, payload) is a *data* change; a change of the IP addresses or of
 * the TCP length is a *pseudo-header* change. With CHECKSUM_PARTIAL the
 * check field holds only the pseudo-header sum: data changes must not touch
 * it, pseudo-header changes must. bpf_l4_csum_replace does exactly this
 * when told which kind a change is (BPF_F_PSEUDO_HDR), and with
 * CHECKSUM_COMPLETE it also keeps skb->csum right. So every TCP checksum
 * update here is one of the two calls below, never a store to the field.
 *
 * API (all return 0 or -EMPTCP_SKIP_HELPER; none moves the packet at XDP;
 * at TC the kernel helpers may, so revalidate packet pointers afterwards):
 *   emptcp_csum_l4_data_diff(c, pkt, diff)
 *        covered data changed by the sum `diff` (e.g. from
 *        emptcp_csum_bytes_diff or emptcp_csum_words40 differences).
 *   emptcp_csum_l4_data_replace2(c, pkt, off, from, to)
 *        the 16-bit word at packet offset `off` changed (off - l4_off even).
 *   emptcp_csum_l4_data_replace_bytes(c, pkt, off, old, new, len)
 *        `len` bytes at `off` changed, any alignment (odd offsets too).
 *   emptcp_csum_l4_pseudo_len(c, pkt, old_len, new_len)
 *        the TCP length (header + payload, host order) changed.
 *   emptcp_csum_ipv4_replace2(c, pkt, from, to)
 *        a 16-bit IPv4 header field changed (e.g. the total length; every
 *        16-bit field of the header is at an even position): updates the
 *        IPv4 header checksum.
 *   __u32 emptcp_csum_bytes_diff(old, new, len, odd)
 *        the sum diff of a byte change starting at an odd or even position.
 *
 * Byte order: from/to are the field's bytes as they are in the packet
 * (__be16/__be32); lengths given to emptcp_csum_l4_pseudo_len are host
 * order. Checksum duty: these are the duty; the bytes themselves are
 * written by the caller (emptcp_ctx_store_bytes or a packet pointer).
 *
 * Example (replace the 3-byte MP_PRIO at odd packet offset `off`):
 *   __u8 old[3], new[3] = { 30, 3, 0x51 };
 *   emptcp_ctx_load_bytes(&c, off, old, 3);
 *   emptcp_ctx_store_bytes(&c, off, new, 3);
 *   emptcp_csum_l4_data_replace_bytes(&c, &pkt, off, old, new, 3);
 */
#ifndef __EMPTCP_CSUM_H
#define __EMPTCP_CSUM_H

#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include "compiler.h"
#include "csum_ops.h"
#include "ctx.h"
#include "parse.h"
#include "skip.h"

/* Offset of the TCP check field in the packet. */
static __emptcp_inline __u32 emptcp_csum_l4_field(const struct emptcp_pkt *pkt)
{
	return pkt->l4_off + 16;
}

/* Sum diff of `len` bytes (at most 40, a constant for cheap verification)
 * changed from old to new, the first at an odd (odd & 1) or even position
 * counted from the start of the TCP header. */
static __emptcp_inline __u32 emptcp_csum_bytes_diff(const __u8 *old, const __u8 *new, __u32 len,
						    __u32 odd)
{
	__u32 add = 0, sub = 0;
	int i;

#pragma unroll
	for (i = 0; i < 40; i++) {
		if (i >= len)
			break;
		add = emptcp_csum_add(add, emptcp_csum_byte(new[i], odd + i));
		sub = emptcp_csum_add(sub, emptcp_csum_byte(old[i], odd + i));
	}
	return emptcp_csum_sub(add, sub);
}

static __emptcp_inline int emptcp_csum_l4_data_diff(const struct emptcp_ctx *c,
						    const struct emptcp_pkt *pkt, __u32 diff)
{
	if (emptcp_ctx_l4_csum_replace(c, emptcp_csum_l4_field(pkt), 0, diff, 0))
		return EMPTCP_SKIP(HELPER);
	return 0;
}

static __emptcp_inline int emptcp_csum_l4_data_replace2(const struct emptcp_ctx *c,
							const struct emptcp_pkt *pkt, __u32 off,
							__be16 from, __be16 to)
{
	if ((off - pkt->l4_off) & 1) {
		/* An odd position pairs the word's bytes with their
		 * neighbours: the word's sum must be split (csum_ops.h). */
		__u8 o[2] = { ((__u8 *)&from)[0], ((__u8 *)&from)[1] };
		__u8 n[2] = { ((__u8 *)&to)[0], ((__u8 *)&to)[1] };

		return emptcp_csum_l4_data_diff(c, pkt, emptcp_csum_bytes_diff(o, n, 2, 1));
	}
	if (emptcp_ctx_l4_csum_replace(c, emptcp_csum_l4_field(pkt), from, to, 2))
		return EMPTCP_SKIP(HELPER);
	return 0;
}

static __emptcp_inline int emptcp_csum_l4_data_replace_bytes(const struct emptcp_ctx *c,
							     const struct emptcp_pkt *pkt,
							     __u32 off, const __u8 *old,
							     const __u8 *new, __u32 len)
{
	return emptcp_csum_l4_data_diff(
		c, pkt, emptcp_csum_bytes_diff(old, new, len, (off - pkt->l4_off) & 1));
}

static __emptcp_inline int emptcp_csum_l4_pseudo_len(const struct emptcp_ctx *c,
						     const struct emptcp_pkt *pkt, __u32 old_len,
						     __u32 new_len)
{
	/* IPv4 pseudo-header: 16-bit TCP length; IPv6: 32-bit, whose low
	 * half is what changes below 64 KiB. Both at an even position. */
	if (emptcp_ctx_l4_csum_replace(c, emptcp_csum_l4_field(pkt), bpf_htons((__u16)old_len),
				       bpf_htons((__u16)new_len), BPF_F_PSEUDO_HDR | 2))
		return EMPTCP_SKIP(HELPER);
	return 0;
}

static __emptcp_inline int emptcp_csum_ipv4_replace2(const struct emptcp_ctx *c,
						     const struct emptcp_pkt *pkt, __be16 from,
						     __be16 to)
{
	if (emptcp_ctx_l3_csum_replace(c, pkt->l3_off + 10, from, to, 2))
		return EMPTCP_SKIP(HELPER);
	return 0;
}

#endif /* __EMPTCP_CSUM_H */
