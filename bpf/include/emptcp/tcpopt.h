/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Find, add, remove and replace TCP options (and MPTCP options by subtype)
 * at any alignment, odd offsets included, within the 40-byte option area.
 *
 * Model: the option area is loaded once into a copy (struct
 * emptcp_tcpopt_area, on the stack or in a map value), edited there (no
 * helper calls, no packet access), and written back once by
 * emptcp_tcpopt_commit, which also grows or shrinks the header (resize.h)
 * and updates every checksum with one sum difference over the whole area.
 * Several edits cost one commit. Offsets are bytes from the start of the
 * option area (TCP header + 20); the packet offset of an option is
 * pkt->l4_off + 20 + off.
 *
 * Cost: find, insert, remove, replace and commit are global BPF functions
 * (bpf-to-bpf calls, about 9 ns each; see __emptcp_tcpopt_global), each
 * verified once per program whatever the caller's state: a program that
 * parses, loads, finds, edits and commits verifies in about 30-55k
 * instructions (kernel 6.18, clang 14; bpf/tests/helpers_tcpopt.bpf.c).
 * Their stack frames add to the caller's (512 bytes in all): commit's is
 * about 160 bytes, so keep the calling program's own frame under ~340
 * bytes (the area is 124 of them).
 *
 * API:
 *   int emptcp_tcpopt_load(c, pkt, area)
 *        0, or -EMPTCP_SKIP_TRUNCATED / _MALFORMED (data offset below 5).
 *        Also launders *pkt's offsets (emptcp_pkt_launder, resize.h), and
 *        keeps the offsets commit needs in the area (commit works on the
 *        packet as it was at load).
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
 *   int emptcp_tcpopt_remove(area, off, flags)
 *        removes the option at `off` (from emptcp_tcpopt_find): 0, or
 *        -_INVAL (`off` holds no whole option: NOP, EOL, past the area),
 *        -_MALFORMED.
 *   int emptcp_tcpopt_replace(area, off, opt, len, flags)
 *        puts opt[0..len) (len 1..40) where the option at `off` was: 0 or
 *        -_NO_ROOM / _MALFORMED / _INVAL.
 *   int emptcp_tcpopt_commit(c, pkt, area)
 *        writes the edits to the packet; 0 or a negative skip reason.
 *        Updates pkt->payload_off and pkt->l3_len.
 *   EMPTCP_TCPOPT_PKT_OFF(pkt, off)   the packet offset of area offset off.
 *   flags: EMPTCP_TCPOPT_F_NOP (0) or EMPTCP_TCPOPT_F_SHRINK.
 *
 * An edit that fails leaves the area as it was.
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
 *   tail padding of the area as it was (trailing NOPs, EOL and after) is
 *   dropped, the area becomes the least multiple of 4 holding what is
 *   left, padded with EOL (zero). NOPs before the removed option stay,
 *   even when they end up last.
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
 * After find, an edit or commit, the verifier knows nothing of the area's
 * bytes (the calls are global), only that they are initialized.
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
 *
 * Example (strip ADD_ADDR; bpf/plugins/strip_add_addr.bpf.c is complete):
 *   off = emptcp_tcpopt_find(&area, EMPTCP_TCPOPT_MPTCP, EMPTCP_MPTCP_ADD_ADDR, &len);
 *   if (off >= 0 && emptcp_tcpopt_remove(&area, off, EMPTCP_TCPOPT_F_SHRINK) == 0)
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
/* Real loops (see "The byte loops" below). */
#define __EMPTCP_NOUNROLL _Pragma("clang loop unroll(disable)")
/* Keeps clang 14 from turning a byte loop with a run-time length into a
 * memcpy/memset call ("A call to built-in function 'memcpy' is not
 * supported"). */
#define __EMPTCP_LOOP_BARRIER() asm volatile("" ::: "memory")

struct emptcp_tcpopt_area {
	__u8 cur[__EMPTCP_TCPOPT_BUF];  /* edited; zero from cur_len on */
	/* The option being inserted or put in place (insert, replace): the
	 * edits are global functions (below), which take only pointers to
	 * structs of scalars, so the caller's bytes travel in the area. */
	__u8 opt[EMPTCP_TCPOPT_MAX_LEN];
	/* cur[40, 64) and opt are also commit's 64-byte resize buffer. */
	__u32 orig_sum;                 /* emptcp_csum_words40 of the area as in the packet */
	__u8 cur_len;                   /* 0..40, a multiple of 4 */
	__u8 orig_len;                  /* as in the packet */
	__u8 dirty;
	__u8 family;
	/* What commit needs of struct emptcp_pkt, copied by load: commit
	 * then takes the area alone. Handing it *pkt made every field of the
	 * parse live, and parser states that differed in unused fields
	 * (wscale, subtypes, ...) no longer pruned (remove + commit: 65k ->
	 * 45k verified instructions, kernel 6.18). */
	__u16 l3_off;
	__u16 l4_off;
	__u16 payload_off;
	__u16 l3_len;
	__u8 vlan_tags;
	__u8 _pad[3];
};

/* commit's resize buffer, cur[40, 64) + opt, is contiguous and big enough. */
EMPTCP_BUILD_BUG_ON(__builtin_offsetof(struct emptcp_tcpopt_area, opt) != __EMPTCP_TCPOPT_BUF ||
		    __EMPTCP_TCPOPT_BUF - EMPTCP_TCPOPT_MAX_LEN + EMPTCP_TCPOPT_MAX_LEN <
			    __EMPTCP_RESIZE_CHUNK);
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_tcpopt_area) != 124);

#define EMPTCP_TCPOPT_PKT_OFF(pkt, off) ((pkt)->l4_off + 20 + (off))

/*
 * The edits (insert, remove, replace) are global functions: the verifier
 * checks a global function once, with its arguments unknown, whatever the
 * caller's state, and after the call knows only that the return value is a
 * scalar and that the area's bytes are unknown. Inlined, every edit was
 * verified once per way into it (one per parse path, find result and
 * length) and everything after it once per way out: insert + commit cost
 * ~400k verified instructions, remove + commit and replace + commit more
 * than the 1M limit ("BPF program is too large. Processed 1000001 insn",
 * kernel 6.18, clang 14). A call costs about 9 ns (compiler.h); edits are
 * rare next to the per-packet path, which stays inlined.
 *
 * Weak, so that two objects that include this header can still be linked
 * (bpftool gen object) into one; noinline, so that they stay calls. The
 * area pointer may be NULL as far as the verifier knows: checked.
 */
#define __emptcp_tcpopt_global __attribute__((noinline, weak))

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
		if (emptcp_ctx_load_bytes(c, pkt->l4_off + 20, a->cur, len))
			return EMPTCP_SKIP(TRUNCATED);
		a->orig_sum = emptcp_csum_words40(a->cur);
	}
	a->cur_len = len;
	a->orig_len = len;
	a->family = pkt->family;
	a->l3_off = pkt->l3_off;
	a->l4_off = pkt->l4_off;
	a->payload_off = pkt->payload_off;
	a->l3_len = pkt->l3_len;
	a->vlan_tags = pkt->vlan_tags;
	return 0;
}

/*
 * The walk of emptcp_tcpopt_find: (len << 8) | offset of the first match, or
 * a negative skip reason. Global, like the edits: inlined, the walk indexed
 * the caller's stack copy with a variable offset, which makes the verifier
 * mark the offset precise (kernel 6.18); every state of the walk, and of
 * the parser before it, was then distinct (find + remove + commit: 92k ->
 * 65k verified instructions). Here the area is plain memory to the
 * verifier and the walk is checked once.
 */
__emptcp_tcpopt_global int __emptcp_tcpopt_find(const struct emptcp_tcpopt_area *a, __u32 kind,
						  int subtype)
{
	__u32 end, pos;

	if (!a)
		return EMPTCP_SKIP(INVAL);
	end = __emptcp_tcpopt_end(a);
	/* Start from an unknown zero (parse.h, __emptcp_opaque_zero) so that
	 * runs of NOPs do not become distinct constant states. */
	pos = __emptcp_opaque_zero & 0x3f;
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
		     (l >= 3 && (a->cur[__EMPTCP_TCPOPT_IDX(pos + 2)] >> 4) == subtype)))
			return (int)(((__u32)l << 8) | pos);
		pos += l;
	}
	return EMPTCP_SKIP(NOT_FOUND);
}

static __emptcp_inline int emptcp_tcpopt_find(const struct emptcp_tcpopt_area *a, __u8 kind,
					      int subtype, __u32 *len)
{
	int r = __emptcp_tcpopt_find(a, kind, subtype);

	if (r < 0)
		return r;
	*len = ((__u32)r >> 8) & 0xff;
	return r & 0xff;
}

/*
 * The room walk: the offset of the first interior NOP run of at least
 * `need` bytes, or -EMPTCP_SKIP_NOT_FOUND with *tail set to the start of the
 * tail padding, or -EMPTCP_SKIP_MALFORMED. A NOP run always starts where
 * the last real option ended (`last`, 0 before the first).
 *
 * A counter loop whose offsets are forgotten at every step: the two ways
 * through a step (NOP, option) reach the next step with equal states, so
 * the verifier checks one state per step. As a `while (pos < end)` loop
 * the offsets' ranges made a distinct state per mix of NOPs and options
 * (the global insert: 39k verified instructions, now 16k; kernel 6.18).
 * Limit: every step consumes at least one byte and pos < end <= 40, so 40
 * steps always reach the end of the area.
 */
static __emptcp_inline int __emptcp_tcpopt_room(const struct emptcp_tcpopt_area *a, __u32 need,
						__u32 *tail)
{
	__u32 end = __emptcp_tcpopt_end(a);
	__u32 pos = __emptcp_opaque_zero & 0x3f;
	__u32 last = pos;
	__u32 i;

	need = __emptcp_tcpopt_forget(need);
	__EMPTCP_NOUNROLL
	for (i = 0; i < EMPTCP_TCPOPT_MAX_LEN; i++) {
		__u8 k, l;

		pos = __emptcp_tcpopt_forget(pos);
		last = __emptcp_tcpopt_forget(last);
		if (pos >= end)
			break;
		k = a->cur[__EMPTCP_TCPOPT_IDX(pos)];
		if (k == EMPTCP_TCPOPT_EOL)
			break;
		if (k == EMPTCP_TCPOPT_NOP) {
			pos++;
			continue;
		}
		if (pos - last >= need)
			return last;
		l = a->cur[__EMPTCP_TCPOPT_IDX(pos + 1)];
		if (pos + 1 >= end || l < 2 || pos + l > end)
			return EMPTCP_SKIP(MALFORMED);
		pos += l;
		last = pos;
	}
	*tail = last;
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
 * Each loop stops after 40 bytes, the size of the area, whatever its bound.
 */

/* cur[off, off + len) = opt[0, len), the staged option. */
static __emptcp_inline void __emptcp_tcpopt_put(struct emptcp_tcpopt_area *a, __u32 off,
						__u32 len)
{
	__u32 k;

	off = __emptcp_tcpopt_forget(off);
	len = __emptcp_tcpopt_forget(len);
	__EMPTCP_NOUNROLL
	for (k = 0; k < EMPTCP_TCPOPT_MAX_LEN; k++) {
		if (k >= len)
			break;
		__EMPTCP_LOOP_BARRIER();
		a->cur[__EMPTCP_TCPOPT_IDX(off + k)] = a->opt[k];
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
			a->cur[__EMPTCP_TCPOPT_IDX(to + k)] = a->cur[__EMPTCP_TCPOPT_IDX(from + k)];
		}
	} else {
		/* Moving up: highest byte first. */
		__EMPTCP_NOUNROLL
		for (k = 0; k < EMPTCP_TCPOPT_MAX_LEN; k++) {
			if (k >= n)
				break;
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

/*
 * a->opt[0, len) = opt[0, len). A constant len (the usual case) unrolls
 * into constant-offset copies, so `opt` may be exactly len bytes long; with
 * a run-time len all 40 bytes are copied (the `opt` rule), so that the
 * verifier sees one straight copy instead of a state per length.
 */
static __emptcp_inline void __emptcp_tcpopt_stage(struct emptcp_tcpopt_area *a, const void *opt,
						  __u32 len)
{
	const __u8 *in = opt;
	int k;

	if (__builtin_constant_p(len)) {
#pragma unroll
		for (k = 0; k < EMPTCP_TCPOPT_MAX_LEN; k++)
			if (k < len)
				a->opt[k] = in[k];
		return;
	}
	__builtin_memcpy(a->opt, in, EMPTCP_TCPOPT_MAX_LEN);
}

/* Insert a->opt[0, len) (placement rules above). Global: see
 * __emptcp_tcpopt_global. */
__emptcp_tcpopt_global int __emptcp_tcpopt_insert_staged(struct emptcp_tcpopt_area *a, __u32 len)
{
	__u32 tail = 0, used, new_len, at;
	int r;

	if (!a)
		return EMPTCP_SKIP(INVAL);
	if (len == 0 || len > EMPTCP_TCPOPT_MAX_LEN)
		return EMPTCP_SKIP(INVAL);
	r = __emptcp_tcpopt_room(a, len, &tail);
	if (r >= 0) {
		at = __emptcp_tcpopt_forget(r);
		__emptcp_tcpopt_put(a, at, len);
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
	__emptcp_tcpopt_put(a, tail, len);
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

	if (off >= EMPTCP_TCPOPT_MAX_LEN || off + 1 >= end)
		return EMPTCP_SKIP(INVAL);
	k = a->cur[__EMPTCP_TCPOPT_IDX(off)];
	l = a->cur[__EMPTCP_TCPOPT_IDX(off + 1)];
	if (k == EMPTCP_TCPOPT_EOL || k == EMPTCP_TCPOPT_NOP || l < 2 || off + l > end)
		return EMPTCP_SKIP(INVAL);
	return l;
}

/*
 * cur = cur[0, off) + opt[0, ins_len) + cur[off + rm, tail) + EOL padding,
 * where tail is the start of the tail padding. The area keeps its length
 * unless it must grow, or `shrink` allows the least multiple of 4.
 */
static __emptcp_inline int __emptcp_tcpopt_splice(struct emptcp_tcpopt_area *a, __u32 off,
						  __u32 rm, __u32 ins_len, int shrink)
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
	__emptcp_tcpopt_put(a, off, ins_len);
	__emptcp_tcpopt_fill(a, used, EMPTCP_TCPOPT_MAX_LEN, EMPTCP_TCPOPT_EOL);

	new_len = __emptcp_tcpopt_round4(used);
	if (!shrink && new_len < a->cur_len)
		new_len = a->cur_len;
	a->cur_len = new_len;
	a->dirty = 1;
	return 0;
}

/* Replace the option at `off` with a->opt[0, len); len 0 removes it.
 * Global: see __emptcp_tcpopt_global. */
__emptcp_tcpopt_global int __emptcp_tcpopt_replace_staged(struct emptcp_tcpopt_area *a, __u32 off,
							  __u32 len, __u32 flags)
{
	int l;

	if (!a)
		return EMPTCP_SKIP(INVAL);
	l = __emptcp_tcpopt_len_at(a, off);
	if (l < 0)
		return l;
	if (len > EMPTCP_TCPOPT_MAX_LEN)
		return EMPTCP_SKIP(INVAL);
	if (len == (__u32)l || (len < (__u32)l && !(flags & EMPTCP_TCPOPT_F_SHRINK))) {
		__emptcp_tcpopt_put(a, off, len);
		__emptcp_tcpopt_fill(a, off + len, off + l, EMPTCP_TCPOPT_NOP);
		a->dirty = 1;
		return 0;
	}
	return __emptcp_tcpopt_splice(a, off, l, len, flags & EMPTCP_TCPOPT_F_SHRINK);
}

static __emptcp_inline int emptcp_tcpopt_insert(struct emptcp_tcpopt_area *a, const void *opt,
						__u32 len)
{
	if (len == 0 || len > EMPTCP_TCPOPT_MAX_LEN)
		return EMPTCP_SKIP(INVAL);
	__emptcp_tcpopt_stage(a, opt, len);
	return __emptcp_tcpopt_insert_staged(a, len);
}

static __emptcp_inline int emptcp_tcpopt_remove(struct emptcp_tcpopt_area *a, __u32 off,
						__u32 flags)
{
	return __emptcp_tcpopt_replace_staged(a, off, 0, flags);
}

static __emptcp_inline int emptcp_tcpopt_replace(struct emptcp_tcpopt_area *a, __u32 off,
						 const void *opt, __u32 len, __u32 flags)
{
	if (len == 0 || len > EMPTCP_TCPOPT_MAX_LEN)
		return EMPTCP_SKIP(INVAL);
	__emptcp_tcpopt_stage(a, opt, len);
	return __emptcp_tcpopt_replace_staged(a, off, len, flags);
}

/* Writes cur[0, len) over the option area and updates the TCP checksum by
 * the sum difference of the whole area (orig is zero past orig_len, and so
 * are the bytes a grow appended). */
static __emptcp_inline int __emptcp_tcpopt_store(const struct emptcp_ctx *c,
						 const struct emptcp_pkt *pkt,
						 const struct emptcp_tcpopt_area *a, __u32 len)
{
	/* The mask again: clang 14 bounds a copy of len and hands the helper
	 * the unbounded original ("R4 unbounded memory access", kernel 6.18);
	 * the asm keeps the masked value the one that is passed. */
	asm volatile("%0 &= 0x3f" : "+r"(len));
	if (!len || len > EMPTCP_TCPOPT_MAX_LEN)
		return 0;
	if (emptcp_ctx_store_bytes(c, pkt->l4_off + 20, a->cur, len))
		return EMPTCP_SKIP(HELPER);
	return emptcp_csum_l4_data_diff(c, pkt,
					emptcp_csum_sub(emptcp_csum_words40(a->cur), a->orig_sum));
}

/*
 * The body of emptcp_tcpopt_commit. Order: checks first (resize.h rules); a
 * grow resizes before the write (new bytes are EOL, so a failed write still
 * leaves a valid packet), a shrink writes first (the dropped tail is EOL)
 * and resizes after. One call of emptcp_resize_tcp for both: each inlined
 * copy costs ~15k verified instructions.
 */
static __emptcp_inline int __emptcp_tcpopt_commit(const struct emptcp_ctx *c,
						  struct emptcp_pkt *pkt,
						  struct emptcp_tcpopt_area *a)
{
	__u32 cur_len, orig_len;
	int delta, ret;

	if (!a->dirty)
		return 0;
	emptcp_pkt_launder(pkt);
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
	if (delta <= 0) {
		ret = __emptcp_tcpopt_store(c, pkt, a, orig_len);
		if (ret)
			return ret;
	}
	if (delta) {
		/* The move buffer: cur[40, 64) and opt, 64 contiguous bytes of the
		 * area that hold nothing at commit time (struct emptcp_tcpopt_area). */
		ret = __emptcp_resize_tcp(c, pkt, delta, a->cur + EMPTCP_TCPOPT_MAX_LEN, 1);
		if (ret)
			return ret;
	}
	if (delta > 0) {
		ret = __emptcp_tcpopt_store(c, pkt, a, cur_len);
		if (ret)
			return ret;
	}
	a->orig_sum = emptcp_csum_words40(a->cur);
	a->orig_len = a->cur_len;
	a->dirty = 0;
	return 0;
}

/* The part of struct emptcp_pkt that commit uses, from the area. The
 * copy is on the stack: the verifier tracks the bounds that
 * emptcp_pkt_launder puts on the offsets only there. */
static __emptcp_inline int __emptcp_tcpopt_commit_area(const struct emptcp_ctx *c,
						       struct emptcp_tcpopt_area *a)
{
	struct emptcp_pkt p;
	int ret;

	p.family = a->family;
	p.l3_off = a->l3_off;
	p.l4_off = a->l4_off;
	p.payload_off = a->payload_off;
	p.l3_len = a->l3_len;
	p.vlan_tags = a->vlan_tags;
	ret = __emptcp_tcpopt_commit(c, &p, a);
	a->payload_off = p.payload_off;
	a->l3_len = p.l3_len;
	return ret;
}

/* The commit, one global function per hook (a global function takes the
 * context, scalars and pointers to structs of scalars, so not struct
 * emptcp_ctx; see __emptcp_tcpopt_global): verified once, whatever the
 * edits before. */
__emptcp_tcpopt_global int __emptcp_tcpopt_commit_xdp(struct xdp_md *ctx,
						      struct emptcp_tcpopt_area *a,
						      __u32 mtu_ifindex)
{
	struct emptcp_ctx c = EMPTCP_CTX_XDP(ctx);

	if (!a)
		return EMPTCP_SKIP(INVAL);
	c.mtu_ifindex = mtu_ifindex;
	return __emptcp_tcpopt_commit_area(&c, a);
}

__emptcp_tcpopt_global int __emptcp_tcpopt_commit_skb(struct __sk_buff *skb,
						      struct emptcp_tcpopt_area *a,
						      __u32 mtu_ifindex)
{
	struct emptcp_ctx c = EMPTCP_CTX_SKB(skb);

	if (!a)
		return EMPTCP_SKIP(INVAL);
	c.mtu_ifindex = mtu_ifindex;
	return __emptcp_tcpopt_commit_area(&c, a);
}

/*
 * Writes the edited area back; see __emptcp_tcpopt_commit for the order.
 * Returns 0 or a negative skip reason; the packet is unchanged on a skip,
 * except -EMPTCP_SKIP_HELPER from the final shrink, which leaves the edit
 * applied, EOL-padded and valid, but not shrunk. Updates pkt->payload_off
 * and pkt->l3_len.
 */
static __emptcp_inline int emptcp_tcpopt_commit(const struct emptcp_ctx *c,
						struct emptcp_pkt *pkt,
						struct emptcp_tcpopt_area *a)
{
	int ret;

	if (c->kind == EMPTCP_CTX_KIND_XDP)
		ret = __emptcp_tcpopt_commit_xdp(__EMPTCP_XDP(c), a, c->mtu_ifindex);
	else
		ret = __emptcp_tcpopt_commit_skb(__EMPTCP_SKB(c), a, c->mtu_ifindex);
	pkt->payload_off = a->payload_off;
	pkt->l3_len = a->l3_len;
	return ret;
}

#endif /* __EMPTCP_TCPOPT_H */
