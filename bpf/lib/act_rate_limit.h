/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * rate_limit: clamps (never raises) the receive window a subflow's ACKs
 * advertise, so that their receiver, the data sender, cannot have more than
 * `cap` bytes in flight on the subflow.
 *
 * The cap is a window in bytes, or a rate: then the window is rate x the
 * subflow's RTT (a sender with a window W per RTT moves at most W / RTT),
 * never below EMPTCP_RATE_LIMIT_FLOOR_BYTES. The RTT is record's (its map,
 * act_record.h): the sum of its two halves, hook -> one side -> hook and
 * hook -> the other -> hook, which is the whole round trip wherever the hook
 * sits on the path. Until record has a sample of both halves the packet is
 * left alone and counted (EMPTCP_REASON_RTT_UNKNOWN): guessing an RTT would
 * clamp a long path far below its rate, or not at all.
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
#include "act_record.h"

/* RFC 7323 section 2.3: a shift above 14 is treated as 14. */
#define EMPTCP_WSCALE_MAX 14

/* Bounds that keep rate x RTT within 64 bits: 2^37 bit/s (137 Gbit/s; the
 * control plane allows 100) times 2^26 us (67 s). */
#define EMPTCP_RATE_LIMIT_BPS_MAX (1ull << 37)
#define EMPTCP_RATE_LIMIT_RTT_MAX_US ((1ull << 26) - 1)

/* The rate form's window for the packet's subflow (`key`): rate x RTT,
 * at least the floor; 0 while the RTT is unknown. */
static __emptcp_inline __u64 __emptcp_rate_window(const struct emptcp_ct_key *key, __u64 bps)
{
	const struct emptcp_record *rec = bpf_map_lookup_elem(&emptcp_record, key);
	__u64 rtt_us, bytes;

	if (!rec || !rec->rtt_samples[0] || !rec->rtt_samples[1])
		return 0;
	rtt_us = (__u64)rec->srtt_us[0] + rec->srtt_us[1];
	if (rtt_us > EMPTCP_RATE_LIMIT_RTT_MAX_US)
		rtt_us = EMPTCP_RATE_LIMIT_RTT_MAX_US;
	if (bps > EMPTCP_RATE_LIMIT_BPS_MAX)
		bps = EMPTCP_RATE_LIMIT_BPS_MAX;
	bytes = bps * rtt_us / 8000000;
	return bytes < EMPTCP_RATE_LIMIT_FLOOR_BYTES ? EMPTCP_RATE_LIMIT_FLOOR_BYTES : bytes;
}

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
							   __u32 form, __u64 arg)
{
	__u32 win_off = (pkt->l4_off & 0x1ff) + 14, csum_off = (pkt->l4_off & 0x1ff) + 16;
	__u32 shift = 0, window;
	__be16 old_be, new_be;
	__u64 bytes, clamped, cap = arg;
	struct emptcp_ct_key key;
	int sender_lo;

	if (!(pkt->tcp_flags & EMPTCP_TCP_ACK))
		return EMPTCP_REASON_NO_ACK + 1;
	sender_lo = emptcp_ct_key_of(pkt, &key);
	if (!(pkt->tcp_flags & EMPTCP_TCP_SYN)) {
		struct emptcp_subflow_ct *ct;
		__u8 ws;

		ct = bpf_map_lookup_elem(&emptcp_ct_sf, &key);
		ws = ct ? (sender_lo ? ct->wscale_lo : ct->wscale_hi) : 0;
		if (!ws)
			return EMPTCP_REASON_WSCALE_UNKNOWN + 1;
		shift = ws - 1 > EMPTCP_WSCALE_MAX ? EMPTCP_WSCALE_MAX : ws - 1;
	}
	if (form == EMPTCP_RATE_LIMIT_RATE) {
		cap = __emptcp_rate_window(&key, arg);
		if (!cap)
			return EMPTCP_REASON_RTT_UNKNOWN + 1;
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
	/* The rate form's floor holds after scaling too: rounded up (the
	 * packet's own window, above the cap, is at least that). */
	if (form == EMPTCP_RATE_LIMIT_RATE && clamped << shift < EMPTCP_RATE_LIMIT_FLOOR_BYTES)
		clamped = (EMPTCP_RATE_LIMIT_FLOOR_BYTES + (1u << shift) - 1) >> shift;
	if (clamped > window)
		clamped = window;
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
