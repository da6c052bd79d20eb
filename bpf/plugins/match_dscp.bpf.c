// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Example plugin selector: lets the chain go on only for packets whose IP
 * DSCP equals a configured value, a field no built-in selector reads (for
 * example, to treat a tenant's marked traffic apart). Built with only
 * -I bpf/include, like any out-of-tree plugin.
 *
 * Parameter: match_dscp_cfg.dscp (0..63), set by the loader in .rodata.
 */
#include <emptcp/plugin.h>

const volatile struct {
	__u8 dscp;
} match_dscp_cfg = { .dscp = 46 /* EF */ };

/* The DSCP of the packet at `data`, or -1 when the IP header is not there. */
static __emptcp_inline int packet_dscp(void *data, void *data_end, const struct emptcp_pkt *pkt)
{
	/* Masked: the verifier needs a bounded offset (kernel 6.18, clang 14). */
	__u8 *ip = data + (pkt->l3_off & 0xff);

	if ((void *)(ip + 2) > data_end)
		return -1;
	if (pkt->family == AF_INET)
		return ip[1] >> 2;
	/* IPv6: the traffic class straddles bytes 0 and 1. */
	return (((ip[0] & 0x0f) << 4) | (ip[1] >> 4)) >> 2;
}

static __emptcp_inline int verdict(int dscp)
{
	return dscp == match_dscp_cfg.dscp ? EMPTCP_PLUGIN_CONTINUE : EMPTCP_PLUGIN_STOP;
}

EMPTCP_PLUGIN_TC(match_dscp_tc)
{
	return verdict(packet_dscp((void *)(long)skb->data, (void *)(long)skb->data_end, pkt));
}

EMPTCP_PLUGIN_XDP(match_dscp_xdp)
{
	return verdict(packet_dscp((void *)(long)ctx->data, (void *)(long)ctx->data_end, pkt));
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
