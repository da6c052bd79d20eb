/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Ones'-complement arithmetic (RFC 1071, RFC 1624), hook-independent. The
 * hook-aware updates (which honour CHECKSUM_PARTIAL at TC) are in csum.h.
 *
 * Conventions: a "sum" is a 32-bit ones'-complement accumulator of 16-bit
 * words loaded in memory order (native loads of network-order bytes), the
 * kernel's __wsum; a "check" is a 16-bit checksum field as stored in the
 * packet (__sum16). Byte order never needs converting: every value is added
 * in the same (memory) order as the field it ends up in.
 *
 * API:
 *   __u32   emptcp_csum_add(__u32 a, __u32 b)       a + b (end-around carry)
 *   __u32   emptcp_csum_sub(__u32 a, __u32 b)       a - b
 *   __sum16 emptcp_csum_fold(__u32 sum)             ~(16-bit fold of sum)
 *   __sum16 emptcp_csum_apply(__sum16 check, __u32 diff)
 *           RFC 1624 eqn. 3: the check after the covered data changed by diff.
 *   __u32   emptcp_csum_diff16(__u16 from, __u16 to)  / _diff32
 *   __u32   emptcp_csum_byte(__u8 b, __u32 odd)
 *           what one byte adds to a sum at an even or odd position (counted
 *           from the start of the checksummed data: the TCP header).
 *   __u32   emptcp_csum_words40(const __u8 buf[40])  sum of 40 bytes (even start)
 *
 * Why emptcp_csum_byte: a byte at an odd position is the low half of its
 * 16-bit word. Updating per 16-bit word from an odd offset pairs the wrong
 * bytes and gives a wrong checksum (the eMPTCP reference's rm_tcp_header
 * bug, reference section 6.1 item 2). Count the parity from the TCP header,
 * not from the frame.
 */
#ifndef __EMPTCP_CSUM_OPS_H
#define __EMPTCP_CSUM_OPS_H

#include <linux/types.h>
#include "compiler.h"

static __emptcp_inline __u32 emptcp_csum_add(__u32 a, __u32 b)
{
	__u32 r = a + b;

	return r + (r < a);
}

static __emptcp_inline __u32 emptcp_csum_sub(__u32 a, __u32 b)
{
	return emptcp_csum_add(a, ~b);
}

static __emptcp_inline __sum16 emptcp_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__sum16)~sum;
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), with diff = ~m + m' summed. */
static __emptcp_inline __sum16 emptcp_csum_apply(__sum16 check, __u32 diff)
{
	return emptcp_csum_fold(emptcp_csum_add(diff, ~(__u32)(__u16)check));
}

static __emptcp_inline __u32 emptcp_csum_diff16(__u16 from, __u16 to)
{
	return emptcp_csum_add((__u16)~from, to);
}

static __emptcp_inline __u32 emptcp_csum_diff32(__u32 from, __u32 to)
{
	return emptcp_csum_add(~from, to);
}

static __emptcp_inline __u32 emptcp_csum_byte(__u8 b, __u32 odd)
{
	/* The 16-bit word holding the byte, as a native load sees it. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return odd & 1 ? (__u32)b << 8 : (__u32)b;
#else
	return odd & 1 ? (__u32)b : (__u32)b << 8;
#endif
}

/* Sum of a 40-byte buffer that starts at an even position (an option area
 * always does: TCP header + 20). Constant offsets: free for the verifier. */
static __emptcp_inline __u32 emptcp_csum_words40(const __u8 *buf)
{
	const __u32 *w = (const __u32 *)buf;
	__u64 s = 0;
	int i;

#pragma unroll
	for (i = 0; i < 10; i++)
		s += w[i];
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	return (__u32)s;
}

#endif /* __EMPTCP_CSUM_OPS_H */
