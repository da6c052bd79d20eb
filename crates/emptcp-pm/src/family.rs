//! Resolving a generic netlink family and its multicast groups through the controller.

use crate::attr::{AttrWriter, Attrs};
use crate::error::{Error, Result};
use crate::socket::GenlSocket;
use crate::uapi::ctrl::*;

/// A resolved family: its id and its multicast groups (name, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Family {
    pub(crate) id: u16,
    pub(crate) groups: Vec<(String, u32)>,
}

impl Family {
    pub(crate) fn group(&self, name: &str) -> Result<u32> {
        self.groups
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
            .ok_or_else(|| Error::NotFound(format!("multicast group {name}")))
    }
}

pub(crate) fn resolve(sock: &mut GenlSocket, name: &str) -> Result<Family> {
    let mut attrs = AttrWriter::new();
    attrs.put_str(CTRL_ATTR_FAMILY_NAME, name);
    let replies = sock
        .request(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            1,
            false,
            &attrs.into_bytes(),
            &|| format!("resolving generic netlink family {name}"),
        )
        .map_err(|e| match e {
            Error::Kernel {
                errno: libc::ENOENT,
                ..
            } => Error::NotFound(format!("family {name}")),
            other => other,
        })?;
    let reply = replies
        .first()
        .ok_or_else(|| Error::Malformed(format!("no reply resolving family {name}")))?;
    parse(&reply.attrs).and_then(|f| f.ok_or_else(|| Error::NotFound(format!("family {name}"))))
}

fn parse(attrs: &[u8]) -> Result<Option<Family>> {
    let mut id = None;
    let mut groups = Vec::new();
    for attr in Attrs::new(attrs) {
        let attr = attr?;
        match attr.kind {
            CTRL_ATTR_FAMILY_ID => id = Some(attr.u16()?),
            CTRL_ATTR_MCAST_GROUPS => {
                // An array: each element is a nest holding a name and an id.
                for group in attr.nested() {
                    let (mut gname, mut gid) = (None, None);
                    for field in group?.nested() {
                        let field = field?;
                        match field.kind {
                            CTRL_ATTR_MCAST_GRP_NAME => gname = Some(field.string()),
                            CTRL_ATTR_MCAST_GRP_ID => gid = Some(field.u32()?),
                            _ => {}
                        }
                    }
                    if let (Some(n), Some(i)) = (gname, gid) {
                        groups.push((n, i));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(id.map(|id| Family { id, groups }))
}
