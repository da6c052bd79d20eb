/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The classification memo: the candidate rules of recent flows, per CPU,
 * in a direct-mapped array indexed by a hash of the flow key. A per-CPU
 * array lookup is inlined by the verifier, so a hit costs the hash, one
 * load and a key compare (a few ns), where a hash map lookup costs ~45 ns
 * on this project's VM (docs/benchmarks.md). A slot holds one flow: flows
 * whose keys collide take turns, each miss classifying again (the full key
 * is compared, so a collision costs time, never a wrong rule). Tagged with
 * the generation and the connection-tracking version it was made under.
 *
 * The quick pass (docs/engine.md, "The quick pass"): a slot also says when
 * its flow's next packets may pass on the headers alone, without the TCP
 * option walk, the counters of the full path or the engine. That holds
 * when the generation gave the flow no candidate rule, the generation has
 * no per-packet duty that reads options (connection tracking lookups for
 * `connection` / `sequence` selectors, add_subflow's carrier step), the
 * last packet the full path saw of it was of no interest to connection
 * tracking (emptcp_ct_interesting: no SYN, FIN or RST, no handshake,
 * teardown or failure option, no infinite mapping), and the packet's
 * options are laid out as that one's (__emptcp_memo_same_layout). Every
 * SYN, FIN or RST still takes the full path, and so does the packet after
 * it.
 */
#ifndef __EMPTCP_LIB_MEMO_H
#define __EMPTCP_LIB_MEMO_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include <emptcp/abi.h>
#include <emptcp/mptcp.h>
#include <emptcp/parse.h>

#include "config.h"
#include "conntrack.h"
#include "counters.h"

#define EMPTCP_MEMO_SLOTS_LOG2 14
#define EMPTCP_MEMO_SLOTS (1u << EMPTCP_MEMO_SLOTS_LOG2)

/* Slot tag of the programs without rules (generation 0 of each hook, whose
 * configuration has number 0): 0 marks an empty slot, and the control plane
 * numbers generations from 1 up. */
#define EMPTCP_MEMO_TAG_NO_RULES 0xffffffffu

enum emptcp_memo_quick {
	EMPTCP_MEMO_QUICK = 1,        /* the flow's packets may take the quick pass */
	EMPTCP_MEMO_QUICK_MPTCP = 2,  /* its last fully parsed packet carried an MPTCP option */
};
/* The quick pass picks its counter by adding the MPTCP bit: one update. */
EMPTCP_BUILD_BUG_ON(EMPTCP_CNT_QUICK_MPTCP != EMPTCP_CNT_QUICK_TCP + 1 ||
		    EMPTCP_MEMO_QUICK_MPTCP >> 1 != 1);

struct emptcp_memo_slot {
	struct emptcp_flow_key key;
	__u32 generation;       /* emptcp_memo_tag(); 0: empty */
	__u32 ct_version;
	__u32 quick;            /* enum emptcp_memo_quick bits */
	__u32 n;                /* > EMPTCP_MEMO_MAX: overflow, classify per packet */
	__u32 ids[EMPTCP_MEMO_MAX];
	/* The option layout of the flow's last walked packet, which the quick
	 * pass asks of the next (emptcp_memo_quick_pass); read by
	 * __emptcp_memo_layout. */
	__u8 doff;              /* TCP data offset, in words */
	__u8 dss_rel;           /* its DSS's offset from the TCP header; 0: none */
	__u8 dss_mapping;       /* that DSS carried a mapping (flag M) */
	__u8 _pad;
	__u32 opt_head;         /* its first 4 option bytes; 0 without options */
	__u32 dss_head;         /* its DSS's first 4 bytes: kind, length, subtype, flags; 0: none */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EMPTCP_MEMO_SLOTS);
	__type(key, __u32);
	__type(value, struct emptcp_memo_slot);
} emptcp_memo SEC(".maps");

static __emptcp_inline __u32 __emptcp_rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

/* The memo slot of the packet's flow: a hash of the flow key's fields, read
 * from the parsed packet (no key copy on the stack: the entry and its calls
 * share 512 bytes). The words are folded with rotations in independent
 * chains (a chain of a multiply per word, the first version, cost ~6 ns
 * more here, since each multiply waits for the last), then multiplied once
 * by 2^32 / phi, whose top bits are the index (Fibonacci hashing): the
 * quick pass pays this on every packet, and MurmurHash3's finaliser, used
 * before, cost one more multiply and four shifts in the chain. Source and
 * destination rotate differently, so a flow's two directions do not share
 * a slot. Collisions only cost a reclassification: the slot's full key is
 * compared. */
static __emptcp_inline __u32 __emptcp_memo_index(__u32 ifindex, enum emptcp_hook hook,
						 const struct emptcp_pkt *pkt)
{
	const __u32 *s = (const __u32 *)pkt->saddr, *d = (const __u32 *)pkt->daddr;
	__u32 a = s[0], b = d[0], h;

	/* IPv4 addresses fill word 0 alone (the rest is zero). */
	if (pkt->family != AF_INET) {
		a ^= __emptcp_rotl32(s[1], 7) ^ __emptcp_rotl32(s[2], 13) ^ __emptcp_rotl32(s[3], 19);
		b ^= __emptcp_rotl32(d[1], 7) ^ __emptcp_rotl32(d[2], 13) ^ __emptcp_rotl32(d[3], 19);
	}
	h = a ^ __emptcp_rotl32(b, 16) ^ emptcp_pkt_ports(pkt) ^
	    __emptcp_rotl32(ifindex ^ ((__u32)hook << 24 | (__u32)pkt->family << 16), 11);
	return (h * 0x9e3779b1u) >> (32 - EMPTCP_MEMO_SLOTS_LOG2);
}

/* Whether memo slot `m` is the packet's flow. */
static __emptcp_inline int __emptcp_memo_is(const struct emptcp_memo_slot *m, __u32 ifindex,
					    enum emptcp_hook hook, const struct emptcp_pkt *pkt)
{
	const __u32 *ks = (const __u32 *)m->key.saddr, *kd = (const __u32 *)m->key.daddr;
	const __u32 *ps = (const __u32 *)pkt->saddr, *pd = (const __u32 *)pkt->daddr;
	__u32 diff, i, key_ports;

	__builtin_memcpy(&key_ports, &m->key.sport, sizeof(key_ports));
	diff = (m->key.ifindex ^ ifindex) | (m->key.hook ^ hook) | (m->key.family ^ pkt->family) |
	       (key_ports ^ emptcp_pkt_ports(pkt)) | (ks[0] ^ ps[0]) | (kd[0] ^ pd[0]);
	/* Equal families, and IPv4 keeps words 1-3 zero on both sides. */
	if (pkt->family != AF_INET) {
#pragma unroll
		for (i = 1; i < 4; i++)
			diff |= (ks[i] ^ ps[i]) | (kd[i] ^ pd[i]);
	}
	return diff == 0;
}

/* Fills `key`, every byte (it may be a map key on the stack), with the
 * flow of a packet seen on `ifindex` at `hook`: the memo's slots and the
 * flow table (entry) both key flows this way. */
static __emptcp_inline void emptcp_flow_key_of(struct emptcp_flow_key *key, __u32 ifindex,
					       enum emptcp_hook hook, const struct emptcp_pkt *pkt)
{
	key->ifindex = ifindex;
	key->hook = hook;
	key->family = pkt->family;
	key->sport = pkt->sport;
	key->dport = pkt->dport;
	key->_pad = 0;
	__builtin_memcpy(key->saddr, pkt->saddr, sizeof(key->saddr));
	__builtin_memcpy(key->daddr, pkt->daddr, sizeof(key->daddr));
}

static __emptcp_inline __u32 emptcp_memo_tag(void)
{
	return emptcp_cfg.generation ? emptcp_cfg.generation : EMPTCP_MEMO_TAG_NO_RULES;
}

/* The packet's memo slot (never NULL in practice: the index is masked). */
static __emptcp_inline struct emptcp_memo_slot *
emptcp_memo_slot(__u32 ifindex, enum emptcp_hook hook, const struct emptcp_pkt *pkt)
{
	__u32 idx = __emptcp_memo_index(ifindex, hook, pkt);

	return bpf_map_lookup_elem(&emptcp_memo, &idx);
}

/* Constant per generation: whether any of its flows may take the quick
 * pass. Not when the data plane was loaded without it; conntrack-reading
 * generations look their subflow up on every packet
 * (the memo is tagged with its version) and add_subflow's carrier step may
 * write into any packet, so theirs never do. */
static __emptcp_inline int emptcp_memo_quick_allowed(void)
{
	return emptcp_cfg.quick_pass && !emptcp_cfg.uses_conntrack && !emptcp_cfg.add_subflow_op;
}

/* The 4 packet bytes at `off` (a TCP header offset plus at most 60) as one
 * word, in *out; -1 past the end of the packet. */
static __emptcp_inline int __emptcp_memo_word(void *data, void *data_end, __u32 off, __u32 *out)
{
	__u8 *p = data + (off & 0x3ff);

	if ((void *)(p + 4) > data_end)
		return -1;
	*out = *(__u32 *)p;
	return 0;
}

/*
 * The option layout of a packet, as a memo slot keeps it and the quick pass
 * asks it of the flow's next packets: its TCP data offset (`doff`, in
 * words), its first option word (`opt_head`, 0 without options) and the
 * first word of the option `dss_rel` bytes into its TCP header (`dss_head`:
 * kind, length, subtype and flags of a DSS; 0 when `dss_rel` is 0). The one
 * reader of both: emptcp_memo_note records what it reads of a walked packet
 * (its DSS where the walk found it), __emptcp_memo_same_layout reads the
 * next packet the same way (at the recorded DSS offset) and compares. -1
 * when a word is past the end of the packet.
 */
static __emptcp_inline int __emptcp_memo_layout(void *data, void *data_end,
						const struct emptcp_pkt *pkt, __u32 dss_rel,
						__u32 *doff, __u32 *opt_head, __u32 *dss_head)
{
	__u32 l4 = pkt->l4_off;

	*doff = (pkt->payload_off - l4) >> 2;
	*opt_head = 0;
	*dss_head = 0;
	if (*doff > 5 && __emptcp_memo_word(data, data_end, l4 + 20, opt_head))
		return -1;
	if (dss_rel && __emptcp_memo_word(data, data_end, l4 + (dss_rel & 0x3f), dss_head))
		return -1;
	return 0;
}

/*
 * Notes in slot `m` what the full path found for this packet of its flow
 * (`n` candidate rules): whether the flow's next packets may take the quick
 * pass, and the option layout they must have to take it. Quick when the
 * generation allows it, no rule is a candidate, and connection tracking had
 * no use for the packet.
 */
static __emptcp_inline void emptcp_memo_note(struct emptcp_memo_slot *m, void *data,
					     void *data_end, const struct emptcp_pkt *pkt, __u32 n)
{
	__u32 l4 = pkt->l4_off, dss = pkt->off_dss, dss_rel = 0, doff, opt_head, dss_head;

	m->quick = 0;
	if (!emptcp_memo_quick_allowed() || n || emptcp_ct_interesting(data, data_end, pkt))
		return;
	if (dss > l4 && dss - l4 < 60)
		dss_rel = dss - l4;
	if (__emptcp_memo_layout(data, data_end, pkt, dss_rel, &doff, &opt_head, &dss_head))
		return;
	m->doff = doff;
	m->opt_head = opt_head;
	m->dss_rel = dss_rel;
	m->dss_head = dss_head;
	/* Byte 3 of the option, in packet order: its flags. */
	m->dss_mapping = !!(((__u8 *)&dss_head)[3] & EMPTCP_MPTCP_DSS_FLAG_M);
	m->quick = EMPTCP_MEMO_QUICK | (pkt->mptcp_subtypes ? EMPTCP_MEMO_QUICK_MPTCP : 0);
}

/* Fills slot `m` for the packet's flow: no candidate rule, as in a
 * generation without rules. */
static __emptcp_inline void emptcp_memo_fill_none(struct emptcp_memo_slot *m, void *data,
						  void *data_end, __u32 ifindex,
						  enum emptcp_hook hook, const struct emptcp_pkt *pkt)
{
	emptcp_flow_key_of(&m->key, ifindex, hook, pkt);
	m->generation = emptcp_memo_tag();
	m->ct_version = 0;
	m->n = 0;
	emptcp_memo_note(m, data, data_end, pkt, 0);
}

/*
 * Whether the packet's options are laid out as those of the flow's last
 * walked packet (slot `m`): the same data offset, the same first option
 * word, the DSS at the same place with the same kind, length, subtype and
 * flags, and, if it maps data, not an infinite mapping. Such a packet can
 * differ from that one only in option values (timestamps, sequence
 * numbers), none of which connection tracking reads, except a data-level
 * length of 0, checked here. A packet that adds an option (MP_FAIL,
 * ADD_ADDR, MP_PRIO...) changes the data offset or the first word, or
 * moves the DSS, unless it takes the place of bytes of the same length in
 * the middle of the list: Linux never sends such a layout.
 */
static __emptcp_inline int __emptcp_memo_same_layout(const struct emptcp_memo_slot *m,
						     void *data, void *data_end,
						     const struct emptcp_pkt *pkt)
{
	__u32 doff, opt_head, dss_head;

	/* Absent words read and are recorded as 0, and both sides read the
	 * DSS word at the slot's offset: one compare of each. */
	if (__emptcp_memo_layout(data, data_end, pkt, m->dss_rel, &doff, &opt_head, &dss_head) ||
	    doff != m->doff || opt_head != m->opt_head || dss_head != m->dss_head)
		return 0;
	return !m->dss_mapping ||
	       !emptcp_mptcp_dss_infinite(data, data_end, pkt->l4_off + (m->dss_rel & 0x3f));
}

/*
 * The quick pass: true when the packet, parsed up to its TCP header
 * (emptcp_parse_headers), whose memo slot is `m`, may pass untouched
 * without its options walked; counted as quick_tcp or quick_mptcp (user
 * space adds them to tcp and no_policy). SYN, FIN and RST never pass here:
 * connection tracking reads them all; nor a packet whose option layout
 * differs from the flow's last walked packet (__emptcp_memo_same_layout).
 */
static __emptcp_inline int emptcp_memo_quick_pass(const struct emptcp_memo_slot *m, void *data,
						  void *data_end, __u32 ifindex,
						  enum emptcp_hook hook, const struct emptcp_pkt *pkt)
{
	if (!emptcp_memo_quick_allowed() ||
	    (pkt->tcp_flags & (EMPTCP_TCP_SYN | EMPTCP_TCP_FIN | EMPTCP_TCP_RST)) ||
	    !(m->quick & EMPTCP_MEMO_QUICK) || m->generation != emptcp_memo_tag() ||
	    !__emptcp_memo_is(m, ifindex, hook, pkt) ||
	    !__emptcp_memo_same_layout(m, data, data_end, pkt))
		return 0;
	emptcp_count(hook, EMPTCP_CNT_QUICK_TCP + (m->quick >> 1));
	return 1;
}

#endif /* __EMPTCP_LIB_MEMO_H */
