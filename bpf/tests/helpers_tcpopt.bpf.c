// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * BPF_PROG_TEST_RUN driver for the helper library (ctx.h, csum.h, tcpopt.h,
 * resize.h): one body, built for XDP and for TC. The Rust tests
 * (crates/emptcp/tests/helpers_*.rs) write `io.p` before each run, run
 * the program on a packet built with emptcp-wire, and read `io.r` and the
 * output packet.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include <emptcp/parse.h>
#include <emptcp/skip.h>

struct test_params {
	__u32 op;      /* unused: one program per operation */
	__u32 kind;
	__s32 subtype; /* < 0: any */
	__u32 off;
	__u32 len;
	__u32 flags;
	__u32 mtu_ifindex;
	__s32 delta;
	__u32 mock_partial;
	__u32 _pad;
	__u8 opt[40];
};

struct test_result {
	__s32 parse;
	__s32 ret;    /* the edit's return: offset or -skip */
	__s32 commit; /* emptcp_tcpopt_commit's return */
	__u32 found_len;
};

struct test_io {
	struct test_params p;
	struct test_result r;
};

/* In its own section so that user space sees exactly this layout. */
struct test_io io SEC(".data.io") = {};

#define EMPTCP_TEST_MOCK_CSUM_PARTIAL io.p.mock_partial
#include <emptcp/ctx.h>
#include <emptcp/csum.h>
#include <emptcp/resize.h>
#include <emptcp/tcpopt.h>

enum test_op {
	OP_NONE = 0,
	OP_FIND = 1,    /* find kind/subtype */
	OP_INSERT = 2,  /* insert opt[0..len) */
	OP_REMOVE = 3,  /* find kind/subtype (kind 0: at off), remove with flags */
	OP_REPLACE = 4, /* find kind/subtype (kind 0: at off), replace with opt[0..len) */
	OP_RESIZE = 5,  /* emptcp_resize_tcp(delta) */
	OP_BYTES = 6,   /* write opt[0..len) at area offset off, csum by bytes */
};

/*
 * One program per operation and hook: each is verified on its own, so one
 * program's verified instruction count is one helper's cost (the Rust tests
 * report them). `op` is a constant at every call site.
 */
static __emptcp_inline void run(const struct emptcp_ctx *c, enum test_op op)
{
	struct emptcp_tcpopt_area area;
	struct emptcp_pkt pkt;
	__u32 found = 0;
	int ret, off;

	io.r.parse = emptcp_parse(emptcp_ctx_data(c), emptcp_ctx_data_end(c), &pkt);
	io.r.ret = 0;
	io.r.commit = 0;
	io.r.found_len = 0;
	if (io.r.parse != EMPTCP_PARSE_TCP)
		return;

	if (op == OP_RESIZE) {
		io.r.ret = emptcp_resize_tcp(c, &pkt, io.p.delta);
		return;
	}
	if (op == OP_BYTES) {
		__u8 old[4] = {}, new[4];
		__u32 at = EMPTCP_TCPOPT_PKT_OFF(&pkt, io.p.off);

		/* Four bytes: enough to straddle two words at any alignment. */
		__builtin_memcpy(new, io.p.opt, 4);
		if (emptcp_ctx_load_bytes(c, at, old, 4) || emptcp_ctx_store_bytes(c, at, new, 4)) {
			io.r.ret = EMPTCP_SKIP(TRUNCATED);
			return;
		}
		io.r.ret = emptcp_csum_l4_data_replace_bytes(c, &pkt, at, old, new, 4);
		return;
	}

	ret = emptcp_tcpopt_load(c, &pkt, &area);
	if (ret) {
		io.r.ret = ret;
		return;
	}
	if (op == OP_FIND) {
		ret = emptcp_tcpopt_find(&area, io.p.kind, io.p.subtype, &found);
		io.r.found_len = found;
		io.r.ret = ret;
		return;
	}
	if (op == OP_INSERT) {
		ret = emptcp_tcpopt_insert(&area, io.p.opt, io.p.len);
	} else {
		/* kind 0 (EOL, never searched for): use `off` as given, to
		 * test the refusal of offsets that hold no option. */
		if (io.p.kind == 0) {
			off = io.p.off;
		} else {
			off = emptcp_tcpopt_find(&area, io.p.kind, io.p.subtype, &found);
			io.r.found_len = found;
		}
		if (off < 0) {
			io.r.ret = off;
			return;
		}
		if (op == OP_REMOVE)
			ret = emptcp_tcpopt_remove(&area, off, io.p.flags);
		else
			ret = emptcp_tcpopt_replace(&area, off, io.p.opt, io.p.len, io.p.flags);
	}
	io.r.ret = ret;
	if (ret < 0)
		return;
	io.r.commit = emptcp_tcpopt_commit(c, &pkt, &area);
}

#define TEST_PROGS(name, op)                                                           \
	SEC("xdp") int x_##name(struct xdp_md *ctx)                                    \
	{                                                                              \
		struct emptcp_ctx c = EMPTCP_CTX_XDP(ctx);                             \
		c.mtu_ifindex = io.p.mtu_ifindex;                                      \
		run(&c, op);                                                           \
		return XDP_PASS;                                                       \
	}                                                                              \
	SEC("tc") int t_##name(struct __sk_buff *skb)                                  \
	{                                                                              \
		struct emptcp_ctx c = EMPTCP_CTX_SKB(skb);                             \
		c.mtu_ifindex = io.p.mtu_ifindex;                                      \
		run(&c, op);                                                           \
		return TC_ACT_OK;                                                      \
	}

TEST_PROGS(find, OP_FIND)
TEST_PROGS(insert, OP_INSERT)
TEST_PROGS(remove, OP_REMOVE)
TEST_PROGS(replace, OP_REPLACE)
TEST_PROGS(resize, OP_RESIZE)
TEST_PROGS(bytes, OP_BYTES)

char LICENSE[] SEC("license") = "Dual BSD/GPL";
