// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Test object for bpf/include/emptcp/mptcp.h (MPTCP option readers) and
 * bpf/include/emptcp/sha256.h (token and IDSN of a key), driven by
 * crates/emptcp/tests/mptcp_crypto.rs with BPF_PROG_TEST_RUN.
 *
 * The test writes the inputs of `io` (its own data section, so that it is
 * alone in its map: the test writes the whole value), runs a program on a
 * packet, and reads the outputs back. Field offsets come from this object's
 * BTF, so the Rust side keeps no copy of the layout.
 *
 * Programs:
 *   xdp_mptcp_read / tc_mptcp_read  emptcp_parse(), then the reader named by
 *       io.reader (or the one for the option's subtype) at io.opt_off; for an
 *       MP_CAPABLE with keys, the tokens and IDSNs of the keys with the global
 *       emptcp_sha256_key() (one body, called from XDP and TC).
 *   xdp_mptcp_readers               the readers alone (no parse, no hash), for
 *       their verifier cost.
 *   xdp_sha256 / tc_sha256          emptcp_sha256_key(io.key): global function.
 *   xdp_sha256_inline               emptcp_sha256_key_inline(io.key).
 *   xdp_sha256_x8                   8 hashes per run (keys io.key + 0..7), so
 *       that the cost of one hash is the difference to xdp_sha256 over 7.
 *   xdp_sha256_base                 the same I/O without a hash: the baseline.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include <emptcp/parse.h>
#include <emptcp/mptcp.h>
#include <emptcp/sha256.h>

/* io.reader: call the reader of the option's own subtype. */
#define MPTCP_TEST_READER_AUTO 0xff

struct mptcp_test_io {
	/* Inputs. */
	__u32 opt_off;   /* offset of the option's kind byte from the frame start */
	__u32 reader;    /* enum emptcp_mptcp_subtype, or MPTCP_TEST_READER_AUTO */
	__u64 key;       /* for the sha256 programs */
	/* Outputs. */
	__u32 runs;             /* programs add one per run */
	__s32 rc;               /* the reader's return value */
	__s32 subtype;          /* emptcp_mptcp_subtype() */
	__s32 parse_rc;         /* emptcp_parse() */
	__u32 parse_subtypes;   /* emptcp_pkt.mptcp_subtypes */
	__s32 sha_rc;           /* emptcp_sha256_key() (sum of the calls) */
	__u32 hashes;           /* keys hashed in this run */
	__u32 _pad;
	struct emptcp_sha256_key_hash sender_hash;   /* MP_CAPABLE sender key */
	struct emptcp_sha256_key_hash receiver_hash; /* MP_CAPABLE receiver key */
	struct emptcp_sha256_key_hash key_hash;      /* sha256 programs: io.key */
	struct emptcp_mptcp_capable capable;
	struct emptcp_mptcp_join join;
	struct emptcp_mptcp_dss dss;
	struct emptcp_mptcp_add_addr add_addr;
	struct emptcp_mptcp_rm_addr rm_addr;
	struct emptcp_mptcp_prio prio;
	struct emptcp_mptcp_fail fail;
	struct emptcp_mptcp_fastclose fastclose;
	struct emptcp_mptcp_tcprst tcprst;
};

struct mptcp_test_io io SEC(".data.mptcp_io");

static __emptcp_inline void read_capable(void *data, void *data_end, __u32 off, int hash)
{
	struct emptcp_mptcp_capable cap;
	struct emptcp_sha256_key_hash h = {};

	io.rc = emptcp_mptcp_read_capable(data, data_end, off, &cap);
	if (io.rc)
		return;
	io.capable = cap;
	if (!hash)
		return;
	/* The caller's duty of sha256.h: hash only keys of MP_CAPABLE. */
	if (cap.len >= EMPTCP_MPTCP_CAPABLE_LEN_SYNACK) {
		io.sha_rc += emptcp_sha256_key(cap.sender_key, &h);
		io.sender_hash = h;
		io.hashes++;
	}
	if (cap.len >= EMPTCP_MPTCP_CAPABLE_LEN_ACK) {
		io.sha_rc += emptcp_sha256_key(cap.receiver_key, &h);
		io.receiver_hash = h;
		io.hashes++;
	}
}

static __emptcp_inline void read_option(void *data, void *data_end, int parse, int hash)
{
	__u32 off = io.opt_off, reader = io.reader;
	struct emptcp_pkt pkt;

	io.runs++;
	if (parse) {
		io.parse_rc = emptcp_parse(data, data_end, &pkt);
		if (io.parse_rc == EMPTCP_PARSE_TCP)
			io.parse_subtypes = pkt.mptcp_subtypes;
	}
	io.subtype = emptcp_mptcp_subtype(data, data_end, off);
	if (reader == MPTCP_TEST_READER_AUTO) {
		if (io.subtype < 0) {
			io.rc = io.subtype;
			return;
		}
		reader = io.subtype;
	}

	switch (reader) {
	case EMPTCP_MPTCP_MP_CAPABLE:
		read_capable(data, data_end, off, hash);
		break;
	case EMPTCP_MPTCP_MP_JOIN: {
		struct emptcp_mptcp_join join;

		io.rc = emptcp_mptcp_read_join(data, data_end, off, &join);
		if (!io.rc)
			io.join = join;
		break;
	}
	case EMPTCP_MPTCP_DSS: {
		struct emptcp_mptcp_dss dss;

		io.rc = emptcp_mptcp_read_dss(data, data_end, off, &dss);
		if (!io.rc)
			io.dss = dss;
		break;
	}
	case EMPTCP_MPTCP_ADD_ADDR: {
		struct emptcp_mptcp_add_addr add;

		io.rc = emptcp_mptcp_read_add_addr(data, data_end, off, &add);
		if (!io.rc)
			io.add_addr = add;
		break;
	}
	case EMPTCP_MPTCP_REMOVE_ADDR: {
		struct emptcp_mptcp_rm_addr rm;

		io.rc = emptcp_mptcp_read_rm_addr(data, data_end, off, &rm);
		if (!io.rc)
			io.rm_addr = rm;
		break;
	}
	case EMPTCP_MPTCP_MP_PRIO: {
		struct emptcp_mptcp_prio prio;

		io.rc = emptcp_mptcp_read_prio(data, data_end, off, &prio);
		if (!io.rc)
			io.prio = prio;
		break;
	}
	case EMPTCP_MPTCP_MP_FAIL: {
		struct emptcp_mptcp_fail fail;

		io.rc = emptcp_mptcp_read_fail(data, data_end, off, &fail);
		if (!io.rc)
			io.fail = fail;
		break;
	}
	case EMPTCP_MPTCP_MP_FASTCLOSE: {
		struct emptcp_mptcp_fastclose fc;

		io.rc = emptcp_mptcp_read_fastclose(data, data_end, off, &fc);
		if (!io.rc)
			io.fastclose = fc;
		break;
	}
	case EMPTCP_MPTCP_MP_TCPRST: {
		struct emptcp_mptcp_tcprst rst;

		io.rc = emptcp_mptcp_read_tcprst(data, data_end, off, &rst);
		if (!io.rc)
			io.tcprst = rst;
		break;
	}
	default:
		io.rc = 1; /* no reader for this subtype */
		break;
	}
}

SEC("xdp")
int xdp_mptcp_read(struct xdp_md *ctx)
{
	read_option((void *)(long)ctx->data, (void *)(long)ctx->data_end, 1, 1);
	return XDP_PASS;
}

/* The readers alone (no parse, no hash): their own verifier cost. */
SEC("xdp")
int xdp_mptcp_readers(struct xdp_md *ctx)
{
	read_option((void *)(long)ctx->data, (void *)(long)ctx->data_end, 0, 0);
	return XDP_PASS;
}

SEC("tc")
int tc_mptcp_read(struct __sk_buff *skb)
{
	read_option((void *)(long)skb->data, (void *)(long)skb->data_end, 1, 1);
	return TC_ACT_OK;
}

SEC("xdp")
int xdp_sha256(struct xdp_md *ctx)
{
	struct emptcp_sha256_key_hash h = {};

	io.runs++;
	io.sha_rc = emptcp_sha256_key(io.key, &h);
	io.key_hash = h;
	return XDP_PASS;
}

SEC("tc")
int tc_sha256(struct __sk_buff *skb)
{
	struct emptcp_sha256_key_hash h = {};

	io.runs++;
	io.sha_rc = emptcp_sha256_key(io.key, &h);
	io.key_hash = h;
	return TC_ACT_OK;
}

SEC("xdp")
int xdp_sha256_inline(struct xdp_md *ctx)
{
	struct emptcp_sha256_key_hash h = {};

	io.runs++;
	emptcp_sha256_key_inline(io.key, &h);
	io.sha_rc = 0;
	io.key_hash = h;
	return XDP_PASS;
}

SEC("xdp")
int xdp_sha256_x8(struct xdp_md *ctx)
{
	struct emptcp_sha256_key_hash h = {};
	__u64 key = io.key;
	__u32 token = 0;
	int i, rc = 0;

	io.runs++;
	for (i = 0; i < 8; i++) {
		rc |= emptcp_sha256_key(key + i, &h);
		token ^= h.token;
	}
	io.sha_rc = rc;
	io.key_hash.token = token;
	return XDP_PASS;
}

SEC("xdp")
int xdp_sha256_base(struct xdp_md *ctx)
{
	io.runs++;
	io.sha_rc = 0;
	io.key_hash.token = (__u32)io.key;
	io.key_hash.idsn = io.key;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
