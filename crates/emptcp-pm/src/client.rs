//! The path-manager client: one request socket, plus event subscriptions.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::attr::{AttrWriter, Attrs};
use crate::endpoint::{Endpoint, EndpointFlags, Limits, address, socket_address};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::family::{self, Family};
use crate::socket::{GenlMessage, GenlSocket};
use crate::uapi::{MPTCP_PM_EV_GRP_NAME, MPTCP_PM_NAME, MPTCP_PM_VER, addr_attr, attr, cmd};

/// A client of the kernel's MPTCP path manager in one network namespace.
///
/// The namespace is the calling thread's when [`PathManager::open`] runs (enter another one
/// with `setns` first, e.g. `emptcp::netns::NetnsGuard`); the client stays bound to it.
#[derive(Debug)]
pub struct PathManager {
    sock: GenlSocket,
    family: Family,
}

/// Which connection and subflow a userspace-PM command acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subflow {
    /// Connection token (`MPTCP_INFO`'s `mptcpi_token`, or an event's `token`).
    pub token: u32,
    /// Local end.
    pub local: SocketAddr,
    /// Remote end.
    pub remote: SocketAddr,
}

impl PathManager {
    /// Opens a netlink socket in the calling thread's network namespace and resolves the
    /// `mptcp_pm` family.
    pub fn open() -> Result<PathManager> {
        let mut sock = GenlSocket::open()?;
        let family = family::resolve(&mut sock, MPTCP_PM_NAME)?;
        Ok(PathManager { sock, family })
    }

    fn call(
        &mut self,
        command: u8,
        dump: bool,
        attrs: AttrWriter,
        operation: &dyn Fn() -> String,
    ) -> Result<Vec<GenlMessage>> {
        self.sock.request(
            self.family.id,
            command,
            MPTCP_PM_VER,
            dump,
            &attrs.into_bytes(),
            operation,
        )
    }

    /// Every endpoint of the in-kernel path manager (`GET_ADDR` dump), in the kernel's order.
    pub fn endpoints(&mut self) -> Result<Vec<Endpoint>> {
        let replies = self.call(cmd::GET_ADDR, true, AttrWriter::new(), &|| {
            "listing endpoints".into()
        })?;
        replies.iter().map(|m| decode_endpoint(&m.attrs)).collect()
    }

    /// Userspace PM: the local addresses connection `token` uses or announced (`GET_ADDR`
    /// dump with a token); the address of the initial subflow appears once it is in use
    /// under an id, flagged `implicit`.
    pub fn connection_endpoints(&mut self, token: u32) -> Result<Vec<Endpoint>> {
        let mut attrs = AttrWriter::new();
        attrs.put_u32(attr::TOKEN, token);
        let replies = self.call(cmd::GET_ADDR, true, attrs, &|| {
            format!("listing the addresses of connection {token:#010x}")
        })?;
        replies.iter().map(|m| decode_endpoint(&m.attrs)).collect()
    }

    /// Adds an endpoint (`ADD_ADDR`); with `id` 0 the kernel picks the id.
    pub fn add_endpoint(&mut self, endpoint: &Endpoint) -> Result<()> {
        let mut attrs = AttrWriter::new();
        attrs.nested(attr::ADDR, endpoint.encode());
        self.call(cmd::ADD_ADDR, false, attrs, &|| {
            format!("adding endpoint {}", endpoint.addr)
        })?;
        Ok(())
    }

    /// Deletes the endpoint with this id (`DEL_ADDR`); subflows using it are closed and the
    /// address is withdrawn (RM_ADDR) where it was announced.
    pub fn delete_endpoint(&mut self, id: u8) -> Result<()> {
        let mut inner = AttrWriter::new();
        inner.put_u8(addr_attr::ID, id);
        let mut attrs = AttrWriter::new();
        attrs.nested(attr::ADDR, inner);
        self.call(cmd::DEL_ADDR, false, attrs, &|| {
            format!("deleting endpoint id {id}")
        })?;
        Ok(())
    }

    /// Deletes every endpoint (`FLUSH_ADDRS`).
    pub fn flush_endpoints(&mut self) -> Result<()> {
        self.call(cmd::FLUSH_ADDRS, false, AttrWriter::new(), &|| {
            "flushing endpoints".into()
        })?;
        Ok(())
    }

    /// Changes the flags of the endpoint with this id (`SET_FLAGS`): the kernel lets only
    /// `backup` and `fullmesh` change, and sends MP_PRIO on subflows using it when `backup`
    /// flips.
    pub fn set_endpoint_flags(&mut self, id: u8, flags: EndpointFlags) -> Result<()> {
        // By id alone: with a family the kernel would look the endpoint up by address.
        let mut inner = AttrWriter::new();
        inner
            .put_u8(addr_attr::ID, id)
            .put_u32(addr_attr::FLAGS, flags.0);
        let mut attrs = AttrWriter::new();
        attrs.nested(attr::ADDR, inner);
        self.call(cmd::SET_FLAGS, false, attrs, &|| {
            format!("setting flags of endpoint id {id} to [{flags}]")
        })?;
        Ok(())
    }

    /// The in-kernel path manager's limits (`GET_LIMITS`).
    pub fn limits(&mut self) -> Result<Limits> {
        let replies = self.call(cmd::GET_LIMITS, false, AttrWriter::new(), &|| {
            "reading limits".into()
        })?;
        let reply = replies
            .first()
            .ok_or_else(|| Error::Malformed("GET_LIMITS got no reply".into()))?;
        let mut limits = Limits::default();
        for a in Attrs::new(&reply.attrs) {
            let a = a?;
            match a.kind {
                attr::SUBFLOWS => limits.subflows = a.u32()?,
                attr::RCV_ADD_ADDRS => limits.add_addr_accepted = a.u32()?,
                _ => {}
            }
        }
        Ok(limits)
    }

    /// Sets either limit or both (`SET_LIMITS`); a `None` keeps the current value.
    pub fn set_limits(
        &mut self,
        subflows: Option<u32>,
        add_addr_accepted: Option<u32>,
    ) -> Result<()> {
        let mut attrs = AttrWriter::new();
        if let Some(n) = add_addr_accepted {
            attrs.put_u32(attr::RCV_ADD_ADDRS, n);
        }
        if let Some(n) = subflows {
            attrs.put_u32(attr::SUBFLOWS, n);
        }
        self.call(cmd::SET_LIMITS, false, attrs, &|| "setting limits".into())?;
        Ok(())
    }

    /// Userspace PM: announces `addr` (with id `id`, optional port) to the peer of connection
    /// `token` (`ANNOUNCE`, an ADD_ADDR on the wire). Needs `net.mptcp.pm_type=1`.
    pub fn announce(&mut self, token: u32, id: u8, addr: IpAddr, port: Option<u16>) -> Result<()> {
        let mut local = address(addr, port);
        local
            .put_u8(addr_attr::ID, id)
            .put_u32(addr_attr::FLAGS, EndpointFlags::SIGNAL.0);
        let mut attrs = AttrWriter::new();
        attrs.put_u32(attr::TOKEN, token).nested(attr::ADDR, local);
        self.call(cmd::ANNOUNCE, false, attrs, &|| {
            format!("announcing {addr} id {id} on connection {token:#010x}")
        })?;
        Ok(())
    }

    /// Userspace PM: withdraws the local address id `id` from connection `token` (`REMOVE`,
    /// an RM_ADDR on the wire; subflows using it close).
    pub fn remove(&mut self, token: u32, id: u8) -> Result<()> {
        let mut attrs = AttrWriter::new();
        attrs.put_u32(attr::TOKEN, token).put_u8(attr::LOC_ID, id);
        self.call(cmd::REMOVE, false, attrs, &|| {
            format!("removing address id {id} from connection {token:#010x}")
        })?;
        Ok(())
    }

    /// Userspace PM: opens a subflow of connection `token` from `local` (address id `id`,
    /// optionally bound to `ifindex`) to `remote` (`SUBFLOW_CREATE`, an MP_JOIN).
    pub fn subflow_create(
        &mut self,
        token: u32,
        id: u8,
        local: IpAddr,
        ifindex: Option<i32>,
        remote: SocketAddr,
    ) -> Result<()> {
        let mut laddr = address(local, None);
        laddr.put_u8(addr_attr::ID, id);
        if let Some(i) = ifindex {
            laddr.put_i32(addr_attr::IF_IDX, i);
        }
        let mut attrs = AttrWriter::new();
        attrs
            .put_u32(attr::TOKEN, token)
            .nested(attr::ADDR, laddr)
            .nested(attr::ADDR_REMOTE, socket_address(remote));
        self.call(cmd::SUBFLOW_CREATE, false, attrs, &|| {
            format!("creating a subflow {local} -> {remote} on connection {token:#010x}")
        })?;
        Ok(())
    }

    /// Userspace PM: closes the subflow `local -> remote` of connection `token`
    /// (`SUBFLOW_DESTROY`); both ports are needed to find it.
    pub fn subflow_destroy(&mut self, subflow: Subflow) -> Result<()> {
        let attrs = subflow.encode(socket_address(subflow.local));
        self.call(cmd::SUBFLOW_DESTROY, false, attrs, &|| {
            format!("destroying subflow {subflow}")
        })?;
        Ok(())
    }

    /// Userspace PM: sets or clears the backup bit of one subflow (`SET_FLAGS` with a token;
    /// the kernel sends MP_PRIO).
    pub fn set_subflow_backup(&mut self, subflow: Subflow, backup: bool) -> Result<()> {
        let mut local = socket_address(subflow.local);
        let flags = if backup { EndpointFlags::BACKUP.0 } else { 0 };
        local.put_u32(addr_attr::FLAGS, flags);
        self.call(cmd::SET_FLAGS, false, subflow.encode(local), &|| {
            format!("setting backup={backup} on subflow {subflow}")
        })?;
        Ok(())
    }

    /// Subscribes to `mptcp_pm_events` with a new socket. Like [`PathManager::open`], it
    /// listens in the calling thread's network namespace: call it where this client was
    /// opened.
    pub fn subscribe(&self) -> Result<Events> {
        let group = self.family.group(MPTCP_PM_EV_GRP_NAME)?;
        let sock = GenlSocket::open()?;
        sock.join_group(group)?;
        Ok(Events {
            sock,
            family: self.family.id,
        })
    }
}

impl Subflow {
    /// Token, the local address body given, and the remote address.
    fn encode(&self, local: AttrWriter) -> AttrWriter {
        let mut attrs = AttrWriter::new();
        attrs
            .put_u32(attr::TOKEN, self.token)
            .nested(attr::ADDR, local)
            .nested(attr::ADDR_REMOTE, socket_address(self.remote));
        attrs
    }
}

impl std::fmt::Display for Subflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} -> {} of connection {:#010x}",
            self.local, self.remote, self.token
        )
    }
}

fn decode_endpoint(attrs: &[u8]) -> Result<Endpoint> {
    for a in Attrs::new(attrs) {
        let a = a?;
        if a.kind == attr::ADDR {
            return Endpoint::decode(a.nested());
        }
    }
    Err(Error::Malformed("GET_ADDR reply without an address".into()))
}

/// A subscription to the path manager's events, in the namespace it was made in.
#[derive(Debug)]
pub struct Events {
    sock: GenlSocket,
    family: u16,
}

impl Events {
    /// The next event, waiting at most `timeout` (`None`: forever); `Ok(None)` on timeout.
    /// [`Error::EventsLost`] reports dropped events; the subscription stays usable.
    pub fn next(&mut self, timeout: Option<Duration>) -> Result<Option<Event>> {
        loop {
            let Some(msg) = self.sock.next_multicast(timeout)? else {
                return Ok(None);
            };
            if msg.family != self.family {
                continue;
            }
            return Event::decode(msg.cmd, &msg.attrs).map(Some);
        }
    }
}
