//! Every netlink number this crate uses, in one place.
//!
//! MPTCP values are from the kernel's `include/uapi/linux/mptcp_pm.h` (generated from
//! `Documentation/netlink/specs/mptcp_pm.yaml`, Linux 6.18) and `include/uapi/linux/mptcp.h`;
//! Debian 12's `/usr/include/linux/mptcp.h` (6.1) lacks the listener events. Netlink and generic
//! netlink framing values are from `include/uapi/linux/netlink.h` and `genetlink.h`.

/// `MPTCP_PM_NAME`: the generic netlink family.
pub const MPTCP_PM_NAME: &str = "mptcp_pm";
/// `MPTCP_PM_VER`.
pub const MPTCP_PM_VER: u8 = 1;
/// `MPTCP_PM_EV_GRP_NAME`: the multicast group carrying connection events.
pub const MPTCP_PM_EV_GRP_NAME: &str = "mptcp_pm_events";

/// `MPTCP_PM_CMD_*`.
pub mod cmd {
    /// Add an endpoint (in-kernel PM).
    pub const ADD_ADDR: u8 = 1;
    /// Delete an endpoint by id.
    pub const DEL_ADDR: u8 = 2;
    /// Get one endpoint, or dump all.
    pub const GET_ADDR: u8 = 3;
    /// Delete every endpoint.
    pub const FLUSH_ADDRS: u8 = 4;
    /// Set the limits.
    pub const SET_LIMITS: u8 = 5;
    /// Get the limits.
    pub const GET_LIMITS: u8 = 6;
    /// Change an endpoint's flags, or (with a token) a subflow's backup bit.
    pub const SET_FLAGS: u8 = 7;
    /// Userspace PM: send ADD_ADDR on a connection.
    pub const ANNOUNCE: u8 = 8;
    /// Userspace PM: send RM_ADDR on a connection.
    pub const REMOVE: u8 = 9;
    /// Userspace PM: open a subflow (MP_JOIN).
    pub const SUBFLOW_CREATE: u8 = 10;
    /// Userspace PM: close a subflow.
    pub const SUBFLOW_DESTROY: u8 = 11;
}

/// `MPTCP_PM_ATTR_*`: top-level attributes of PM commands.
pub mod attr {
    /// Nested address (`addr` attribute set); also `MPTCP_PM_ENDPOINT_ADDR`.
    pub const ADDR: u16 = 1;
    /// u32: `add_addr_accepted` limit.
    pub const RCV_ADD_ADDRS: u16 = 2;
    /// u32: `subflows` limit.
    pub const SUBFLOWS: u16 = 3;
    /// u32: connection token (userspace PM).
    pub const TOKEN: u16 = 4;
    /// u8: local address id (userspace PM `REMOVE`).
    pub const LOC_ID: u16 = 5;
    /// Nested remote address.
    pub const ADDR_REMOTE: u16 = 6;
}

/// `MPTCP_PM_ADDR_ATTR_*`: inside a nested address.
pub mod addr_attr {
    /// u16: `AF_INET` or `AF_INET6`.
    pub const FAMILY: u16 = 1;
    /// u8: endpoint / address id.
    pub const ID: u16 = 2;
    /// `struct in_addr` (network order).
    pub const ADDR4: u16 = 3;
    /// `struct in6_addr`.
    pub const ADDR6: u16 = 4;
    /// u16 in host order (the kernel converts with `htons`).
    pub const PORT: u16 = 5;
    /// u32: `MPTCP_PM_ADDR_FLAG_*`.
    pub const FLAGS: u16 = 6;
    /// s32: interface index.
    pub const IF_IDX: u16 = 7;
}

/// `MPTCP_PM_ADDR_FLAG_*`.
pub mod addr_flag {
    /// Announce the address to peers (ADD_ADDR).
    pub const SIGNAL: u32 = 1 << 0;
    /// Open subflows from this address.
    pub const SUBFLOW: u32 = 1 << 1;
    /// Subflows on this address are backup (MP_PRIO / MP_JOIN B bit).
    pub const BACKUP: u32 = 1 << 2;
    /// A subflow to every announced address of the peer.
    pub const FULLMESH: u32 = 1 << 3;
    /// Created by the kernel for an address in use, not by the user.
    pub const IMPLICIT: u32 = 1 << 4;
}

/// `enum mptcp_event_type`: the genetlink command of a message in `mptcp_pm_events`.
pub mod event {
    /// A connection was created.
    pub const CREATED: u8 = 1;
    /// A connection is established (may start new subflows).
    pub const ESTABLISHED: u8 = 2;
    /// A connection stopped.
    pub const CLOSED: u8 = 3;
    /// The peer announced an address.
    pub const ANNOUNCED: u8 = 6;
    /// The peer removed an address.
    pub const REMOVED: u8 = 7;
    /// A subflow was established.
    pub const SUB_ESTABLISHED: u8 = 10;
    /// A subflow was closed.
    pub const SUB_CLOSED: u8 = 11;
    /// A subflow's backup priority changed.
    pub const SUB_PRIORITY: u8 = 13;
    /// A PM listener was created (for a signal endpoint with a port).
    pub const LISTENER_CREATED: u8 = 15;
    /// A PM listener was closed.
    pub const LISTENER_CLOSED: u8 = 16;
}

/// `enum mptcp_event_attr`: attributes of event messages.
pub mod event_attr {
    /// u32.
    pub const TOKEN: u16 = 1;
    /// u16.
    pub const FAMILY: u16 = 2;
    /// u8.
    pub const LOC_ID: u16 = 3;
    /// u8.
    pub const REM_ID: u16 = 4;
    /// be32.
    pub const SADDR4: u16 = 5;
    /// `struct in6_addr`.
    pub const SADDR6: u16 = 6;
    /// be32.
    pub const DADDR4: u16 = 7;
    /// `struct in6_addr`.
    pub const DADDR6: u16 = 8;
    /// be16.
    pub const SPORT: u16 = 9;
    /// be16.
    pub const DPORT: u16 = 10;
    /// u8.
    pub const BACKUP: u16 = 11;
    /// u8 (a copy of `sk_err`).
    pub const ERROR: u16 = 12;
    /// u16: `MPTCP_PM_EV_FLAG_*`.
    pub const FLAGS: u16 = 13;
    /// u32.
    pub const TIMEOUT: u16 = 14;
    /// s32.
    pub const IF_IDX: u16 = 15;
    /// u32: MP_TCPRST reason.
    pub const RESET_REASON: u16 = 16;
    /// u32.
    pub const RESET_FLAGS: u16 = 17;
    /// u8.
    pub const SERVER_SIDE: u16 = 18;
}

/// Netlink framing (`linux/netlink.h`).
pub mod nl {
    /// `NETLINK_GENERIC`.
    pub const NETLINK_GENERIC: i32 = 16;
    /// `SOL_NETLINK`.
    pub const SOL_NETLINK: i32 = 270;
    /// `NETLINK_ADD_MEMBERSHIP`.
    pub const NETLINK_ADD_MEMBERSHIP: i32 = 1;
    /// `NETLINK_CAP_ACK`: errors echo only the request's header, not its payload.
    pub const NETLINK_CAP_ACK: i32 = 10;
    /// `NETLINK_EXT_ACK`: errors carry the kernel's message (`NLMSGERR_ATTR_MSG`).
    pub const NETLINK_EXT_ACK: i32 = 11;

    /// `NLMSG_ERROR`.
    pub const NLMSG_ERROR: u16 = 2;
    /// `NLMSG_DONE`.
    pub const NLMSG_DONE: u16 = 3;
    /// `NLMSG_OVERRUN`.
    pub const NLMSG_OVERRUN: u16 = 4;
    /// `NLMSG_MIN_TYPE`: types below it are netlink control messages, not a family's.
    pub const NLMSG_MIN_TYPE: u16 = 0x10;

    /// `NLM_F_REQUEST`.
    pub const NLM_F_REQUEST: u16 = 0x01;
    /// `NLM_F_MULTI`.
    pub const NLM_F_MULTI: u16 = 0x02;
    /// `NLM_F_ACK`.
    pub const NLM_F_ACK: u16 = 0x04;
    /// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
    pub const NLM_F_DUMP: u16 = 0x300;
    /// `NLM_F_CAPPED` (in an error): the echoed request is only its header.
    pub const NLM_F_CAPPED: u16 = 0x100;
    /// `NLM_F_ACK_TLVS` (in an error or done): extended-ack attributes follow.
    pub const NLM_F_ACK_TLVS: u16 = 0x200;

    /// `NLMSGERR_ATTR_MSG`: NUL-terminated error message.
    pub const NLMSGERR_ATTR_MSG: u16 = 1;
    /// `NLMSGERR_ATTR_OFFS`: u32 offset of the offending attribute in the request.
    pub const NLMSGERR_ATTR_OFFS: u16 = 2;

    /// `NLA_F_NESTED`.
    pub const NLA_F_NESTED: u16 = 1 << 15;
    /// `NLA_F_NET_BYTEORDER`.
    pub const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
    /// `NLA_TYPE_MASK`.
    pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

    /// `sizeof(struct nlmsghdr)`.
    pub const NLMSG_HDRLEN: usize = 16;
    /// `sizeof(struct genlmsghdr)`.
    pub const GENL_HDRLEN: usize = 4;
    /// `NLMSG_ALIGNTO` and `NLA_ALIGNTO`.
    pub const ALIGNTO: usize = 4;
}

/// Generic netlink controller (`linux/genetlink.h`).
pub mod ctrl {
    /// `GENL_ID_CTRL`: the controller's fixed family id.
    pub const GENL_ID_CTRL: u16 = 0x10;
    /// `CTRL_CMD_GETFAMILY`.
    pub const CTRL_CMD_GETFAMILY: u8 = 3;
    /// `CTRL_ATTR_FAMILY_ID` (u16).
    pub const CTRL_ATTR_FAMILY_ID: u16 = 1;
    /// `CTRL_ATTR_FAMILY_NAME` (string).
    pub const CTRL_ATTR_FAMILY_NAME: u16 = 2;
    /// `CTRL_ATTR_MCAST_GROUPS` (nested array).
    pub const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
    /// `CTRL_ATTR_MCAST_GRP_NAME` (string).
    pub const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
    /// `CTRL_ATTR_MCAST_GRP_ID` (u32).
    pub const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;
}
