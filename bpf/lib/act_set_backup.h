/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * set_backup: adds MP_PRIO (RFC 8684 section 3.3.8) to the packet, so that
 * its receiver changes the priority of the subflow the packet travels on:
 * B = 1 asks it to send there only when no regular subflow is left, B = 0
 * makes the subflow regular again. Linux applies it on receipt
 * (mptcp_pm_mp_prio_received), whatever the address; a middle node can thus
 * steer a sender away from a path without either end's configuration.
 *
 * Not on SYNs (MP_PRIO is for established subflows) and not where the
 * packet already carries an MP_PRIO (the sender's own word stands). The
 * option area grows by 4 bytes (3 and an EOL pad) when there is no NOP
 * room; a packet with no room, or one TC cannot resize, passes unchanged
 * and is counted (edit_refused).
 */
#ifndef __EMPTCP_LIB_ACT_SET_BACKUP_H
#define __EMPTCP_LIB_ACT_SET_BACKUP_H

#include <emptcp/abi.h>
#include <emptcp/ctx.h>
#include <emptcp/mptcp.h>
#include <emptcp/parse.h>
#include <emptcp/tcpopt.h>

#include "edit_scratch.h"

/* Kind, length 3, subtype << 4 | B. */
#define EMPTCP_MP_PRIO_LEN 3

/* Whether set_backup acts on the packet at all. */
static __emptcp_inline int emptcp_set_backup_wanted(const struct emptcp_pkt *pkt)
{
	return !(pkt->tcp_flags & EMPTCP_TCP_SYN) && pkt->mptcp_subtypes &&
	       !(pkt->mptcp_subtypes & (1u << EMPTCP_MPTCP_MP_PRIO));
}

/* 0 when added, else an enum emptcp_op_reason + 1. */
static __emptcp_inline int emptcp_set_backup_edit(const struct emptcp_ctx *c,
						  struct emptcp_edit_scratch *s, __u32 backup)
{
	s->opt[0] = EMPTCP_TCPOPT_MPTCP;
	s->opt[1] = EMPTCP_MP_PRIO_LEN;
	s->opt[2] = EMPTCP_MPTCP_MP_PRIO << 4 | (backup & 1);
	if (emptcp_tcpopt_load(c, &s->pkt, &s->area) ||
	    emptcp_tcpopt_insert(&s->area, s->opt, EMPTCP_MP_PRIO_LEN) < 0 ||
	    emptcp_tcpopt_commit(c, &s->pkt, &s->area))
		return EMPTCP_REASON_EDIT_REFUSED + 1;
	return 0;
}

#endif /* __EMPTCP_LIB_ACT_SET_BACKUP_H */
