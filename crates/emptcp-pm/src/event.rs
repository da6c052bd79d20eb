//! Events of the `mptcp_pm_events` multicast group, decoded.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Serialize, Serializer};

use crate::attr::Attrs;
use crate::error::Result;
use crate::uapi::{event, event_attr};

/// The kind of an event (`enum mptcp_event_type`). Serialises as its name, e.g. `"created"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A connection was created (first SYN sent or accepted).
    Created,
    /// The connection is established.
    Established,
    /// The connection closed.
    Closed,
    /// The peer announced an address (ADD_ADDR).
    Announced,
    /// The peer removed an address (RM_ADDR).
    Removed,
    /// A subflow was established.
    SubEstablished,
    /// A subflow closed.
    SubClosed,
    /// A subflow's backup priority changed (MP_PRIO).
    SubPriority,
    /// A path-manager listener was opened (signal endpoint with a port).
    ListenerCreated,
    /// A path-manager listener was closed.
    ListenerClosed,
    /// A type this crate does not know (a newer kernel).
    Other(u8),
}

impl EventKind {
    /// From the genetlink command of an event message.
    pub fn from_cmd(cmd: u8) -> EventKind {
        match cmd {
            event::CREATED => EventKind::Created,
            event::ESTABLISHED => EventKind::Established,
            event::CLOSED => EventKind::Closed,
            event::ANNOUNCED => EventKind::Announced,
            event::REMOVED => EventKind::Removed,
            event::SUB_ESTABLISHED => EventKind::SubEstablished,
            event::SUB_CLOSED => EventKind::SubClosed,
            event::SUB_PRIORITY => EventKind::SubPriority,
            event::LISTENER_CREATED => EventKind::ListenerCreated,
            event::LISTENER_CLOSED => EventKind::ListenerClosed,
            other => EventKind::Other(other),
        }
    }

    /// `created`, `sub_established`, ...; `event_N` for unknown types.
    pub fn name(self) -> String {
        match self {
            EventKind::Created => "created",
            EventKind::Established => "established",
            EventKind::Closed => "closed",
            EventKind::Announced => "announced",
            EventKind::Removed => "removed",
            EventKind::SubEstablished => "sub_established",
            EventKind::SubClosed => "sub_closed",
            EventKind::SubPriority => "sub_priority",
            EventKind::ListenerCreated => "listener_created",
            EventKind::ListenerClosed => "listener_closed",
            EventKind::Other(n) => return format!("event_{n}"),
        }
        .to_owned()
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// One path-manager event. Which fields are present depends on the kind (see
/// `include/uapi/linux/mptcp_pm.h`); absent ones are `None` and left out of JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// What happened.
    pub event: EventKind,
    /// Connection token (the local token, as `MPTCP_INFO`'s `mptcpi_token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<u32>,
    /// Source address (local end of the subflow; the listener's address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saddr: Option<IpAddr>,
    /// Destination address (remote end; the announced address for `announced`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daddr: Option<IpAddr>,
    /// Source port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    /// Destination port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// Local address id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loc_id: Option<u8>,
    /// Remote address id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rem_id: Option<u8>,
    /// The subflow is backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<bool>,
    /// Socket error of a closed subflow (errno).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<u8>,
    /// `MPTCP_PM_EV_FLAG_*` (bit 0: the peer denies joins to its address id 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<u16>,
    /// Timeout attribute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    /// Interface index of the subflow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<i32>,
    /// MP_TCPRST reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_reason: Option<u32>,
    /// MP_TCPRST flags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_flags: Option<u32>,
    /// This end accepted the connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_side: Option<bool>,
}

impl Event {
    /// Decodes an event message's command and attributes. Unknown attributes are skipped (a
    /// newer kernel may add some); a known one of the wrong size is an error.
    pub(crate) fn decode(cmd: u8, attrs: &[u8]) -> Result<Event> {
        let mut e = Event {
            event: EventKind::from_cmd(cmd),
            token: None,
            saddr: None,
            daddr: None,
            sport: None,
            dport: None,
            loc_id: None,
            rem_id: None,
            backup: None,
            error: None,
            flags: None,
            timeout: None,
            ifindex: None,
            reset_reason: None,
            reset_flags: None,
            server_side: None,
        };
        for attr in Attrs::new(attrs) {
            let a = attr?;
            match a.kind {
                event_attr::TOKEN => e.token = Some(a.u32()?),
                event_attr::FAMILY => {} // implied by the address attributes
                event_attr::LOC_ID => e.loc_id = Some(a.u8()?),
                event_attr::REM_ID => e.rem_id = Some(a.u8()?),
                event_attr::SADDR4 => e.saddr = Some(Ipv4Addr::from(a.octets::<4>()?).into()),
                event_attr::SADDR6 => e.saddr = Some(Ipv6Addr::from(a.octets::<16>()?).into()),
                event_attr::DADDR4 => e.daddr = Some(Ipv4Addr::from(a.octets::<4>()?).into()),
                event_attr::DADDR6 => e.daddr = Some(Ipv6Addr::from(a.octets::<16>()?).into()),
                event_attr::SPORT => e.sport = Some(a.be16()?),
                event_attr::DPORT => e.dport = Some(a.be16()?),
                event_attr::BACKUP => e.backup = Some(a.u8()? != 0),
                event_attr::ERROR => e.error = Some(a.u8()?),
                event_attr::FLAGS => e.flags = Some(a.u16()?),
                event_attr::TIMEOUT => e.timeout = Some(a.u32()?),
                event_attr::IF_IDX => e.ifindex = Some(a.i32()?),
                event_attr::RESET_REASON => e.reset_reason = Some(a.u32()?),
                event_attr::RESET_FLAGS => e.reset_flags = Some(a.u32()?),
                event_attr::SERVER_SIDE => e.server_side = Some(a.u8()? != 0),
                other => tracing::debug!(attr = other, "skipping an unknown event attribute"),
            }
        }
        Ok(e)
    }
}

impl fmt::Display for Event {
    /// One line, e.g. `sub_established token=0x1d53c012 10.77.2.1:52563 -> 10.77.3.1:43021
    /// loc_id=1 rem_id=0 backup=false`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.event)?;
        if let Some(t) = self.token {
            write!(f, " token={t:#010x}")?;
        }
        let end = |a: Option<IpAddr>, p: Option<u16>| match (a, p) {
            (Some(IpAddr::V6(a)), Some(p)) => Some(format!("[{a}]:{p}")),
            (Some(a), Some(p)) => Some(format!("{a}:{p}")),
            (Some(a), None) => Some(a.to_string()),
            (None, Some(p)) => Some(format!("port {p}")),
            (None, None) => None,
        };
        match (end(self.saddr, self.sport), end(self.daddr, self.dport)) {
            (Some(s), Some(d)) => write!(f, " {s} -> {d}")?,
            (Some(s), None) => write!(f, " {s}")?,
            (None, Some(d)) => write!(f, " -> {d}")?,
            (None, None) => {}
        }
        let fields: [(&str, Option<String>); 10] = [
            ("loc_id", self.loc_id.map(|v| v.to_string())),
            ("rem_id", self.rem_id.map(|v| v.to_string())),
            ("backup", self.backup.map(|v| v.to_string())),
            ("error", self.error.map(|v| v.to_string())),
            ("flags", self.flags.map(|v| format!("{v:#x}"))),
            ("timeout", self.timeout.map(|v| v.to_string())),
            ("ifindex", self.ifindex.map(|v| v.to_string())),
            ("reset_reason", self.reset_reason.map(|v| v.to_string())),
            ("reset_flags", self.reset_flags.map(|v| v.to_string())),
            ("server_side", self.server_side.map(|v| v.to_string())),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                write!(f, " {name}={v}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AttrWriter;

    #[test]
    fn sub_established_decodes_ports_in_network_order() {
        let mut w = AttrWriter::new();
        w.put_u32(event_attr::TOKEN, 0x1d53_c012)
            .put_u16(event_attr::FAMILY, libc::AF_INET as u16)
            .put_u8(event_attr::LOC_ID, 1)
            .put_u8(event_attr::REM_ID, 0)
            .put(event_attr::SADDR4, &[10, 77, 2, 1])
            .put(event_attr::DADDR4, &[10, 77, 3, 1])
            .put(event_attr::SPORT, &52563u16.to_be_bytes())
            .put(event_attr::DPORT, &43021u16.to_be_bytes())
            .put_u8(event_attr::BACKUP, 0)
            .put_i32(event_attr::IF_IDX, 4)
            .put_u32(99, 1);
        let e = Event::decode(event::SUB_ESTABLISHED, &w.into_bytes()).unwrap();
        assert_eq!(
            e.to_string(),
            "sub_established token=0x1d53c012 10.77.2.1:52563 -> 10.77.3.1:43021 loc_id=1 \
             rem_id=0 backup=false ifindex=4"
        );
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["event"], "sub_established");
        assert_eq!(json["sport"], 52563);
        assert!(json.get("error").is_none());
    }

    #[test]
    fn unknown_kinds_keep_their_number_and_bad_sizes_are_errors() {
        assert_eq!(EventKind::from_cmd(42).name(), "event_42");
        let mut w = AttrWriter::new();
        w.put_u16(event_attr::TOKEN, 1);
        assert!(Event::decode(event::CLOSED, &w.into_bytes()).is_err());
    }
}
