/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * redirect at XDP: the frame leaves by interface `ifindex` (bpf_redirect),
 * its MAC addresses filled from a FIB lookup made from that interface's
 * side: the main table's route to the destination through `ifindex`
 * (BPF_FIB_LOOKUP_OUTPUT with the target as output device, DIRECT: no policy
 * rules, so the rules that sent the packet elsewhere do not apply) and the
 * destination's neighbour there. What TC's bpf_redirect_neigh does, except
 * that XDP cannot resolve a neighbour: a missing one fails the redirect
 * (counted, redirect_failed) and the packet goes on through the kernel,
 * whose forwarding resolves it for later packets. The lookup also checks the
 * link's MTU. Like the TC redirect, the TTL is left alone.
 *
 * Not for VLAN-tagged frames (the tag belongs to the link the frame came
 * in on): they fail the redirect, counted.
 */
#ifndef __EMPTCP_LIB_ACT_REDIRECT_H
#define __EMPTCP_LIB_ACT_REDIRECT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#include <emptcp/compiler.h>
#include <emptcp/parse.h>

#ifndef AF_INET
#define AF_INET 2
#endif

/* XDP_REDIRECT, or -1 when the frame cannot be redirected (unchanged). Not
 * inlined: the 64-byte lookup parameters stay out of the entry's frame. */
static __attribute__((noinline)) int __emptcp_xdp_redirect(struct xdp_md *ctx,
							    const struct emptcp_pkt *pkt,
							    __u32 ifindex)
{
	struct bpf_fib_lookup fib = {};
	struct ethhdr *eth;
	void *data, *data_end;

	if (!ctx || !pkt || pkt->vlan_tags || pkt->l3_off != sizeof(struct ethhdr))
		return -1;
	fib.family = pkt->family;
	fib.l4_protocol = IPPROTO_TCP;
	fib.sport = pkt->sport;
	fib.dport = pkt->dport;
	fib.tot_len = pkt->l3_len;
	fib.ifindex = ifindex;
	if (pkt->family == AF_INET) {
		__builtin_memcpy(&fib.ipv4_src, pkt->saddr, 4);
		__builtin_memcpy(&fib.ipv4_dst, pkt->daddr, 4);
	} else {
		__builtin_memcpy(fib.ipv6_src, pkt->saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, pkt->daddr, 16);
	}
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), BPF_FIB_LOOKUP_OUTPUT | BPF_FIB_LOOKUP_DIRECT) !=
		    BPF_FIB_LKUP_RET_SUCCESS ||
	    fib.ifindex != ifindex)
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	return bpf_redirect(ifindex, 0);
}

#endif /* __EMPTCP_LIB_ACT_REDIRECT_H */
