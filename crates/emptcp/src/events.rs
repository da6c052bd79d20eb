//! Events the data plane sends (get_connect, get_subflow, add_subflow): records of
//! `struct emptcp_event` (abi.h) in the ring buffer `emptcp_events`.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use libbpf_rs::{RingBuffer, RingBufferBuilder};
use serde::Serialize;

use crate::abi::{
    self, emptcp_add_subflow_outcome, emptcp_event, emptcp_event_kind, emptcp_event_version,
};
use crate::{Error, Hook, Result};

/// The event schema version this library reads (`EMPTCP_EVENT_VERSION`).
pub const EVENT_VERSION: u16 = emptcp_event_version::EMPTCP_EVENT_VERSION.0 as u16;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// get_connect: an MP_CAPABLE option carrying keys.
    Connection {
        /// Where it was seen.
        at: EventPlace,
        /// The option's sender key and its token.
        sender_key: u64,
        /// The sender key's token.
        sender_token: u32,
        /// The receiver key (third ACK, first data), if carried.
        receiver_key: Option<u64>,
        /// Its token.
        receiver_token: Option<u32>,
    },
    /// get_subflow: an MPTCP SYN.
    Subflow {
        /// Where it was seen.
        at: EventPlace,
        /// MP_JOIN (else MP_CAPABLE: the connection's first subflow).
        join: bool,
        /// MP_JOIN: the receiver's token it carries.
        join_token: Option<u32>,
        /// MP_JOIN: the sender's random number.
        join_nonce: Option<u32>,
        /// MP_JOIN: the sender's address id.
        address_id: Option<u8>,
        /// MP_JOIN: the backup flag.
        backup: bool,
    },
    /// add_subflow: what became of a connection's kept ADD_ADDR (one event per
    /// connection and outcome).
    AddSubflow {
        /// The packet it happened on.
        at: EventPlace,
        /// What happened.
        outcome: AddSubflowOutcome,
        /// The ADD_ADDR's address id (0 with [`AddSubflowOutcome::NothingKept`]).
        address_id: u8,
    },
}

/// What became of a kept ADD_ADDR (`enum emptcp_add_subflow_outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddSubflowOutcome {
    /// It went out in the packet of the event.
    Carried,
    /// add_subflow fired, but no ADD_ADDR of the connection was kept.
    NothingKept,
    /// A packet that could have carried it had no option room (or TC could
    /// not grow it); a later packet may still carry it.
    NoRoom,
}

/// Where and when an event was seen, and what connection tracking knew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventPlace {
    /// Kernel monotonic time (ns).
    pub ts_ns: u64,
    /// Interface index.
    pub ifindex: u32,
    /// Hook.
    pub hook: Option<Hook>,
    /// Packet source.
    pub src: SocketAddr,
    /// Packet destination.
    pub dst: SocketAddr,
    /// The tracked connection (its listener's token), if known.
    pub connection: Option<u32>,
    /// The subflow's index in its connection, if known.
    pub subflow_index: Option<u8>,
}

impl Event {
    /// Decodes one record; `None` for a record this library cannot read
    /// (another schema version, unknown kind, wrong size).
    pub fn decode(bytes: &[u8]) -> Option<Event> {
        let ev = abi::from_bytes::<emptcp_event>(bytes)?;
        if ev.version != EVENT_VERSION {
            return None;
        }
        let v6 = u32::from(ev.family) == libc::AF_INET6 as u32;
        let addr = |b: [u8; 16]| -> IpAddr {
            if v6 {
                Ipv6Addr::from(b).into()
            } else {
                Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()
            }
        };
        let at = EventPlace {
            ts_ns: ev.ts_ns,
            ifindex: ev.ifindex,
            hook: Hook::from_abi(ev.hook),
            src: SocketAddr::new(addr(ev.saddr), u16::from_be(ev.sport)),
            dst: SocketAddr::new(addr(ev.daddr), u16::from_be(ev.dport)),
            connection: (ev.connection != 0).then_some(ev.connection),
            subflow_index: (ev.index != 0xff).then_some(ev.index),
        };
        match u32::from(ev.kind) {
            k if k == emptcp_event_kind::EMPTCP_EV_CONNECTION.0 => Some(Event::Connection {
                at,
                sender_key: ev.key_sender,
                sender_token: ev.token_sender,
                receiver_key: (ev.key_receiver != 0).then_some(ev.key_receiver),
                receiver_token: (ev.key_receiver != 0).then_some(ev.token_receiver),
            }),
            k if k == emptcp_event_kind::EMPTCP_EV_SUBFLOW.0 => {
                let join = ev.join != 0;
                Some(Event::Subflow {
                    at,
                    join,
                    join_token: join.then_some(ev.join_token),
                    join_nonce: join.then_some(ev.join_nonce),
                    address_id: join.then_some(ev.address_id),
                    backup: ev.backup != 0,
                })
            }
            k if k == emptcp_event_kind::EMPTCP_EV_ADD_SUBFLOW.0 => {
                use emptcp_add_subflow_outcome as o;
                let outcome = match u32::from(ev.outcome) {
                    x if x == o::EMPTCP_ADDSUB_CARRIED.0 => AddSubflowOutcome::Carried,
                    x if x == o::EMPTCP_ADDSUB_NOTHING_KEPT.0 => AddSubflowOutcome::NothingKept,
                    x if x == o::EMPTCP_ADDSUB_NO_ROOM.0 => AddSubflowOutcome::NoRoom,
                    _ => return None,
                };
                Some(Event::AddSubflow {
                    at,
                    outcome,
                    address_id: ev.address_id,
                })
            }
            _ => None,
        }
    }
}

/// Reads events from a [`crate::Dataplane`]'s ring buffer.
pub struct EventReader<'a> {
    ring: RingBuffer<'a>,
    records: Rc<RefCell<Vec<Vec<u8>>>>,
    undecodable: u64,
}

impl<'a> EventReader<'a> {
    /// A reader of `map` ([`crate::Dataplane::events_map`]).
    pub fn new(map: &'a dyn libbpf_rs::MapCore) -> Result<EventReader<'a>> {
        let records: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
        let sink = Rc::clone(&records);
        let mut builder = RingBufferBuilder::new();
        builder
            .add(map, move |data: &[u8]| {
                sink.borrow_mut().push(data.to_vec());
                0
            })
            .map_err(|e| Error::bpf("reading emptcp_events", e))?;
        let ring = builder
            .build()
            .map_err(|e| Error::bpf("reading emptcp_events", e))?;
        Ok(EventReader {
            ring,
            records,
            undecodable: 0,
        })
    }

    /// Events waiting now, without blocking.
    pub fn drain(&mut self) -> Result<Vec<Event>> {
        self.ring
            .consume()
            .map_err(|e| Error::bpf("reading emptcp_events", e))?;
        Ok(self.take())
    }

    /// Waits up to `timeout` for events and returns those that came.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<Event>> {
        self.ring
            .poll(timeout)
            .map_err(|e| Error::bpf("reading emptcp_events", e))?;
        Ok(self.take())
    }

    /// Records that could not be decoded (another schema version).
    pub fn undecodable(&self) -> u64 {
        self.undecodable
    }

    fn take(&mut self) -> Vec<Event> {
        let raw = std::mem::take(&mut *self.records.borrow_mut());
        let mut out = Vec::with_capacity(raw.len());
        for r in raw {
            match Event::decode(&r) {
                Some(e) => out.push(e),
                None => self.undecodable += 1,
            }
        }
        out
    }
}
