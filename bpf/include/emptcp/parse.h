/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One-pass packet parser: Ethernet, up to two VLAN tags, IPv4 (any IHL) or
 * IPv6 (with extension headers), TCP, and a walk of the TCP option list.
 *
 * API:
 *   int emptcp_parse(void *data, void *data_end, struct emptcp_pkt *pkt)
 *     Fills *pkt and returns EMPTCP_PARSE_TCP, or another enum
 *     emptcp_parse_result saying why the packet is not ours. Never writes the
 *     packet. Offsets in *pkt are from `data`, so they stay valid after
 *     helpers that move packet pointers (re-derive pointers from them).
 *
 *   The same in two steps, for a program that can decide on the headers
 *   alone and skip the option walk (the entry's quick pass, bpf/lib/memo.h):
 *   int emptcp_parse_headers(data, data_end, pkt)
 *     everything up to the fixed TCP header: addresses, ports, flags,
 *     sequence numbers, l4_off, payload_off. The option fields are unset.
 *   int emptcp_parse_options(data, data_end, pkt)
 *     then the option list: mptcp_subtypes, off_*, wscale.
 *
 *   Results: EMPTCP_PARSE_MALFORMED when a header is invalid whatever
 *   follows it (IP version, IHL or TCP data offset too small, more IPv6
 *   extension headers than the walk takes); EMPTCP_PARSE_TRUNCATED when the
 *   packet ends (data_end) before a header or option it announces ends.
 *   Where data_end is the end of the packet (XDP, a linear skb) both mean
 *   "not a packet we can read"; at TC, data_end is the end of the skb's
 *   linear part, and the entry pulls more of the skb in and parses again
 *   (bpf/entry/emptcp.bpf.c, tc_pull_parse).
 *
 * Example:
 *   struct emptcp_pkt pkt;
 *   if (emptcp_parse(data, data_end, &pkt) != EMPTCP_PARSE_TCP)
 *           return XDP_PASS;
 */
#ifndef __EMPTCP_PARSE_H
#define __EMPTCP_PARSE_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include "compiler.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* 802.1Q and 802.1ad (QinQ) outer tags; more than two tags is not ours. */
#define EMPTCP_MAX_VLAN_TAGS 2
/* IPv6 extension headers walked before giving up (hop-by-hop, routing,
 * destination options twice, fragment, and one spare): a longer chain is
 * reported as EMPTCP_PARSE_MALFORMED and passes untouched. */
#define EMPTCP_IPV6_MAX_EXTHDR 6
/* TCP option kinds (RFC 9293 section 3.2; RFC 8684 section 3 for MPTCP). */
#define EMPTCP_TCPOPT_EOL 0
#define EMPTCP_TCPOPT_NOP 1
#define EMPTCP_TCPOPT_WINDOW 3
#define EMPTCP_TCPOPT_TIMESTAMPS 8
#define EMPTCP_TCPOPT_MPTCP 30
/* MPTCP subtypes the parser sorts by (RFC 8684 section 7.2). */
#define EMPTCP_MPTCP_SUB_MP_JOIN 1
#define EMPTCP_MPTCP_SUB_DSS 2
/* The TCP option area is at most 40 bytes (data offset 15 words). */
#define EMPTCP_TCPOPT_MAX_LEN 40

/* Bits of struct emptcp_pkt's tcp_flags (RFC 9293 section 3.1). */
#define EMPTCP_TCP_FIN 0x01
#define EMPTCP_TCP_SYN 0x02
#define EMPTCP_TCP_RST 0x04
#define EMPTCP_TCP_ACK 0x10
#define EMPTCP_TCP_URG 0x20

enum emptcp_parse_result {
	EMPTCP_PARSE_TCP = 0,
	EMPTCP_PARSE_NOT_TCP,
	EMPTCP_PARSE_MALFORMED,
	EMPTCP_PARSE_FRAGMENT,
	/* The packet ends (data_end) before the headers or options it says it
	 * has: a truncated packet, or, at TC, an skb whose linear part (all that
	 * direct packet access sees) ends there. */
	EMPTCP_PARSE_TRUNCATED,
};

struct emptcp_pkt {
	__u16 l3_off;
	__u16 l4_off;
	__u16 payload_off;  /* l4_off + TCP data offset */
	__u16 l3_len;       /* from the IP header: total length (v4), 40 + payload length (v6) */
	__u8 family;        /* AF_INET or AF_INET6 */
	__u8 tcp_flags;     /* byte 13 of the TCP header: CWR ECE URG ACK PSH RST SYN FIN */
	__u8 vlan_tags;
	__u8 _pad;
	/* Bitmask of MPTCP option subtypes carried (bit n = subtype n). */
	__u32 mptcp_subtypes;
	__be16 sport;
	__be16 dport;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 seq;      /* TCP sequence number, host order */
	__u32 ack_seq;  /* TCP acknowledgment number, host order */
	/* Offsets from the start of the packet of MPTCP options, for the
	 * readers of mptcp.h; 0 when absent (no option can start at 0). The
	 * last one of each class counts: Linux sends at most one of each. */
	__u16 off_handshake;  /* MP_CAPABLE or MP_JOIN */
	__u16 off_dss;        /* DSS */
	__u16 off_control;    /* any other subtype */
	__u8 wscale;          /* window scale option's shift + 1; 0 when absent */
	__u8 _pad2;
	__u16 off_timestamps; /* offset of the timestamps option; 0 when absent */
	__u16 _pad3;
};

/*
 * Always zero, but in a writable map (.bss), so the verifier cannot know its
 * value. The TCP option walk starts its offset from it: starting from a
 * constant 0, every run of NOPs gives the verifier a chain of distinct
 * constant offsets whose states never prune, and the walk alone cost
 * 200-300k verified instructions (kernel 6.18, clang 14). From an unknown
 * start, offsets are ranges and sibling paths prune against each other.
 * Nothing writes it.
 */
static volatile __u32 __emptcp_opaque_zero;

/* Both ports as one word, as on the wire (source port first). */
static __emptcp_inline __u32 emptcp_pkt_ports(const struct emptcp_pkt *pkt)
{
	return *(const __u32 *)&pkt->sport;
}
/* ... which needs them adjacent, in one aligned word. */
EMPTCP_BUILD_BUG_ON(__builtin_offsetof(struct emptcp_pkt, sport) % 4 ||
		    __builtin_offsetof(struct emptcp_pkt, dport) !=
			    __builtin_offsetof(struct emptcp_pkt, sport) + 2);

/* The EtherType of a frame whose Ethernet header the caller bounds-checked,
 * in one 16-bit load: struct ethhdr is packed, so eth->h_proto would be
 * read a byte at a time. */
static __emptcp_inline __be16 emptcp_eth_proto(const void *data)
{
	return *(const __be16 *)((const __u8 *)data + 12);
}

/* A connection's or a join's opening SYN: SYN without ACK. */
static __emptcp_inline int emptcp_pkt_is_syn(const struct emptcp_pkt *pkt)
{
	return (pkt->tcp_flags & (EMPTCP_TCP_SYN | EMPTCP_TCP_ACK)) == EMPTCP_TCP_SYN;
}

struct emptcp_vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

/* The fixed TCP header at `off`: ports, flags, sequence numbers, where the
 * payload starts. The option list is emptcp_parse_options' business. */
static __emptcp_inline int __emptcp_parse_tcp_header(void *data, void *data_end, __u32 off,
						     struct emptcp_pkt *pkt)
{
	struct tcphdr *th;

	/* See __emptcp_opaque_zero: the ~24 ways through L2/L3 (VLAN tags,
	 * IPv4, IPv6 extension headers) leave `off` with different known
	 * bounds; forgetting them here lets the verifier check what follows
	 * (the option walk, the engine) once instead of once per way. */
	off = (off | __emptcp_opaque_zero) & 0x1ff;
	th = data + off;
	if ((void *)(th + 1) > data_end)
		return EMPTCP_PARSE_TRUNCATED;
	if (th->doff < 5)
		return EMPTCP_PARSE_MALFORMED;
	pkt->l4_off = off;
	pkt->payload_off = off + th->doff * 4;
	/* Both ports in one store: readers that take them as one word
	 * (emptcp_pkt_ports) then load what one store wrote, which the CPU
	 * forwards from its store buffer; a load spanning two stores waits
	 * for both to reach the cache (~10 ns more on the quick pass). */
	*(__u32 *)&pkt->sport = *(__u32 *)&th->source;
	pkt->tcp_flags = ((__u8 *)th)[13];
	pkt->seq = bpf_ntohl(th->seq);
	pkt->ack_seq = bpf_ntohl(th->ack_seq);
	return EMPTCP_PARSE_TCP;
}

/*
 * Walks the TCP option list of a packet whose headers emptcp_parse_headers
 * parsed: fills mptcp_subtypes, the off_* offsets and wscale. Returns
 * EMPTCP_PARSE_TCP, or EMPTCP_PARSE_TRUNCATED when the options are cut off
 * by data_end. A malformed option ends the walk and is not an error.
 */
static __emptcp_inline int emptcp_parse_options(void *data, void *data_end,
						struct emptcp_pkt *pkt)
{
	struct tcphdr *th;
	__u32 off, optlen, pos;
	__u8 *opt;

	/* Masked: a bound the verifier keeps, whatever the caller did with
	 * the offset since emptcp_parse_headers (laundered there). */
	off = pkt->l4_off & 0x1ff;
	th = data + off;
	if ((void *)(th + 1) > data_end)
		return EMPTCP_PARSE_TRUNCATED;
	optlen = th->doff * 4;
	optlen = optlen > sizeof(*th) ? optlen - sizeof(*th) : 0;

	/* 0, but unknown to the verifier (see __emptcp_opaque_zero): set or
	 * not set, the offsets are then ranges in every state of the walk,
	 * and more states prune (kernel 6.18, XDP entry: 48k verified
	 * instructions with constant zeros, 43k this way). */
	pkt->off_handshake = (__u16)__emptcp_opaque_zero;
	pkt->off_dss = (__u16)__emptcp_opaque_zero;
	pkt->off_control = (__u16)__emptcp_opaque_zero;
	pkt->wscale = (__u8)__emptcp_opaque_zero;
	pkt->off_timestamps = (__u16)__emptcp_opaque_zero;
	pkt->mptcp_subtypes = 0;

	opt = (void *)(th + 1);
	pos = __emptcp_opaque_zero & 0x3f;
	/*
	 * The walk is bounded by `pos < optlen <= 40` and `pos` grows by at
	 * least one per step. There is deliberately no separate step counter:
	 * the verifier marks such a counter precise, so no two iterations'
	 * states could ever be pruned and the option walk alone exceeded the
	 * 1M-instruction limit (kernel 6.18, clang 14). A malformed option
	 * (length 0 or 1, or past the header) ends the walk: what follows it
	 * cannot be located, so it is not interpreted.
	 */
	while (pos < optlen) {
		__u8 *p, kind, len;

		/* Mask needed to calm the verifier: the bound `pos < 40` does
		 * not carry into the pointer arithmetic. */
		p = opt + (pos & 0x3f);
		if ((void *)(p + 1) > data_end)
			return EMPTCP_PARSE_TRUNCATED;
		kind = p[0];
		if (kind == EMPTCP_TCPOPT_EOL)
			break;
		if (kind == EMPTCP_TCPOPT_NOP) {
			pos++;
			continue;
		}
		if ((void *)(p + 2) > data_end)
			return EMPTCP_PARSE_TRUNCATED;
		len = p[1];
		if (len < 2 || pos + len > optlen)
			break;
		if (kind == EMPTCP_TCPOPT_TIMESTAMPS && len == 10)
			pkt->off_timestamps = off + sizeof(*th) + pos;
		if (kind == EMPTCP_TCPOPT_WINDOW && len == 3) {
			if ((void *)(p + 3) > data_end)
				return EMPTCP_PARSE_TRUNCATED;
			pkt->wscale = p[2] + 1;
		}
		if (kind == EMPTCP_TCPOPT_MPTCP && len >= 3) {
			if ((void *)(p + 3) > data_end)
				return EMPTCP_PARSE_TRUNCATED;
			__u8 subtype = p[2] >> 4;
			__u16 at = off + sizeof(*th) + pos;

			pkt->mptcp_subtypes |= 1u << subtype;
			if (subtype == EMPTCP_MPTCP_SUB_DSS)
				pkt->off_dss = at;
			else if (subtype <= EMPTCP_MPTCP_SUB_MP_JOIN)
				pkt->off_handshake = at;
			else
				pkt->off_control = at;
		}
		pos += len;
	}
	return EMPTCP_PARSE_TCP;
}

static __emptcp_inline int __emptcp_parse_ipv4(void *data, void *data_end, __u32 off,
					       struct emptcp_pkt *pkt)
{
	struct iphdr *iph = data + off;
	__u32 ihl;

	if ((void *)(iph + 1) > data_end)
		return EMPTCP_PARSE_TRUNCATED;
	ihl = iph->ihl * 4;
	if (iph->version != 4 || ihl < sizeof(*iph))
		return EMPTCP_PARSE_MALFORMED;
	if (iph->protocol != IPPROTO_TCP)
		return EMPTCP_PARSE_NOT_TCP;
	/* Any fragment: the TCP header of a first fragment is there, but its
	 * payload length is not, and later fragments carry no header at all. */
	if (iph->frag_off & bpf_htons(0x3fff))
		return EMPTCP_PARSE_FRAGMENT;

	pkt->family = AF_INET;
	pkt->l3_len = bpf_ntohs(iph->tot_len);
	__builtin_memset(pkt->saddr, 0, sizeof(pkt->saddr));
	__builtin_memset(pkt->daddr, 0, sizeof(pkt->daddr));
	__builtin_memcpy(pkt->saddr, &iph->saddr, 4);
	__builtin_memcpy(pkt->daddr, &iph->daddr, 4);
	pkt->l4_off = off + ihl;
	return EMPTCP_PARSE_TCP;
}

struct emptcp_ipv6_opt_hdr {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct emptcp_ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset in 8-byte units << 3 | M flag */
	__be32 identification;
};

static __emptcp_inline int __emptcp_parse_ipv6(void *data, void *data_end, __u32 off,
					       struct emptcp_pkt *pkt)
{
	struct ipv6hdr *ip6h = data + off;
	__u8 nexthdr;
	int i;

	if ((void *)(ip6h + 1) > data_end)
		return EMPTCP_PARSE_TRUNCATED;
	if (ip6h->version != 6)
		return EMPTCP_PARSE_MALFORMED;

	pkt->family = AF_INET6;
	pkt->l3_len = sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len);
	__builtin_memcpy(pkt->saddr, &ip6h->saddr, 16);
	__builtin_memcpy(pkt->daddr, &ip6h->daddr, 16);

	nexthdr = ip6h->nexthdr;
	off += sizeof(*ip6h);
#pragma unroll
	for (i = 0; i < EMPTCP_IPV6_MAX_EXTHDR; i++) {
		if (nexthdr == IPPROTO_TCP) {
			pkt->l4_off = off;
			return EMPTCP_PARSE_TCP;
		}

		if (nexthdr == IPPROTO_FRAGMENT) {
			struct emptcp_ipv6_frag_hdr *fh = data + off;

			if ((void *)(fh + 1) > data_end)
				return EMPTCP_PARSE_TRUNCATED;
			if (fh->frag_off & bpf_htons(0xfff9))
				return EMPTCP_PARSE_FRAGMENT;
			/* An atomic fragment (offset 0, M clear, RFC 8200
			 * section 4.5) is a whole packet. */
			nexthdr = fh->nexthdr;
			off += sizeof(*fh);
			continue;
		}
		if (nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING ||
		    nexthdr == IPPROTO_DSTOPTS) {
			struct emptcp_ipv6_opt_hdr *oh = data + off;

			if ((void *)(oh + 1) > data_end)
				return EMPTCP_PARSE_TRUNCATED;
			nexthdr = oh->nexthdr;
			off += (oh->hdrlen + 1) * 8;
			continue;
		}
		return EMPTCP_PARSE_NOT_TCP;
	}
	if (nexthdr != IPPROTO_TCP)
		return EMPTCP_PARSE_MALFORMED;
	pkt->l4_off = off;
	return EMPTCP_PARSE_TCP;
}

static __emptcp_inline int emptcp_parse_headers(void *data, void *data_end,
						struct emptcp_pkt *pkt)
{
	struct ethhdr *eth = data;
	__be16 proto;
	__u32 off = sizeof(*eth);
	int i, ret;

	if ((void *)(eth + 1) > data_end)
		return EMPTCP_PARSE_TRUNCATED;
	proto = emptcp_eth_proto(data);
	pkt->vlan_tags = 0;
#pragma unroll
	for (i = 0; i < EMPTCP_MAX_VLAN_TAGS; i++) {
		struct emptcp_vlan_hdr *vh = data + off;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > data_end)
			return EMPTCP_PARSE_TRUNCATED;
		proto = vh->encap_proto;
		off += sizeof(*vh);
		pkt->vlan_tags++;
	}
	pkt->l3_off = off;
	if (proto == bpf_htons(ETH_P_IP))
		ret = __emptcp_parse_ipv4(data, data_end, off, pkt);
	else if (proto == bpf_htons(ETH_P_IPV6))
		ret = __emptcp_parse_ipv6(data, data_end, off, pkt);
	else
		return EMPTCP_PARSE_NOT_TCP;
	/* One call site for the TCP header, whichever way L3 went: each
	 * inlined copy would be verified again. */
	if (ret != EMPTCP_PARSE_TCP)
		return ret;
	return __emptcp_parse_tcp_header(data, data_end, pkt->l4_off, pkt);
}

static __emptcp_inline int emptcp_parse(void *data, void *data_end, struct emptcp_pkt *pkt)
{
	int ret = emptcp_parse_headers(data, data_end, pkt);

	if (ret != EMPTCP_PARSE_TCP)
		return ret;
	return emptcp_parse_options(data, data_end, pkt);
}

#endif /* __EMPTCP_PARSE_H */
