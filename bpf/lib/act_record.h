/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * record: per-subflow metrics of the packets a chain picks (struct
 * emptcp_record in abi.h, map emptcp_record shared by every generation and
 * attachment, keyed like connection tracking so both directions meet).
 *
 *   packets, payload bytes    per direction
 *   RTT                       passive, from TCP timestamps (RFC 7323): the
 *                             time from the first sight of a new TSval from
 *                             one side to the first sight of its echo
 *                             (TSecr) from the other: the round trip from
 *                             this hook to that side's receiver and back.
 *                             Needs both directions through record (one
 *                             attachment, or several sharing the map).
 *   data progress             the end of the highest DSS mapping each side
 *                             sent, and the highest DATA_ACK it sent, as
 *                             offsets in the data streams (connection
 *                             tracking supplies the IDSNs)
 *
 * It reads the clock (~30 ns) and does two hash lookups: it costs where it is
 * used, not on every packet.
 */
#ifndef __EMPTCP_LIB_ACT_RECORD_H
#define __EMPTCP_LIB_ACT_RECORD_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include <emptcp/abi.h>
#include <emptcp/mptcp.h>
#include <emptcp/parse.h>

#include "conntrack.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EMPTCP_CT_SUBFLOWS_MAX);
	__type(key, struct emptcp_ct_key);
	__type(value, struct emptcp_record);
} emptcp_record SEC(".maps");

static const struct emptcp_record emptcp_zero_record;

static __emptcp_inline __u32 __emptcp_be32_at(const __u8 *p)
{
	return (__u32)p[0] << 24 | (__u32)p[1] << 16 | (__u32)p[2] << 8 | p[3];
}

/* Not inlined: its key and option copies stay out of the entry's frame. */
static __attribute__((noinline)) int __emptcp_act_record(void *data, void *data_end,
							 const struct emptcp_pkt *pkt)
{
	struct emptcp_subflow_ct *ct;
	struct emptcp_record *rec;
	struct emptcp_ct_key key;
	__u64 now = bpf_ktime_get_ns(), payload = 0;
	int d = !emptcp_ct_key_of(pkt, &key); /* 0: sent by lo */

	rec = bpf_map_lookup_elem(&emptcp_record, &key);
	if (!rec) {
		bpf_map_update_elem(&emptcp_record, &key, &emptcp_zero_record, BPF_NOEXIST);
		rec = bpf_map_lookup_elem(&emptcp_record, &key);
		if (!rec)
			return EMPTCP_REASON_WRONG_HOOK + 1;
	}
	d &= 1;
	if ((__u32)pkt->l3_off + pkt->l3_len > pkt->payload_off)
		payload = (__u32)pkt->l3_off + pkt->l3_len - pkt->payload_off;
	__sync_fetch_and_add(&rec->packets[d], 1);
	__sync_fetch_and_add(&rec->payload_bytes[d], payload);

	if (pkt->off_timestamps) {
		const __u8 *ts = data + (pkt->off_timestamps & 0x7fff);

		if ((void *)(ts + 10) <= data_end) {
			__u32 val = __emptcp_be32_at(ts + 2), ecr = __emptcp_be32_at(ts + 6);
			int o = d ^ 1;

			if (val != rec->ts_val[d]) {
				rec->ts_val[d] = val;
				rec->ts_seen_ns[d] = now;
			}
			/* The other side's TSval, echoed: one sample per TSval. */
			if (ecr && ecr == rec->ts_val[o] && rec->ts_seen_ns[o]) {
				__u32 sample = (now - rec->ts_seen_ns[o]) / 1000;
				__u32 srtt = rec->srtt_us[o];

				rec->srtt_us[o] = srtt ? srtt - srtt / 8 + sample / 8 : sample;
				rec->ts_seen_ns[o] = 0;
				rec->rtt_samples[o]++;
			}
		}
	}

	if (pkt->mptcp_subtypes & (1u << EMPTCP_MPTCP_DSS)) {
		struct emptcp_mptcp_dss dss;

		ct = bpf_map_lookup_elem(&emptcp_ct_sf, &key);
		if (ct && (ct->flags & EMPTCP_CT_KNOWN) &&
		    !emptcp_mptcp_read_dss(data, data_end, pkt->off_dss, &dss)) {
			/* d's data stream starts at d's IDSN + 1; its DATA_ACKs
			 * count the peer's. */
			__u64 own = d ? ct->idsn_hi : ct->idsn_lo;
			__u64 peer = d ? ct->idsn_lo : ct->idsn_hi;

			if (dss.dsn_len) {
				__u64 end = dss.dsn - own - 1 + dss.data_len;

				if (dss.dsn_len == 4)
					end = (__u32)end;
				if (end > rec->data_sent[d])
					rec->data_sent[d] = end;
			}
			if (dss.ack_len) {
				__u64 acked = dss.data_ack - peer - 1;

				if (dss.ack_len == 4)
					acked = (__u32)acked;
				if (acked > rec->data_acked[d])
					rec->data_acked[d] = acked;
			}
		}
	}
	return 0;
}

static __emptcp_inline int emptcp_act_record(void *ctx, enum emptcp_hook hook,
					     const struct emptcp_pkt *pkt)
{
	/* Context fields read where `hook` is a constant (see act_events.h). */
	EMPTCP_CTX_FENCE(ctx);
	if (hook == EMPTCP_HOOK_XDP) {
		struct xdp_md *x = ctx;

		return __emptcp_act_record((void *)(long)x->data, (void *)(long)x->data_end, pkt);
	}
	{
		struct __sk_buff *skb = ctx;

		return __emptcp_act_record((void *)(long)skb->data, (void *)(long)skb->data_end,
					   pkt);
	}
}

#endif /* __EMPTCP_LIB_ACT_RECORD_H */
