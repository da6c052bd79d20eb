/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Why a helper left a packet as it was: the one return convention of the
 * helper library (ctx.h, csum.h, tcpopt.h, resize.h).
 *
 * API:
 *   enum emptcp_skip_reason   stable codes; helpers return 0 on success or
 *                             -EMPTCP_SKIP_<REASON>, never abort the packet.
 *   EMPTCP_SKIP(r)            the negative return value of reason r.
 *   emptcp_skip_reason(ret)   the reason of a negative return (0 if none).
 *
 * Rules: values are stable and never reused (a retired reason stays as
 * EMPTCP_SKIP_UNUSEDn); new reasons go before __MAX. The enum is meant to
 * move into abi.h (counters keyed by reason) unchanged.
 *
 * Example:
 *   ret = emptcp_tcpopt_commit(&c, &pkt, &area);
 *   if (ret < 0)
 *           count_skip(emptcp_skip_reason(ret));   // packet passes unchanged
 */
#ifndef __EMPTCP_SKIP_H
#define __EMPTCP_SKIP_H

#include "compiler.h"

enum emptcp_skip_reason {
	EMPTCP_SKIP_NONE = 0,
	/* The TCP option list is malformed (length 0 or 1, past the header). */
	EMPTCP_SKIP_MALFORMED = 1,
	/* No option of the requested kind / MPTCP subtype. */
	EMPTCP_SKIP_NOT_FOUND = 2,
	/* The option area would exceed 40 bytes (data offset 15). */
	EMPTCP_SKIP_NO_ROOM = 3,
	/* Growing would exceed the MTU of the egress (or chosen) device. */
	EMPTCP_SKIP_MTU = 4,
	/* TC: a CHECKSUM_PARTIAL skb with payload cannot be resized without
	 * moving the TCP header away from csum_start (resize.h). */
	EMPTCP_SKIP_CSUM_PARTIAL = 5,
	/* TC: a GSO skb with payload is not resized (resize.h, GSO rule). */
	EMPTCP_SKIP_GSO = 6,
	/* A kernel helper failed (adjust_head/room, change_tail, store). */
	EMPTCP_SKIP_HELPER = 7,
	/* The packet is shorter than its headers say, or a revalidation after
	 * a resize failed. */
	EMPTCP_SKIP_TRUNCATED = 8,
	/* A bad argument (offset outside the area, length 0 or > 40, delta not
	 * a multiple of 4). A bug in the caller, reported, never trusted. */
	EMPTCP_SKIP_INVAL = 9,
	/* The layout is valid but the hook cannot resize it here (TC: an
	 * in-band VLAN tag with payload; headers longer than the move limit). */
	EMPTCP_SKIP_UNSUPPORTED = 10,
	EMPTCP_SKIP__MAX,
};

#define EMPTCP_SKIP(r) (-(int)(EMPTCP_SKIP_##r))

static __emptcp_inline enum emptcp_skip_reason emptcp_skip_reason(int ret)
{
	return ret < 0 ? (enum emptcp_skip_reason)(-ret) : EMPTCP_SKIP_NONE;
}

#endif /* __EMPTCP_SKIP_H */
