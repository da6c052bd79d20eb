// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * emptcp entry programs: XDP ingress, TC ingress and TC egress.
 *
 * Each parses the packet once and accounts it per flow. The policy-chain
 * engine builds on this entry (docs/architecture.md); today the entry passes
 * every packet unchanged, which is what the demo and the foundation tests
 * attach on a middle node.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include <emptcp/abi.h>
#include <emptcp/parse.h>

/* Sized for a busy middle node; LRU so that a full table evicts the oldest
 * flows instead of failing updates (failures are still counted). */
#define EMPTCP_FLOWS_MAX 65536

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, EMPTCP_FLOWS_MAX);
	__type(key, struct emptcp_flow_key);
	__type(value, struct emptcp_flow_stats);
} emptcp_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMPTCP_HOOK__MAX * EMPTCP_CNT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} emptcp_counters SEC(".maps");

/*
 * Read-only data that user space checks before adopting pinned state (the
 * ABI version) and that anchors ABI enums in BTF, so that the generated Rust
 * types contain them (a type no program references is absent from BTF).
 */
const volatile struct {
	enum emptcp_abi abi_version;
	enum emptcp_hook hook;
	enum emptcp_entry_counter counter;
} emptcp_abi_info = { .abi_version = EMPTCP_ABI_VERSION };

static __emptcp_inline void count(enum emptcp_hook hook, enum emptcp_entry_counter c)
{
	__u32 idx = hook * EMPTCP_CNT__MAX + c;
	__u64 *v = bpf_map_lookup_elem(&emptcp_counters, &idx);

	if (v)
		(*v)++;
}

static __emptcp_inline void account_flow(enum emptcp_hook hook, __u32 ifindex,
					 const struct emptcp_pkt *pkt, __u64 wire_len)
{
	struct emptcp_flow_key key = {
		.ifindex = ifindex,
		.hook = hook,
		.family = pkt->family,
		.sport = pkt->sport,
		.dport = pkt->dport,
	};
	struct emptcp_flow_stats *st, init = {};
	__u64 payload = 0;

	__builtin_memcpy(key.saddr, pkt->saddr, sizeof(key.saddr));
	__builtin_memcpy(key.daddr, pkt->daddr, sizeof(key.daddr));
	if (wire_len > pkt->payload_off)
		payload = wire_len - pkt->payload_off;

	st = bpf_map_lookup_elem(&emptcp_flows, &key);
	if (!st) {
		/* EEXIST from a racing CPU is fine: the lookup below finds it. */
		bpf_map_update_elem(&emptcp_flows, &key, &init, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&emptcp_flows, &key);
		if (!st) {
			count(hook, EMPTCP_CNT_FLOW_MAP_FULL);
			return;
		}
	}
	/* Per-CPU value: plain adds, no atomics needed. */
	st->packets++;
	st->bytes += wire_len - pkt->l3_off;
	st->payload_bytes += payload;
	st->last_seen_ns = bpf_ktime_get_ns();
}

static __emptcp_inline void entry(enum emptcp_hook hook, void *data, void *data_end,
				  __u32 ifindex, __u64 wire_len)
{
	struct emptcp_pkt pkt;

	count(hook, EMPTCP_CNT_SEEN);
	switch (emptcp_parse(data, data_end, &pkt)) {
	case EMPTCP_PARSE_TCP:
		break;
	case EMPTCP_PARSE_NOT_TCP:
		count(hook, EMPTCP_CNT_NOT_TCP);
		return;
	case EMPTCP_PARSE_FRAGMENT:
		count(hook, EMPTCP_CNT_FRAGMENT);
		return;
	default:
		count(hook, EMPTCP_CNT_MALFORMED);
		return;
	}
	count(hook, EMPTCP_CNT_TCP);
	if (pkt.mptcp_subtypes)
		count(hook, EMPTCP_CNT_MPTCP);
	account_flow(hook, ifindex, &pkt, wire_len);
}

SEC("xdp")
int emptcp_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	entry(EMPTCP_HOOK_XDP, data, data_end, ctx->ingress_ifindex, data_end - data);
	return XDP_PASS;
}

/* The tc/ingress and tc/egress sections give the programs the tcx attach
 * types; the same programs also attach through clsact. */
SEC("tc/ingress")
int emptcp_tc_in(struct __sk_buff *skb)
{
	entry(EMPTCP_HOOK_TC_INGRESS, (void *)(long)skb->data, (void *)(long)skb->data_end,
	      skb->ifindex, skb->len);
	return TC_ACT_UNSPEC;
}

SEC("tc/egress")
int emptcp_tc_eg(struct __sk_buff *skb)
{
	entry(EMPTCP_HOOK_TC_EGRESS, (void *)(long)skb->data, (void *)(long)skb->data_end,
	      skb->ifindex, skb->len);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
