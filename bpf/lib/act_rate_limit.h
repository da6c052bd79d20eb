/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * rate_limit: clamps (never raises) the receive window a subflow's ACKs
 * advertise, so that their receiver, the data sender, cannot have more than
 * `cap` bytes in flight on the subflow.
 *
 * The 16-bit window field is scaled by the shift its sender announced in its
 * SYN (RFC 7323 section 2.2); SYN segments carry it unscaled. The shift comes
 * from connection tracking: when the sender's SYN was not seen, the packet is
 * left alone and counted (EMPTCP_REASON_WSCALE_UNKNOWN).
 *
 * Checksums: at TC, bpf_l4_csum_replace, which updates a full checksum and
 * leaves a CHECKSUM_PARTIAL one (the pseudo-header seed, completed later
 * over the header as it then is) alone, as it must; at XDP the checksum is
 * always full and is updated incrementally (RFC 1624). The window is 16-bit
 * aligned in the TCP header, so no odd-offset case arises.
 */
#ifndef __EMPTCP_LIB_ACT_RATE_LIMIT_H
#define __EMPTCP_LIB_ACT_RATE_LIMIT_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include <emptcp/abi.h>
#include <emptcp/parse.h>

#include "conntrack.h"

/* RFC 7323 section 2.3: a shift above 14 is treated as 14. */
#define EMPTCP_WSCALE_MAX 14

static __emptcp_inline __u16 __emptcp_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/*
 * Returns 0 (clamped, or already within the cap) or an enum emptcp_op_reason
 * + 1 saying why the packet was left alone. Not inlined: its key and helper
 * calls stay out of the entry's stack frame.
 */
static __attribute__((noinline)) int emptcp_act_rate_limit(void *ctx, __u32 hook,
							   const struct emptcp_pkt *pkt,
							   __u64 cap)
{
	__u32 win_off = (pkt->l4_off & 0x1ff) + 14, csum_off = (pkt->l4_off & 0x1ff) + 16;
	__u32 shift = 0, window;
	__be16 old_be, new_be;
	__u64 bytes, clamped;

	if (!(pkt->tcp_flags & EMPTCP_TCP_ACK))
		return EMPTCP_REASON_NO_ACK + 1;
	if (!(pkt->tcp_flags & EMPTCP_TCP_SYN)) {
		struct emptcp_subflow_ct *ct;
		struct emptcp_ct_key key;
		int sender_lo = emptcp_ct_key_of(pkt, &key);
		__u8 ws;

		ct = bpf_map_lookup_elem(&emptcp_ct_sf, &key);
		ws = ct ? (sender_lo ? ct->wscale_lo : ct->wscale_hi) : 0;
		if (!ws)
			return EMPTCP_REASON_WSCALE_UNKNOWN + 1;
		shift = ws - 1 > EMPTCP_WSCALE_MAX ? EMPTCP_WSCALE_MAX : ws - 1;
	}

	if (hook == EMPTCP_HOOK_XDP) {
		if (bpf_xdp_load_bytes(ctx, win_off, &old_be, sizeof(old_be)))
			return EMPTCP_REASON_WRONG_HOOK + 1;
	} else if (bpf_skb_load_bytes(ctx, win_off, &old_be, sizeof(old_be))) {
		return EMPTCP_REASON_WRONG_HOOK + 1;
	}
	window = bpf_ntohs(old_be);
	bytes = (__u64)window << shift;
	if (bytes <= cap)
		return 0;
	clamped = cap >> shift;
	/* A zero window would stall the subflow, not slow it. */
	new_be = bpf_htons(clamped ? (__u16)clamped : 1);

	if (hook == EMPTCP_HOOK_XDP) {
		__u16 check;

		if (bpf_xdp_load_bytes(ctx, csum_off, &check, sizeof(check)))
			return EMPTCP_REASON_WRONG_HOOK + 1;
		/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). */
		check = ~__emptcp_csum_fold((__u16)~check + (__u16)~old_be + (__u16)new_be);
		bpf_xdp_store_bytes(ctx, win_off, &new_be, sizeof(new_be));
		bpf_xdp_store_bytes(ctx, csum_off, &check, sizeof(check));
	} else {
		bpf_skb_store_bytes(ctx, win_off, &new_be, sizeof(new_be), 0);
		bpf_l4_csum_replace(ctx, csum_off, old_be, new_be, sizeof(new_be));
	}
	return 0;
}

#endif /* __EMPTCP_LIB_ACT_RATE_LIMIT_H */
