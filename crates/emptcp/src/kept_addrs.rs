//! The ADD_ADDRs blk_subflow stripped and keeps for add_subflow
//! (`emptcp_addr_store`, bpf/lib/addr_store.h), as user space sees them.

use serde::Serialize;

use libbpf_rs::MapCore;

use crate::Result;
use crate::abi::{emptcp_addr_kept, emptcp_addr_state};
use crate::dataplane::{Dataplane, lookup};

/// Where a kept ADD_ADDR stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeptState {
    /// Kept, not yet put back.
    Kept,
    /// A CPU is writing or carrying it right now.
    Busy,
    /// Put back once: never again for this connection.
    Done,
}

/// One announcing endpoint's latest stripped ADD_ADDR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptAddAddr {
    /// The connection (its listener's token).
    pub connection: u32,
    /// Announced by the connection's listener (else by its initiator).
    pub by_listener: bool,
    /// The option as it was on the wire (kind, length, ..., HMAC).
    pub option: Vec<u8>,
    /// How many times an ADD_ADDR of this endpoint was kept (retransmissions
    /// overwrite the same slot).
    pub times_kept: u16,
    /// add_subflow has fired for it.
    pub armed: bool,
    /// Where it stands.
    pub state: KeptState,
}

impl Dataplane {
    /// Every kept ADD_ADDR, by connection then announcer (listener first).
    pub fn kept_add_addrs(&self) -> Result<Vec<KeptAddAddr>> {
        use emptcp_addr_state as s;
        let map = self.map("emptcp_addr_store")?;
        let mut out = Vec::new();
        for key in map.keys() {
            let Some(e) = lookup::<emptcp_addr_kept>(&map, &key)? else {
                continue;
            };
            let Ok(connection) = <[u8; 4]>::try_from(key.as_slice()).map(u32::from_ne_bytes) else {
                continue;
            };
            for (d, slot) in e.slot.iter().enumerate() {
                let state = match slot.state {
                    x if x == s::EMPTCP_ADDR_KEPT.0 => KeptState::Kept,
                    x if x == s::EMPTCP_ADDR_WRITING.0 || x == s::EMPTCP_ADDR_CARRYING.0 => {
                        KeptState::Busy
                    }
                    x if x == s::EMPTCP_ADDR_DONE.0 => KeptState::Done,
                    _ => continue,
                };
                let len = usize::from(slot.len).min(slot.opt.len());
                out.push(KeptAddAddr {
                    connection,
                    by_listener: d == 0,
                    option: slot.opt[..len].to_vec(),
                    times_kept: slot.kept,
                    armed: e.armed & (1 << d) != 0,
                    state,
                });
            }
        }
        out.sort_by_key(|k| (k.connection, !k.by_listener));
        Ok(out)
    }
}
