// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Baselines of the data-plane benchmark (crates/emptcp/src/bench.rs,
 * docs/benchmarks.md), measured in the same run as the emptcp engine:
 *
 *   bl_xdp_empty / bl_tc_empty   return "pass" at once: the floor of a
 *       BPF_PROG_TEST_RUN run on this machine.
 *
 *   bl_xdp_entry / bl_tc_entry and their operator programs: a policy engine
 *       built the way the eMPTCP paper builds one, one program per operator
 *       chained with tail calls:
 *
 *       1. the entry parses Ethernet/IPv4/TCP and looks the packet's 4-tuple
 *          up in bl_flows (HASH) to find the flow's chain: up to 16 operator
 *          references (program index + parameter);
 *       2. it copies the tuple and the chain into a per-packet context in a
 *          per-CPU array (bl_pctx), with an operator index, and tail-calls
 *          the first operator through the hook's PROG_ARRAY;
 *       3. each operator program finds the context (an inlined per-CPU
 *          array lookup), does its work for ops[idx], advances idx and
 *          tail-calls the next operator by its (run-time) program index.
 *          A selector that does not match ends the chain ("not target").
 *
 *       Operators: selectors subflow (HASH lookup of the 4-tuple), ip_pair
 *       (HASH lookup of the address pair), port (compare the destination
 *       port), src (compare the source address under a prefix); actors
 *       count (per-CPU counter of the chain position) and, at TC, mark
 *       (skb->mark = parameter).
 *
 * It is kinder to itself than the paper's code in two ways, so that the
 * comparison is not with a straw man: the parse results travel in the
 * context (the paper's programs each parse the packet again), and the whole
 * chain is found with one lookup (the paper needs a selector-chain ARRAY
 * lookup, then an action-chain HASH lookup and an extra `action_entry` tail
 * call). IPv4 only (12-byte keys). Written for this benchmark; no code of the
 * reference is used.
 *
 *   bl_xdp_probe_parse / _lru / _ktime: one building block of emptcp's entry
 *       program each, to explain its cost (each minus bl_xdp_empty):
 *       emptcp_parse() on the packet; a hit in a per-CPU LRU hash with a
 *       44-byte key (the flow table's shape) and an update of the value, as
 *       the entry's flow accounting does, and the same with a per-CPU hash
 *       and a plain hash (_pchash, _hash); one bpf_ktime_get_ns(), one
 *       bpf_ktime_get_coarse_ns() (_coarse).
 *
 * User space (bench.rs) sizes the hash maps before load, fills bl_xdp_ops /
 * bl_tc_ops with the operator programs at the indexes of enum bl_op, and
 * writes chains into bl_flows.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include <emptcp/compiler.h>
#include <emptcp/parse.h>

/* Program index of each operator in bl_xdp_ops / bl_tc_ops. */
enum bl_op {
	BL_SEL_SUBFLOW = 0,
	BL_SEL_IP_PAIR = 1,
	BL_SEL_PORT = 2,
	BL_SEL_SRC = 3,
	BL_ACT_COUNT = 4,
	BL_ACT_MARK = 5, /* TC only */
	BL_OP__MAX,
};

/* bl_counters, per CPU. */
enum bl_counter {
	BL_CNT_SEEN = 0,
	BL_CNT_NOT_TCP,   /* left at once: not IPv4 TCP */
	BL_CNT_NO_CHAIN,  /* TCP, but no chain for the flow */
	BL_CNT_STARTED,   /* a chain was entered */
	BL_CNT_COMPLETED, /* the last operator of a chain ran */
	BL_CNT_SEL_MISS,  /* a selector did not match: chain ended */
	BL_CNT_TAIL_FAIL, /* a tail call fell through (empty slot): must stay 0 */
	BL_CNT__MAX,
};

enum bl_limits {
	BL_CHAIN_MAX = 16,
};

/* The 4-tuple, packet order; the first 8 bytes are the ip_pair key. */
struct bl_tuple {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
};
EMPTCP_BUILD_BUG_ON(sizeof(struct bl_tuple) != 12);

struct bl_op_ref {
	__u16 op;   /* enum bl_op */
	__u8 plen;  /* src: prefix length */
	__u8 _pad;
	__u32 arg;  /* port: host order; src: network-order prefix; mark: value */
};
EMPTCP_BUILD_BUG_ON(sizeof(struct bl_op_ref) != 8);

struct bl_chain {
	__u32 len;
	__u32 _pad;
	struct bl_op_ref ops[BL_CHAIN_MAX];
};
EMPTCP_BUILD_BUG_ON(sizeof(struct bl_chain) != 136);

/* The per-packet context the operators share. */
struct bl_pctx {
	__u32 idx;
	__u32 _pad;
	struct bl_tuple t;
	__u32 _pad2;
	struct bl_chain chain;
};

/* Anchors the enums in BTF for user space. */
struct bl_anchor {
	enum bl_op op;
	enum bl_counter counter;
	enum bl_limits limits;
};
struct bl_anchor bl_anchor __attribute__((unused));

/* Sized from user space before load (no prealloc: 1M flows cost only what
 * they use). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, struct bl_tuple);
	__type(value, struct bl_chain);
} bl_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, struct bl_tuple);
	__type(value, __u32);
} bl_subflows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, __u64); /* saddr, daddr as in struct bl_tuple */
	__type(value, __u32);
} bl_ip_pairs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bl_pctx);
} bl_pctx SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BL_CNT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} bl_counters SEC(".maps");

/* Hits of count actors, by chain position. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BL_CHAIN_MAX);
	__type(key, __u32);
	__type(value, __u64);
} bl_op_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, BL_OP__MAX);
	__type(key, __u32);
	__type(value, __u32);
} bl_xdp_ops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, BL_OP__MAX);
	__type(key, __u32);
	__type(value, __u32);
} bl_tc_ops SEC(".maps");

SEC("xdp")
int bl_xdp_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int bl_tc_empty(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

static __emptcp_inline void bl_count(__u32 counter)
{
	__u64 *c = bpf_map_lookup_elem(&bl_counters, &counter);

	if (c)
		(*c)++;
}

/* 0 and the 4-tuple for an unfragmented IPv4 TCP packet; -1 otherwise. */
static __emptcp_inline int bl_parse(void *data, void *data_end, struct bl_tuple *t)
{
	struct ethhdr *eth = data;
	struct tcphdr *tcp;
	struct iphdr *ip;
	__u32 ihl;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_TCP)
		return -1;
	if (ip->frag_off & bpf_htons(0x3fff))
		return -1;
	ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip))
		return -1;
	tcp = (void *)ip + ihl;
	if ((void *)(tcp + 1) > data_end)
		return -1;
	t->saddr = ip->saddr;
	t->daddr = ip->daddr;
	t->sport = tcp->source;
	t->dport = tcp->dest;
	return 0;
}

/* The entry: parse, find the flow's chain, set up the context, enter the
 * first operator. */
#define BL_ENTRY(name, sec, ctx_type, ops_map, pass, DATA, DATA_END)           \
	SEC(sec)                                                               \
	int name(ctx_type *ctx)                                                \
	{                                                                      \
		struct bl_tuple t = {};                                        \
		struct bl_chain *chain;                                        \
		struct bl_pctx *pc;                                            \
		__u32 zero = 0;                                                \
                                                                               \
		bl_count(BL_CNT_SEEN);                                         \
		if (bl_parse((void *)(long)(DATA), (void *)(long)(DATA_END), &t)) { \
			bl_count(BL_CNT_NOT_TCP);                              \
			return pass;                                           \
		}                                                              \
		chain = bpf_map_lookup_elem(&bl_flows, &t);                    \
		if (!chain || chain->len == 0) {                               \
			bl_count(BL_CNT_NO_CHAIN);                             \
			return pass;                                           \
		}                                                              \
		pc = bpf_map_lookup_elem(&bl_pctx, &zero);                     \
		if (!pc)                                                       \
			return pass;                                           \
		pc->idx = 0;                                                   \
		pc->t = t;                                                     \
		__builtin_memcpy(&pc->chain, chain, sizeof(pc->chain));        \
		bl_count(BL_CNT_STARTED);                                      \
		bpf_tail_call(ctx, &ops_map, pc->chain.ops[0].op);             \
		bl_count(BL_CNT_TAIL_FAIL);                                    \
		return pass;                                                   \
	}

/*
 * One operator program. BODY sees `ctx`, `pc` (the context), `op` (this
 * operator's reference) and `i` (its position), and ends the chain with
 * `return pass` (a selector that does not match). Afterwards the next
 * operator is entered, or the chain is complete.
 */
#define BL_OPERATOR(name, sec, ctx_type, ops_map, pass, BODY)                  \
	SEC(sec)                                                               \
	int name(ctx_type *ctx)                                                \
	{                                                                      \
		const struct bl_op_ref *op;                                    \
		struct bl_pctx *pc;                                            \
		__u32 zero = 0, i;                                             \
                                                                               \
		pc = bpf_map_lookup_elem(&bl_pctx, &zero);                     \
		if (!pc)                                                       \
			return pass;                                           \
		i = pc->idx;                                                   \
		if (i >= BL_CHAIN_MAX)                                         \
			return pass;                                           \
		op = &pc->chain.ops[i];                                        \
		(void)op;                                                      \
		BODY                                                           \
		i++;                                                           \
		pc->idx = i;                                                   \
		if (i >= pc->chain.len || i >= BL_CHAIN_MAX) {                 \
			bl_count(BL_CNT_COMPLETED);                            \
			return pass;                                           \
		}                                                              \
		bpf_tail_call(ctx, &ops_map, pc->chain.ops[i].op);             \
		bl_count(BL_CNT_TAIL_FAIL);                                    \
		return pass;                                                   \
	}

#define BL_SEL_MISS(pass)                      \
	do {                                   \
		bl_count(BL_CNT_SEL_MISS);     \
		return pass;                   \
	} while (0)

#define BODY_SUBFLOW(pass)                                          \
	if (!bpf_map_lookup_elem(&bl_subflows, &pc->t))             \
		BL_SEL_MISS(pass);

#define BODY_IP_PAIR(pass)                                          \
	if (!bpf_map_lookup_elem(&bl_ip_pairs, &pc->t))             \
		BL_SEL_MISS(pass);

#define BODY_PORT(pass)                                             \
	if (pc->t.dport != bpf_htons((__u16)op->arg))               \
		BL_SEL_MISS(pass);

#define BODY_SRC(pass)                                                              \
	{                                                                           \
		__u32 plen = op->plen;                                              \
		__be32 mask = plen == 0 ? 0 : bpf_htonl(0xffffffffu << (32 - (plen & 31))); \
		if (plen >= 32)                                                     \
			mask = 0xffffffff;                                          \
		if ((pc->t.saddr & mask) != op->arg)                                \
			BL_SEL_MISS(pass);                                          \
	}

#define BODY_COUNT                                                  \
	{                                                           \
		__u64 *c = bpf_map_lookup_elem(&bl_op_hits, &i);    \
		if (c)                                              \
			(*c)++;                                     \
	}

#define BODY_MARK ctx->mark = op->arg;

BL_ENTRY(bl_xdp_entry, "xdp", struct xdp_md, bl_xdp_ops, XDP_PASS, ctx->data, ctx->data_end)
BL_OPERATOR(bl_xdp_subflow, "xdp", struct xdp_md, bl_xdp_ops, XDP_PASS, BODY_SUBFLOW(XDP_PASS))
BL_OPERATOR(bl_xdp_ip_pair, "xdp", struct xdp_md, bl_xdp_ops, XDP_PASS, BODY_IP_PAIR(XDP_PASS))
BL_OPERATOR(bl_xdp_port, "xdp", struct xdp_md, bl_xdp_ops, XDP_PASS, BODY_PORT(XDP_PASS))
BL_OPERATOR(bl_xdp_src, "xdp", struct xdp_md, bl_xdp_ops, XDP_PASS, BODY_SRC(XDP_PASS))
BL_OPERATOR(bl_xdp_count, "xdp", struct xdp_md, bl_xdp_ops, XDP_PASS, BODY_COUNT)

BL_ENTRY(bl_tc_entry, "tc", struct __sk_buff, bl_tc_ops, TC_ACT_UNSPEC, ctx->data, ctx->data_end)
BL_OPERATOR(bl_tc_subflow, "tc", struct __sk_buff, bl_tc_ops, TC_ACT_UNSPEC, BODY_SUBFLOW(TC_ACT_UNSPEC))
BL_OPERATOR(bl_tc_ip_pair, "tc", struct __sk_buff, bl_tc_ops, TC_ACT_UNSPEC, BODY_IP_PAIR(TC_ACT_UNSPEC))
BL_OPERATOR(bl_tc_port, "tc", struct __sk_buff, bl_tc_ops, TC_ACT_UNSPEC, BODY_PORT(TC_ACT_UNSPEC))
BL_OPERATOR(bl_tc_src, "tc", struct __sk_buff, bl_tc_ops, TC_ACT_UNSPEC, BODY_SRC(TC_ACT_UNSPEC))
BL_OPERATOR(bl_tc_count, "tc", struct __sk_buff, bl_tc_ops, TC_ACT_UNSPEC, BODY_COUNT)
BL_OPERATOR(bl_tc_mark, "tc", struct __sk_buff, bl_tc_ops, TC_ACT_UNSPEC, BODY_MARK)

/* Probes: building blocks of emptcp's per-packet path. */
struct bl_probe_key {
	__u8 b[44];
};

struct bl_probe_val {
	__u64 packets;
	__u64 bytes;
	__u64 payload_bytes;
	__u64 last_seen_ns;
	__u32 memo[10];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct bl_probe_key);
	__type(value, struct bl_probe_val);
} bl_probe_lru SEC(".maps");

/* The same as a plain (not LRU) per-CPU hash and as a plain hash. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct bl_probe_key);
	__type(value, struct bl_probe_val);
} bl_probe_pchash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct bl_probe_key);
	__type(value, struct bl_probe_val);
} bl_probe_hash SEC(".maps");

/* Results of the probes, so that nothing is optimised away; [0] also
 * tells user space the probe found what it looked for. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} bl_probe_out SEC(".maps");

static __emptcp_inline void bl_probe_result(__u64 v)
{
	__u32 k0 = 0, k1 = 1;
	__u64 *ok = bpf_map_lookup_elem(&bl_probe_out, &k0);
	__u64 *val = bpf_map_lookup_elem(&bl_probe_out, &k1);

	if (ok)
		(*ok)++;
	if (val)
		*val = v;
}

SEC("xdp")
int bl_xdp_probe_parse(struct xdp_md *ctx)
{
	struct emptcp_pkt pkt;

	if (emptcp_parse((void *)(long)ctx->data, (void *)(long)ctx->data_end, &pkt) ==
	    EMPTCP_PARSE_TCP)
		bl_probe_result(pkt.sport ^ pkt.mptcp_subtypes);
	return XDP_PASS;
}

SEC("xdp")
int bl_xdp_probe_headers(struct xdp_md *ctx)
{
	struct emptcp_pkt pkt;

	if (emptcp_parse_headers((void *)(long)ctx->data, (void *)(long)ctx->data_end, &pkt) ==
	    EMPTCP_PARSE_TCP)
		bl_probe_result(pkt.sport ^ pkt.tcp_flags);
	return XDP_PASS;
}

SEC("xdp")
int bl_xdp_probe_lru(struct xdp_md *ctx)
{
	struct bl_probe_key key = {};
	struct bl_probe_val *v;

	key.b[0] = 1;
	v = bpf_map_lookup_elem(&bl_probe_lru, &key);
	if (v) {
		v->packets++;
		v->bytes += 52;
		bl_probe_result(v->packets);
	}
	return XDP_PASS;
}

#define BL_PROBE_MAP(name, map)                                   \
	SEC("xdp")                                                \
	int name(struct xdp_md *ctx)                              \
	{                                                         \
		struct bl_probe_key key = {};                     \
		struct bl_probe_val *v;                           \
                                                                  \
		key.b[0] = 1;                                     \
		v = bpf_map_lookup_elem(&map, &key);              \
		if (v) {                                          \
			v->packets++;                             \
			v->bytes += 52;                           \
			bl_probe_result(v->packets);              \
		}                                                 \
		return XDP_PASS;                                  \
	}
BL_PROBE_MAP(bl_xdp_probe_pchash, bl_probe_pchash)
BL_PROBE_MAP(bl_xdp_probe_hash, bl_probe_hash)

SEC("xdp")
int bl_xdp_probe_coarse(struct xdp_md *ctx)
{
	bl_probe_result(bpf_ktime_get_coarse_ns());
	return XDP_PASS;
}

SEC("xdp")
int bl_xdp_probe_ktime(struct xdp_md *ctx)
{
	bl_probe_result(bpf_ktime_get_ns());
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
