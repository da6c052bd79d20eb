/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * SHA-256 of one 64-bit MPTCP key, in the data plane: the connection token
 * and the initial data sequence number (IDSN) of RFC 8684 section 3.1/3.2.
 *
 *   token = most significant 32 bits of SHA-256(key)
 *   IDSN  = least significant 64 bits of SHA-256(key)
 *
 * The key is hashed as its 8 bytes in network byte order, as they appear in
 * MP_CAPABLE (and as emptcp_wire::crypto::{token_from_key, idsn_from_key}
 * and the Linux stack, mptcp_crypto_key_sha(), hash it). The API takes the
 * key in host byte order, as emptcp_mptcp_read_capable() (mptcp.h) returns
 * it; the byte order for the hash is this header's business.
 *
 * Why in the data plane: the link from an MP_JOIN SYN (which names its
 * connection only by token) to its connection must exist before that SYN has
 * passed the hook. Computing the token where MP_CAPABLE is seen closes that
 * race without a round trip to user space.
 *
 * API:
 *   int emptcp_sha256_key(__u64 key, struct emptcp_sha256_key_hash *out)
 *     Global (separately verified) function: token and IDSN of `key`.
 *   void emptcp_sha256_key_inline(__u64 key, struct emptcp_sha256_key_hash *out)
 *     The same, inlined into the caller (for measurements and for callers
 *     that must not make a bpf-to-bpf call).
 *
 * Caller's duty: hash only on packets that carry an MP_CAPABLE option with a
 * key (length >= 12), once per key, and keep the result in the connection's
 * map entry. A hash costs ~250 ns; on every packet it would be by far the
 * most expensive thing in the data plane.
 *
 * Cost (kernel 6.18, clang 14 -mcpu=v3, XDP BPF_PROG_TEST_RUN, 7 x 100,000
 * repeats, medians; crates/emptcp/tests/mptcp_crypto.rs `sha256_cost_report`
 * prints them):
 *   emptcp_sha256_key()         250 ns per hash (program 269-271 ns, empty
 *                               21 ns); 4,330 verified instructions, added
 *                               once per program however many call sites
 *                               (8 calls in a loop: 4,407); 152-byte frame;
 *                               14.3 KB of JIT code.
 *   emptcp_sha256_key_inline()  240-270 ns per hash (no gain measurable over
 *                               the call); 4,284 verified instructions
 *                               per inlined copy, verified again on each
 *                               verifier path that reaches it.
 *
 * Example (on a third ACK, MP_CAPABLE of length 20 at offset `off`):
 *   struct emptcp_mptcp_capable cap;
 *   struct emptcp_sha256_key_hash h = {};
 *
 *   if (emptcp_mptcp_read_capable(data, data_end, off, &cap) == 0 &&
 *       cap.len >= EMPTCP_MPTCP_CAPABLE_LEN_SYNACK &&
 *       emptcp_sha256_key(cap.sender_key, &h) == 0)
 *           remember_connection(h.token, h.idsn);
 */
#ifndef __EMPTCP_SHA256_H
#define __EMPTCP_SHA256_H

#include <linux/types.h>
#include "compiler.h"

/* Token and IDSN of one key, host byte order. */
struct emptcp_sha256_key_hash {
	/* Most significant 32 bits of SHA-256(key). */
	__u32 token;
	__u32 _pad;
	/* Least significant 64 bits of SHA-256(key). */
	__u64 idsn;
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_sha256_key_hash) != 16);

/*
 * The four sigma functions, each three rotations (or two and a shift) of one
 * word. BPF has no rotate instruction, and a 32-bit rotation done with two
 * shifts and an OR costs five instructions (the ISA has two operands, so each
 * shift needs a copy). Instead the word is doubled once into a 64-bit register
 * (x:x); then each rotation right by n is the low half of one 64-bit shift:
 * a copy and a shift. 9 instructions per sigma instead of 17.
 *
 * Measured with the whole message schedule in registers (before the ring
 * and barrier of __EMPTCP_SHA256_ROUND below), global function, one call per
 * BPF_PROG_TEST_RUN at XDP, 200,000 repeats x 5, empty program ~26 ns:
 *   shifts-and-OR rotations    5,403 insns  353-363 ns per run
 *   doubled word, as below     4,153 insns  259-271 ns
 *   doubled word, no barrier   4,071 insns  271-456 ns
 *
 * Compiler workaround (clang 14): without the empty asm, clang folds
 * `(u64)x << 32 | x` into `x * 0x100000001`, a multiplication whose 64-bit
 * constant is re-materialised with a two-slot lddw at every use; the asm
 * hides the shifted value from that combine. It emits no instruction.
 */
static __emptcp_inline __u32 __emptcp_sha256_sig(__u32 x, unsigned int r1, unsigned int r2,
						 unsigned int r3, int r3_is_shift)
{
	__u64 xx = (__u64)x << 32;

	asm("" : "+r"(xx));
	xx |= x;
	if (r3_is_shift)
		return (__u32)(xx >> r1) ^ (__u32)(xx >> r2) ^ (x >> r3);
	return (__u32)(xx >> r1) ^ (__u32)(xx >> r2) ^ (__u32)(xx >> r3);
}

/* FIPS 180-4 section 4.1.2, (4.4)-(4.7). */
#define __EMPTCP_SHA256_BSIG0(x) __emptcp_sha256_sig(x, 2, 13, 22, 0)
#define __EMPTCP_SHA256_BSIG1(x) __emptcp_sha256_sig(x, 6, 11, 25, 0)
#define __EMPTCP_SHA256_SSIG0(x) __emptcp_sha256_sig(x, 7, 18, 3, 1)
#define __EMPTCP_SHA256_SSIG1(x) __emptcp_sha256_sig(x, 17, 19, 10, 1)
#define __EMPTCP_SHA256_CH(x, y, z)  ((z) ^ ((x) & ((y) ^ (z))))
#define __EMPTCP_SHA256_MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))

/*
 * One round with the working variables named by position, so that eight
 * consecutive rounds rotate the names instead of moving values (FIPS 180-4
 * section 6.2.2 step 3; the moves of h = g, g = f, ... become renamings).
 *
 * Compiler workaround (clang 14): the empty asm ties the round's results to
 * their place in the sequence. Without it clang hoists sigma computations
 * of later rounds far ahead, and with BPF's ten registers the function
 * spilled to 280 bytes of stack (464 with the whole schedule in registers).
 * A global function's frame adds to its caller's, and the verifier refuses
 * more than 512 bytes for a call chain ("combined stack size of 2 calls is
 * 656. Too large", kernel 6.18): with the barrier the frame is 152 bytes, at
 * a cost of ~20 ns per hash.
 */
#define __EMPTCP_SHA256_ROUND(a, b, c, d, e, f, g, h, k, w)                         \
	do {                                                                         \
		__u32 __t1 = (h) + __EMPTCP_SHA256_BSIG1(e) +                        \
			     __EMPTCP_SHA256_CH(e, f, g) + (k) + (w);                \
		(d) += __t1;                                                         \
		(h) = __t1 + __EMPTCP_SHA256_BSIG0(a) + __EMPTCP_SHA256_MAJ(a, b, c); \
		asm volatile("" : "+r"(d), "+r"(h));                                  \
	} while (0)

/*
 * Message schedule word i (FIPS 180-4 section 6.2.2 step 1), computed just
 * before round i. Words 0-15 are the message, compile-time constants except
 * the key, so clang folds the zero words out of the schedule's first rounds;
 * later words live in a 16-word ring on the stack (volatile: kept in memory,
 * not in registers the rounds need). Word i overwrites word i - 16, which its
 * own computation reads first.
 */
#define __EMPTCP_SHA256_WORD(j) ((j) < 16 ? m[(j) & 15] : ring[(j) & 15])
#define __EMPTCP_SHA256_W(i)                                                         \
	((i) < 16 ? m[(i) & 15]                                                      \
		  : (ring[(i) & 15] = __EMPTCP_SHA256_SSIG1(__EMPTCP_SHA256_WORD((i) - 2)) + \
				      __EMPTCP_SHA256_WORD((i) - 7) +                 \
				      __EMPTCP_SHA256_SSIG0(__EMPTCP_SHA256_WORD((i) - 15)) + \
				      __EMPTCP_SHA256_WORD((i) - 16)))

#define __EMPTCP_SHA256_8ROUNDS(i, k0, k1, k2, k3, k4, k5, k6, k7)                   \
	do {                                                                         \
		__EMPTCP_SHA256_ROUND(a, b, c, d, e, f, g, h, k0, __EMPTCP_SHA256_W((i) + 0)); \
		__EMPTCP_SHA256_ROUND(h, a, b, c, d, e, f, g, k1, __EMPTCP_SHA256_W((i) + 1)); \
		__EMPTCP_SHA256_ROUND(g, h, a, b, c, d, e, f, k2, __EMPTCP_SHA256_W((i) + 2)); \
		__EMPTCP_SHA256_ROUND(f, g, h, a, b, c, d, e, k3, __EMPTCP_SHA256_W((i) + 3)); \
		__EMPTCP_SHA256_ROUND(e, f, g, h, a, b, c, d, k4, __EMPTCP_SHA256_W((i) + 4)); \
		__EMPTCP_SHA256_ROUND(d, e, f, g, h, a, b, c, k5, __EMPTCP_SHA256_W((i) + 5)); \
		__EMPTCP_SHA256_ROUND(c, d, e, f, g, h, a, b, k6, __EMPTCP_SHA256_W((i) + 6)); \
		__EMPTCP_SHA256_ROUND(b, c, d, e, f, g, h, a, k7, __EMPTCP_SHA256_W((i) + 7)); \
	} while (0)

/*
 * SHA-256 of the 8 bytes of `key` in network byte order, as 8 host-order
 * words (FIPS 180-4 section 6.2). The message is one 64-byte block (section
 * 5.1.1 padding): m[0..1] = the key, big-endian, m[2] = 0x80000000 (the '1'
 * bit), m[3..14] = 0, m[15] = 64 (the message length in bits).
 * Fully unrolled, straight-line code: every schedule index and round constant
 * is a compile-time constant (round constants are immediates, there is no
 * table and no loop for the verifier to walk).
 */
static __emptcp_inline void __emptcp_sha256_key_words(__u64 key, __u32 digest[8])
{
	__u32 a = 0x6a09e667, b = 0xbb67ae85, c = 0x3c6ef372, d = 0xa54ff53a;
	__u32 e = 0x510e527f, f = 0x9b05688c, g = 0x1f83d9ab, h = 0x5be0cd19;
	volatile __u32 ring[16];
	__u32 m[16];
	int i;

	m[0] = key >> 32;
	m[1] = (__u32)key;
	m[2] = 0x80000000;
#pragma unroll
	for (i = 3; i < 15; i++)
		m[i] = 0;
	m[15] = 64;

	__EMPTCP_SHA256_8ROUNDS(0, 0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5,
				0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5);
	__EMPTCP_SHA256_8ROUNDS(8, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
				0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174);
	__EMPTCP_SHA256_8ROUNDS(16, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc,
				0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da);
	__EMPTCP_SHA256_8ROUNDS(24, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
				0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967);
	__EMPTCP_SHA256_8ROUNDS(32, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
				0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85);
	__EMPTCP_SHA256_8ROUNDS(40, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
				0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070);
	__EMPTCP_SHA256_8ROUNDS(48, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
				0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3);
	__EMPTCP_SHA256_8ROUNDS(56, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
				0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2);

	digest[0] = 0x6a09e667 + a;
	digest[1] = 0xbb67ae85 + b;
	digest[2] = 0x3c6ef372 + c;
	digest[3] = 0xa54ff53a + d;
	digest[4] = 0x510e527f + e;
	digest[5] = 0x9b05688c + f;
	digest[6] = 0x1f83d9ab + g;
	digest[7] = 0x5be0cd19 + h;
}

/**
 * emptcp_sha256_key_inline - token and IDSN of an MPTCP key, inlined
 * @key: the key in host byte order (as emptcp_mptcp_read_capable() gives it)
 * @out: receives the token and IDSN, host byte order
 *
 * Same result as emptcp_sha256_key(), compiled into the caller: no call
 * (~9 ns saved) but the ~2,000 instructions of the body are verified again
 * on every verifier path that reaches them.
 */
static __emptcp_inline void emptcp_sha256_key_inline(__u64 key, struct emptcp_sha256_key_hash *out)
{
	__u32 digest[8];

	__emptcp_sha256_key_words(key, digest);
	out->token = digest[0];
	out->_pad = 0;
	out->idsn = (__u64)digest[6] << 32 | digest[7];
}

/**
 * emptcp_sha256_key - token and IDSN of an MPTCP key (RFC 8684 section 3.2)
 * @key: the key in host byte order (as emptcp_mptcp_read_capable() gives it);
 *       it is hashed as its 8 bytes in network byte order
 * @out: receives the token and IDSN, host byte order; stack or map memory of
 *       sizeof(struct emptcp_sha256_key_hash), initialised by the caller (the
 *       verifier checks a global function's memory arguments as readable)
 *
 * A global function: the verifier checks its body once per program, with an
 * unknown key, whatever the number of call sites and the state of the caller,
 * and the same body serves XDP and TC programs. It calls no helper and does
 * not touch the packet, so the caller's packet pointers stay valid.
 *
 * Run it only on MP_CAPABLE packets that carry a key (the caller's duty, see
 * the top of this file): it is the most expensive operation of the data plane.
 *
 * Global function arguments (kernel 6.18): the scalar key is verified as
 * unknown ("R1=scalar()"); the struct pointer becomes memory of its BTF size
 * that may be NULL ("R2=mem_or_null(id=1,sz=16)"), so the body must test it:
 * without the test the load fails with "R2 invalid mem access 'mem_or_null'".
 * Callers may pass stack or map-value memory of at least 16 bytes.
 *
 * Return: 0, or -1 if @out is NULL.
 */
__attribute__((noinline)) int emptcp_sha256_key(__u64 key, struct emptcp_sha256_key_hash *out)
{
	if (!out)
		return -1;
	emptcp_sha256_key_inline(key, out);
	return 0;
}

#endif /* __EMPTCP_SHA256_H */
