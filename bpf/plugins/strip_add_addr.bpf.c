// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Example plugin actor: removes every MPTCP ADD_ADDR option (RFC 8684
 * section 3.4.1) from the packet, so that the peer never learns of more
 * addresses (for example, to keep a tenant's connections on the paths the
 * operator chose). It edits the packet through the helper library
 * (tcpopt.h) and always lets the chain go on. Built with only
 * -I bpf/include, like any out-of-tree plugin.
 *
 * Parameter: strip_add_addr_cfg.nop (0 or 1), set by the loader in .rodata.
 *   0: the option area shrinks (EMPTCP_TCPOPT_F_SHRINK); where the hook
 *      cannot resize (TC: CHECKSUM_PARTIAL or GSO with payload, an in-band
 *      VLAN tag with payload), the options become NOPs instead.
 *   1: the options always become NOPs (no resize, the cheapest).
 * Either way every checksum is right, and a packet the helpers refuse
 * (a malformed option area) passes unchanged.
 */
#include <emptcp/plugin.h>
#include <emptcp/ctx.h>
#include <emptcp/mptcp.h>
#include <emptcp/tcpopt.h>

const volatile struct {
	__u8 nop;
} strip_add_addr_cfg = { .nop = 0 };

/* Linux sends at most one ADD_ADDR per segment; a few more are removed
 * too, and any beyond this limit stay. */
#define STRIP_ADD_ADDR_MAX 4

/* Removes the ADD_ADDRs of the area; the number removed, or a negative
 * skip reason (nothing was removed then). */
static __emptcp_inline int strip(struct emptcp_tcpopt_area *area, __u32 flags)
{
	__u32 len;
	int i, off, n = 0;

#pragma unroll
	for (i = 0; i < STRIP_ADD_ADDR_MAX; i++) {
		off = emptcp_tcpopt_find(area, EMPTCP_TCPOPT_MPTCP, EMPTCP_MPTCP_ADD_ADDR, &len);
		if (off < 0)
			return n ? n : off;
		if (emptcp_tcpopt_remove(area, off, flags) < 0)
			return n ? n : EMPTCP_SKIP(INVAL);
		n++;
	}
	return n;
}

static __emptcp_inline int strip_add_addr(const struct emptcp_ctx *c, struct emptcp_pkt *pkt)
{
	struct emptcp_tcpopt_area area;
	__u32 flags = strip_add_addr_cfg.nop ? EMPTCP_TCPOPT_F_NOP : EMPTCP_TCPOPT_F_SHRINK;

	/* The parser saw no ADD_ADDR: nothing to do, nothing to load. */
	if (!(pkt->mptcp_subtypes & (1u << EMPTCP_MPTCP_ADD_ADDR)))
		return 0;
	if (emptcp_tcpopt_load(c, pkt, &area) || strip(&area, flags) <= 0)
		return 0;
	if (emptcp_tcpopt_commit(c, pkt, &area) == 0 || flags == EMPTCP_TCPOPT_F_NOP)
		return 0;
	/* The shrink was refused (the packet is unchanged): NOPs need no
	 * resize. */
	if (emptcp_tcpopt_load(c, pkt, &area) || strip(&area, EMPTCP_TCPOPT_F_NOP) <= 0)
		return 0;
	emptcp_tcpopt_commit(c, pkt, &area);
	return 0;
}

EMPTCP_PLUGIN_TC(strip_add_addr_tc)
{
	struct emptcp_ctx c = EMPTCP_CTX_SKB(skb);

	strip_add_addr(&c, pkt);
	return EMPTCP_PLUGIN_CONTINUE;
}

EMPTCP_PLUGIN_XDP(strip_add_addr_xdp)
{
	struct emptcp_ctx c = EMPTCP_CTX_XDP(ctx);

	strip_add_addr(&c, pkt);
	return EMPTCP_PLUGIN_CONTINUE;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
