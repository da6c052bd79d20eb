/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Find, add, remove and replace TCP options (and MPTCP options by subtype)
 * at any alignment, odd offsets included, within the 40-byte option area.
 *
 * Model: the option area is loaded once into a stack copy (struct
 * emptcp_tcpopt_area), edited there by pure functions (no helper calls, no
 * packet access), and written back once by emptcp_tcpopt_commit, which also
 * grows or shrinks the header (resize.h) and updates every checksum with
 * one sum difference over the whole area. Several edits cost one commit.
 * Offsets are bytes from the start of the option area (TCP header + 20);
 * the packet offset of an option is pkt->l4_off + 20 + off.
 *
 * API:
 *   int emptcp_tcpopt_load(c, pkt, area)
 *        0, or -EMPTCP_SKIP_TRUNCATED / _MALFORMED (data offset over 15).
 *        Also launders *pkt's offsets (emptcp_pkt_launder, resize.h).
 *   int emptcp_tcpopt_find(area, kind, subtype, &len)
 *        offset of the first option of `kind` (kind 30 and subtype >= 0:
 *        the first MPTCP option of that subtype, enum emptcp_mptcp_subtype
 *        of mptcp.h; subtype < 0: any) and its
 *        length in *len; -EMPTCP_SKIP_NOT_FOUND; -EMPTCP_SKIP_MALFORMED when
 *        the walk meets a length 0/1 or an option past the area before a
 *        match. The walk stops at EOL.
 *   int emptcp_tcpopt_insert(area, opt, len)
 *        adds the option opt[0..len) (kind, length, data; len 1..40) and
 *        returns its offset, or -EMPTCP_SKIP_NO_ROOM / _MALFORMED / _INVAL.
 * NOT USABLE YET: remove or replace followed by commit exceeds the verifier's
 * 1M-instruction limit (clang 14, kernel 6.18); see docs/writing-operators.md.
 *
 *   int emptcp_tcpopt_remove(area, off, flags)
 *        removes the option at `off` (from emptcp_tcpopt_find): 0 or -_INVAL.
 *   int emptcp_tcpopt_replace(area, off, opt, len, flags)
 *        puts opt[0..len) where the option at `off` was: 0 or -_NO_ROOM /
 *        _MALFORMED / _INVAL.
 *   int emptcp_tcpopt_commit(c, pkt, area)
 *        writes the edits to the packet; 0 or a negative skip reason.
 *   EMPTCP_TCPOPT_PKT_OFF(pkt, off)   the packet offset of area offset off.
 *
 * Placement rules (stated so that tests and operators can predict bytes):
 * - Room: a run of NOPs between options, or the tail padding: from the
 *   first of the NOPs that directly precede EOL or the end of the area,
 *   through EOL and everything after it.
 * - insert: the first interior NOP run of at least `len` bytes takes the
 *   option at its start; the run's remaining bytes stay NOPs. Otherwise the
 *   option starts at the tail padding; if it does not fit, the area grows by
 *   the least multiple of 4 that makes it fit (never beyond 40 bytes:
 *   -EMPTCP_SKIP_NO_ROOM). After a tail insertion the rest of the area is
 *   EOL padding (zero bytes).
 * - remove, EMPTCP_TCPOPT_F_NOP: the option's bytes become NOPs in place;
 *   the length of the area is unchanged (no resize: cheapest, and always
 *   possible, also for CHECKSUM_PARTIAL and GSO packets at TC).
 * - remove, EMPTCP_TCPOPT_F_SHRINK: later options move down over it, the
 *   tail padding (trailing NOPs, EOL and after) is dropped, the area becomes
 *   the least multiple of 4 holding what is left, padded with EOL (zero).
 * - replace, same length: in place. Shorter with EMPTCP_TCPOPT_F_NOP: in
 *   place, the rest of the old option becomes NOPs. Otherwise as remove
 *   with EMPTCP_TCPOPT_F_SHRINK followed by an insert at `off`: later options
 *   move, the area is re-padded with EOL, grown if needed (never beyond 40
 *   bytes), and shrunk only with EMPTCP_TCPOPT_F_SHRINK.
 *
 * `opt` must be readable for `len` bytes where `len` is a compile-time
 * constant (the usual case: MP_PRIO 3, ADD_ADDR 8..30); with a run-time
 * `len`, `opt` must be readable for 40 bytes (the verifier checks every
 * byte the copy may read).
 *
 * Pointer invalidation: only emptcp_tcpopt_commit (and load, at TC) touch
 * the packet; after commit every packet pointer is invalid
 * (EMPTCP_CTX_REVALIDATE). *pkt is kept up to date (payload_off, l3_len).
 * Checksum duty: commit does all of it (TCP, IPv4 header, skb->csum).
 * Byte order: option bytes are wire bytes.
 *
 * Example (set_backup: add an RFC 8684 MP_PRIO with B=1):
 *   struct emptcp_tcpopt_area area;
 *   const __u8 prio[3] = { 30, 3, (EMPTCP_MPTCP_MP_PRIO << 4) | 1 };
 *
 *   if (emptcp_tcpopt_load(&c, &pkt, &area) == 0 &&
 *       emptcp_tcpopt_insert(&area, prio, sizeof(prio)) >= 0)
 *           ret = emptcp_tcpopt_commit(&c, &pkt, &area);
 */
#ifndef __EMPTCP_TCPOPT_H
#define __EMPTCP_TCPOPT_H

#include <linux/types.h>
#include "compiler.h"
#include "ctx.h"
#include "mptcp.h"
#include "csum.h"
#include "parse.h"
#include "resize.h"
#include "skip.h"

enum emptcp_tcpopt_flags {
	EMPTCP_TCPOPT_F_NOP = 0,
	EMPTCP_TCPOPT_F_SHRINK = 1,
};

/* Stack buffers are 64 bytes so that an index masked with 0x3f is always
 * inside them: the verifier then accepts variable-offset stack access. */
#define __EMPTCP_TCPOPT_BUF 64
#define __EMPTCP_TCPOPT_IDX(i) ((i) & (__EMPTCP_TCPOPT_BUF - 1))
/* Marks "no NOP run" in the room walk. */
#define __EMPTCP_TCPOPT_NONE 0xff

struct emptcp_tcpopt_area {
	__u8 cur[__EMPTCP_TCPOPT_BUF];  /* edited; zero from cur_len on */
	__u8 orig[EMPTCP_TCPOPT_MAX_LEN]; /* as in the packet; zero from orig_len */
	__u8 cur_len;                   /* 0..40, a multiple of 4 */
	__u8 orig_len;
	__u8 dirty;
	__u8 _pad;
};

#define EMPTCP_TCPOPT_PKT_OFF(pkt, off) ((pkt)->l4_off + 20 + (off))

static __emptcp_inline int emptcp_tcpopt_load(const struct emptcp_ctx *c,
					      struct emptcp_pkt *pkt,
					      struct emptcp_tcpopt_area *a)
{
	__u32 len;

	emptcp_pkt_launder(pkt);
	len = pkt->payload_off - pkt->l4_off - 20;

	__builtin_memset(a, 0, sizeof(*a));
	if (len > EMPTCP_TCPOPT_MAX_LEN)
		return EMPTCP_SKIP(MALFORMED);
	/* Mask needed to calm the verifier: the bound above is on a copy of
	 * the register the helper call sees (clang 14). */
	len &= 0x3f;
	if (len && len <= EMPTCP_TCPOPT_MAX_LEN) {
		if (emptcp_ctx_load_bytes(c, pkt->l4_off + 20, a->orig, len))
			return EMPTCP_SKIP(TRUNCATED);
		__builtin_memcpy(a->cur, a->orig, EMPTCP_TCPOPT_MAX_LEN);
	}
	a->cur_len = len;
	a->orig_len = len;
	return 0;
}

/*
 * Forgets what the verifier knows about a value below 64 (the result is the
 * same number). Every way out of a walk or a byte loop leaves offsets and
 * lengths with different known bounds, and often exact values; without this
 * all code after it is verified once per way: an insert alone exceeded the
 * 1M-instruction limit (kernel 6.18, clang 14). The walks forget their
 * results, the byte loops forget their arguments (so that their exits do
 * not refine the caller's copies). Same trick as parse.h's
 * __emptcp_opaque_zero; indexes are masked, so no bound is needed after.
 */
static __emptcp_inline __u32 __emptcp_tcpopt_forget(__u32 off)
{
	return (off | __emptcp_opaque_zero) & 0x3f;
}

static __emptcp_inline __u32 __emptcp_tcpopt_end(const struct emptcp_tcpopt_area *a)
{
	__u32 end = a->cur_len;

	return end > EMPTCP_TCPOPT_MAX_LEN ? EMPTCP_TCPOPT_MAX_LEN : end;
}

static __emptcp_inline int emptcp_tcpopt_find(const struct emptcp_tcpopt_area *a, __u8 kind,
					      int subtype, __u32 *len)
{
	__u32 end = __emptcp_tcpopt_end(a);
	/* Start from an unknown zero (parse.h, __emptcp_opaque_zero) so that
	 * runs of NOPs do not become distinct constant states. */
	__u32 pos = __emptcp_opaque_zero & 0x3f;

	/* Bounded by pos < end <= 40, pos growing by at least 1 per step. */
	while (pos < end) {
		__u8 k = a->cur[__EMPTCP_TCPOPT_IDX(pos)], l;

		if (k == EMPTCP_TCPOPT_EOL)
			break;
		if (k == EMPTCP_TCPOPT_NOP) {
			pos++;
			continue;
		}
		l = a->cur[__EMPTCP_TCPOPT_IDX(pos + 1)];
		if (pos + 1 >= end || l < 2 || pos + l > end)
			return EMPTCP_SKIP(MALFORMED);
		if (k == kind &&
		    (kind != EMPTCP_TCPOPT_MPTCP || subtype < 0 ||
		     (l >= 3 && (a->cur[__EMPTCP_TCPOPT_IDX(pos + 2)] >> 4) == subtype))) {
			*len = l;
			return pos;
		}
		pos += l;
	}
	return EMPTCP_SKIP(NOT_FOUND);
}

/*
 * The room walk: the offset of the first interior NOP run of at least
 * `need` bytes, or -EMPTCP_SKIP_NOT_FOUND with *tail set to the start of the
 * tail padding, or -EMPTCP_SKIP_MALFORMED.
 */
static __emptcp_inline int __emptcp_tcpopt_room(const struct emptcp_tcpopt_area *a, __u32 need,
						__u32 *tail)
{
	__u32 end = __emptcp_tcpopt_end(a);
	__u32 pos = __emptcp_opaque_zero & 0x3f;
	__u32 run = __EMPTCP_TCPOPT_NONE;

	need = __emptcp_tcpopt_forget(need);
	while (pos < end) {
		__u8 k = a->cur[__EMPTCP_TCPOPT_IDX(pos)], l;

		if (k == EMPTCP_TCPOPT_EOL)
			break;
		if (k == EMPTCP_TCPOPT_NOP) {
			if (run == __EMPTCP_TCPOPT_NONE)
				run = pos;
			pos++;
			continue;
		}
		if (run != __EMPTCP_TCPOPT_NONE && pos - run >= need)
			return run;
		run = __EMPTCP_TCPOPT_NONE;
		l = a->cur[__EMPTCP_TCPOPT_IDX(pos + 1)];
		if (pos + 1 >= end || l < 2 || pos + l > end)
			return EMPTCP_SKIP(MALFORMED);
		pos += l;
	}
	*tail = run != __EMPTCP_TCPOPT_NONE ? run : pos;
	return EMPTCP_SKIP(NOT_FOUND);
}

/*
 * The byte loops below are real (not unrolled) loops over a counter `k`,
 * with every packet-dependent value (offset, length) used only as an index
 * base or as the exit bound. Unrolled loops that compare each constant
 * position with a run-time offset (`if (i >= off && i < off + len)`) split
 * the offset's range at every position: the verifier then walked distinct
 * states per offset value and gave up ("BPF program is too large. Processed
 * 1000001 insn", kernel 6.18, clang 14). As loops, each is verified once per
 * iteration, and the exits prune against each other (k is dead after).
 */
#define __EMPTCP_NOUNROLL _Pragma("clang loop unroll(disable)")
/* Keeps clang 14 from turning a byte loop with a run-time length into a
 * memcpy/memset call ("A call to built-in function 'memcpy' is not
 * supported"). */
#define __EMPTCP_LOOP_BARRIER() asm volatile("" ::: "memory")

/*
 * cur[off, off + len) = src[0, len), src outside the area (the caller's
 * option). A constant len (the usual case) unrolls with constant source
 * offsets, so `src` may be exactly len bytes long; a run-time len reads
 * src[k] for k < 40 under a forgotten bound, so `src` must then be 40 bytes
 * (see the `opt` rule). No intermediate stack copy: a zeroed copy written at
 * constant offsets differs in its zero slots after each exit of the copy,
 * and everything after was verified once per length (86k of 197k verified
 * instructions of an insert went to that, kernel 6.18, clang 14).
 */
static __emptcp_inline void __emptcp_tcpopt_put(struct emptcp_tcpopt_area *a, __u32 off,
						const void *src, __u32 len)
{
	const __u8 *in = src;
	__u32 k;

	off = __emptcp_tcpopt_forget(off);
	if (__builtin_constant_p(len)) {
#pragma unroll
		for (k = 0; k < EMPTCP_TCPOPT_MAX_LEN; k++)
			if (k < len)
				a->cur[__EMPTCP_TCPOPT_IDX(off + k)] = in[k];
		return;
	}
	len = __emptcp_tcpopt_forget(len);
	__EMPTCP_NOUNROLL
	for (k = 0; k < EMPTCP_TCPOPT_MAX_LEN; k++) {
		if (k >= len)
			break;
		__EMPTCP_LOOP_BARRIER();
		a->cur[__EMPTCP_TCPOPT_IDX(off + k)] = in[k];
	}
}

/* cur[from, to) = val, to <= 40 */
static __emptcp_inline void __emptcp_tcpopt_fill(struct emptcp_tcpopt_area *a, __u32 from,
						 __u32 to, __u8 val)
{
	__u32 k;

	from = __emptcp_tcpopt_forget(from);
	to = __emptcp_tcpopt_forget(to);
	__EMPTCP_NOUNROLL
	for (k = 0; k < EMPTCP_TCPOPT_MAX_LEN; k++) {
		if (from + k >= to)
			break;
		__EMPTCP_LOOP_BARRIER();
		a->cur[__EMPTCP_TCPOPT_IDX(from + k)] = val;
	}
}

/* cur[to, to + n) = cur[from, from + n), overlapping safely. */
static __emptcp_inline void __emptcp_tcpopt_move(struct emptcp_tcpopt_area *a, __u32 to,
						 __u32 from, __u32 n)
{
	__u32 k, j;

	to = __emptcp_tcpopt_forget(to);
	from = __emptcp_tcpopt_forget(from);
	n = __emptcp_tcpopt_forget(n);
	if (to < from) {
		__EMPTCP_NOUNROLL
		for (k = 0; k < EMPTCP_TCPOPT_MAX_LEN; k++) {
			if (k >= n)
				break;
			__EMPTCP_LOOP_BARRIER();
		__EMPTCP_LOOP_BARRIER();
			a->cur[__EMPTCP_TCPOPT_IDX(to + k)] = a->cur[__EMPTCP_TCPOPT_IDX(from + k)];
		}
	} else {
		/* Moving up: highest byte first. */
		__EMPTCP_NOUNROLL
		for (k = 0; k < EMPTCP_TCPOPT_MAX_LEN; k++) {
			if (k >= n)
				break;
			__EMPTCP_LOOP_BARRIER();
		__EMPTCP_LOOP_BARRIER();
			j = n - 1 - k;
			a->cur[__EMPTCP_TCPOPT_IDX(to + j)] = a->cur[__EMPTCP_TCPOPT_IDX(from + j)];
		}
	}
}

static __emptcp_inline __u32 __emptcp_tcpopt_round4(__u32 n)
{
	return (n + 3) & ~3u;
}

static __emptcp_inline int emptcp_tcpopt_insert(struct emptcp_tcpopt_area *a, const void *opt,
						__u32 len)
{
	__u32 tail = 0, used, new_len;
	int r;

	if (len == 0 || len > EMPTCP_TCPOPT_MAX_LEN)
		return EMPTCP_SKIP(INVAL);
	r = __emptcp_tcpopt_room(a, len, &tail);
	if (r >= 0) {
		__u32 at = __emptcp_tcpopt_forget(r);

		__emptcp_tcpopt_put(a, at, opt, len);
		a->dirty = 1;
		return at;
	}
	if (r != EMPTCP_SKIP(NOT_FOUND))
		return r;
	tail = __emptcp_tcpopt_forget(tail);

	used = tail + len;
	if (used > EMPTCP_TCPOPT_MAX_LEN)
		return EMPTCP_SKIP(NO_ROOM);
	new_len = __emptcp_tcpopt_round4(used);
	if (new_len < a->cur_len)
		new_len = a->cur_len;
	__emptcp_tcpopt_put(a, tail, opt, len);
	__emptcp_tcpopt_fill(a, used, EMPTCP_TCPOPT_MAX_LEN, EMPTCP_TCPOPT_EOL);
	a->cur_len = new_len;
	a->dirty = 1;
	return tail;
}

/* The length of the option at `off`, or -EMPTCP_SKIP_INVAL if `off` does
 * not hold a whole option (kind >= 2 with a length that fits). */
static __emptcp_inline int __emptcp_tcpopt_len_at(const struct emptcp_tcpopt_area *a, __u32 off)
{
	__u32 end = __emptcp_tcpopt_end(a);
	__u8 k, l;

	if (off + 1 >= end)
		return EMPTCP_SKIP(INVAL);
	k = a->cur[__EMPTCP_TCPOPT_IDX(off)];
	l = a->cur[__EMPTCP_TCPOPT_IDX(off + 1)];
	if (k == EMPTCP_TCPOPT_EOL || k == EMPTCP_TCPOPT_NOP || l < 2 || off + l > end)
		return EMPTCP_SKIP(INVAL);
	return l;
}

/*
 * cur = cur[0, off) + ins[0, ins_len) + cur[off + rm, tail) + EOL padding,
 * where tail is the start of the tail padding. The area keeps its length
 * unless it must grow, or `shrink` allows the least multiple of 4.
 */
static __emptcp_inline int __emptcp_tcpopt_splice(struct emptcp_tcpopt_area *a, __u32 off,
						  __u32 rm, const void *ins, __u32 ins_len,
						  int shrink)
{
	__u32 tail = 0, used, new_len;
	int r;

	r = __emptcp_tcpopt_room(a, 0xff, &tail);
	if (r != EMPTCP_SKIP(NOT_FOUND))
		return r < 0 ? r : EMPTCP_SKIP(MALFORMED);
	tail = __emptcp_tcpopt_forget(tail);
	if (off + rm > tail)
		return EMPTCP_SKIP(INVAL);
	used = tail - rm + ins_len;
	if (used > EMPTCP_TCPOPT_MAX_LEN)
		return EMPTCP_SKIP(NO_ROOM);

	if (ins_len != rm)
		__emptcp_tcpopt_move(a, off + ins_len, off + rm, tail - off - rm);
	__emptcp_tcpopt_put(a, off, ins, ins_len);
	__emptcp_tcpopt_fill(a, used, EMPTCP_TCPOPT_MAX_LEN, EMPTCP_TCPOPT_EOL);

	new_len = __emptcp_tcpopt_round4(used);
	if (!shrink && new_len < a->cur_len)
		new_len = a->cur_len;
	a->cur_len = new_len;
	a->dirty = 1;
	return 0;
}

static __emptcp_inline int emptcp_tcpopt_remove(struct emptcp_tcpopt_area *a, __u32 off,
						__u32 flags)
{
	int l = __emptcp_tcpopt_len_at(a, off);

	if (l < 0)
		return l;
	if (!(flags & EMPTCP_TCPOPT_F_SHRINK)) {
		__emptcp_tcpopt_fill(a, off, off + l, EMPTCP_TCPOPT_NOP);
		a->dirty = 1;
		return 0;
	}
	return __emptcp_tcpopt_splice(a, off, l, (void *)0, 0, 1);
}

static __emptcp_inline int emptcp_tcpopt_replace(struct emptcp_tcpopt_area *a, __u32 off,
						 const void *opt, __u32 len, __u32 flags)
{
	int l = __emptcp_tcpopt_len_at(a, off);

	if (l < 0)
		return l;
	if (len == 0 || len > EMPTCP_TCPOPT_MAX_LEN)
		return EMPTCP_SKIP(INVAL);
	if (len == (__u32)l || (len < (__u32)l && !(flags & EMPTCP_TCPOPT_F_SHRINK))) {
		__emptcp_tcpopt_put(a, off, opt, len);
		__emptcp_tcpopt_fill(a, off + len, off + l, EMPTCP_TCPOPT_NOP);
		a->dirty = 1;
		return 0;
	}
	return __emptcp_tcpopt_splice(a, off, l, opt, len, flags & EMPTCP_TCPOPT_F_SHRINK);
}

/*
 * Writes the edited area back. Order: checks first (resize.h rules); a grow
 * resizes before the write (new bytes are EOL, so a failed write still
 * leaves a valid packet), a shrink writes first (the dropped tail is EOL)
 * and resizes after. Returns 0 or a negative skip reason; the packet is
 * unchanged on a skip, except -EMPTCP_SKIP_HELPER from the final shrink,
 * which leaves the edit applied, EOL-padded and valid, but not shrunk.
 */
static __emptcp_inline int emptcp_tcpopt_commit(const struct emptcp_ctx *c,
						struct emptcp_pkt *pkt,
						struct emptcp_tcpopt_area *a)
{
	__u32 store_len;
	int delta, ret;

	__u32 cur_len, orig_len;

	if (!a->dirty)
		return 0;
	/* Every edit path arrives with its own exact lengths: forget them so
	 * that the resize and store below are verified once, not per path. */
	cur_len = __emptcp_tcpopt_forget(a->cur_len);
	orig_len = __emptcp_tcpopt_forget(a->orig_len);
	if (cur_len > EMPTCP_TCPOPT_MAX_LEN || orig_len > EMPTCP_TCPOPT_MAX_LEN)
		return EMPTCP_SKIP(INVAL);
	delta = (int)cur_len - (int)orig_len;
	if (delta) {
		ret = emptcp_resize_check(c, pkt, delta);
		if (ret)
			return ret;
	}
	if (delta > 0) {
		ret = emptcp_resize_tcp(c, pkt, delta);
		if (ret)
			return ret;
	}

	store_len = cur_len > orig_len ? cur_len : orig_len;
	store_len &= 0x3f;
	if (store_len && store_len <= EMPTCP_TCPOPT_MAX_LEN) {
		if (emptcp_ctx_store_bytes(c, pkt->l4_off + 20, a->cur, store_len))
			return EMPTCP_SKIP(HELPER);
		ret = emptcp_csum_l4_data_diff(
			c, pkt,
			emptcp_csum_sub(emptcp_csum_words40(a->cur), emptcp_csum_words40(a->orig)));
		if (ret)
			return ret;
	}

	if (delta < 0) {
		ret = emptcp_resize_tcp(c, pkt, delta);
		if (ret)
			return ret;
	}
	__builtin_memcpy(a->orig, a->cur, EMPTCP_TCPOPT_MAX_LEN);
	a->orig_len = a->cur_len;
	a->dirty = 0;
	return 0;
}

#endif /* __EMPTCP_TCPOPT_H */
