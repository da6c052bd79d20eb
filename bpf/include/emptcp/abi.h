/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The ABI between the data plane and user space: every map key and value that
 * user space reads or writes. This header is the single source of truth; the
 * Rust side uses the types libbpf-cargo generates from the objects' BTF and
 * never declares them a second time.
 *
 * Rules (docs/abi.md): fixed-width fields, explicit padding, a size assertion
 * per struct, enums (not #defines) for constants so that they reach BTF, and a
 * __MAX sentinel on every enum.
 */
#ifndef __EMPTCP_ABI_H
#define __EMPTCP_ABI_H

#include <linux/types.h>
#include "compiler.h"

/* Bumped on any incompatible change of a type in this file. */
enum emptcp_abi {
	EMPTCP_ABI_VERSION = 3,
};

/* Where an entry program runs. */
enum emptcp_hook {
	EMPTCP_HOOK_XDP = 0,
	EMPTCP_HOOK_TC_INGRESS = 1,
	EMPTCP_HOOK_TC_EGRESS = 2,
	EMPTCP_HOOK__MAX,
};

/*
 * One direction of one TCP flow as seen at one attachment. Addresses are
 * 16 bytes; IPv4 uses the first 4 and leaves the rest zero, so a key is never
 * ambiguous between families (family is part of the key).
 */
struct emptcp_flow_key {
	__u32 ifindex;
	__u8 hook;   /* enum emptcp_hook */
	__u8 family; /* AF_INET or AF_INET6 */
	__be16 sport;
	__be16 dport;
	__u16 _pad;
	__u8 saddr[16];
	__u8 daddr[16];
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_flow_key) != 44);

/* Per-CPU traffic of one flow key, when the data plane accounts flows
 * (emptcp_config.account_flows; user space sums the CPUs). */
struct emptcp_flow_stats {
	__u64 packets;
	/* Bytes of IP packets (L3 and up); at TC one GSO skb counts in full. */
	__u64 bytes;
	/* TCP payload bytes. (No timestamp: reading the clock costs ~34 ns a
	 * packet here, a third of the entry; the LRU map ages flows out.) */
	__u64 payload_bytes;
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_flow_stats) != 24);

/*
 * Connection tracking (bpf/lib/conntrack.h, docs/engine.md), learned only
 * from the handshakes the data plane sees. A subflow is keyed by its two
 * endpoints in a canonical order ("lo" is the endpoint whose address, then
 * port, compares lower), so both directions find one entry.
 */
struct emptcp_ct_key {
	__u8 family;
	__u8 _pad;
	__be16 port_lo;
	__be16 port_hi;
	__u16 _pad2;
	__u8 addr_lo[16];
	__u8 addr_hi[16];
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_ct_key) != 40);

enum emptcp_ct_flags {
	EMPTCP_CT_JOIN = 1 << 0,         /* opened by MP_JOIN (else MP_CAPABLE) */
	EMPTCP_CT_INITIATOR_LO = 1 << 1, /* endpoint lo sent the SYN */
	EMPTCP_CT_FIN_LO = 1 << 2,
	EMPTCP_CT_FIN_HI = 1 << 3,
	EMPTCP_CT_KNOWN = 1 << 4,        /* linked to a connection (token known) */
	EMPTCP_CT_BACKUP = 1 << 5,       /* the SYN asked for a backup subflow */
};

struct emptcp_subflow_ct {
	__u32 token;        /* the connection's id: the listener's token (0: not yet known) */
	__u32 flags;        /* enum emptcp_ct_flags */
	__u32 isn_lo;       /* initial sequence number sent by endpoint lo */
	__u32 isn_hi;
	__u64 idsn_lo;      /* initial data sequence number of endpoint lo's key */
	__u64 idsn_hi;
	__u32 version;      /* bumped whenever a field above changes */
	__u8 index;         /* order of the subflow's SYN among its connection's */
	__u8 addr_id;       /* MP_JOIN SYN: the initiator's address id */
	__u8 wscale_lo;     /* window scale endpoint lo announced in its SYN, + 1; 0: SYN not seen */
	__u8 wscale_hi;
	__u32 token_initiator; /* the connection's other token (0: not yet known) */
	__u32 _pad2;
	__u64 last_seen_ns;
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_subflow_ct) != 56);

struct emptcp_conn_ct {
	__u64 key_initiator;  /* host order; 0 until seen */
	__u64 key_listener;
	__u64 idsn_initiator;
	__u64 idsn_listener;
	__u32 token_initiator;
	__u32 token_listener; /* the connection's id */
	__u32 subflows;       /* SYNs seen: the next subflow's index */
	__u32 _pad;
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_conn_ct) != 48);

/* Value of emptcp_ct_tok: which connection a token names, and whose it is. */
struct emptcp_token_ct {
	__u32 conn;         /* token_listener of the connection */
	__u32 listener;     /* 1: the token is the listener's */
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_token_ct) != 8);

/*
 * Events (ring buffer emptcp_events). One record layout for every kind;
 * `version` changes with any incompatible change, and readers refuse
 * versions they do not know.
 */
enum emptcp_event_version {
	EMPTCP_EVENT_VERSION = 1,
};

enum emptcp_event_kind {
	EMPTCP_EV_CONNECTION = 1,  /* get_connect: MP_CAPABLE keys (and the tokens they give) */
	EMPTCP_EV_SUBFLOW = 2,     /* get_subflow: an MPTCP SYN (MP_CAPABLE or MP_JOIN) */
	EMPTCP_EV_ADD_SUBFLOW = 3, /* add_subflow: what became of a kept ADD_ADDR (outcome) */
	EMPTCP_EV__MAX,
};

/* ADD_SUBFLOW events: `outcome`. */
enum emptcp_add_subflow_outcome {
	EMPTCP_ADDSUB_CARRIED = 1,      /* the kept ADD_ADDR went out in this packet */
	EMPTCP_ADDSUB_NOTHING_KEPT = 2, /* the chain fired, nothing was kept for the connection */
	EMPTCP_ADDSUB_NO_ROOM = 3,      /* a carrier had no room (or TC could not grow it) */
	EMPTCP_ADDSUB__MAX,
};

struct emptcp_event {
	__u16 version;          /* EMPTCP_EVENT_VERSION */
	__u16 kind;             /* enum emptcp_event_kind */
	__u32 ifindex;
	__u64 ts_ns;            /* bpf_ktime_get_ns */
	__u8 hook;              /* enum emptcp_hook */
	__u8 family;
	__u8 index;             /* subflow index in its connection, 0xff unknown */
	__u8 join;              /* SUBFLOW: the SYN carries MP_JOIN (else MP_CAPABLE) */
	__be16 sport;
	__be16 dport;
	__u8 saddr[16];
	__u8 daddr[16];
	__u64 key_sender;       /* CONNECTION: the option's sender key */
	__u64 key_receiver;     /* CONNECTION: its receiver key (0 when absent) */
	__u32 token_sender;     /* tokens of those keys (SHA-256, RFC 8684 3.2) */
	__u32 token_receiver;
	__u32 join_token;       /* SUBFLOW, MP_JOIN: the receiver's token it carries */
	__u32 join_nonce;       /* SUBFLOW, MP_JOIN: the sender's random number */
	__u32 connection;       /* the tracked connection (listener's token), 0 unknown */
	__u8 address_id;        /* SUBFLOW, MP_JOIN; ADD_SUBFLOW: the ADD_ADDR's */
	__u8 backup;            /* SUBFLOW, MP_JOIN: B flag */
	__u8 outcome;           /* ADD_SUBFLOW: enum emptcp_add_subflow_outcome */
	__u8 _pad;
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_event) != 96);

/* Packet counters of an entry program, indexed by enum emptcp_entry_counter. */
enum emptcp_entry_counter {
	EMPTCP_CNT_SEEN = 0,     /* every packet the entry ran on: not_tcp + malformed +
	                          * fragment + tcp + quick_tcp + quick_mptcp, summed by
	                          * the reader (one map update less per packet) */
	EMPTCP_CNT_NOT_TCP,      /* left at once: not IPv4/IPv6 TCP */
	EMPTCP_CNT_MALFORMED,    /* headers truncated or inconsistent */
	EMPTCP_CNT_FRAGMENT,     /* IP fragments: passed untouched */
	EMPTCP_CNT_TCP,          /* TCP packets parsed */
	EMPTCP_CNT_MPTCP,        /* ... of which carry an MPTCP option */
	EMPTCP_CNT_FLOW_MAP_FULL,/* flow stats update failed */
	EMPTCP_CNT_NO_POLICY,    /* TCP, but no rule of this generation matched */
	EMPTCP_CNT_MATCHED,      /* a rule matched and its action chain ran */
	EMPTCP_CNT_MEMO_OVERFLOW,/* more candidate rules than a flow memo holds */
	EMPTCP_CNT_MISSING_CHAIN,/* a rule named a chain this generation lacks: must stay 0 */
	EMPTCP_CNT_MISSING_PLUGIN,/* a chain's plugin slot was empty: must stay 0 */
	EMPTCP_CNT_CT_CONNECTION, /* MPTCP connections learned (tokens derived) */
	EMPTCP_CNT_CT_SUBFLOW,    /* subflows learned (MP_CAPABLE or MP_JOIN SYN) */
	EMPTCP_CNT_CT_JOIN_UNKNOWN,/* MP_JOIN SYN whose token no tracked connection has */
	EMPTCP_CNT_CT_FULL,       /* a tracking table refused an entry */
	EMPTCP_CNT_CT_CLOSED,     /* subflows forgotten (FIN both ways, RST, MP_TCPRST, MP_FASTCLOSE) */
	EMPTCP_CNT_EVENTS_LOST,   /* events the ring buffer had no room for */
	EMPTCP_CNT_ADDR_KEPT,     /* blk_subflow: stripped ADD_ADDRs kept for add_subflow */
	EMPTCP_CNT_ADDR_STORE_FULL,/* the ADD_ADDR store refused an entry */
	EMPTCP_CNT_ADDR_CARRIED,  /* add_subflow: kept ADD_ADDRs put back into a packet */
	EMPTCP_CNT_CT_FALLBACK,   /* subflows forgotten: their SYN/ACK carried no MPTCP handshake */
	EMPTCP_CNT_PRIO_SENT,     /* set_backup: MP_PRIO options inserted */
	EMPTCP_CNT_PRIO_QUOTA_FULL,/* set_backup's quota map refused an entry: packet unchanged */
	EMPTCP_CNT_CT_FALLBACK_LATE,/* subflows forgotten: fallback after the handshake (infinite
				     * mapping, or MP_FAIL without RST; RFC 8684 section 3.7) */
	EMPTCP_CNT_QUICK_TCP,     /* TCP passed on its flow's memo, options not walked (the
	                           * quick pass, bpf/lib/memo.h); the reader adds both
	                           * quick counters to tcp and no_policy */
	EMPTCP_CNT_QUICK_MPTCP,   /* the same, of a flow whose last walked packet carried
	                           * an MPTCP option */
	EMPTCP_CNT_PAGED,         /* TC: skbs with data in fragments (GSO, GRO) */
	EMPTCP_CNT_PULLED,        /* ... whose headers or options were not all linear: pulled in */
	EMPTCP_CNT__MAX,
};

/*
 * Policy engine configuration (docs/engine.md). One generation of one
 * attachment is one loaded program whose .rodata holds struct emptcp_config:
 * the verifier sees it as constants and prunes every operator, shape and
 * chain the generation does not use.
 */
enum emptcp_limits {
	EMPTCP_SHAPES_MAX = 8,      /* distinct flow-key shapes per generation */
	EMPTCP_CHAINS_MAX = 16,     /* action chains per generation */
	EMPTCP_CHAIN_OPS_MAX = 16,  /* operators per action chain */
	EMPTCP_RULE_SLOTS = 4,      /* rules sharing one flow key in one shape */
	EMPTCP_MEMO_MAX = 8,        /* candidate rules remembered per flow */
	EMPTCP_OP_REASONS = 10,     /* skip/error reasons counted per operator */
	EMPTCP_PLUGIN_SLOTS = 4,    /* plugin slots per entry program */
};

/* Built-in operators of an action chain. */
enum emptcp_op_kind {
	EMPTCP_OP_NONE = 0,
	EMPTCP_OP_COUNT = 1,     /* no effect beyond its hit counter */
	EMPTCP_OP_SET_MARK = 2,  /* TC: skb->mark = arg32 */
	EMPTCP_OP_DROP = 3,      /* drops the packet; ends the chain */
	EMPTCP_OP_PLUGIN = 4,    /* tail-calls plugin slot arg32, resumes after it (plugin.h) */
	EMPTCP_OP_RATE_LIMIT = 5, /* clamps the advertised window (never raises it): arg32 = enum
	                           * emptcp_rate_limit_arg form; arg64 = bytes, or bit/s */
	EMPTCP_OP_GET_CONNECT = 6, /* event with MP_CAPABLE keys and tokens */
	EMPTCP_OP_GET_SUBFLOW = 7, /* event on each MPTCP SYN: join token, nonce, address id, index */
	EMPTCP_OP_REDIRECT = 8,  /* TC: out of ifindex arg32 (bpf_redirect_neigh); ends the chain */
	EMPTCP_OP_RECORD = 9,    /* per-subflow metrics into emptcp_record */
	EMPTCP_OP_BLK_SUBFLOW = 10, /* strips ADD_ADDR; arg32 = 1: drops MP_JOIN SYNs too */
	EMPTCP_OP_SET_BACKUP = 11, /* adds MP_PRIO: arg32 = enum emptcp_set_backup_arg */
	EMPTCP_OP_ADD_SUBFLOW = 12, /* arms the connection's kept ADD_ADDRs to be put back once */
	EMPTCP_OP__MAX,
};

/*
 * set_backup's arg32: B in bit 0, and how many packets per subflow and
 * direction carry MP_PRIO in one generation (1..MAX) from bit 8.
 */
enum emptcp_set_backup_arg {
	EMPTCP_SET_BACKUP_B = 1,
	EMPTCP_SET_BACKUP_PACKETS_SHIFT = 8,
	EMPTCP_SET_BACKUP_PACKETS_DEFAULT = 3,
	EMPTCP_SET_BACKUP_PACKETS_MAX = 255,
};

/*
 * rate_limit's arg32: what arg64 is. The rate form's window is rate x the
 * subflow's RTT (record's measurement), never below FLOOR_BYTES (two
 * Ethernet MSS: a window below that stalls delayed ACKs and slow start
 * instead of pacing).
 */
enum emptcp_rate_limit_arg {
	EMPTCP_RATE_LIMIT_WINDOW = 0,      /* arg64: the cap in bytes */
	EMPTCP_RATE_LIMIT_RATE = 1,        /* arg64: the rate in bit/s */
	EMPTCP_RATE_LIMIT_FLOOR_BYTES = 2920,
};

/* What a plugin returns to the chain (bpf/include/emptcp/plugin.h). */
enum emptcp_plugin_verdict {
	EMPTCP_PLUGIN_CONTINUE = 0,
	EMPTCP_PLUGIN_STOP = 1,
	EMPTCP_PLUGIN_DROP = 2,
	EMPTCP_PLUGIN__MAX,
};

struct emptcp_op {
	__u32 kind;  /* enum emptcp_op_kind */
	__u32 arg32;
	__u64 arg64;
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_op) != 16);

struct emptcp_chain {
	__u32 len;
	__u32 _pad;
	struct emptcp_op ops[EMPTCP_CHAIN_OPS_MAX];
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_chain) != 8 + 16 * 16);

/*
 * Which flow-invariant fields a rule key compares. Local and remote follow
 * the hook: at ingress hooks the packet's destination is local, at egress its
 * source.
 */
struct emptcp_shape {
	__u8 family;       /* AF_INET or AF_INET6 */
	__u8 local_plen;   /* prefix length compared, 0 = any address */
	__u8 remote_plen;
	__u8 local_port;   /* 1 = compared */
	__u8 remote_port;
	__u8 token;        /* 1 = the connection's token compared (conntrack) */
	__u8 index;        /* 1 = the subflow's index compared (conntrack) */
	__u8 _pad;
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_shape) != 8);

struct emptcp_config {
	__u32 abi_version;
	__u32 generation;  /* > 0; flows remember rules per generation */
	__u32 n_shapes;
	__u32 n_chains;
	__u32 uses_conntrack; /* a shape or rule reads connection tracking */
	/* chain * EMPTCP_CHAIN_OPS_MAX + op + 1 of the first add_subflow, whose
	 * counters the carrier step uses; 0: no add_subflow, no carrier step. */
	__u32 add_subflow_op;
	/* Count packets and bytes per flow (emptcp_flows): a hash lookup per
	 * TCP packet, half of the entry's cost, so only when asked. */
	__u32 account_flows;
	/* Let flows no rule selects pass on their headers, options not walked
	 * (the quick pass, bpf/lib/memo.h). */
	__u32 quick_pass;
	struct emptcp_shape shapes[EMPTCP_SHAPES_MAX];
	struct emptcp_chain chains[EMPTCP_CHAINS_MAX];
};

/* Key of emptcp_rules: the packet's fields masked by one shape. */
struct emptcp_rule_key {
	__u8 shape;
	__u8 family;
	__u8 index;        /* subflow index; 0xff when unknown */
	__u8 _pad;
	__be16 local_port;
	__be16 remote_port;
	__u32 token;       /* connection token; 0 when unknown */
	__u8 local[16];
	__u8 remote[16];
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_rule_key) != 44);

/* Rules whose flow-invariant part is one key; rule ids rank rules: the lower
 * id wins (priority, then file order). */
struct emptcp_rule_set {
	__u32 n;
	__u32 ids[EMPTCP_RULE_SLOTS];
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_rule_set) != 20);

/* Per-packet part of a rule, and its action chain. */
struct emptcp_rule {
	__u32 chain;
	__u32 type_require;  /* enum emptcp_pkt_type bits that must all be set */
	__u32 type_forbid;   /* bits that must all be clear */
	__u32 seq_kind;      /* enum emptcp_seq_kind */
	__u64 seq_lo;        /* sequence range [lo, hi), relative to the sender's start */
	__u64 seq_hi;
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_rule) != 32);

/* What a sequence selector measures (offsets from the sender's start). */
enum emptcp_seq_kind {
	EMPTCP_SEQ_NONE = 0,
	EMPTCP_SEQ_SUBFLOW = 1,  /* TCP sequence number minus the subflow's ISN + 1 */
	EMPTCP_SEQ_DATA = 2,     /* DSS mapping's DSN minus the sender's IDSN + 1 */
};

/* Packet-type bits a rule tests: MPTCP subtypes carried, TCP flags, and
 * derived facts. */
enum emptcp_pkt_type {
	EMPTCP_PT_MP_CAPABLE = 1 << 0,  /* bit n < 9: MPTCP subtype n carried */
	EMPTCP_PT_MP_JOIN = 1 << 1,
	EMPTCP_PT_DSS = 1 << 2,
	EMPTCP_PT_ADD_ADDR = 1 << 3,
	EMPTCP_PT_REMOVE_ADDR = 1 << 4,
	EMPTCP_PT_MP_PRIO = 1 << 5,
	EMPTCP_PT_MP_FAIL = 1 << 6,
	EMPTCP_PT_MP_FASTCLOSE = 1 << 7,
	EMPTCP_PT_MP_TCPRST = 1 << 8,
	EMPTCP_PT_FIN = 1 << 16,        /* bits 16..23: TCP flags byte */
	EMPTCP_PT_SYN = 1 << 17,
	EMPTCP_PT_RST = 1 << 18,
	EMPTCP_PT_PSH = 1 << 19,
	EMPTCP_PT_ACK = 1 << 20,
	EMPTCP_PT_URG = 1 << 21,
	EMPTCP_PT_ECE = 1 << 22,
	EMPTCP_PT_CWR = 1 << 23,
	EMPTCP_PT_PAYLOAD = 1 << 24,    /* carries TCP payload */
};

/*
 * record: metrics of one subflow (key: struct emptcp_ct_key), per direction
 * of data: [0] sent by endpoint lo, [1] by endpoint hi.
 */
struct emptcp_record {
	__u64 packets[2];
	__u64 payload_bytes[2];
	__u64 ts_seen_ns[2];    /* when ts_val[d] was first seen; 0 once echoed */
	__u32 ts_val[2];        /* the latest new TSval from each side */
	__u32 srtt_us[2];       /* smoothed hook->receiver->hook RTT of d's data (1/8 gain) */
	__u32 rtt_samples[2];
	__u64 data_sent[2];     /* end of the highest DSS mapping, offset from d's IDSN + 1 */
	__u64 data_acked[2];    /* highest DATA_ACK sent by d, offset from the peer's IDSN + 1 */
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_record) != 104);

/*
 * The ADD_ADDRs blk_subflow stripped, kept per connection for add_subflow
 * (map emptcp_addr_store, key: the connection's id, the listener's token).
 * One slot per announcing endpoint: [0] the listener's, [1] the
 * initiator's; a slot holds the latest ADD_ADDR its endpoint sent (a
 * retransmission overwrites it). `state` changes only atomically (compare
 * and exchange), so one CPU alone writes the bytes, and one alone puts them
 * back, once.
 */
enum emptcp_addr_state {
	EMPTCP_ADDR_EMPTY = 0,
	EMPTCP_ADDR_KEPT = 1,      /* opt holds an ADD_ADDR */
	EMPTCP_ADDR_WRITING = 2,   /* a CPU is writing opt */
	EMPTCP_ADDR_CARRYING = 3,  /* a CPU is putting it into a packet */
	EMPTCP_ADDR_DONE = 4,      /* put back: never again for this connection */
};

struct emptcp_addr_slot {
	__u32 state;           /* enum emptcp_addr_state */
	__u8 len;              /* of opt: 16, 18 (IPv4), 28, 30 (IPv6); with HMAC */
	__u8 _pad;
	__u16 kept;            /* how many times an ADD_ADDR was kept here */
	__u64 announcer_idsn;  /* IDSN of the endpoint that sent it: its direction */
	__u8 opt[32];          /* the option as on the wire */
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_addr_slot) != 48);

struct emptcp_addr_kept {
	__u64 idsn_listener;   /* which connection (a reused token is another one) */
	__u32 armed;           /* bit d: add_subflow fired, slot d goes back */
	__u32 reported;        /* bit n: an event of outcome n was sent */
	struct emptcp_addr_slot slot[2];
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_addr_kept) != 112);

/* Lookups of one rule-key shape (the selector stages' hits and misses, in the
 * engine's terms): counted when a flow is classified, not on every packet. */
struct emptcp_shape_stats {
	__u64 lookups;
	__u64 hits;
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_shape_stats) != 16);

/* Counters of one operator of one chain (per-CPU; user space sums). */
struct emptcp_op_stats {
	__u64 hits;
	__u64 reasons[EMPTCP_OP_REASONS];  /* enum emptcp_op_reason */
};
EMPTCP_BUILD_BUG_ON(sizeof(struct emptcp_op_stats) != 8 + 8 * EMPTCP_OP_REASONS);

enum emptcp_op_reason {
	EMPTCP_REASON_WRONG_HOOK = 0,  /* the operator has no effect at this hook */
	EMPTCP_REASON_PLUGIN_STOP = 1, /* a plugin ended the chain (no match) */
	EMPTCP_REASON_PLUGIN_BAD_VERDICT = 2, /* a plugin returned an unknown value: chain goes on */
	EMPTCP_REASON_PLUGIN_MISSING = 3, /* the plugin slot was empty: chain went on without it */
	EMPTCP_REASON_WSCALE_UNKNOWN = 4, /* the sender's SYN (window scale) was not seen: unchanged */
	EMPTCP_REASON_NO_ACK = 5,         /* no ACK flag: the window means nothing; unchanged */
	EMPTCP_REASON_REDIRECT_FAILED = 6, /* the kernel refused the redirect: the packet went on */
	EMPTCP_REASON_EDIT_REFUSED = 7,    /* an option edit was refused (malformed, no room): unchanged */
	EMPTCP_REASON_NOTHING_KEPT = 8,    /* add_subflow: no ADD_ADDR kept for the connection */
	EMPTCP_REASON_RTT_UNKNOWN = 9,     /* rate_limit (rate): no RTT measured yet by record: unchanged */
	EMPTCP_REASON__MAX = EMPTCP_OP_REASONS,
};

#endif /* __EMPTCP_ABI_H */
