/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Readers of MPTCP options (TCP option kind 30, RFC 8684 section 3; RFC 6824
 * where it differs), one per subtype, at an option offset that the TCP option
 * walk found. Each checks the kind, the subtype and the length the subtype
 * allows, never reads past data_end, and decodes into a small struct: numbers
 * in host byte order, addresses and HMAC bytes as on the wire.
 *
 * API (every reader: 0, or a negative enum emptcp_mptcp_error; *out is
 * meaningful only after 0; none writes the packet or calls a helper, so packet
 * pointers stay valid):
 *   int emptcp_mptcp_subtype(data, data_end, off)                 subtype or error
 *   int emptcp_mptcp_read_capable(data, data_end, off, *capable)  MP_CAPABLE
 *   int emptcp_mptcp_read_join(data, data_end, off, *join)        MP_JOIN
 *   int emptcp_mptcp_read_dss(data, data_end, off, *dss)          DSS
 *   int emptcp_mptcp_dss_infinite(data, data_end, off)            DSS: infinite mapping?
 *   int emptcp_mptcp_read_add_addr(data, data_end, off, *add)     ADD_ADDR (v1 layout)
 *   int emptcp_mptcp_read_rm_addr(data, data_end, off, *rm)       REMOVE_ADDR
 *   int emptcp_mptcp_read_prio(data, data_end, off, *prio)        MP_PRIO
 *   int emptcp_mptcp_read_fail(data, data_end, off, *fail)        MP_FAIL
 *   int emptcp_mptcp_read_fastclose(data, data_end, off, *fc)     MP_FASTCLOSE
 *   int emptcp_mptcp_read_tcprst(data, data_end, off, *rst)       MP_TCPRST
 *
 * Arguments, common to all:
 *   data, data_end  the packet (ctx->data, ctx->data_end of XDP or TC)
 *   off             offset from `data` of the option's kind byte: the TCP
 *                   header offset + 20 + the option's position in the option
 *                   area, as the TCP option walk of parse.h finds it. The
 *                   walk has checked that the option lies inside the TCP
 *                   header; a reader checks only that it lies inside the
 *                   packet (data_end), so pass no offset the walk did not
 *                   produce. Any value is safe: above EMPTCP_MPTCP_OFF_MAX it
 *                   is refused.
 *
 * Example (the walk found an MPTCP option at position `pos`):
 *   struct emptcp_mptcp_join join;
 *   __u32 off = pkt.l4_off + sizeof(struct tcphdr) + pos;
 *
 *   if (emptcp_mptcp_subtype(data, data_end, off) == EMPTCP_MPTCP_MP_JOIN &&
 *       emptcp_mptcp_read_join(data, data_end, off, &join) == 0 &&
 *       join.form == EMPTCP_MPTCP_JOIN_SYN)
 *           link_subflow(join.token, &pkt);
 *
 * Verifier notes (kernel 6.18, clang 14 -mcpu=v3): the readers are inlined
 * and branch on the length only to pick constant bounds checks: all nine
 * readers behind a switch on the subtype verify in 3,513 instructions
 * (bpf/tests/mptcp_crypto.bpf.c, xdp_mptcp_readers), 1,196 instructions of
 * code. Behind emptcp_parse() every parse outcome reaches them, and the test
 * program with parse, readers and two emptcp_sha256_key() call sites verifies
 * in 26,541 instructions. Multi-byte fields
 * are assembled from byte loads (an option sits at any alignment; clang 14
 * does not emit unaligned BPF loads), so no reader depends on the JIT's
 * unaligned-access support.
 */
#ifndef __EMPTCP_MPTCP_H
#define __EMPTCP_MPTCP_H

#include <linux/types.h>
#include "compiler.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* TCP option kind of every MPTCP option (RFC 8684 section 3). */
#define EMPTCP_MPTCP_KIND 30
/*
 * Largest option offset accepted. Far past any TCP header (the deepest is
 * behind two VLAN tags and a chain of IPv6 extension headers), and small
 * enough that `data + off + 40` stays under the verifier's packet-offset
 * limit (MAX_PACKET_OFF, 0xffff).
 */
#define EMPTCP_MPTCP_OFF_MAX 0x7fff
/* An option lives in the TCP option area: at most 40 bytes. */
#define EMPTCP_MPTCP_OPT_MAX_LEN 40

/* MPTCP subtypes: the upper nibble of an option's third byte (RFC 8684 section 7.2). */
enum emptcp_mptcp_subtype {
	EMPTCP_MPTCP_MP_CAPABLE = 0x0,
	EMPTCP_MPTCP_MP_JOIN = 0x1,
	EMPTCP_MPTCP_DSS = 0x2,
	EMPTCP_MPTCP_ADD_ADDR = 0x3,
	EMPTCP_MPTCP_REMOVE_ADDR = 0x4,
	EMPTCP_MPTCP_MP_PRIO = 0x5,
	EMPTCP_MPTCP_MP_FAIL = 0x6,
	EMPTCP_MPTCP_MP_FASTCLOSE = 0x7,
	EMPTCP_MPTCP_MP_TCPRST = 0x8,
	EMPTCP_MPTCP_MP_EXPERIMENTAL = 0xf,
};

/* Why a reader refused an option; readers return the negated value. Never
 * renumbered: append only. */
enum emptcp_mptcp_error {
	EMPTCP_MPTCP_OK = 0,
	/* `off` above EMPTCP_MPTCP_OFF_MAX. */
	EMPTCP_MPTCP_ERR_OFFSET = 1,
	/* The option (or the part its length announces) runs past data_end. */
	EMPTCP_MPTCP_ERR_TRUNCATED = 2,
	/* The kind byte is not 30. */
	EMPTCP_MPTCP_ERR_KIND = 3,
	/* Another MPTCP subtype than the reader's. */
	EMPTCP_MPTCP_ERR_SUBTYPE = 4,
	/* The length is not one the subtype allows (for DSS: with its flags). */
	EMPTCP_MPTCP_ERR_LENGTH = 5,
};

/* Option lengths (kind and length bytes included). */
enum emptcp_mptcp_len {
	EMPTCP_MPTCP_CAPABLE_LEN_SYN = 4,          /* v1 SYN: no key */
	EMPTCP_MPTCP_CAPABLE_LEN_SYNACK = 12,      /* sender's key (v1 SYN/ACK, v0 SYN and SYN/ACK) */
	EMPTCP_MPTCP_CAPABLE_LEN_ACK = 20,         /* both keys (third ACK) */
	EMPTCP_MPTCP_CAPABLE_LEN_DATA = 22,        /* both keys, data-level length */
	EMPTCP_MPTCP_CAPABLE_LEN_DATA_CSUM = 24,   /* ... and a checksum */
	EMPTCP_MPTCP_JOIN_LEN_SYN = 12,
	EMPTCP_MPTCP_JOIN_LEN_SYNACK = 16,
	EMPTCP_MPTCP_JOIN_LEN_ACK = 24,
	EMPTCP_MPTCP_ADD_ADDR_LEN_V4 = 8,          /* +2 with a port, +8 with an HMAC */
	EMPTCP_MPTCP_ADD_ADDR_LEN_V6 = 20,
	EMPTCP_MPTCP_PRIO_LEN = 3,
	EMPTCP_MPTCP_PRIO_LEN_V0 = 4,              /* RFC 6824: with an address id */
	EMPTCP_MPTCP_FAIL_LEN = 12,
	EMPTCP_MPTCP_FASTCLOSE_LEN = 12,
	EMPTCP_MPTCP_TCPRST_LEN = 4,
};

/* MP_CAPABLE flag bits (the byte A B C D E F G H, A = 0x80). */
#define EMPTCP_MPTCP_CAPABLE_FLAG_CHECKSUM 0x80 /* A: checksum required */
#define EMPTCP_MPTCP_CAPABLE_FLAG_EXT      0x40 /* B: extensibility */
#define EMPTCP_MPTCP_CAPABLE_FLAG_NOSRC    0x20 /* C: no subflows to the source address */
#define EMPTCP_MPTCP_CAPABLE_FLAG_SHA256   0x01 /* H: HMAC-SHA256 */

/*
 * MP_CAPABLE (RFC 8684 section 3.1, figure 4). What is present follows from
 * `len`: sender_key from 12, receiver_key from 20, data_len from 22, checksum
 * at 24. Absent fields are 0. Which handshake step a 12-byte option is (v1
 * SYN/ACK, or v0 SYN or SYN/ACK) comes from the TCP flags and `version`.
 */
struct emptcp_mptcp_capable {
	__u64 sender_key;    /* host byte order */
	__u64 receiver_key;  /* host byte order */
	__u16 data_len;      /* data-level length, host byte order */
	__u16 checksum;      /* DSS checksum, host byte order */
	__u8 version;        /* 0: RFC 6824, 1: RFC 8684 */
	__u8 flags;          /* EMPTCP_MPTCP_CAPABLE_FLAG_* */
	__u8 len;            /* 4, 12, 20, 22 or 24 */
	__u8 has_checksum;   /* len == 24 */
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_mptcp_capable) != 24);

/* The three forms of MP_JOIN, by length. */
enum emptcp_mptcp_join_form {
	EMPTCP_MPTCP_JOIN_SYN = 1,     /* 12 bytes */
	EMPTCP_MPTCP_JOIN_SYNACK = 2,  /* 16 bytes */
	EMPTCP_MPTCP_JOIN_ACK = 3,     /* 24 bytes */
};

/*
 * MP_JOIN (RFC 8684 section 3.2, figures 5-7). Fields a form does not carry
 * are 0.
 */
struct emptcp_mptcp_join {
	__u64 thmac;       /* SYN/ACK: sender's truncated HMAC (leftmost 64 bits), host order */
	__u32 token;       /* SYN: receiver's token, host byte order */
	__u32 nonce;       /* SYN, SYN/ACK: sender's random number, host byte order */
	__u8 hmac[20];     /* ACK: sender's HMAC (leftmost 160 bits), wire order */
	__u8 form;         /* enum emptcp_mptcp_join_form */
	__u8 address_id;   /* SYN, SYN/ACK */
	__u8 backup;       /* B flag: SYN, SYN/ACK */
	__u8 low_bits;     /* low nibble of byte 2: (reserved << 1) | B, or ACK: reserved */
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_mptcp_join) != 40);

/* DSS flag bits (the low 12 bits of bytes 2-3). */
#define EMPTCP_MPTCP_DSS_FLAG_A 0x01 /* Data ACK present */
#define EMPTCP_MPTCP_DSS_FLAG_a 0x02 /* Data ACK is 8 octets */
#define EMPTCP_MPTCP_DSS_FLAG_M 0x04 /* mapping present */
#define EMPTCP_MPTCP_DSS_FLAG_m 0x08 /* DSN is 8 octets */
#define EMPTCP_MPTCP_DSS_FLAG_F 0x10 /* DATA_FIN */

/*
 * DSS (RFC 8684 section 3.3, figure 9). A 4-octet Data ACK or DSN is the low
 * half of the 64-bit number, zero-extended here; ack_len and dsn_len say which
 * form was sent. The checksum is present when the mapping is followed by
 * exactly two more bytes (the length decides, as in the Linux stack).
 */
struct emptcp_mptcp_dss {
	__u64 data_ack;     /* host byte order; 0 unless ack_len */
	__u64 dsn;          /* data sequence number, host order; 0 unless dsn_len */
	__u32 subflow_seq;  /* relative subflow sequence number; 0 unless dsn_len */
	__u16 data_len;     /* data-level length; 0 unless dsn_len */
	__u16 checksum;     /* 0 unless has_checksum */
	__u16 flags;        /* the 12-bit flag field, EMPTCP_MPTCP_DSS_FLAG_* */
	__u8 ack_len;       /* 0 (no Data ACK), 4 or 8 */
	__u8 dsn_len;       /* 0 (no mapping), 4 or 8 */
	__u8 has_checksum;
	__u8 data_fin;      /* F flag */
	__u8 len;
	__u8 _pad;
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_mptcp_dss) != 32);

/*
 * ADD_ADDR (RFC 8684 section 3.4.1, figure 12). The length says the family,
 * the port and the HMAC: 8/10/16/18 (IPv4), 20/22/28/30 (IPv6), +2 port,
 * +8 HMAC. An RFC 6824 (v0) ADD_ADDR of length 8, 10, 20 or 22 has the same
 * layout; its IPVer nibble is in `low_bits` (and `echo` is meaningless).
 */
struct emptcp_mptcp_add_addr {
	__u8 addr[16];     /* network byte order; IPv4 in addr[0..3], the rest zero */
	__u64 hmac;        /* truncated HMAC (rightmost 64 bits), host order; 0 unless has_hmac */
	__u16 port;        /* host byte order; 0 unless has_port */
	__u8 family;       /* AF_INET or AF_INET6, from the length */
	__u8 address_id;
	__u8 echo;         /* E flag */
	__u8 has_port;
	__u8 has_hmac;
	__u8 len;
	__u8 low_bits;     /* low nibble of byte 2: (reserved << 1) | E, v0: IPVer */
	__u8 _pad[7];
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_mptcp_add_addr) != 40);

/* At most 37 ids: an option is at most 40 bytes, 3 of which are header. */
#define EMPTCP_MPTCP_RM_ADDR_MAX (EMPTCP_MPTCP_OPT_MAX_LEN - 3)

/* REMOVE_ADDR (RFC 8684 section 3.4.2, figure 13): length 3 + count. */
struct emptcp_mptcp_rm_addr {
	__u8 count;                           /* 1..EMPTCP_MPTCP_RM_ADDR_MAX */
	__u8 ids[EMPTCP_MPTCP_RM_ADDR_MAX];   /* ids[count..] are 0 */
	__u8 len;
	__u8 low_bits;                        /* reserved nibble */
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_mptcp_rm_addr) != 40);

/* MP_PRIO (RFC 8684 section 3.3.8): length 3, or 4 with an RFC 6824 address id. */
struct emptcp_mptcp_prio {
	__u8 backup;          /* B flag */
	__u8 has_address_id;  /* length 4 */
	__u8 address_id;
	__u8 len;
	__u8 low_bits;        /* (reserved << 1) | B */
	__u8 _pad[3];
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_mptcp_prio) != 8);

/* MP_FAIL (RFC 8684 section 3.7): length 12. */
struct emptcp_mptcp_fail {
	__u64 dsn;          /* 64-bit data sequence number, host order */
	__u16 reserved;     /* the 12 reserved bits */
	__u8 len;
	__u8 _pad[5];
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_mptcp_fail) != 16);

/* MP_FASTCLOSE (RFC 8684 section 3.5): length 12. */
struct emptcp_mptcp_fastclose {
	__u64 receiver_key; /* host byte order */
	__u16 reserved;     /* the 12 reserved bits */
	__u8 len;
	__u8 _pad[5];
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_mptcp_fastclose) != 16);

/* MP_TCPRST flag bits (the low nibble U V W T). */
#define EMPTCP_MPTCP_TCPRST_FLAG_T 0x1 /* transient */

/* MP_TCPRST (RFC 8684 section 3.6): length 4. */
struct emptcp_mptcp_tcprst {
	__u8 flags;     /* U V W T, T = 0x1 */
	__u8 reason;
	__u8 transient; /* T flag */
	__u8 len;
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_mptcp_tcprst) != 4);

/* Big-endian loads from any alignment. */
static __emptcp_inline __u16 __emptcp_mptcp_be16(const __u8 *p)
{
	return (__u16)p[0] << 8 | p[1];
}

static __emptcp_inline __u32 __emptcp_mptcp_be32(const __u8 *p)
{
	return (__u32)p[0] << 24 | (__u32)p[1] << 16 | (__u32)p[2] << 8 | p[3];
}

static __emptcp_inline __u64 __emptcp_mptcp_be64(const __u8 *p)
{
	return (__u64)__emptcp_mptcp_be32(p) << 32 | __emptcp_mptcp_be32(p + 4);
}

/* Fails the reader unless n bytes from p lie inside the packet. */
#define __EMPTCP_MPTCP_NEED(p, n, data_end)                      \
	do {                                                     \
		if ((void *)(p) + (n) > (data_end))              \
			return -EMPTCP_MPTCP_ERR_TRUNCATED;      \
	} while (0)

/*
 * The three header bytes at `off`: the option pointer, or NULL with *err set.
 * Checks the offset, that the three bytes are in the packet and the kind.
 */
static __emptcp_inline __u8 *__emptcp_mptcp_hdr(void *data, void *data_end, __u32 off, int *err)
{
	__u8 *p;

	if (off > EMPTCP_MPTCP_OFF_MAX) {
		*err = -EMPTCP_MPTCP_ERR_OFFSET;
		return NULL;
	}
	/* Mask needed to calm the verifier: clang 14 tests a sign-extended
	 * copy of `off` above and folds a C mask away (it knows the bound),
	 * so the register added to `data` has no bound and the check below
	 * establishes no packet range ("invalid access to packet, off=0
	 * size=1", kernel 6.18, when the reader runs in a subprogram). The
	 * mask is inline asm, which clang cannot drop. */
	{
		__u64 bounded = off;

		asm volatile("%0 &= 0x7fff" : "+r"(bounded));
		p = data + bounded;
	}
	if ((void *)(p + 3) > data_end) {
		*err = -EMPTCP_MPTCP_ERR_TRUNCATED;
		return NULL;
	}
	if (p[0] != EMPTCP_MPTCP_KIND) {
		*err = -EMPTCP_MPTCP_ERR_KIND;
		return NULL;
	}
	*err = 0;
	return p;
}

/*
 * As __emptcp_mptcp_hdr, and the subtype must be `subtype`. The length byte
 * is p[1] and the low nibble of the subtype byte p[2] & 0xf.
 */
static __emptcp_inline __u8 *__emptcp_mptcp_open(void *data, void *data_end, __u32 off,
						 enum emptcp_mptcp_subtype subtype, int *err)
{
	__u8 *p = __emptcp_mptcp_hdr(data, data_end, off, err);

	if (p && (p[2] >> 4) != subtype) {
		*err = -EMPTCP_MPTCP_ERR_SUBTYPE;
		return NULL;
	}
	return p;
}

/**
 * emptcp_mptcp_subtype - the subtype of the MPTCP option at @off
 * @data: packet start
 * @data_end: packet end
 * @off: offset of the option's kind byte from @data
 *
 * For dispatching to a reader. Checks the kind and that the three header
 * bytes are in the packet, not the length.
 *
 * Return: the subtype (0..15, enum emptcp_mptcp_subtype), or a negative
 * enum emptcp_mptcp_error.
 */
static __emptcp_inline int emptcp_mptcp_subtype(void *data, void *data_end, __u32 off)
{
	int err;
	__u8 *p = __emptcp_mptcp_hdr(data, data_end, off, &err);

	if (!p)
		return err;
	return p[2] >> 4;
}

/**
 * emptcp_mptcp_read_capable - decode MP_CAPABLE
 * @data: packet start
 * @data_end: packet end
 * @off: offset of the option's kind byte from @data (see the top of the file)
 * @out: the decoded option, numbers in host byte order
 *
 * Lengths 4, 12, 20, 22, 24. The keys are what emptcp_sha256_key() takes
 * (sha256.h): the token of the connection a later MP_JOIN SYN names.
 *
 * Return: 0, or -EMPTCP_MPTCP_ERR_{OFFSET,TRUNCATED,KIND,SUBTYPE,LENGTH}.
 */
static __emptcp_inline int emptcp_mptcp_read_capable(void *data, void *data_end, __u32 off,
						     struct emptcp_mptcp_capable *out)
{
	__u8 *p, len;
	int err;

	p = __emptcp_mptcp_open(data, data_end, off, EMPTCP_MPTCP_MP_CAPABLE, &err);
	if (!p)
		return err;
	len = p[1];
	if (len != EMPTCP_MPTCP_CAPABLE_LEN_SYN && len != EMPTCP_MPTCP_CAPABLE_LEN_SYNACK &&
	    len != EMPTCP_MPTCP_CAPABLE_LEN_ACK && len != EMPTCP_MPTCP_CAPABLE_LEN_DATA &&
	    len != EMPTCP_MPTCP_CAPABLE_LEN_DATA_CSUM)
		return -EMPTCP_MPTCP_ERR_LENGTH;
	__EMPTCP_MPTCP_NEED(p, 4, data_end);
	__builtin_memset(out, 0, sizeof(*out));
	out->version = p[2] & 0xf;
	out->flags = p[3];
	out->len = len;
	if (len >= EMPTCP_MPTCP_CAPABLE_LEN_SYNACK) {
		__EMPTCP_MPTCP_NEED(p, 12, data_end);
		out->sender_key = __emptcp_mptcp_be64(p + 4);
	}
	if (len >= EMPTCP_MPTCP_CAPABLE_LEN_ACK) {
		__EMPTCP_MPTCP_NEED(p, 20, data_end);
		out->receiver_key = __emptcp_mptcp_be64(p + 12);
	}
	if (len >= EMPTCP_MPTCP_CAPABLE_LEN_DATA) {
		__EMPTCP_MPTCP_NEED(p, 22, data_end);
		out->data_len = __emptcp_mptcp_be16(p + 20);
	}
	if (len == EMPTCP_MPTCP_CAPABLE_LEN_DATA_CSUM) {
		__EMPTCP_MPTCP_NEED(p, 24, data_end);
		out->checksum = __emptcp_mptcp_be16(p + 22);
		out->has_checksum = 1;
	}
	return 0;
}

/**
 * emptcp_mptcp_read_join - decode MP_JOIN
 * @data: packet start
 * @data_end: packet end
 * @off: offset of the option's kind byte from @data (see the top of the file)
 * @out: the decoded option; @out->form says which fields are set
 *
 * Lengths 12 (SYN: address id, backup, receiver's token, nonce), 16 (SYN/ACK:
 * address id, backup, truncated HMAC, nonce), 24 (ACK: 160-bit HMAC).
 *
 * Return: 0, or -EMPTCP_MPTCP_ERR_{OFFSET,TRUNCATED,KIND,SUBTYPE,LENGTH}.
 */
static __emptcp_inline int emptcp_mptcp_read_join(void *data, void *data_end, __u32 off,
						  struct emptcp_mptcp_join *out)
{
	__u8 *p, len;
	int err, i;

	p = __emptcp_mptcp_open(data, data_end, off, EMPTCP_MPTCP_MP_JOIN, &err);
	if (!p)
		return err;
	len = p[1];
	if (len != EMPTCP_MPTCP_JOIN_LEN_SYN && len != EMPTCP_MPTCP_JOIN_LEN_SYNACK &&
	    len != EMPTCP_MPTCP_JOIN_LEN_ACK)
		return -EMPTCP_MPTCP_ERR_LENGTH;
	__EMPTCP_MPTCP_NEED(p, 4, data_end);
	__builtin_memset(out, 0, sizeof(*out));
	out->low_bits = p[2] & 0xf;
	if (len == EMPTCP_MPTCP_JOIN_LEN_ACK) {
		__EMPTCP_MPTCP_NEED(p, EMPTCP_MPTCP_JOIN_LEN_ACK, data_end);
		out->form = EMPTCP_MPTCP_JOIN_ACK;
#pragma unroll
		for (i = 0; i < 20; i++)
			out->hmac[i] = p[4 + i];
		return 0;
	}
	out->backup = p[2] & 1;
	out->address_id = p[3];
	if (len == EMPTCP_MPTCP_JOIN_LEN_SYN) {
		__EMPTCP_MPTCP_NEED(p, EMPTCP_MPTCP_JOIN_LEN_SYN, data_end);
		out->form = EMPTCP_MPTCP_JOIN_SYN;
		out->token = __emptcp_mptcp_be32(p + 4);
		out->nonce = __emptcp_mptcp_be32(p + 8);
		return 0;
	}
	__EMPTCP_MPTCP_NEED(p, EMPTCP_MPTCP_JOIN_LEN_SYNACK, data_end);
	out->form = EMPTCP_MPTCP_JOIN_SYNACK;
	out->thmac = __emptcp_mptcp_be64(p + 4);
	out->nonce = __emptcp_mptcp_be32(p + 12);
	return 0;
}

/**
 * emptcp_mptcp_read_dss - decode DSS
 * @data: packet start
 * @data_end: packet end
 * @off: offset of the option's kind byte from @data (see the top of the file)
 * @out: the decoded option
 *
 * The flags give the Data ACK (none, 4, 8 octets) and the mapping (none, or a
 * 4- or 8-octet DSN, subflow sequence number and data-level length); the
 * length must be 4 + those, or 2 more with a mapping (the checksum).
 *
 * Return: 0, or -EMPTCP_MPTCP_ERR_{OFFSET,TRUNCATED,KIND,SUBTYPE,LENGTH}.
 */
static __emptcp_inline int emptcp_mptcp_read_dss(void *data, void *data_end, __u32 off,
						 struct emptcp_mptcp_dss *out)
{
	__u8 *p, *q, len, ack_len = 0, dsn_len = 0, expected;
	__u16 flags;
	int err, csum;

	p = __emptcp_mptcp_open(data, data_end, off, EMPTCP_MPTCP_DSS, &err);
	if (!p)
		return err;
	len = p[1];
	if (len < 4 || len > EMPTCP_MPTCP_OPT_MAX_LEN)
		return -EMPTCP_MPTCP_ERR_LENGTH;
	__EMPTCP_MPTCP_NEED(p, 4, data_end);
	flags = (__u16)(p[2] & 0xf) << 8 | p[3];
	if (flags & EMPTCP_MPTCP_DSS_FLAG_A)
		ack_len = flags & EMPTCP_MPTCP_DSS_FLAG_a ? 8 : 4;
	if (flags & EMPTCP_MPTCP_DSS_FLAG_M)
		dsn_len = flags & EMPTCP_MPTCP_DSS_FLAG_m ? 8 : 4;
	expected = 4 + ack_len + (dsn_len ? dsn_len + 6 : 0);
	if (len == expected)
		csum = 0;
	else if (dsn_len && len == expected + 2)
		csum = 1;
	else
		return -EMPTCP_MPTCP_ERR_LENGTH;

	__builtin_memset(out, 0, sizeof(*out));
	out->flags = flags;
	out->ack_len = ack_len;
	out->dsn_len = dsn_len;
	out->data_fin = !!(flags & EMPTCP_MPTCP_DSS_FLAG_F);
	out->len = len;
	/* Each branch advances q by a constant, so every bounds check below
	 * is against a constant offset from p on each verifier path (at most
	 * 3 x 3 x 2 of them, a few instructions each). */
	q = p + 4;
	if (ack_len == 8) {
		__EMPTCP_MPTCP_NEED(q, 8, data_end);
		out->data_ack = __emptcp_mptcp_be64(q);
		q += 8;
	} else if (ack_len == 4) {
		__EMPTCP_MPTCP_NEED(q, 4, data_end);
		out->data_ack = __emptcp_mptcp_be32(q);
		q += 4;
	}
	if (!dsn_len)
		return 0;
	if (dsn_len == 8) {
		__EMPTCP_MPTCP_NEED(q, 8, data_end);
		out->dsn = __emptcp_mptcp_be64(q);
		q += 8;
	} else {
		__EMPTCP_MPTCP_NEED(q, 4, data_end);
		out->dsn = __emptcp_mptcp_be32(q);
		q += 4;
	}
	__EMPTCP_MPTCP_NEED(q, 6, data_end);
	out->subflow_seq = __emptcp_mptcp_be32(q);
	out->data_len = __emptcp_mptcp_be16(q + 4);
	if (csum) {
		__EMPTCP_MPTCP_NEED(q, 8, data_end);
		out->checksum = __emptcp_mptcp_be16(q + 6);
		out->has_checksum = 1;
	}
	return 0;
}

/**
 * emptcp_mptcp_dss_infinite - whether the DSS at @off carries an infinite mapping
 * @data: packet start
 * @data_end: packet end
 * @off: offset of the DSS option's kind byte from @data, as the TCP option
 *       walk found it (struct emptcp_pkt's off_dss); 0 (absent) gives 0
 *
 * An infinite mapping is a mapping (flag M) whose data-level length is 0
 * (RFC 8684 section 3.3.1): its sender has fallen back to TCP (section 3.7).
 * Meant to run on every DSS packet, so it reads only what it must: the
 * flags, then, for a mapping, the kind, subtype, length and the data-level
 * length, whose place follows from the flags (Data ACK 0, 4 or 8 octets; DSN
 * 4 or 8; subflow sequence number 4) whether a checksum follows or not. A
 * DSS without a mapping (a pure Data ACK) costs one byte load and a test.
 *
 * Return: 1 for an infinite mapping; 0 for anything else, including an
 * option whose length does not fit its flags (as emptcp_mptcp_read_dss()
 * would refuse it).
 */
static __emptcp_inline int emptcp_mptcp_dss_infinite(void *data, void *data_end, __u32 off)
{
	__u32 flags, at;
	__u64 bounded = off;
	__u8 *p, *q;

	if (!off || off > EMPTCP_MPTCP_OFF_MAX)
		return 0;
	/* Inline-asm mask: see __emptcp_mptcp_hdr. */
	asm volatile("%0 &= 0x7fff" : "+r"(bounded));
	p = data + bounded;
	if ((void *)(p + 4) > data_end)
		return 0;
	flags = p[3];
	if (!(flags & EMPTCP_MPTCP_DSS_FLAG_M))
		return 0;
	if (p[0] != EMPTCP_MPTCP_KIND || (p[2] >> 4) != EMPTCP_MPTCP_DSS)
		return 0;
	/* Offset of the data-level length: 4 header bytes, the Data ACK
	 * ((A) << (2 + a): 0, 4 or 8), the DSN (4 << m), the subflow
	 * sequence number (4). Without branches: 12 to 24. */
	at = 8 + ((flags & EMPTCP_MPTCP_DSS_FLAG_A) << (2 + ((flags >> 1) & 1))) +
	     (4u << ((flags >> 3) & 1));
	/* The length: the data-level length ends the option, or the
	 * checksum's 2 bytes follow it. */
	if (p[1] != at + 2 && p[1] != at + 4)
		return 0;
	q = p + (at & 0x1f);
	if ((void *)(q + 2) > data_end)
		return 0;
	return (q[0] | q[1]) == 0;
}

/**
 * emptcp_mptcp_read_add_addr - decode ADD_ADDR (RFC 8684 layout)
 * @data: packet start
 * @data_end: packet end
 * @off: offset of the option's kind byte from @data (see the top of the file)
 * @out: the decoded option
 *
 * Lengths 8, 10, 16, 18 (IPv4) and 20, 22, 28, 30 (IPv6): +2 is the port,
 * +8 the truncated HMAC. Reads an RFC 6824 ADD_ADDR (8, 10, 20, 22) as well;
 * see struct emptcp_mptcp_add_addr.
 *
 * Return: 0, or -EMPTCP_MPTCP_ERR_{OFFSET,TRUNCATED,KIND,SUBTYPE,LENGTH}.
 */
static __emptcp_inline int emptcp_mptcp_read_add_addr(void *data, void *data_end, __u32 off,
						      struct emptcp_mptcp_add_addr *out)
{
	__u8 *p, *q, len, extra;
	int err, i;

	p = __emptcp_mptcp_open(data, data_end, off, EMPTCP_MPTCP_ADD_ADDR, &err);
	if (!p)
		return err;
	len = p[1];
	if (len >= EMPTCP_MPTCP_ADD_ADDR_LEN_V6)
		extra = len - EMPTCP_MPTCP_ADD_ADDR_LEN_V6;
	else if (len >= EMPTCP_MPTCP_ADD_ADDR_LEN_V4)
		extra = len - EMPTCP_MPTCP_ADD_ADDR_LEN_V4;
	else
		return -EMPTCP_MPTCP_ERR_LENGTH;
	if (extra != 0 && extra != 2 && extra != 8 && extra != 10)
		return -EMPTCP_MPTCP_ERR_LENGTH;

	__builtin_memset(out, 0, sizeof(*out));
	out->len = len;
	out->low_bits = p[2] & 0xf;
	out->echo = p[2] & 1;
	out->has_port = extra == 2 || extra == 10;
	out->has_hmac = extra >= 8;
	if (len >= EMPTCP_MPTCP_ADD_ADDR_LEN_V6) {
		__EMPTCP_MPTCP_NEED(p, EMPTCP_MPTCP_ADD_ADDR_LEN_V6, data_end);
		out->family = AF_INET6;
#pragma unroll
		for (i = 0; i < 16; i++)
			out->addr[i] = p[4 + i];
		q = p + EMPTCP_MPTCP_ADD_ADDR_LEN_V6;
	} else {
		__EMPTCP_MPTCP_NEED(p, EMPTCP_MPTCP_ADD_ADDR_LEN_V4, data_end);
		out->family = AF_INET;
#pragma unroll
		for (i = 0; i < 4; i++)
			out->addr[i] = p[4 + i];
		q = p + EMPTCP_MPTCP_ADD_ADDR_LEN_V4;
	}
	out->address_id = p[3];
	if (out->has_port) {
		__EMPTCP_MPTCP_NEED(q, 2, data_end);
		out->port = __emptcp_mptcp_be16(q);
		q += 2;
	}
	if (out->has_hmac) {
		__EMPTCP_MPTCP_NEED(q, 8, data_end);
		out->hmac = __emptcp_mptcp_be64(q);
	}
	return 0;
}

/**
 * emptcp_mptcp_read_rm_addr - decode REMOVE_ADDR
 * @data: packet start
 * @data_end: packet end
 * @off: offset of the option's kind byte from @data (see the top of the file)
 * @out: the decoded option: @out->count ids
 *
 * Lengths 4..40 (one id per byte after the third).
 *
 * Return: 0, or -EMPTCP_MPTCP_ERR_{OFFSET,TRUNCATED,KIND,SUBTYPE,LENGTH}.
 */
static __emptcp_inline int emptcp_mptcp_read_rm_addr(void *data, void *data_end, __u32 off,
						     struct emptcp_mptcp_rm_addr *out)
{
	__u8 *p, len, count;
	int err, i;

	p = __emptcp_mptcp_open(data, data_end, off, EMPTCP_MPTCP_REMOVE_ADDR, &err);
	if (!p)
		return err;
	len = p[1];
	if (len < 4 || len > EMPTCP_MPTCP_OPT_MAX_LEN)
		return -EMPTCP_MPTCP_ERR_LENGTH;
	count = len - 3;
	__builtin_memset(out, 0, sizeof(*out));
	out->count = count;
	out->len = len;
	out->low_bits = p[2] & 0xf;
	/*
	 * A real loop, not unrolled: the verifier runs it with a known `i` on
	 * each pass, so every check and store has a constant offset, and each
	 * pass forks only a short exiting path (end of ids, or truncated):
	 * linear in the count. clang 14 cannot fully unroll it anyway: a loop
	 * with an exit before its bound is unrolled only up to 8 passes
	 * ("loop not unrolled: the optimizer was unable to perform the
	 * requested transformation").
	 */
#pragma clang loop unroll(disable)
	for (i = 0; i < EMPTCP_MPTCP_RM_ADDR_MAX; i++) {
		if (i >= count)
			break;
		__EMPTCP_MPTCP_NEED(p, 3 + i + 1, data_end);
		out->ids[i] = p[3 + i];
	}
	return 0;
}

/**
 * emptcp_mptcp_read_prio - decode MP_PRIO
 * @data: packet start
 * @data_end: packet end
 * @off: offset of the option's kind byte from @data (see the top of the file)
 * @out: the decoded option
 *
 * Lengths 3 (RFC 8684) and 4 (RFC 6824, with an address id).
 *
 * Return: 0, or -EMPTCP_MPTCP_ERR_{OFFSET,TRUNCATED,KIND,SUBTYPE,LENGTH}.
 */
static __emptcp_inline int emptcp_mptcp_read_prio(void *data, void *data_end, __u32 off,
						  struct emptcp_mptcp_prio *out)
{
	__u8 *p, len;
	int err;

	p = __emptcp_mptcp_open(data, data_end, off, EMPTCP_MPTCP_MP_PRIO, &err);
	if (!p)
		return err;
	len = p[1];
	if (len != EMPTCP_MPTCP_PRIO_LEN && len != EMPTCP_MPTCP_PRIO_LEN_V0)
		return -EMPTCP_MPTCP_ERR_LENGTH;
	__builtin_memset(out, 0, sizeof(*out));
	out->len = len;
	out->low_bits = p[2] & 0xf;
	out->backup = p[2] & 1;
	if (len == EMPTCP_MPTCP_PRIO_LEN_V0) {
		__EMPTCP_MPTCP_NEED(p, EMPTCP_MPTCP_PRIO_LEN_V0, data_end);
		out->has_address_id = 1;
		out->address_id = p[3];
	}
	return 0;
}

/* MP_FAIL and MP_FASTCLOSE: 12 reserved bits and a 64-bit value, length 12. */
static __emptcp_inline int __emptcp_mptcp_read_u64_option(void *data, void *data_end, __u32 off,
							  enum emptcp_mptcp_subtype subtype,
							  __u64 *value, __u16 *reserved)
{
	__u8 *p;
	int err;

	p = __emptcp_mptcp_open(data, data_end, off, subtype, &err);
	if (!p)
		return err;
	if (p[1] != EMPTCP_MPTCP_FAIL_LEN)
		return -EMPTCP_MPTCP_ERR_LENGTH;
	__EMPTCP_MPTCP_NEED(p, EMPTCP_MPTCP_FAIL_LEN, data_end);
	*reserved = (__u16)(p[2] & 0xf) << 8 | p[3];
	*value = __emptcp_mptcp_be64(p + 4);
	return 0;
}

/**
 * emptcp_mptcp_read_fail - decode MP_FAIL
 * @data: packet start
 * @data_end: packet end
 * @off: offset of the option's kind byte from @data (see the top of the file)
 * @out: the decoded option
 *
 * Length 12: the 64-bit DSN of the failed mapping.
 *
 * Return: 0, or -EMPTCP_MPTCP_ERR_{OFFSET,TRUNCATED,KIND,SUBTYPE,LENGTH}.
 */
static __emptcp_inline int emptcp_mptcp_read_fail(void *data, void *data_end, __u32 off,
						  struct emptcp_mptcp_fail *out)
{
	__u64 dsn;
	__u16 reserved;
	int err;

	err = __emptcp_mptcp_read_u64_option(data, data_end, off, EMPTCP_MPTCP_MP_FAIL, &dsn,
					     &reserved);
	if (err)
		return err;
	__builtin_memset(out, 0, sizeof(*out));
	out->dsn = dsn;
	out->reserved = reserved;
	out->len = EMPTCP_MPTCP_FAIL_LEN;
	return 0;
}

/**
 * emptcp_mptcp_read_fastclose - decode MP_FASTCLOSE
 * @data: packet start
 * @data_end: packet end
 * @off: offset of the option's kind byte from @data (see the top of the file)
 * @out: the decoded option
 *
 * Length 12: the receiver's key.
 *
 * Return: 0, or -EMPTCP_MPTCP_ERR_{OFFSET,TRUNCATED,KIND,SUBTYPE,LENGTH}.
 */
static __emptcp_inline int emptcp_mptcp_read_fastclose(void *data, void *data_end, __u32 off,
						       struct emptcp_mptcp_fastclose *out)
{
	__u64 key;
	__u16 reserved;
	int err;

	err = __emptcp_mptcp_read_u64_option(data, data_end, off, EMPTCP_MPTCP_MP_FASTCLOSE, &key,
					     &reserved);
	if (err)
		return err;
	__builtin_memset(out, 0, sizeof(*out));
	out->receiver_key = key;
	out->reserved = reserved;
	out->len = EMPTCP_MPTCP_FASTCLOSE_LEN;
	return 0;
}

/**
 * emptcp_mptcp_read_tcprst - decode MP_TCPRST
 * @data: packet start
 * @data_end: packet end
 * @off: offset of the option's kind byte from @data (see the top of the file)
 * @out: the decoded option
 *
 * Length 4: flags U V W T and a reason code.
 *
 * Return: 0, or -EMPTCP_MPTCP_ERR_{OFFSET,TRUNCATED,KIND,SUBTYPE,LENGTH}.
 */
static __emptcp_inline int emptcp_mptcp_read_tcprst(void *data, void *data_end, __u32 off,
						    struct emptcp_mptcp_tcprst *out)
{
	__u8 *p;
	int err;

	p = __emptcp_mptcp_open(data, data_end, off, EMPTCP_MPTCP_MP_TCPRST, &err);
	if (!p)
		return err;
	if (p[1] != EMPTCP_MPTCP_TCPRST_LEN)
		return -EMPTCP_MPTCP_ERR_LENGTH;
	__EMPTCP_MPTCP_NEED(p, EMPTCP_MPTCP_TCPRST_LEN, data_end);
	out->flags = p[2] & 0xf;
	out->reason = p[3];
	out->transient = p[2] & EMPTCP_MPTCP_TCPRST_FLAG_T;
	out->len = EMPTCP_MPTCP_TCPRST_LEN;
	return 0;
}

#endif /* __EMPTCP_MPTCP_H */
