/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One context layer for XDP and TC, so that every helper above it (csum.h,
 * tcpopt.h, resize.h) is written once (the idea of Cilium's ctx/xdp.h and
 * ctx/skb.h). Unlike Cilium, the hook is not chosen per object with a
 * typedef but per call site with a constant in struct emptcp_ctx: one object
 * can hold XDP and TC programs built from the same helpers. Every helper is
 * inlined and `kind` is a compile-time constant at the call site, so clang
 * drops the other hook's branch (and if it did not, the verifier would: a
 * spilled constant is tracked exactly and the dead branch, with its
 * hook-specific helper calls, is never explored).
 *
 * API:
 *   struct emptcp_ctx c = EMPTCP_CTX_XDP(ctx) / EMPTCP_CTX_SKB(skb);
 *   void *emptcp_ctx_data(c), *emptcp_ctx_data_end(c)
 *   __u32 emptcp_ctx_len(c)                       bytes from data (XDP: linear)
 *   int emptcp_ctx_load_bytes(c, off, to, len)    0 or negative errno
 *   int emptcp_ctx_store_bytes(c, off, from, len) 0 or negative errno;
 *                                                 never touches a checksum
 *   int emptcp_ctx_store_bytes_rcsum(c, off, from, len)
 *        the same, but at TC keeps skb->csum right for CHECKSUM_COMPLETE
 *        (for bytes no checksum field compensates: moved headers, the
 *        IPv6 payload length)
 *   int emptcp_ctx_l3_csum_replace(c, off, from, to, size)
 *   int emptcp_ctx_l4_csum_replace(c, off, from, to, flags)
 *        the hook's checksum primitive, with bpf_l{3,4}_csum_replace
 *        semantics (flags: size in the low 4 bits, 0 = `to` is a sum diff;
 *        BPF_F_PSEUDO_HDR for pseudo-header fields). TC: the kernel helper,
 *        which honours ip_summed. XDP: RFC 1624 in software.
 *   int emptcp_ctx_csum_partial(c)                TC: ip_summed == PARTIAL
 *   int emptcp_ctx_is_gso(c)                      TC: gso_size != 0
 *   int emptcp_ctx_check_mtu(c, l3_len)           0 fits, 1 too big, < 0 error
 *   int emptcp_ctx_change_tail(c, new_len)        set the packet length
 *   EMPTCP_CTX_REVALIDATE(c, off, size)           packet pointer or NULL
 *
 * Offsets are bytes from emptcp_ctx_data(): at TC ingress and egress and at
 * XDP that is the Ethernet header, as for struct emptcp_pkt (parse.h).
 *
 * Pointer invalidation: emptcp_ctx_store_bytes, *_csum_replace at TC,
 * emptcp_ctx_change_tail and every resize (resize.h) may move the packet:
 * every packet pointer taken before them is invalid afterwards (the verifier
 * rejects its use with "R? invalid mem access 'scalar'" or "invalid access to
 * packet"). Re-derive pointers from offsets with EMPTCP_CTX_REVALIDATE.
 *
 * Example:
 *   struct emptcp_ctx c = EMPTCP_CTX_SKB(skb);
 *   struct tcphdr *th = EMPTCP_CTX_REVALIDATE(&c, pkt.l4_off, sizeof(*th));
 *   if (!th)
 *           return TC_ACT_OK;
 */
#ifndef __EMPTCP_CTX_H
#define __EMPTCP_CTX_H

#include "compiler.h"
#include "ctx_xdp.h"
#include "ctx_skb.h"

enum emptcp_ctx_kind {
	EMPTCP_CTX_KIND_XDP = 0,
	EMPTCP_CTX_KIND_SKB = 1,
};

struct emptcp_ctx {
	void *ctx;                 /* struct xdp_md * or struct __sk_buff * */
	enum emptcp_ctx_kind kind; /* a compile-time constant */
	/* The device whose MTU bounds header growth (resize.h); 0 = the
	 * packet's device (XDP: the receiving one; TC: skb->dev, at ingress
	 * the receiving one, at egress the sending one). */
	__u32 mtu_ifindex;
};

#define EMPTCP_CTX_XDP(x) ((struct emptcp_ctx){ .ctx = (x), .kind = EMPTCP_CTX_KIND_XDP })
#define EMPTCP_CTX_SKB(s) ((struct emptcp_ctx){ .ctx = (s), .kind = EMPTCP_CTX_KIND_SKB })

#define __EMPTCP_XDP(c) ((struct xdp_md *)(c)->ctx)
#define __EMPTCP_SKB(c) ((struct __sk_buff *)(c)->ctx)

static __emptcp_inline void *emptcp_ctx_data(const struct emptcp_ctx *c)
{
	if (c->kind == EMPTCP_CTX_KIND_XDP)
		return __emptcp_xdp_data(__EMPTCP_XDP(c));
	return __emptcp_skb_data(__EMPTCP_SKB(c));
}

static __emptcp_inline void *emptcp_ctx_data_end(const struct emptcp_ctx *c)
{
	if (c->kind == EMPTCP_CTX_KIND_XDP)
		return __emptcp_xdp_data_end(__EMPTCP_XDP(c));
	return __emptcp_skb_data_end(__EMPTCP_SKB(c));
}

static __emptcp_inline __u32 emptcp_ctx_len(const struct emptcp_ctx *c)
{
	if (c->kind == EMPTCP_CTX_KIND_XDP)
		return __emptcp_xdp_len(__EMPTCP_XDP(c));
	return __emptcp_skb_len(__EMPTCP_SKB(c));
}

/* `len` must be a constant or bounded by the size of `to` (the verifier
 * checks it: "invalid indirect access to stack"), and not 0. */
static __emptcp_inline int emptcp_ctx_load_bytes(const struct emptcp_ctx *c, __u32 off, void *to,
						 __u32 len)
{
	if (c->kind == EMPTCP_CTX_KIND_XDP)
		return bpf_xdp_load_bytes(__EMPTCP_XDP(c), off, to, len);
	return bpf_skb_load_bytes(__EMPTCP_SKB(c), off, to, len);
}

/* Writes bytes; never updates a checksum (no BPF_F_RECOMPUTE_CSUM: at TC
 * with CHECKSUM_COMPLETE the caller keeps skb->csum right by compensating
 * in the TCP check field, which keeps the packet's sum unchanged). */
static __emptcp_inline int emptcp_ctx_store_bytes(const struct emptcp_ctx *c, __u32 off,
						  const void *from, __u32 len)
{
	if (c->kind == EMPTCP_CTX_KIND_XDP)
		return bpf_xdp_store_bytes(__EMPTCP_XDP(c), off, (void *)from, len);
	return bpf_skb_store_bytes(__EMPTCP_SKB(c), off, from, len, 0);
}

/* Writes bytes and, at TC with CHECKSUM_COMPLETE, updates skb->csum for
 * them (BPF_F_RECOMPUTE_CSUM; nothing for other ip_summed values, nothing at
 * XDP). For bytes whose change no checksum field compensates: without it a
 * header move at TC ingress left skb->csum stale and the stack dropped the
 * packet (test_run: EBADMSG with BPF_F_TEST_SKB_CHECKSUM_COMPLETE). */
static __emptcp_inline int emptcp_ctx_store_bytes_rcsum(const struct emptcp_ctx *c, __u32 off,
							const void *from, __u32 len)
{
	if (c->kind == EMPTCP_CTX_KIND_XDP)
		return bpf_xdp_store_bytes(__EMPTCP_XDP(c), off, (void *)from, len);
	return bpf_skb_store_bytes(__EMPTCP_SKB(c), off, from, len, BPF_F_RECOMPUTE_CSUM);
}

static __emptcp_inline int emptcp_ctx_l3_csum_replace(const struct emptcp_ctx *c, __u32 off,
						      __u32 from, __u32 to, __u64 size)
{
	if (c->kind == EMPTCP_CTX_KIND_XDP)
		return __emptcp_xdp_csum_replace(__EMPTCP_XDP(c), off, from, to, size);
	return bpf_l3_csum_replace(__EMPTCP_SKB(c), off, from, to, size);
}

static __emptcp_inline int emptcp_ctx_l4_csum_replace(const struct emptcp_ctx *c, __u32 off,
						      __u32 from, __u32 to, __u64 flags)
{
	if (c->kind == EMPTCP_CTX_KIND_XDP)
		return __emptcp_xdp_csum_replace(__EMPTCP_XDP(c), off, from, to, flags);
	return bpf_l4_csum_replace(__EMPTCP_SKB(c), off, from, to, flags);
}

static __emptcp_inline int emptcp_ctx_csum_partial(const struct emptcp_ctx *c)
{
	if (c->kind == EMPTCP_CTX_KIND_XDP)
		return 0;
	return __emptcp_skb_csum_partial(__EMPTCP_SKB(c));
}

static __emptcp_inline int emptcp_ctx_is_gso(const struct emptcp_ctx *c)
{
	if (c->kind == EMPTCP_CTX_KIND_XDP)
		return 0;
	return __emptcp_skb_is_gso(__EMPTCP_SKB(c));
}

/* 0 if an IP packet of l3_len bytes fits the MTU of c->mtu_ifindex (0: the
 * packet's device), 1 (BPF_MTU_CHK_RET_FRAG_NEEDED) if not, < 0 on error. */
static __emptcp_inline int emptcp_ctx_check_mtu(const struct emptcp_ctx *c, __u32 l3_len)
{
	if (c->kind == EMPTCP_CTX_KIND_XDP)
		return __emptcp_xdp_check_mtu(__EMPTCP_XDP(c), c->mtu_ifindex, l3_len);
	return __emptcp_skb_check_mtu(__EMPTCP_SKB(c), c->mtu_ifindex, l3_len);
}

/* Sets the packet length to new_len at the tail; grown bytes are zero. */
static __emptcp_inline int emptcp_ctx_change_tail(const struct emptcp_ctx *c, __u32 new_len)
{
	if (c->kind == EMPTCP_CTX_KIND_XDP)
		return __emptcp_xdp_change_tail(__EMPTCP_XDP(c), new_len);
	return bpf_skb_change_tail(__EMPTCP_SKB(c), new_len, 0);
}

/*
 * A packet pointer to `size` bytes at offset `off`, re-derived from the
 * context, or NULL if the packet is shorter. Use after any call that may
 * move the packet. `size` must be a constant. The offset is masked to
 * EMPTCP_CTX_OFF_MAX: without the mask the verifier refuses the sum with
 * "R? unbounded memory access" / "math between pkt pointer and register
 * with unbounded min value" (kernel 6.18, clang 14).
 */
#define EMPTCP_CTX_REVALIDATE(c, off, size)                                            \
	({                                                                             \
		void *__d = emptcp_ctx_data(c);                                        \
		void *__e = emptcp_ctx_data_end(c);                                    \
		void *__p = __d + ((__u32)(off) & EMPTCP_CTX_OFF_MAX);                 \
		__p + (size) > __e ? (void *)0 : __p;                                  \
	})

#endif /* __EMPTCP_CTX_H */
