//! Policies: selector chains, action chains, and their compilation into one
//! generation of the data plane (docs/engine.md has the exact semantics).
//!
//! The shape follows the paper's API: a [`SelectorChain`] lists selector
//! stages combined left to right with AND / OR; a [`Policy`] gives values for
//! some stages ([`Policy::select`]) and names an [`ActionChain`]; a
//! [`PolicySet`] is everything one attachment runs.
//!
//! ```
//! use emptcp::policy::{Action, ActionChain, Combine, Policy, PolicySet, Selector, SelectorChain, SelectorKind};
//! use emptcp::Hook;
//!
//! let mut sc = SelectorChain::new();
//! sc.add(SelectorKind::IpPair, Combine::And).add(SelectorKind::Port, Combine::And);
//! let mut ac = ActionChain::new();
//! ac.add(Action::Count).add(Action::SetMark(7));
//! let mut p = Policy::new("web", ac);
//! p.select(0, Selector::IpPair { local: "10.200.0.2".parse()?, remote: "10.200.1.0/24".parse()? })
//!     .select(1, Selector::Port { local: None, remote: Some(8080) });
//! let set = PolicySet { selectors: sc, policies: vec![p] };
//! let compiled = set.compile(Hook::TcEgress)?;
//! assert_eq!(compiled.rule_count(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::Hook;
use crate::abi::{
    self, emptcp_chain, emptcp_config, emptcp_op, emptcp_op_kind, emptcp_pkt_type,
    emptcp_rate_limit_arg, emptcp_rule, emptcp_rule_key, emptcp_rule_set, emptcp_seq_kind,
    emptcp_set_backup_arg, emptcp_shape,
};

/// Limits of one generation, from `enum emptcp_limits` in abi.h.
pub mod limits {
    use crate::abi::emptcp_limits as l;
    /// Distinct rule-key shapes.
    pub const SHAPES: usize = l::EMPTCP_SHAPES_MAX.0 as usize;
    /// Distinct action chains.
    pub const CHAINS: usize = l::EMPTCP_CHAINS_MAX.0 as usize;
    /// Operators per action chain.
    pub const CHAIN_OPS: usize = l::EMPTCP_CHAIN_OPS_MAX.0 as usize;
    /// Rules that may share one flow key in one shape.
    pub const RULE_SLOTS: usize = l::EMPTCP_RULE_SLOTS.0 as usize;
    /// Selector stages in a selector chain (as many as operators in a chain).
    pub const STAGES: usize = CHAIN_OPS;
    /// Skip reasons counted per operator.
    pub const OP_REASONS: usize = l::EMPTCP_OP_REASONS.0 as usize;
    /// Plugin slots per entry program.
    pub const PLUGIN_SLOTS: usize = l::EMPTCP_PLUGIN_SLOTS.0 as usize;
    /// Conjunctive terms one policy's expression may expand to.
    pub const TERMS_PER_POLICY: usize = 64;
    /// set_backup's packets per subflow and direction when none is given.
    pub const SET_BACKUP_PACKETS_DEFAULT: u8 =
        crate::abi::emptcp_set_backup_arg::EMPTCP_SET_BACKUP_PACKETS_DEFAULT.0 as u8;
    /// set_backup's most packets per subflow and direction.
    pub const SET_BACKUP_PACKETS_MAX: u8 =
        crate::abi::emptcp_set_backup_arg::EMPTCP_SET_BACKUP_PACKETS_MAX.0 as u8;
    /// rate_limit's highest rate, bit/s (the data plane's arithmetic stays
    /// within 64 bits up to 2^37).
    pub const RATE_LIMIT_BPS_MAX: u64 = 100_000_000_000;
    /// The least window the rate form of rate_limit sets, in bytes.
    pub const RATE_LIMIT_FLOOR_BYTES: u32 =
        crate::abi::emptcp_rate_limit_arg::EMPTCP_RATE_LIMIT_FLOOR_BYTES.0;
}

/// How a stage combines with everything left of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Combine {
    /// Both must hold.
    And,
    /// Either may hold.
    Or,
}

/// The kind of a selector stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SelectorKind {
    /// A subflow's 4-tuple.
    Subflow,
    /// The (local, remote) address pair, exact or prefix.
    IpPair,
    /// The source address, exact or prefix.
    Src,
    /// The destination address, exact or prefix.
    Dst,
    /// The local and/or remote TCP port.
    Port,
    /// What the packet carries (MPTCP subtypes, TCP flags, payload).
    PacketType,
    /// Where the packet's bytes sit in its subflow's or connection's stream.
    Sequence,
    /// The MPTCP connection (token) and the subflow's index within it.
    Connection,
}

impl SelectorKind {
    /// The selector's name in policies.
    pub fn name(self) -> &'static str {
        match self {
            SelectorKind::Subflow => "subflow",
            SelectorKind::IpPair => "ip_pair",
            SelectorKind::Src => "src",
            SelectorKind::Dst => "dst",
            SelectorKind::Port => "port",
            SelectorKind::PacketType => "packet_type",
            SelectorKind::Sequence => "sequence",
            SelectorKind::Connection => "connection",
        }
    }
}

/// Ordered selector stages; the first stage's [`Combine`] is not used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectorChain {
    stages: Vec<(SelectorKind, Combine)>,
}

impl SelectorChain {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a stage.
    pub fn add(&mut self, kind: SelectorKind, combine: Combine) -> &mut Self {
        self.stages.push((kind, combine));
        self
    }

    /// The stages.
    pub fn stages(&self) -> &[(SelectorKind, Combine)] {
        &self.stages
    }
}

/// An IPv4 or IPv6 prefix; an address alone is a full-length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// The network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl Prefix {
    /// A prefix, refusing a length beyond the family's or host bits set.
    pub fn new(addr: IpAddr, len: u8) -> Result<Prefix, String> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(format!("prefix length {len} is longer than {max}"));
        }
        let p = Prefix { addr, len };
        if p.masked_bytes() != addr_bytes(addr) {
            return Err(format!("{addr}/{len} has host bits set"));
        }
        Ok(p)
    }

    fn max_len(&self) -> u8 {
        if self.addr.is_ipv4() { 32 } else { 128 }
    }

    /// The address as 16 key bytes (IPv4 in the first 4), masked.
    fn masked_bytes(&self) -> [u8; 16] {
        mask_bytes(addr_bytes(self.addr), self.len)
    }

    /// Whether `addr` lies inside the prefix.
    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        self.contains(&Prefix { addr, len })
    }

    fn contains(&self, other: &Prefix) -> bool {
        self.addr.is_ipv4() == other.addr.is_ipv4()
            && self.len <= other.len
            && mask_bytes(addr_bytes(other.addr), self.len) == self.masked_bytes()
    }
}

impl FromStr for Prefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{s}' is not an address or prefix"))?;
        let len = match len {
            None => {
                if addr.is_ipv4() {
                    32
                } else {
                    128
                }
            }
            Some(l) => l
                .parse()
                .map_err(|_| format!("'{s}': bad prefix length '{l}'"))?,
        };
        Prefix::new(addr, len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn addr_bytes(addr: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match addr {
        IpAddr::V4(a) => out[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => out = a.octets(),
    }
    out
}

fn mask_bytes(mut b: [u8; 16], len: u8) -> [u8; 16] {
    for (i, byte) in b.iter_mut().enumerate() {
        let keep = (len as usize).saturating_sub(i * 8).min(8);
        *byte &= if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
    }
    b
}

/// Kinds of packets a `packet_type` stage picks (any of the listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// A SYN (not SYN/ACK) with MP_CAPABLE: a new MPTCP connection.
    MpCapableSyn,
    /// A SYN (not SYN/ACK) with MP_JOIN: a new subflow.
    MpJoinSyn,
    /// Any packet with MP_CAPABLE.
    MpCapable,
    /// Any packet with MP_JOIN.
    MpJoin,
    /// Any packet with DSS.
    Dss,
    /// Carries ADD_ADDR.
    AddAddr,
    /// Carries REMOVE_ADDR.
    RemoveAddr,
    /// Carries MP_PRIO.
    MpPrio,
    /// Carries MP_FAIL.
    MpFail,
    /// Carries MP_FASTCLOSE.
    MpFastclose,
    /// Carries MP_TCPRST.
    MpTcpRst,
    /// TCP SYN set (SYN or SYN/ACK).
    Syn,
    /// TCP FIN set.
    Fin,
    /// TCP RST set.
    Rst,
    /// ACK without payload, SYN, FIN or RST.
    PureAck,
    /// Carries TCP payload.
    Data,
}

impl PacketType {
    /// Every packet type, for name tables.
    pub const ALL: [PacketType; 16] = [
        PacketType::MpCapableSyn,
        PacketType::MpJoinSyn,
        PacketType::MpCapable,
        PacketType::MpJoin,
        PacketType::Dss,
        PacketType::AddAddr,
        PacketType::RemoveAddr,
        PacketType::MpPrio,
        PacketType::MpFail,
        PacketType::MpFastclose,
        PacketType::MpTcpRst,
        PacketType::Syn,
        PacketType::Fin,
        PacketType::Rst,
        PacketType::PureAck,
        PacketType::Data,
    ];

    /// The name in policies.
    pub fn name(self) -> &'static str {
        match self {
            PacketType::MpCapableSyn => "mp_capable_syn",
            PacketType::MpJoinSyn => "mp_join_syn",
            PacketType::MpCapable => "mp_capable",
            PacketType::MpJoin => "mp_join",
            PacketType::Dss => "dss",
            PacketType::AddAddr => "add_addr",
            PacketType::RemoveAddr => "remove_addr",
            PacketType::MpPrio => "mp_prio",
            PacketType::MpFail => "mp_fail",
            PacketType::MpFastclose => "mp_fastclose",
            PacketType::MpTcpRst => "mp_tcprst",
            PacketType::Syn => "syn",
            PacketType::Fin => "fin",
            PacketType::Rst => "rst",
            PacketType::PureAck => "pure_ack",
            PacketType::Data => "data",
        }
    }

    /// (bits that must be set, bits that must be clear) of `enum emptcp_pkt_type`.
    fn test(self) -> (u32, u32) {
        use emptcp_pkt_type as t;
        let (syn, ack) = (t::EMPTCP_PT_SYN.0, t::EMPTCP_PT_ACK.0);
        match self {
            PacketType::MpCapableSyn => (t::EMPTCP_PT_MP_CAPABLE.0 | syn, ack),
            PacketType::MpJoinSyn => (t::EMPTCP_PT_MP_JOIN.0 | syn, ack),
            PacketType::MpCapable => (t::EMPTCP_PT_MP_CAPABLE.0, 0),
            PacketType::MpJoin => (t::EMPTCP_PT_MP_JOIN.0, 0),
            PacketType::Dss => (t::EMPTCP_PT_DSS.0, 0),
            PacketType::AddAddr => (t::EMPTCP_PT_ADD_ADDR.0, 0),
            PacketType::RemoveAddr => (t::EMPTCP_PT_REMOVE_ADDR.0, 0),
            PacketType::MpPrio => (t::EMPTCP_PT_MP_PRIO.0, 0),
            PacketType::MpFail => (t::EMPTCP_PT_MP_FAIL.0, 0),
            PacketType::MpFastclose => (t::EMPTCP_PT_MP_FASTCLOSE.0, 0),
            PacketType::MpTcpRst => (t::EMPTCP_PT_MP_TCPRST.0, 0),
            PacketType::Syn => (syn, 0),
            PacketType::Fin => (t::EMPTCP_PT_FIN.0, 0),
            PacketType::Rst => (t::EMPTCP_PT_RST.0, 0),
            PacketType::PureAck => (
                ack,
                t::EMPTCP_PT_PAYLOAD.0 | syn | t::EMPTCP_PT_FIN.0 | t::EMPTCP_PT_RST.0,
            ),
            PacketType::Data => (t::EMPTCP_PT_PAYLOAD.0, 0),
        }
    }
}

impl FromStr for PacketType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PacketType::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = PacketType::ALL.iter().map(|t| t.name()).collect();
                format!(
                    "unknown packet type '{s}': expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// The value a policy gives a selector stage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// Exactly this 4-tuple (local and remote as the hook sees them).
    Subflow {
        /// Local address and port.
        local: SocketAddr,
        /// Remote address and port.
        remote: SocketAddr,
    },
    /// Local and remote address prefixes.
    IpPair {
        /// Local prefix.
        local: Prefix,
        /// Remote prefix.
        remote: Prefix,
    },
    /// Source address prefix.
    Src(Prefix),
    /// Destination address prefix.
    Dst(Prefix),
    /// Local and/or remote port (at least one).
    Port {
        /// Local port.
        local: Option<u16>,
        /// Remote port.
        remote: Option<u16>,
    },
    /// Any of these packet types.
    PacketType(Vec<PacketType>),
    /// Packets whose first payload byte lies in `[start, end)` of a stream:
    /// the subflow's (TCP sequence number relative to its SYN) or the
    /// connection's (DSS data sequence number relative to the sender's
    /// IDSN; only packets carrying a DSS mapping). Learned from the
    /// handshakes the data plane saw; subflows it did not see never match.
    Sequence {
        /// Which stream.
        stream: Stream,
        /// First byte offset (inclusive).
        start: u64,
        /// Last byte offset (exclusive); `u64::MAX` for "to the end".
        end: u64,
    },
    /// Subflows of one MPTCP connection, named by either side's token
    /// (`ip mptcp monitor`, MPTCP_INFO), and/or the subflow's index in its
    /// connection (0: the MP_CAPABLE subflow; then joins in the order their
    /// SYNs passed the hook). At least one of the two.
    Connection {
        /// A token of the connection.
        token: Option<u32>,
        /// The subflow's index.
        subflow_index: Option<u8>,
    },
}

/// The byte stream a [`Selector::Sequence`] measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The subflow's TCP byte stream.
    Subflow,
    /// The connection's data stream (RFC 8684 data sequence numbers).
    Data,
}

impl Selector {
    /// The stage kind this value belongs to.
    pub fn kind(&self) -> SelectorKind {
        match self {
            Selector::Subflow { .. } => SelectorKind::Subflow,
            Selector::IpPair { .. } => SelectorKind::IpPair,
            Selector::Src(_) => SelectorKind::Src,
            Selector::Dst(_) => SelectorKind::Dst,
            Selector::Port { .. } => SelectorKind::Port,
            Selector::PacketType(_) => SelectorKind::PacketType,
            Selector::Sequence { .. } => SelectorKind::Sequence,
            Selector::Connection { .. } => SelectorKind::Connection,
        }
    }
}

/// A built-in actor with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Counts the packet (its hit counter is its only effect).
    Count,
    /// Sets the skb mark (TC hooks only), for policy routing.
    SetMark(u32),
    /// Drops the packet; later operators do not run.
    Drop,
    /// Clamps (never raises) the window the packet advertises to this many
    /// bytes, honouring the sender's window scale (needs its SYN seen by the
    /// data plane). Slows the packet's receiver: put it on the ACKs going to
    /// the data sender of the subflow.
    RateLimit {
        /// Window cap in bytes (at least 1).
        window_bytes: u32,
    },
    /// rate_limit's rate form: clamps (never raises) the window the packet
    /// advertises to `bits_per_second` x the subflow's RTT as `record`
    /// measures it (so `record` must see both directions of the subflow),
    /// never below [`limits::RATE_LIMIT_FLOOR_BYTES`]. Until the RTT is
    /// known, packets pass unchanged (`rtt_unknown`).
    RateLimitRate {
        /// The rate, 1 to [`limits::RATE_LIMIT_BPS_MAX`] bit/s.
        bits_per_second: u64,
    },
    /// Sends the packet out of interface `ifindex` (TC: `bpf_redirect_neigh`,
    /// the neighbour of the packet's destination on that link supplies the
    /// MAC addresses; XDP: a FIB lookup through that link supplies them,
    /// `bpf_redirect`), e.g. to put a subflow on another physical link. Ends
    /// the chain.
    Redirect {
        /// Interface index, in the namespace of the attachment.
        ifindex: u32,
    },
    /// Strips every ADD_ADDR so that the packet's receiver learns of no
    /// further address; with `refuse_joins`, also drops MP_JOIN SYNs.
    BlkSubflow {
        /// Drop MP_JOIN SYNs (a join's SYN cannot be stripped: it would
        /// become a stray plain TCP connection).
        refuse_joins: bool,
    },
    /// Adds MP_PRIO to the packet (not to SYNs, nor beside the sender's own
    /// MP_PRIO): its receiver then treats the subflow the packet travels on
    /// as a backup (`backup: true`: used only when no regular subflow is left)
    /// or as regular again.
    /// MP_PRIO goes into at most `packets` packets per subflow and direction
    /// under one generation (a policy change starts afresh), preferring
    /// packets without payload (one with payload only where it has NOP room).
    SetBackup {
        /// The B flag to send.
        backup: bool,
        /// How many packets carry it, 1 to
        /// [`limits::SET_BACKUP_PACKETS_MAX`] (files: default
        /// [`limits::SET_BACKUP_PACKETS_DEFAULT`]).
        packets: u8,
    },
    /// Puts the ADD_ADDRs blk_subflow stripped from this packet's connection
    /// back, once: the next packet of the connection that travels the way the
    /// ADD_ADDR did and has option room carries it (any attachment whose
    /// generation has add_subflow, e.g. the same policy set on both
    /// directions' links). Its receiver then learns the address and may open
    /// a subflow to it.
    AddSubflow,
    /// Per-subflow metrics: packets and payload bytes per direction, RTT from
    /// TCP timestamps, data-sequence progress (`Dataplane::records`).
    Record,
    /// Sends an event with the keys of an MP_CAPABLE option that carries
    /// them, and their tokens.
    GetConnect,
    /// Sends an event on each MPTCP SYN: MP_CAPABLE, or MP_JOIN with its
    /// token, random number and address id, and the subflow's index.
    GetSubflow,
    /// Runs the plugin given for this slot when the generation is loaded
    /// (`Dataplane::load_generation`); the chain resumes after it unless it
    /// stops or drops.
    Plugin(u8),
}

impl Action {
    /// The actor's name in policies.
    pub fn name(self) -> &'static str {
        match self {
            Action::Count => "count",
            Action::SetMark(_) => "set_mark",
            Action::Drop => "drop",
            Action::Plugin(_) => "plugin",
            Action::RateLimit { .. } | Action::RateLimitRate { .. } => "rate_limit",
            Action::Redirect { .. } => "redirect",
            Action::Record => "record",
            Action::BlkSubflow { .. } => "blk_subflow",
            Action::SetBackup { .. } => "set_backup",
            Action::AddSubflow => "add_subflow",
            Action::GetConnect => "get_connect",
            Action::GetSubflow => "get_subflow",
        }
    }

    /// Whether the actor can follow one that changed the option layout: the
    /// chain's parse is not redone after an edit, so actors that read options
    /// or the parse (offsets of DSS, timestamps, ...) must come before it.
    fn safe_after_edit(self) -> bool {
        matches!(
            self,
            Action::Count
                | Action::SetMark(_)
                | Action::Drop
                | Action::Redirect { .. }
                | Action::BlkSubflow { .. }
                | Action::SetBackup { .. }
                | Action::AddSubflow
        )
    }

    /// Whether the actor moves the packet's options (add_subflow: its carrier
    /// step, which runs after the chain; counted as an editor all the same,
    /// so that the one rule holds: option readers before editors).
    fn edits_options(self) -> bool {
        matches!(
            self,
            Action::BlkSubflow { .. } | Action::SetBackup { .. } | Action::AddSubflow
        )
    }

    /// What is wrong with the actor's parameters, if anything.
    fn bad_parameter(self) -> Option<String> {
        match self {
            Action::RateLimit { window_bytes: 0 } => {
                Some("rate_limit needs a window of at least 1 byte".into())
            }
            Action::RateLimitRate { bits_per_second } => (!(1..=limits::RATE_LIMIT_BPS_MAX)
                .contains(&bits_per_second))
            .then(|| {
                format!(
                    "rate_limit: a rate of {bits_per_second} bit/s is out of range: expected 1 to {}",
                    limits::RATE_LIMIT_BPS_MAX
                )
            }),
            Action::SetBackup { packets, .. } => (!(1..=limits::SET_BACKUP_PACKETS_MAX)
                .contains(&packets))
            .then(|| {
                format!(
                    "set_backup: {packets} packets is out of range: expected 1 to {}",
                    limits::SET_BACKUP_PACKETS_MAX
                )
            }),
            _ => None,
        }
    }

    fn valid_at(self, hook: Hook) -> bool {
        !matches!((self, hook), (Action::SetMark(_), Hook::Xdp))
    }

    fn op(self) -> emptcp_op {
        use emptcp_op_kind as k;
        let (kind, arg32, arg64) = match self {
            Action::Count => (k::EMPTCP_OP_COUNT, 0, 0),
            Action::SetMark(mark) => (k::EMPTCP_OP_SET_MARK, mark, 0),
            Action::Drop => (k::EMPTCP_OP_DROP, 0, 0),
            Action::Plugin(slot) => (k::EMPTCP_OP_PLUGIN, u32::from(slot), 0),
            Action::RateLimit { window_bytes } => (
                k::EMPTCP_OP_RATE_LIMIT,
                emptcp_rate_limit_arg::EMPTCP_RATE_LIMIT_WINDOW.0,
                window_bytes.into(),
            ),
            Action::RateLimitRate { bits_per_second } => (
                k::EMPTCP_OP_RATE_LIMIT,
                emptcp_rate_limit_arg::EMPTCP_RATE_LIMIT_RATE.0,
                bits_per_second,
            ),
            Action::Redirect { ifindex } => (k::EMPTCP_OP_REDIRECT, ifindex, 0),
            Action::Record => (k::EMPTCP_OP_RECORD, 0, 0),
            Action::BlkSubflow { refuse_joins } => {
                (k::EMPTCP_OP_BLK_SUBFLOW, refuse_joins.into(), 0)
            }
            Action::SetBackup { backup, packets } => {
                let b = emptcp_set_backup_arg::EMPTCP_SET_BACKUP_B.0 * u32::from(backup);
                let n =
                    u32::from(packets) << emptcp_set_backup_arg::EMPTCP_SET_BACKUP_PACKETS_SHIFT.0;
                let a = b | n;
                (k::EMPTCP_OP_SET_BACKUP, a, 0)
            }
            Action::AddSubflow => (k::EMPTCP_OP_ADD_SUBFLOW, 0, 0),
            Action::GetConnect => (k::EMPTCP_OP_GET_CONNECT, 0, 0),
            Action::GetSubflow => (k::EMPTCP_OP_GET_SUBFLOW, 0, 0),
        };
        emptcp_op {
            kind: kind.0,
            arg32,
            arg64,
        }
    }
}

/// Ordered actors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ActionChain {
    actions: Vec<Action>,
}

impl ActionChain {
    /// An empty chain (a policy with it matches and does nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an actor.
    pub fn add(&mut self, action: Action) -> &mut Self {
        self.actions.push(action);
        self
    }

    /// The actors.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }
}

/// Values for selector stages, an action chain and a priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Unique name within its set.
    pub name: String,
    /// Higher wins; equal priorities go by position in the set.
    pub priority: i32,
    /// What runs on the packets the policy picks.
    pub actions: ActionChain,
    values: BTreeMap<usize, Selector>,
}

impl Policy {
    /// A policy with priority 0 and no stage values (it matches every TCP
    /// packet when the chain is all AND, or has no stages).
    pub fn new(name: impl Into<String>, actions: ActionChain) -> Self {
        Policy {
            name: name.into(),
            priority: 0,
            actions,
            values: BTreeMap::new(),
        }
    }

    /// Gives stage `stage` (0-based) a value.
    pub fn select(&mut self, stage: usize, value: Selector) -> &mut Self {
        self.values.insert(stage, value);
        self
    }

    /// Sets the priority.
    pub fn priority(&mut self, priority: i32) -> &mut Self {
        self.priority = priority;
        self
    }

    /// The stage values.
    pub fn values(&self) -> &BTreeMap<usize, Selector> {
        &self.values
    }
}

/// Everything one attachment runs: one selector chain and its policies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySet {
    /// The selector chain.
    pub selectors: SelectorChain,
    /// The policies, in file order.
    pub policies: Vec<Policy>,
}

/// Why a policy set cannot be compiled; names the policy and stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The policy concerned, if one.
    pub policy: Option<String>,
    /// The stage concerned, if one.
    pub stage: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.policy {
            write!(f, "policy '{p}': ")?;
        }
        if let Some(s) = self.stage {
            write!(f, "stage {s}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for PolicyError {}

fn err(policy: Option<&Policy>, stage: Option<usize>, message: impl Into<String>) -> PolicyError {
    PolicyError {
        policy: policy.map(|p| p.name.clone()),
        stage,
        message: message.into(),
    }
}

/// A policy set compiled for one hook: the generation's `.rodata` and the
/// contents of its rule maps.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub(crate) hook: Hook,
    pub(crate) config: emptcp_config,
    pub(crate) rules: Vec<(emptcp_rule_key, emptcp_rule_set)>,
    pub(crate) rule_info: Vec<emptcp_rule>,
    /// Policy (index in the set) of each rule id.
    pub(crate) rule_policy: Vec<usize>,
    pub(crate) policy_names: Vec<String>,
    /// Chain slot of each policy.
    pub(crate) policy_chain: Vec<u32>,
    /// The distinct action chains, by slot.
    pub(crate) chains: Vec<ActionChain>,
}

impl CompiledPolicy {
    /// Number of rules (conjunctive terms, per address family).
    pub fn rule_count(&self) -> usize {
        self.rule_info.len()
    }

    /// Number of distinct rule-key shapes.
    pub fn shape_count(&self) -> usize {
        self.config.n_shapes as usize
    }

    /// Number of distinct action chains.
    pub fn chain_count(&self) -> usize {
        self.config.n_chains as usize
    }

    /// The hook it was compiled for.
    pub fn hook(&self) -> Hook {
        self.hook
    }

    /// The policy names, in set order.
    pub fn policy_names(&self) -> &[String] {
        &self.policy_names
    }

    /// The chain slot a policy runs.
    pub fn chain_of(&self, policy: usize) -> Option<u32> {
        self.policy_chain.get(policy).copied()
    }

    /// The actors of chain slot `slot`.
    pub fn chain_actions(&self, slot: u32) -> &[Action] {
        self.chains.get(slot as usize).map_or(&[], |c| c.actions())
    }

    /// The plugin slots some chain uses.
    pub fn plugin_slots(&self) -> Vec<u8> {
        let mut slots: Vec<u8> = self
            .chains
            .iter()
            .flat_map(|c| c.actions())
            .filter_map(|a| match a {
                Action::Plugin(s) => Some(*s),
                _ => None,
            })
            .collect();
        slots.sort_unstable();
        slots.dedup();
        slots
    }

    /// The policy a rule id belongs to.
    pub fn policy_of_rule(&self, rule: u32) -> Option<usize> {
        self.rule_policy.get(rule as usize).copied()
    }
}

/// Flow-invariant constraints and per-packet type tests of one conjunctive term.
#[derive(Debug, Clone, Default)]
struct Term {
    local: Option<Prefix>,
    remote: Option<Prefix>,
    local_port: Option<u16>,
    remote_port: Option<u16>,
    /// (require, forbid) alternatives; empty = any packet.
    types: Vec<(u32, u32)>,
    /// Connection token: the listener's (the connection's id in the data
    /// plane); an initiator's token is matched through its connection.
    token: Option<u32>,
    subflow_index: Option<u8>,
    /// (stream, start, end) of a sequence selector.
    seq: Option<(Stream, u64, u64)>,
}

/// Combines two constraints on one field; `None` in the result's Ok means
/// the term can never match.
fn intersect(a: Option<Prefix>, b: Prefix) -> Option<Option<Prefix>> {
    match a {
        None => Some(Some(b)),
        Some(a) if a.contains(&b) => Some(Some(b)),
        Some(a) if b.contains(&a) => Some(Some(a)),
        Some(_) => None,
    }
}

fn same_port(a: Option<u16>, b: Option<u16>) -> Option<Option<u16>> {
    match (a, b) {
        (x, None) => Some(x),
        (None, y) => Some(y),
        (Some(x), Some(y)) if x == y => Some(Some(x)),
        _ => None,
    }
}

impl Term {
    /// Adds a stage's value; false when the term becomes unsatisfiable.
    fn constrain(&mut self, value: &Selector, ingress: bool) -> bool {
        let pfx = |s: SocketAddr| Prefix {
            addr: s.ip(),
            len: if s.is_ipv4() { 32 } else { 128 },
        };
        let ok = match value {
            Selector::Subflow { local, remote } => {
                self.addr(true, pfx(*local))
                    && self.addr(false, pfx(*remote))
                    && self.port(true, Some(local.port()))
                    && self.port(false, Some(remote.port()))
            }
            Selector::IpPair { local, remote } => {
                self.addr(true, *local) && self.addr(false, *remote)
            }
            // At ingress hooks the destination is local; at egress the source.
            Selector::Src(p) => self.addr(!ingress, *p),
            Selector::Dst(p) => self.addr(ingress, *p),
            Selector::Port { local, remote } => {
                self.port(true, *local) && self.port(false, *remote)
            }
            Selector::PacketType(types) => {
                let alternatives: Vec<(u32, u32)> = types.iter().map(|t| t.test()).collect();
                self.types = if self.types.is_empty() {
                    alternatives
                } else {
                    self.types
                        .iter()
                        .flat_map(|(r1, f1)| {
                            alternatives.iter().map(move |(r2, f2)| (r1 | r2, f1 | f2))
                        })
                        .collect()
                };
                self.types.retain(|(req, forbid)| req & forbid == 0);
                !self.types.is_empty()
            }
            Selector::Sequence { stream, start, end } => match self.seq {
                None => {
                    self.seq = Some((*stream, *start, *end));
                    start < end
                }
                Some((s, a, b)) if s == *stream => {
                    self.seq = Some((s, a.max(*start), b.min(*end)));
                    a.max(*start) < b.min(*end)
                }
                // One range per stream kind and alternative: the data
                // plane tests one.
                Some(_) => false,
            },
            Selector::Connection {
                token,
                subflow_index,
            } => {
                let token_ok = match (self.token, token) {
                    (Some(a), Some(b)) => a == *b,
                    (None, Some(b)) => {
                        self.token = Some(*b);
                        true
                    }
                    _ => true,
                };
                let index_ok = match (self.subflow_index, subflow_index) {
                    (Some(a), Some(b)) => a == *b,
                    (None, Some(b)) => {
                        self.subflow_index = Some(*b);
                        true
                    }
                    _ => true,
                };
                token_ok && index_ok
            }
        };
        ok && self.same_family()
    }

    fn addr(&mut self, local: bool, p: Prefix) -> bool {
        let slot = if local {
            &mut self.local
        } else {
            &mut self.remote
        };
        match intersect(*slot, p) {
            Some(v) => {
                *slot = v;
                true
            }
            None => false,
        }
    }

    fn port(&mut self, local: bool, p: Option<u16>) -> bool {
        let slot = if local {
            &mut self.local_port
        } else {
            &mut self.remote_port
        };
        match same_port(*slot, p) {
            Some(v) => {
                *slot = v;
                true
            }
            None => false,
        }
    }

    fn same_family(&self) -> bool {
        match (self.local, self.remote) {
            (Some(a), Some(b)) => a.addr.is_ipv4() == b.addr.is_ipv4(),
            _ => true,
        }
    }

    /// IPv4 and/or IPv6, as the addresses decide.
    fn families(&self) -> Vec<bool> {
        match self.local.or(self.remote) {
            Some(p) => vec![p.addr.is_ipv4()],
            None => vec![true, false],
        }
    }
}

impl PolicySet {
    /// Validates the set and compiles it for `hook`. Nothing touches the
    /// kernel: every error surfaces here.
    pub fn compile(&self, hook: Hook) -> Result<CompiledPolicy, PolicyError> {
        let stages = self.selectors.stages();
        if stages.len() > limits::STAGES {
            return Err(err(
                None,
                None,
                format!(
                    "the selector chain has {} stages; at most {} are supported",
                    stages.len(),
                    limits::STAGES
                ),
            ));
        }
        let ingress = hook != Hook::TcEgress;
        let mut names = std::collections::HashSet::new();
        let mut chains: Vec<&ActionChain> = Vec::new();
        let mut policy_chain = Vec::new();
        for p in &self.policies {
            if !names.insert(p.name.as_str()) {
                return Err(err(Some(p), None, "duplicate policy name"));
            }
            for (&stage, value) in &p.values {
                let Some((kind, _)) = stages.get(stage) else {
                    return Err(err(
                        Some(p),
                        Some(stage),
                        format!("the selector chain has {} stages", stages.len()),
                    ));
                };
                if *kind != value.kind() {
                    return Err(err(
                        Some(p),
                        Some(stage),
                        format!(
                            "stage is {}, the value is for {}",
                            kind.name(),
                            value.kind().name()
                        ),
                    ));
                }
                validate_value(value).map_err(|m| err(Some(p), Some(stage), m))?;
            }
            if p.actions.actions().len() > limits::CHAIN_OPS {
                return Err(err(
                    Some(p),
                    None,
                    format!(
                        "the action chain has {} actors; at most {} are supported",
                        p.actions.actions().len(),
                        limits::CHAIN_OPS
                    ),
                ));
            }
            if let Some(Action::Plugin(slot)) =
                p.actions.actions().iter().find(
                    |a| matches!(a, Action::Plugin(s) if usize::from(*s) >= limits::PLUGIN_SLOTS),
                )
            {
                return Err(err(
                    Some(p),
                    None,
                    format!(
                        "plugin slot {slot}: there are {} slots",
                        limits::PLUGIN_SLOTS
                    ),
                ));
            }
            if let Some(m) = p.actions.actions().iter().find_map(|a| a.bad_parameter()) {
                return Err(err(Some(p), None, m));
            }
            if let Some(a) = p.actions.actions().iter().find(|a| !a.valid_at(hook)) {
                return Err(err(
                    Some(p),
                    None,
                    format!("actor {} does not work at {hook}", a.name()),
                ));
            }
            let actions = p.actions.actions();
            if let Some(edit) = actions.iter().position(|a| a.edits_options())
                && let Some(a) = actions[edit..].iter().find(|a| !a.safe_after_edit())
            {
                let editor = actions[edit].name();
                return Err(err(
                    Some(p),
                    None,
                    format!(
                        "{} cannot follow {editor} (it reads options that {editor} moves): put it before",
                        a.name()
                    ),
                ));
            }
            let slot = match chains.iter().position(|c| **c == p.actions) {
                Some(i) => i,
                None => {
                    chains.push(&p.actions);
                    chains.len() - 1
                }
            };
            if slot >= limits::CHAINS {
                return Err(err(
                    Some(p),
                    None,
                    format!(
                        "more than {} distinct action chains in one policy set",
                        limits::CHAINS
                    ),
                ));
            }
            policy_chain.push(slot as u32);
        }

        // Rank: higher priority first, then file order (a stable sort).
        let mut order: Vec<usize> = (0..self.policies.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.policies[i].priority));

        let mut shapes: Vec<emptcp_shape> = Vec::new();
        let mut rule_info = Vec::new();
        let mut rule_policy = Vec::new();
        let mut uses_conntrack = false;
        let mut rules: BTreeMap<Vec<u8>, (emptcp_rule_key, emptcp_rule_set)> = BTreeMap::new();
        for &pi in &order {
            let p = &self.policies[pi];
            for term in expand(p, stages, ingress)? {
                for v4 in term.families() {
                    let shape = emptcp_shape {
                        family: if v4 {
                            libc::AF_INET as u8
                        } else {
                            libc::AF_INET6 as u8
                        },
                        local_plen: term.local.map_or(0, |p| p.len),
                        remote_plen: term.remote.map_or(0, |p| p.len),
                        local_port: term.local_port.is_some() as u8,
                        remote_port: term.remote_port.is_some() as u8,
                        token: term.token.is_some() as u8,
                        index: term.subflow_index.is_some() as u8,
                        _pad: 0,
                    };
                    let shape_idx = match shapes.iter().position(|s| same_shape(s, &shape)) {
                        Some(i) => i,
                        None => {
                            if shapes.len() == limits::SHAPES {
                                return Err(err(
                                    Some(p),
                                    None,
                                    format!(
                                        "more than {} distinct key shapes (combinations of prefix \
                                     lengths, ports and family) in one policy set",
                                        limits::SHAPES
                                    ),
                                ));
                            }
                            shapes.push(shape);
                            shapes.len() - 1
                        }
                    };
                    let key = emptcp_rule_key {
                        shape: shape_idx as u8,
                        family: shape.family,
                        index: term.subflow_index.unwrap_or(0),
                        _pad: 0,
                        token: term.token.unwrap_or(0),
                        local_port: term.local_port.unwrap_or(0).to_be(),
                        remote_port: term.remote_port.unwrap_or(0).to_be(),
                        local: term.local.map_or([0; 16], |p| p.masked_bytes()),
                        remote: term.remote.map_or([0; 16], |p| p.masked_bytes()),
                    };
                    let alternatives = if term.types.is_empty() {
                        vec![(0, 0)]
                    } else {
                        term.types.clone()
                    };
                    for (require, forbid) in alternatives {
                        let id = rule_info.len() as u32;
                        let (seq_kind, seq_lo, seq_hi) = match term.seq {
                            None => (emptcp_seq_kind::EMPTCP_SEQ_NONE, 0, 0),
                            Some((Stream::Subflow, a, b)) => {
                                (emptcp_seq_kind::EMPTCP_SEQ_SUBFLOW, a, b)
                            }
                            Some((Stream::Data, a, b)) => (emptcp_seq_kind::EMPTCP_SEQ_DATA, a, b),
                        };
                        uses_conntrack |= term.seq.is_some();
                        rule_info.push(emptcp_rule {
                            chain: policy_chain[pi],
                            type_require: require,
                            type_forbid: forbid,
                            seq_kind: seq_kind.0,
                            seq_lo,
                            seq_hi,
                        });
                        rule_policy.push(pi);
                        let entry = rules
                            .entry(abi::as_bytes(&key).to_vec())
                            .or_insert((key, emptcp_rule_set::default()));
                        let set = &mut entry.1;
                        if set.n as usize == limits::RULE_SLOTS {
                            return Err(err(
                                Some(p),
                                None,
                                format!(
                                    "more than {} rules share one flow key (they differ only in \
                                 packet_type); merge their packet types",
                                    limits::RULE_SLOTS
                                ),
                            ));
                        }
                        set.ids[set.n as usize] = id;
                        set.n += 1;
                    }
                }
            }
        }

        let mut config = emptcp_config {
            abi_version: abi::ABI_VERSION,
            generation: 0,
            n_shapes: shapes.len() as u32,
            n_chains: chains.len() as u32,
            uses_conntrack: (uses_conntrack || shapes.iter().any(|s| s.token != 0 || s.index != 0))
                as u32,
            ..Default::default()
        };
        for (i, s) in shapes.iter().enumerate() {
            config.shapes[i] = *s;
        }
        for (i, c) in chains.iter().enumerate() {
            let mut chain = emptcp_chain {
                len: c.actions().len() as u32,
                ..Default::default()
            };
            for (j, a) in c.actions().iter().enumerate() {
                chain.ops[j] = a.op();
                if *a == Action::AddSubflow && config.add_subflow_op == 0 {
                    config.add_subflow_op = (i * limits::CHAIN_OPS + j + 1) as u32;
                }
            }
            config.chains[i] = chain;
        }
        Ok(CompiledPolicy {
            hook,
            config,
            rules: rules.into_values().collect(),
            rule_info,
            rule_policy,
            policy_names: self.policies.iter().map(|p| p.name.clone()).collect(),
            policy_chain,
            chains: chains.into_iter().cloned().collect(),
        })
    }
}

fn same_shape(a: &emptcp_shape, b: &emptcp_shape) -> bool {
    let fields = |s: &emptcp_shape| {
        (
            s.family,
            s.local_plen,
            s.remote_plen,
            s.local_port,
            s.remote_port,
            s.token,
            s.index,
        )
    };
    fields(a) == fields(b)
}

fn validate_value(value: &Selector) -> Result<(), String> {
    match value {
        Selector::Subflow { local, remote } if local.is_ipv4() != remote.is_ipv4() => {
            Err("local and remote addresses of a subflow must be of one family".into())
        }
        Selector::IpPair { local, remote } if local.addr.is_ipv4() != remote.addr.is_ipv4() => {
            Err("local and remote prefixes must be of one family".into())
        }
        Selector::Port {
            local: None,
            remote: None,
        } => Err("a port stage needs a local or a remote port".into()),
        Selector::PacketType(t) if t.is_empty() => {
            Err("a packet_type stage needs at least one type".into())
        }
        Selector::IpPair { local, remote }
            if local.len > local.max_len() || remote.len > remote.max_len() =>
        {
            Err("prefix too long".into())
        }
        _ => Ok(()),
    }
}

/// The policy's expression `((v0 op1 v1) op2 v2) ...` as a disjunction of
/// satisfiable conjunctive terms. A stage without a value is left out of the
/// expression, with its combinator (it neither restricts an AND nor opens an
/// OR); a policy with no values matches every TCP packet.
fn expand(
    p: &Policy,
    stages: &[(SelectorKind, Combine)],
    ingress: bool,
) -> Result<Vec<Term>, PolicyError> {
    // Each alternative lists stage indices that must all hold; one empty
    // alternative is "true".
    let mut dnf: Vec<Vec<usize>> = vec![vec![]];
    let mut first = true;
    for (i, (_, combine)) in stages.iter().enumerate() {
        if !p.values.contains_key(&i) {
            continue;
        }
        match (first, combine) {
            (true, _) | (false, Combine::And) => dnf.iter_mut().for_each(|t| t.push(i)),
            (false, Combine::Or) => dnf.push(vec![i]),
        }
        first = false;
        if dnf.len() > limits::TERMS_PER_POLICY {
            return Err(err(
                Some(p),
                Some(i),
                format!(
                    "the expression expands to more than {} alternatives",
                    limits::TERMS_PER_POLICY
                ),
            ));
        }
    }
    let mut terms = Vec::new();
    for conj in dnf {
        let mut t = Term::default();
        if conj.iter().all(|i| t.constrain(&p.values[i], ingress)) {
            terms.push(t);
        }
    }
    Ok(terms)
}

#[cfg(test)]
mod tests;
