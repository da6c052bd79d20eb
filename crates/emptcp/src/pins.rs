//! Pinned state: what emptcp attached and applied, kept in bpffs under one
//! directory, so traffic keeps being processed after the process that set it
//! up exits, and a later process adopts it (same links, same maps, counters
//! still counting).
//!
//! ```text
//! DIR/maps/NAME                       maps all generations share (flows, counters, conntrack, events)
//! DIR/maps/meta                       the data plane's record: the options it was loaded with
//! DIR/netINO/ifIDX-HOOK/link          the BPF link (tcx, XDP); clsact filters live in the kernel
//! DIR/netINO/ifIDX-HOOK/meta          the attachment's record
//! DIR/netINO/ifIDX-HOOK/genN/prog     a generation's entry program (the current one and the previous)
//! DIR/netINO/ifIDX-HOOK/genN/MAP      its own maps: rules, counters, plugin slots
//! DIR/netINO/ifIDX-HOOK/genN/meta     its policy source
//! ```
//!
//! `INO` is the network namespace's inode (ifindexes are per namespace).
//! bpffs holds only BPF objects, so records are JSON in one-element array
//! maps named `emptcp_meta`. Plugin slots must be pinned: the kernel empties
//! a program array when the last user-space reference to it goes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::attach::{AttachMode, ClsactFilter};
use crate::policy::CompiledPolicy;
use crate::policy_file::{self, FileError};
use crate::{Error, ErrorKind, Hook, Result};

/// The directory `emptcp` uses unless told otherwise.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/emptcp";

/// Version of the records below; a process refuses state written by another.
pub(crate) const RECORD_VERSION: u32 = 1;

const META_MAP_NAME: &str = "emptcp_meta";
/// Attachment records are rewritten in place: a fixed value size.
const ATTACHMENT_RECORD_SIZE: u32 = 4096;
/// The largest policy source a generation record keeps.
const MAX_SOURCE_RECORD: usize = 1 << 20;
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// A pin directory on bpffs.
#[derive(Debug, Clone)]
pub(crate) struct PinDir {
    root: PathBuf,
}

impl PinDir {
    /// Opens (creating if needed) `root`, which must be on a bpffs mount.
    pub(crate) fn open(root: &Path) -> Result<PinDir> {
        let parent = root.parent().unwrap_or(Path::new("/"));
        if !on_bpffs(parent)? {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{} is not on a bpffs mount (mount one: mount -t bpf bpf /sys/fs/bpf)",
                    parent.display()
                ),
            ));
        }
        std::fs::create_dir_all(root.join("maps"))
            .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        Ok(PinDir {
            root: root.to_owned(),
        })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn shared_map(&self, name: &str) -> PathBuf {
        self.root.join("maps").join(name)
    }

    pub(crate) fn attachment_dir(&self, netns: u64, ifindex: u32, hook: Hook) -> PathBuf {
        self.root
            .join(format!("net{netns}"))
            .join(format!("if{ifindex}-{hook}"))
    }

    /// Every attachment directory with a record, in path order.
    pub(crate) fn attachment_dirs(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for ns in read_dir(&self.root)? {
            if !file_name(&ns).starts_with("net") {
                continue;
            }
            for att in read_dir(&ns)? {
                if att.join("meta").exists() {
                    out.push(att);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Where the data plane's own record (its load options) is kept.
    pub(crate) fn dataplane_record(&self) -> PathBuf {
        self.root.join("maps").join("meta")
    }

    /// Removes the shared map pins and the directory itself, when nothing
    /// else is left in it; returns what was left (not ours to remove).
    pub(crate) fn remove(self, shared: &[&str]) -> Result<Vec<PathBuf>> {
        for name in shared {
            remove_pin(&self.shared_map(name))?;
        }
        remove_pin(&self.dataplane_record())?;
        remove_empty_dir(&self.root.join("maps"));
        for ns in read_dir(&self.root)? {
            if file_name(&ns).starts_with("net") {
                remove_empty_dir(&ns);
            }
        }
        let left = read_dir(&self.root)?;
        if left.is_empty() {
            remove_empty_dir(&self.root);
        }
        Ok(left)
    }
}

/// What the pinned data plane was loaded with: kept in `maps/meta`, so that
/// every later process loads its generations the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataplaneRecord {
    /// The record format version of the writer (a reader refuses others).
    pub version: u32,
    /// The data plane's ABI version (`EMPTCP_ABI_VERSION`): the shapes of
    /// the shared maps pinned beside this record.
    pub abi: u32,
    /// The options the data plane was first loaded with.
    pub options: crate::LoadOptions,
}

/// What a pinned attachment is: kept in `ifIDX-HOOK/meta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRecord {
    /// The record format version of the writer (a reader refuses others).
    pub version: u32,
    /// Interface name when attached.
    pub ifname: String,
    /// Interface index (in its namespace).
    pub ifindex: u32,
    /// Inode of the interface's network namespace.
    pub netns: u64,
    /// A path that opens that namespace (`/run/netns/NAME`), when known.
    pub netns_path: Option<PathBuf>,
    /// The hook.
    pub hook: Hook,
    /// How it is attached.
    pub mode: AttachMode,
    /// The cls_bpf filter (mode clsact).
    pub clsact: Option<ClsactFilter>,
    /// The generation running (`None`: generation 0, no rules).
    pub current: Option<u32>,
    /// The generation `rollback` returns to.
    pub previous: Option<u32>,
}

/// What a pinned generation runs: kept in `genN/meta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRecord {
    /// The record format version of the writer (a reader refuses others).
    pub version: u32,
    /// The data plane's ABI version (`EMPTCP_ABI_VERSION`) of the writer:
    /// the layout its counters were written in.
    pub abi: u32,
    /// Generation number.
    pub number: u32,
    /// Its hook.
    pub hook: Hook,
    /// The policy file it was compiled from.
    pub source: PolicySource,
}

/// A policy file as applied: enough to compile it again, to the same rules,
/// in another process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySource {
    /// The file as the user named it.
    pub file: String,
    /// Its text.
    pub text: String,
    /// The interface names it used, resolved when it was applied.
    pub interfaces: BTreeMap<String, u32>,
}

impl PolicySource {
    /// The source of a set built with the API: the policy file it renders
    /// to ([`policy_file::render`]), named `name`.
    pub fn from_set(name: &str, set: &crate::policy::PolicySet, hook: Hook) -> PolicySource {
        PolicySource {
            file: name.to_owned(),
            text: policy_file::render(set, Some(hook)),
            interfaces: BTreeMap::new(),
        }
    }

    /// Parses the source, resolving interfaces as they were resolved when
    /// it was applied.
    pub fn parse(&self) -> std::result::Result<policy_file::PolicyFile, FileError> {
        let resolve = |name: &str| {
            self.interfaces
                .get(name)
                .copied()
                .ok_or_else(|| format!("interface '{name}' was not resolved when applied"))
        };
        policy_file::parse(&self.file, &self.text, &resolve)
    }

    /// Parses and compiles the source for `hook` (see [`PolicySource::parse`]).
    pub fn compile(&self, hook: Hook) -> std::result::Result<CompiledPolicy, FileError> {
        self.parse()?.compile(Some(hook))
    }
}

/// Writes `record` as the JSON value of a new one-element array map pinned
/// at `path` (replacing the value in place when one is pinned there).
pub(crate) fn write_record<T: Serialize>(path: &Path, record: &T, fixed: bool) -> Result<()> {
    let json = serde_json::to_vec(record).expect("records serialize");
    let what = || format!("writing {}", path.display());
    if json.len() > MAX_SOURCE_RECORD {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{}: {} bytes, more than the {MAX_SOURCE_RECORD} kept",
                what(),
                json.len()
            ),
        ));
    }
    let size = if fixed {
        ATTACHMENT_RECORD_SIZE
    } else {
        (4 + json.len() as u32).next_multiple_of(8)
    };
    if 4 + json.len() > size as usize {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{}: record of {} bytes too large", what(), json.len()),
        ));
    }
    let mut value = vec![0u8; size as usize];
    value[..4].copy_from_slice(&(json.len() as u32).to_ne_bytes());
    value[4..4 + json.len()].copy_from_slice(&json);
    let map = match MapHandle::from_pinned_path(path) {
        Ok(m) => m,
        Err(_) => {
            let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
                sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
                ..Default::default()
            };
            let mut m = MapHandle::create(MapType::Array, Some(META_MAP_NAME), 4, size, 1, &opts)
                .map_err(|e| Error::bpf(what(), e))?;
            m.pin(path).map_err(|e| Error::bpf(what(), e))?;
            m
        }
    };
    map.update(&0u32.to_ne_bytes(), &value, MapFlags::ANY)
        .map_err(|e| Error::bpf(what(), e))
}

/// Reads a record written by [`write_record`].
pub(crate) fn read_record<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let what = || format!("reading {}", path.display());
    let map = MapHandle::from_pinned_path(path).map_err(|e| Error::bpf(what(), e))?;
    let value = map
        .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(|e| Error::bpf(what(), e))?
        .unwrap_or_default();
    let len = value
        .get(..4)
        .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")) as usize)
        .unwrap_or(0);
    let json = value.get(4..4 + len).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("{}: truncated record", what()),
        )
    })?;
    serde_json::from_slice(json).map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("{}: not a record of this emptcp version: {e}", what()),
        )
    })
}

/// Removes a pin; one already gone is fine.
pub(crate) fn remove_pin(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

/// Removes a directory emptcp made and the pins in it.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

fn remove_empty_dir(path: &Path) {
    // Not empty (someone else's pins) or gone: either way, leave it.
    let _ = std::fs::remove_dir(path);
}

pub(crate) fn read_dir(path: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {}", path.display()), e)),
    };
    let mut out: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    out.sort();
    Ok(out)
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn on_bpffs(path: &Path) -> Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::new(ErrorKind::InvalidInput, "pin directory path has a NUL byte"))?;
    // SAFETY: zeroed statfs filled by the call; c is NUL-terminated.
    let (rc, kind) = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        let rc = libc::statfs(c.as_ptr(), &mut st);
        (rc, st.f_type)
    };
    if rc != 0 {
        return Err(Error::io(
            format!("checking {}", path.display()),
            std::io::Error::last_os_error(),
        ));
    }
    // f_type's type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    Ok(kind as i64 == BPF_FS_MAGIC)
}
