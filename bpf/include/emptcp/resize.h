/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Grow and shrink the TCP header (its option area) by a multiple of 4 bytes
 * at XDP and TC, keeping every length and checksum right.
 *
 * API:
 *   int emptcp_resize_check(c, pkt, delta)
 *        0 if emptcp_resize_tcp(c, pkt, delta) can be done here, else the
 *        negative skip reason it would return. Never changes the packet.
 *   int emptcp_resize_tcp(c, pkt, delta)
 *        delta > 0: appends delta zero bytes (EOL padding) at the end of the
 *        option area; delta < 0: removes the last -delta bytes of the option
 *        area, whatever they hold. Updates the IPv4 total length and header
 *        checksum or the IPv6 payload length, the data offset, the TCP
 *        checksum (pseudo-header length, data-offset word, removed bytes),
 *        and pkt->payload_off and pkt->l3_len. Returns 0, or a negative
 *        enum emptcp_skip_reason with the packet unchanged.
 *
 * Pointer invalidation: after emptcp_resize_tcp every packet pointer is
 * invalid, whatever it returned; offsets in *pkt stay valid (l3_off and
 * l4_off do not change, payload_off moves by delta). Revalidate with
 * EMPTCP_CTX_REVALIDATE (ctx.h).
 * Byte order: lengths are host order. Checksum duty: done (see above); the
 * caller who writes the new option bytes updates the checksum for them
 * (emptcp_tcpopt_commit in tcpopt.h does all of it).
 *
 * How, and the rules:
 * - A packet without payload (the IP packet ends at the TCP options: SYN,
 *   pure ACK) grows and shrinks at the tail (bpf_xdp_adjust_tail,
 *   bpf_skb_change_tail): no header moves, the TCP header stays where
 *   csum_start points, so this is right for CHECKSUM_PARTIAL too. Bytes
 *   after the IP packet (Ethernet padding) are dropped.
 * - XDP with payload: bpf_xdp_adjust_head, then the headers (Ethernet to
 *   the end of the options, at most EMPTCP_RESIZE_MOVE_MAX bytes) move to
 *   the new start, leaving the gap between options and payload.
 * - TC with payload: bpf_skb_adjust_room(BPF_ADJ_ROOM_NET) opens (or
 *   closes) room after the fixed IP header and moves only the MAC and network
 *   headers; csum_start and the transport header stay. Moving the TCP header
 *   into the gap would leave csum_start pointing into it, which breaks
 *   CHECKSUM_PARTIAL packets (the eMPTCP reference's bug, 6.1 item 1). So:
 *     * CHECKSUM_PARTIAL with payload: refused, -EMPTCP_SKIP_CSUM_PARTIAL
 *       (in practice: TC egress of locally generated or veth-forwarded
 *       data segments; act on a packet without payload, or at TC ingress);
 *     * other skbs with payload (CHECKSUM_NONE / COMPLETE / UNNECESSARY):
 *       adjust_room, then the IP options/extension headers and the TCP
 *       header move into place; the stack re-derives the transport header
 *       on receive, and at egress nothing reads it for a non-GSO,
 *       non-PARTIAL skb. CHECKSUM_UNNECESSARY is downgraded to NONE by
 *       the kernel (the receiver re-verifies our checksum);
 *     * GSO skbs with payload: refused, -EMPTCP_SKIP_GSO. Growing the
 *       header of an aggregate would change every segment's size (the
 *       kernel would lower gso_size by delta); we leave aggregates alone
 *       and let operators act on packets without payload. The rule holds
 *       for shrinking too;
 *     * an in-band VLAN tag with payload: refused, -EMPTCP_SKIP_UNSUPPORTED
 *       (skb->protocol is then 802.1Q and adjust_room refuses; the real
 *       stack usually carries tags out of band at TC).
 * - The bytes: grown bytes are zero, also when headers move (a move leaves
 *   a copy of the last option bytes behind it, which is zeroed); a shrink
 *   first turns the bytes it removes into zeros, with their TCP checksum
 *   update. Bytes that move, and the IPv6 payload length, change no
 *   checksum field: they are written with emptcp_ctx_store_bytes_rcsum,
 *   which keeps skb->csum right for CHECKSUM_COMPLETE at TC (before, a
 *   shrink with payload at TC ingress left it stale, and test_run with
 *   BPF_F_TEST_SKB_CHECKSUM_COMPLETE failed with EBADMSG).
 * - Growth is checked against the MTU first (bpf_check_mtu on the L3
 *   length, device c->mtu_ifindex or the packet's): -EMPTCP_SKIP_MTU.
 *   GSO packets are refused before that, so the check is per packet.
 * - The option area never exceeds 40 bytes: -EMPTCP_SKIP_NO_ROOM.
 *
 * Example:
 *   ret = emptcp_resize_tcp(&c, &pkt, 4);       // 4 EOL bytes appended
 *   if (ret < 0)
 *           return count_skip(ret);             // packet unchanged
 *   th = EMPTCP_CTX_REVALIDATE(&c, pkt.l4_off, sizeof(*th));
 */
#ifndef __EMPTCP_RESIZE_H
#define __EMPTCP_RESIZE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "compiler.h"
#include "ctx.h"
#include "csum.h"
#include "parse.h"
#include "skip.h"

/* Most header bytes moved by a resize of a packet with payload (XDP:
 * Ethernet to the end of the options; TC: IP options or IPv6 extension
 * headers plus the TCP header). Longer: -EMPTCP_SKIP_UNSUPPORTED. */
#define EMPTCP_RESIZE_MOVE_MAX 256
#define __EMPTCP_RESIZE_CHUNK 64

/* Copies len (<= EMPTCP_RESIZE_MOVE_MAX) bytes from src to dst within the
 * packet, in 64-byte chunks through buf (__EMPTCP_RESIZE_CHUNK bytes); safe
 * for overlapping ranges in the direction given (dst < src: low chunks
 * first). */
static __emptcp_inline int __emptcp_resize_move(const struct emptcp_ctx *c, __u32 dst, __u32 src,
						__u32 len, __u8 *buf)
{
	int i;

#pragma unroll
	for (i = 0; i < EMPTCP_RESIZE_MOVE_MAX / __EMPTCP_RESIZE_CHUNK; i++) {
		/* Moving up (dst > src) must copy the last chunk first. */
		__u32 idx = dst < src ? i : EMPTCP_RESIZE_MOVE_MAX / __EMPTCP_RESIZE_CHUNK - 1 - i;
		__u32 at = idx * __EMPTCP_RESIZE_CHUNK, n;

		if (at >= len)
			continue;
		n = len - at;
		if (n > __EMPTCP_RESIZE_CHUNK)
			n = __EMPTCP_RESIZE_CHUNK;
		if (emptcp_ctx_load_bytes(c, src + at, buf, n))
			return -1;
		/* The moved bytes change no checksum field: skb->csum must
		 * follow them (CHECKSUM_COMPLETE at TC). */
		if (emptcp_ctx_store_bytes_rcsum(c, dst + at, buf, n))
			return -1;
	}
	return 0;
}

/*
 * Makes the offsets in *pkt unknown to the verifier (same values). The
 * parser leaves them with one exact value per way through L2/L3 (VLAN tags,
 * IPv4 options, IPv6 extension headers); every helper after it that uses
 * them as helper offsets was then verified once per way, and an insert plus
 * commit exceeded the 1M-instruction limit (kernel 6.18, clang 14). Called
 * by emptcp_tcpopt_load and emptcp_resize_tcp; the bounds they need are
 * checked again (emptcp_resize_check).
 */
static __emptcp_inline void emptcp_pkt_launder(struct emptcp_pkt *pkt)
{
	pkt->l3_off = (pkt->l3_off | __emptcp_opaque_zero) & 0x1ff;
	pkt->l4_off = (pkt->l4_off | __emptcp_opaque_zero) & 0x3ff;
	pkt->payload_off = (pkt->payload_off | __emptcp_opaque_zero) & 0x3ff;
	pkt->l3_len = pkt->l3_len | (__u16)__emptcp_opaque_zero;
	pkt->vlan_tags = (pkt->vlan_tags | __emptcp_opaque_zero) & 0x3;
}

/* Where bpf_skb_adjust_room(BPF_ADJ_ROOM_NET) opens its gap: after the
 * fixed IPv4 or IPv6 header (net/core/filter.c, bpf_skb_net_base_len). */
static __emptcp_inline __u32 __emptcp_resize_room_off(const struct emptcp_pkt *pkt)
{
	return pkt->l3_off + (pkt->family == AF_INET ? 20 : 40);
}

static __emptcp_inline int emptcp_resize_check(const struct emptcp_ctx *c,
					       const struct emptcp_pkt *pkt, int delta)
{
	__u32 optlen = pkt->payload_off - pkt->l4_off - 20;
	__u32 ip_end = pkt->l3_off + pkt->l3_len;
	int new_optlen = (int)optlen + delta;
	int payload;

	if (delta == 0 || (delta & 3) || new_optlen < 0)
		return EMPTCP_SKIP(INVAL);
	if (new_optlen > EMPTCP_TCPOPT_MAX_LEN)
		return EMPTCP_SKIP(NO_ROOM);
	if (ip_end < pkt->payload_off || ip_end > emptcp_ctx_len(c))
		return EMPTCP_SKIP(TRUNCATED);
	payload = ip_end > pkt->payload_off;

	if (payload && c->kind == EMPTCP_CTX_KIND_SKB) {
		if (emptcp_ctx_is_gso(c))
			return EMPTCP_SKIP(GSO);
		if (emptcp_ctx_csum_partial(c))
			return EMPTCP_SKIP(CSUM_PARTIAL);
		if (pkt->vlan_tags)
			return EMPTCP_SKIP(UNSUPPORTED);
		if (pkt->payload_off - __emptcp_resize_room_off(pkt) > EMPTCP_RESIZE_MOVE_MAX)
			return EMPTCP_SKIP(UNSUPPORTED);
	}
	if (payload && c->kind == EMPTCP_CTX_KIND_XDP &&
	    pkt->payload_off > EMPTCP_RESIZE_MOVE_MAX)
		return EMPTCP_SKIP(UNSUPPORTED);

	if (delta > 0) {
		int r = emptcp_ctx_check_mtu(c, pkt->l3_len + delta);

		if (r > 0)
			return EMPTCP_SKIP(MTU);
		if (r < 0)
			return EMPTCP_SKIP(HELPER);
	}
	return 0;
}

/*
 * Writes n (<= 40) zero bytes at off, keeping skb->csum right (the bytes
 * they replace were put there by a header move, which no checksum field
 * compensated). Uses buf.
 */
static __emptcp_inline int __emptcp_resize_zero(const struct emptcp_ctx *c, __u32 off, __u32 n,
						__u8 *buf)
{
	__builtin_memset(buf, 0, EMPTCP_TCPOPT_MAX_LEN);
	n &= 0x3f;
	if (!n || n > EMPTCP_TCPOPT_MAX_LEN)
		return -1;
	return emptcp_ctx_store_bytes_rcsum(c, off, buf, n) ? -1 : 0;
}

/*
 * The size change itself; 0, or -1 with the packet as it was, or -2 (a
 * failed shrink of a packet with payload): the packet is as it was except
 * that its last -delta option bytes are zero.
 *
 * Grown bytes are zero: a header move leaves a copy of the last option
 * bytes behind it, which is zeroed (the TCP checksum counts on zeros, and
 * so does emptcp_tcpopt_commit). Every move and zeroing keeps skb->csum
 * right (emptcp_ctx_store_bytes_rcsum). A shrink removes zeros:
 * emptcp_resize_tcp zeroes the bytes first, with their checksum update.
 */
static __emptcp_inline int __emptcp_resize_bytes(const struct emptcp_ctx *c,
						 const struct emptcp_pkt *pkt, int delta, __u8 *buf)
{
	__u32 ip_end = pkt->l3_off + pkt->l3_len;
	__u32 hlen = pkt->payload_off, n;

	if (ip_end == hlen)
		return emptcp_ctx_change_tail(c, ip_end + delta) ? -1 : 0;

	if (c->kind == EMPTCP_CTX_KIND_XDP) {
		struct xdp_md *x = __EMPTCP_XDP(c);

		if (delta > 0) {
			n = delta;
			if (bpf_xdp_adjust_head(x, -(int)n))
				return -1;
			if (__emptcp_resize_move(c, 0, n, hlen, buf) == 0)
				return __emptcp_resize_zero(c, hlen, n, buf);
			/* Undo: a failed chunk left the old headers at n. */
			bpf_xdp_adjust_head(x, n);
			return -1;
		}
		n = -delta;
		if (__emptcp_resize_move(c, n, 0, hlen - n, buf))
			goto restore;
		if (bpf_xdp_adjust_head(x, n) == 0)
			return 0;
	restore:
		/* Moving up left [0, n) as it was and the moved copy at n: move
		 * it back, and zero the last n option bytes again. */
		__emptcp_resize_move(c, 0, n, hlen - n, buf);
		__emptcp_resize_zero(c, hlen - n, n, buf);
		return -2;
	} else {
		struct __sk_buff *skb = __EMPTCP_SKB(c);
		__u32 off = __emptcp_resize_room_off(pkt);

		if (delta > 0) {
			n = delta;
			if (bpf_skb_adjust_room(skb, n, BPF_ADJ_ROOM_NET, 0))
				return -1;
			if (__emptcp_resize_move(c, off, off + n, hlen - off, buf) == 0)
				return __emptcp_resize_zero(c, hlen, n, buf);
			bpf_skb_adjust_room(skb, -(int)n, BPF_ADJ_ROOM_NET, 0);
			return -1;
		}
		n = -delta;
		if (__emptcp_resize_move(c, off + n, off, hlen - n - off, buf))
			goto restore_skb;
		if (bpf_skb_adjust_room(skb, -(int)n, BPF_ADJ_ROOM_NET, 0) == 0)
			return 0;
	restore_skb:
		__emptcp_resize_move(c, off, off + n, hlen - n - off, buf);
		__emptcp_resize_zero(c, hlen - n, n, buf);
		return -2;
	}
}

/*
 * emptcp_resize_tcp with the move buffer (__EMPTCP_RESIZE_CHUNK bytes) given
 * by the caller, and, if tail_is_eol (a constant), the promise that the
 * bytes a shrink removes are EOL (zero): nothing to keep, nothing to zero
 * first. emptcp_tcpopt_commit uses it with a buffer in the
 * area, to keep its own stack frame small (a global function's frame adds
 * to its caller's: "combined stack size of 2 calls is 528. Too large",
 * kernel 6.18).
 */
static __emptcp_inline int __emptcp_resize_tcp(const struct emptcp_ctx *c, struct emptcp_pkt *pkt,
					       int delta, __u8 *buf, int tail_is_eol)
{
	__u8 removed[EMPTCP_TCPOPT_MAX_LEN] = {};
	__u32 l4_len, word_off;
	__u16 new_words, ip_field;
	__be16 word, new_word, old_ip, new_ip;
	int ret, r;

	emptcp_pkt_launder(pkt);
	word_off = pkt->l4_off + 12;
	ret = emptcp_resize_check(c, pkt, delta);
	if (ret)
		return ret;
	if (emptcp_ctx_load_bytes(c, word_off, &word, sizeof(word)))
		return EMPTCP_SKIP(TRUNCATED);
	if (delta < 0 && !tail_is_eol) {
		/* What is removed becomes EOL first, with its checksum update
		 * (a plain store and the TCP check compensating it: skb->csum
		 * stays right); kept to undo a failure. */
		__u32 n = -delta & 0x3f;

		if (n > EMPTCP_TCPOPT_MAX_LEN || !n)
			return EMPTCP_SKIP(INVAL);
		if (emptcp_ctx_load_bytes(c, pkt->payload_off - n, removed, n))
			return EMPTCP_SKIP(TRUNCATED);
		__builtin_memset(buf, 0, EMPTCP_TCPOPT_MAX_LEN);
		if (emptcp_ctx_store_bytes(c, pkt->payload_off - n, buf, n))
			return EMPTCP_SKIP(HELPER);
		if (emptcp_csum_l4_data_diff(c, pkt,
					     emptcp_csum_sub(0, emptcp_csum_words40(removed)))) {
			emptcp_ctx_store_bytes(c, pkt->payload_off - n, removed, n);
			return EMPTCP_SKIP(HELPER);
		}
	}

	r = __emptcp_resize_bytes(c, pkt, delta, buf);
	if (r) {
		if (delta < 0 && !tail_is_eol) {
			/* Put the removed bytes back over the zeros. */
			__u32 n = -delta & 0x3f;

			if (n && n <= EMPTCP_TCPOPT_MAX_LEN) {
				emptcp_ctx_store_bytes(c, pkt->payload_off - n, removed, n);
				emptcp_csum_l4_data_diff(c, pkt, emptcp_csum_words40(removed));
			}
		}
		return EMPTCP_SKIP(HELPER);
	}

	/* From here the packet has its new size: the fields must follow. A
	 * failure below leaves a packet whose checksum the receiver drops;
	 * the kernel helpers below fail only on a bad offset, which the
	 * parse rules out. */
	l4_len = pkt->l3_len - (pkt->l4_off - pkt->l3_off);
	if (pkt->family == AF_INET) {
		old_ip = bpf_htons(pkt->l3_len);
		new_ip = bpf_htons(pkt->l3_len + delta);
		ip_field = 2;
		ret |= emptcp_ctx_store_bytes(c, pkt->l3_off + ip_field, &new_ip, 2);
		ret |= emptcp_csum_ipv4_replace2(c, pkt, old_ip, new_ip);
	} else {
		new_ip = bpf_htons(pkt->l3_len - 40 + delta);
		ip_field = 4;
		/* IPv6 has no header checksum to compensate the change. */
		ret |= emptcp_ctx_store_bytes_rcsum(c, pkt->l3_off + ip_field, &new_ip, 2);
	}

	/* clang 14 (BPF) has no signed division: "Unsupport signed division". */
	new_words = (__u32)((int)(pkt->payload_off - pkt->l4_off) + delta) >> 2;
	new_word = word;
	((__u8 *)&new_word)[0] = (((__u8 *)&word)[0] & 0x0f) | (new_words << 4);
	ret |= emptcp_ctx_store_bytes(c, word_off, &new_word, 2);
	ret |= emptcp_csum_l4_data_replace2(c, pkt, word_off, word, new_word);
	ret |= emptcp_csum_l4_pseudo_len(c, pkt, l4_len, l4_len + delta);

	pkt->payload_off += delta;
	pkt->l3_len += delta;
	return ret ? EMPTCP_SKIP(HELPER) : 0;
}

static __emptcp_inline int emptcp_resize_tcp(const struct emptcp_ctx *c, struct emptcp_pkt *pkt,
					     int delta)
{
	__u8 buf[__EMPTCP_RESIZE_CHUNK];

	return __emptcp_resize_tcp(c, pkt, delta, buf, 0);
}

#endif /* __EMPTCP_RESIZE_H */
