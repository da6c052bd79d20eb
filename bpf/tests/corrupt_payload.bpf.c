// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * A test-only middlebox for the live fallback test (crates/emptcp/tests/
 * conntrack.rs): once armed, it inverts the first payload byte of the next
 * TCP segment sent to a given port and fixes the TCP checksum, so TCP takes
 * the segment while the MPTCP DSS checksum over its payload (RFC 8684
 * section 3.3.1) fails: the receiver answers with MP_FAIL and the connection
 * falls back to TCP with an infinite mapping (section 3.7).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include <emptcp/parse.h>

struct corrupt_io {
	__u32 armed;     /* test: corrupt the next data segment to dport */
	__u32 dport;     /* host order */
	__u32 corrupted; /* segments changed since the test last wrote io */
	__u32 seen;      /* data segments to dport since the test last wrote io */
};

struct corrupt_io io SEC(".data.io") = {};

SEC("tc")
int corrupt_one_byte(struct __sk_buff *skb)
{
	struct emptcp_pkt pkt;
	__u8 word[2];
	__u16 from, to;

	/* As the entry programs: direct access sees the linear part only. */
	if (skb->data_end - skb->data < skb->len)
		bpf_skb_pull_data(skb, skb->len < 256 ? skb->len : 256);
	if (emptcp_parse((void *)(long)skb->data, (void *)(long)skb->data_end, &pkt) !=
	    EMPTCP_PARSE_TCP)
		return TC_ACT_OK;
	if (bpf_ntohs(pkt.dport) != io.dport || pkt.l3_off + pkt.l3_len < pkt.payload_off + 2)
		return TC_ACT_OK;
	io.seen++;
	if (!__sync_lock_test_and_set(&io.armed, 0))
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, pkt.payload_off, word, 2))
		return TC_ACT_OK;
	__builtin_memcpy(&from, word, 2);
	word[0] ^= 0xff;
	__builtin_memcpy(&to, word, 2);
	/* The payload starts an even number of bytes into the TCP segment, so
	 * the word is one of the checksum's 16-bit words. bpf_l4_csum_replace
	 * also leaves a CHECKSUM_PARTIAL skb right (its field holds only the
	 * pseudo-header sum then). */
	if (bpf_skb_store_bytes(skb, pkt.payload_off, word, 2, 0) ||
	    bpf_l4_csum_replace(skb, pkt.l4_off + 16, from, to, 2))
		return TC_ACT_OK;
	io.corrupted++;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
