//! Putting an entry program on a device and swapping it: tcx and XDP links,
//! or a cls_bpf filter on a clsact qdisc for kernels without tcx.
//!
//! Links are kept as plain fds (not libbpf `bpf_link`s) so that one type
//! serves a link made here, a link opened from its bpffs pin by another
//! process, and every mode: update is `BPF_LINK_UPDATE`, detach is
//! `BPF_LINK_DETACH`, and closing the last fd of an unpinned link detaches it.

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::str::FromStr;

use libbpf_rs::libbpf_sys;
use serde::{Deserialize, Serialize};

use crate::{Error, ErrorKind, Hook, Result};

/// How an entry program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachMode {
    /// A tcx link (TC hooks, kernels >= 6.6): sits beside other programs,
    /// touches no qdisc.
    Tcx,
    /// A cls_bpf filter (direct action) on a clsact qdisc: TC hooks on
    /// kernels without tcx. The qdisc is created only when missing, and
    /// removed on detach only if emptcp created it and no filter is left.
    Clsact,
    /// An XDP link in the mode the driver offers (driver, else generic).
    Xdp,
    /// An XDP link in driver (native) mode; refused by drivers without it.
    XdpNative,
    /// An XDP link in generic (skb) mode.
    XdpGeneric,
}

impl AttachMode {
    /// The mode used for `hook` when none is asked for: tcx for TC hooks on
    /// kernels that have it (>= 6.6), else clsact; XDP in the driver's best
    /// mode.
    pub fn default_for(hook: Hook) -> AttachMode {
        match hook {
            Hook::Xdp => AttachMode::Xdp,
            Hook::TcIngress | Hook::TcEgress if kernel_has_tcx() => AttachMode::Tcx,
            Hook::TcIngress | Hook::TcEgress => AttachMode::Clsact,
        }
    }

    /// Whether this mode can serve `hook`.
    pub fn serves(self, hook: Hook) -> bool {
        match self {
            AttachMode::Tcx | AttachMode::Clsact => hook != Hook::Xdp,
            AttachMode::Xdp | AttachMode::XdpNative | AttachMode::XdpGeneric => hook == Hook::Xdp,
        }
    }

    /// The name on the command line and in `--json` output.
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Tcx => "tcx",
            AttachMode::Clsact => "clsact",
            AttachMode::Xdp => "xdp",
            AttachMode::XdpNative => "xdp-native",
            AttachMode::XdpGeneric => "xdp-generic",
        }
    }

    const ALL: [AttachMode; 5] = [
        AttachMode::Tcx,
        AttachMode::Clsact,
        AttachMode::Xdp,
        AttachMode::XdpNative,
        AttachMode::XdpGeneric,
    ];
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AttachMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        AttachMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!("unknown attach mode '{s}': expected tcx, clsact, xdp, xdp-native or xdp-generic")
            })
    }
}

/// tcx arrived in Linux 6.6.
fn kernel_has_tcx() -> bool {
    // SAFETY: uname fills the zeroed struct; release is NUL-terminated.
    let release = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return true;
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    };
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 6)
}

/// The cls_bpf filter of a clsact attachment: where it is, and whether the
/// qdisc was made for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClsactFilter {
    /// Filter handle.
    pub handle: u32,
    /// Filter priority.
    pub priority: u32,
    /// emptcp created the clsact qdisc (else it was there before).
    pub created_qdisc: bool,
}

/// An attached entry program, however it is attached.
pub(crate) enum HookLink {
    /// tcx or XDP: a BPF link.
    Link(OwnedFd),
    /// A cls_bpf filter; the kernel keeps it (and its program) until it is
    /// deleted.
    Clsact(ClsactFilter),
}

/// Priority of emptcp's cls_bpf filters (tc shows it as `pref`); the next
/// ones are tried when another filter holds it.
const CLSACT_PRIORITY: u32 = 0xe3;
const CLSACT_HANDLE: u32 = 0xe3;

/// Attaches `prog` at `hook` of `ifindex` (in the calling thread's network
/// namespace).
pub(crate) fn attach(
    prog: BorrowedFd<'_>,
    hook: Hook,
    ifindex: u32,
    mode: AttachMode,
) -> Result<HookLink> {
    if !mode.serves(hook) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("attach mode {mode} cannot serve hook {hook}"),
        ));
    }
    let what = || {
        format!(
            "attaching {} ({mode}) on ifindex {ifindex}",
            hook.program_name()
        )
    };
    let target = i32::try_from(ifindex)
        .map_err(|_| Error::new(ErrorKind::NotFound, format!("{}: bad ifindex", what())))?;
    let (attach_type, flags) = match mode {
        AttachMode::Clsact => return attach_clsact(prog, hook, ifindex).map(HookLink::Clsact),
        AttachMode::Tcx if hook == Hook::TcIngress => (libbpf_sys::BPF_TCX_INGRESS, 0),
        AttachMode::Tcx => (libbpf_sys::BPF_TCX_EGRESS, 0),
        AttachMode::Xdp => (libbpf_sys::BPF_XDP, 0),
        AttachMode::XdpNative => (libbpf_sys::BPF_XDP, libbpf_sys::XDP_FLAGS_DRV_MODE),
        AttachMode::XdpGeneric => (libbpf_sys::BPF_XDP, libbpf_sys::XDP_FLAGS_SKB_MODE),
    };
    if hook == Hook::Xdp {
        // The kernel answers EBUSY; say what holds the device instead.
        if let Some(other) = xdp_program_on(ifindex)? {
            return Err(Error::new(
                ErrorKind::Busy,
                format!(
                    "{}: the device already runs XDP program {other}; emptcp does not replace \
                     programs it did not attach (detach that one first)",
                    what()
                ),
            ));
        }
    }
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        flags,
        ..Default::default()
    };
    // SAFETY: plain syscall wrapper with a valid program fd and options
    // struct; a non-negative result is a new fd we own.
    let fd = unsafe { libbpf_sys::bpf_link_create(prog.as_raw_fd(), target, attach_type, &opts) };
    Ok(HookLink::Link(
        owned_fd(fd).map_err(|e| Error::io(what(), e))?,
    ))
}

impl HookLink {
    /// Makes `prog` the attached program: one atomic replacement (link
    /// update, or cls_bpf filter replace).
    pub(crate) fn update(&self, prog: BorrowedFd<'_>, hook: Hook, ifindex: u32) -> Result<()> {
        let what = || format!("replacing the {hook} program on ifindex {ifindex}");
        match self {
            HookLink::Link(link) => {
                // SAFETY: valid link and program fds; NULL opts is allowed.
                let rc = unsafe {
                    libbpf_sys::bpf_link_update(
                        link.as_raw_fd(),
                        prog.as_raw_fd(),
                        std::ptr::null(),
                    )
                };
                check(rc).map_err(|e| Error::io(what(), e))
            }
            // cls_bpf replaces the program of an existing handle under RCU:
            // each packet sees the old filter or the new one.
            HookLink::Clsact(f) => tc_filter(prog, hook, ifindex, f.handle, f.priority, true)
                .map(|_| ())
                .map_err(|e| Error::io(what(), e)),
        }
    }

    /// Removes the program from the device. A clsact qdisc emptcp created is
    /// removed too when no filter is left on it; true when one is kept
    /// because filters remain (emptcp's other direction, or others').
    pub(crate) fn detach(&self, hook: Hook, ifindex: u32) -> Result<bool> {
        let what = || format!("detaching {} from ifindex {ifindex}", hook.program_name());
        match self {
            HookLink::Link(link) => {
                // SAFETY: valid link fd.
                let rc = unsafe { libbpf_sys::bpf_link_detach(link.as_raw_fd()) };
                check(rc).map_err(|e| Error::io(what(), e))?;
                Ok(false)
            }
            HookLink::Clsact(f) => {
                let mut tc_hook = tc_hook(hook, ifindex);
                let opts = libbpf_sys::bpf_tc_opts {
                    sz: std::mem::size_of::<libbpf_sys::bpf_tc_opts>() as _,
                    handle: f.handle,
                    priority: f.priority,
                    ..Default::default()
                };
                // SAFETY: valid structs for the call's duration.
                let rc = unsafe { libbpf_sys::bpf_tc_detach(&tc_hook, &opts) };
                // ENOENT: someone removed the filter (or the qdisc) already.
                if rc != 0 && rc != -libc::ENOENT {
                    return Err(Error::io(what(), std::io::Error::from_raw_os_error(-rc)));
                }
                if !f.created_qdisc {
                    return Ok(false);
                }
                if clsact_is_empty(ifindex)? {
                    tc_hook.attach_point = libbpf_sys::BPF_TC_INGRESS | libbpf_sys::BPF_TC_EGRESS;
                    // SAFETY: valid hook struct.
                    let rc = unsafe { libbpf_sys::bpf_tc_hook_destroy(&mut tc_hook) };
                    if rc != 0 && rc != -libc::ENOENT {
                        return Err(Error::io(
                            format!("removing the clsact qdisc emptcp made on ifindex {ifindex}"),
                            std::io::Error::from_raw_os_error(-rc),
                        ));
                    }
                    return Ok(false);
                }
                Ok(true)
            }
        }
    }

    /// Hands over the duty to remove the clsact qdisc emptcp created.
    pub(crate) fn take_qdisc(&mut self) {
        if let HookLink::Clsact(f) = self {
            f.created_qdisc = true;
        }
    }

    /// The link's fd (clsact filters have none).
    pub(crate) fn link_fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            HookLink::Link(fd) => Some(std::os::fd::AsFd::as_fd(fd)),
            HookLink::Clsact(_) => None,
        }
    }
}

fn attach_clsact(prog: BorrowedFd<'_>, hook: Hook, ifindex: u32) -> Result<ClsactFilter> {
    let what = || {
        format!(
            "attaching {} (clsact) on ifindex {ifindex}",
            hook.program_name()
        )
    };
    let mut tc_hook = tc_hook(hook, ifindex);
    // SAFETY: valid hook struct.
    let rc = unsafe { libbpf_sys::bpf_tc_hook_create(&mut tc_hook) };
    let created_qdisc = match rc {
        0 => true,
        rc if rc == -libc::EEXIST => false,
        rc => return Err(Error::io(what(), std::io::Error::from_raw_os_error(-rc))),
    };
    // Another filter may hold our priority: take the next free one.
    let mut last = None;
    for priority in CLSACT_PRIORITY..CLSACT_PRIORITY + 16 {
        match tc_filter(prog, hook, ifindex, CLSACT_HANDLE, priority, false) {
            Ok(()) => {
                return Ok(ClsactFilter {
                    handle: CLSACT_HANDLE,
                    priority,
                    created_qdisc,
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => last = Some(e),
            Err(e) => {
                last = Some(e);
                break;
            }
        }
    }
    if created_qdisc {
        tc_hook.attach_point = libbpf_sys::BPF_TC_INGRESS | libbpf_sys::BPF_TC_EGRESS;
        // SAFETY: valid hook struct. Best effort: undo what we made.
        unsafe { libbpf_sys::bpf_tc_hook_destroy(&mut tc_hook) };
    }
    Err(Error::io(what(), last.expect("at least one try")))
}

fn tc_hook(hook: Hook, ifindex: u32) -> libbpf_sys::bpf_tc_hook {
    libbpf_sys::bpf_tc_hook {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_hook>() as _,
        ifindex: ifindex as i32,
        attach_point: if hook == Hook::TcIngress {
            libbpf_sys::BPF_TC_INGRESS
        } else {
            libbpf_sys::BPF_TC_EGRESS
        },
        ..Default::default()
    }
}

fn tc_filter(
    prog: BorrowedFd<'_>,
    hook: Hook,
    ifindex: u32,
    handle: u32,
    priority: u32,
    replace: bool,
) -> std::io::Result<()> {
    let tc_hook = tc_hook(hook, ifindex);
    let mut opts = libbpf_sys::bpf_tc_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_opts>() as _,
        prog_fd: prog.as_raw_fd(),
        handle,
        priority,
        flags: if replace {
            libbpf_sys::BPF_TC_F_REPLACE
        } else {
            0
        },
        ..Default::default()
    };
    // SAFETY: valid structs for the call's duration.
    check(unsafe { libbpf_sys::bpf_tc_attach(&tc_hook, &mut opts) })
}

/// Whether the device's clsact qdisc holds no filter in either direction.
/// libbpf can only query a filter by handle, so this asks tc (iproute2),
/// which inherits the calling thread's network namespace.
fn clsact_is_empty(ifindex: u32) -> Result<bool> {
    let name = crate::netns::interface_name(ifindex)?;
    for dir in ["ingress", "egress"] {
        let out = std::process::Command::new("tc")
            .args(["filter", "show", "dev", &name, dir])
            .output()
            .map_err(|e| Error::io("running tc filter show", e))?;
        if !out.status.success() || !out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The XDP program on `ifindex` in any mode, as "name (id N)".
pub fn xdp_program_on(ifindex: u32) -> Result<Option<String>> {
    let mut id = 0u32;
    // SAFETY: valid out pointer.
    let rc = unsafe { libbpf_sys::bpf_xdp_query_id(ifindex as i32, 0, &mut id) };
    check(rc).map_err(|e| Error::io(format!("querying XDP on ifindex {ifindex}"), e))?;
    Ok((id != 0).then(|| describe_program(id)))
}

/// "name (id N)" of a loaded program.
pub(crate) fn describe_program(id: u32) -> String {
    match libbpf_rs::ProgramHandle::from_prog_id(id) {
        Ok(p) => format!("{} (id {id})", p.name().to_string_lossy()),
        Err(_) => format!("id {id}"),
    }
}

/// One program attached with tcx, as BPF_PROG_QUERY reports it (iproute2 6.1
/// and bpftool 7.1 do not show tcx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcxProgram {
    /// Program id.
    pub prog_id: u32,
    /// Its link id.
    pub link_id: u32,
    /// Program name.
    pub name: String,
}

/// The tcx programs at `hook` of `ifindex`, in run order.
pub fn tcx_programs(hook: Hook, ifindex: u32) -> Result<Vec<TcxProgram>> {
    let attach_type = match hook {
        Hook::TcIngress => libbpf_sys::BPF_TCX_INGRESS,
        Hook::TcEgress => libbpf_sys::BPF_TCX_EGRESS,
        Hook::Xdp => return Ok(Vec::new()),
    };
    const MAX: usize = 64;
    let mut prog_ids = [0u32; MAX];
    let mut link_ids = [0u32; MAX];
    let mut opts = libbpf_sys::bpf_prog_query_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_query_opts>() as _,
        prog_ids: prog_ids.as_mut_ptr(),
        link_ids: link_ids.as_mut_ptr(),
        ..Default::default()
    };
    opts.__bindgen_anon_1.count = MAX as u32;
    // SAFETY: the id arrays hold `count` entries and outlive the call.
    let rc = unsafe { libbpf_sys::bpf_prog_query_opts(ifindex as i32, attach_type, &mut opts) };
    check(rc).map_err(|e| Error::io(format!("querying tcx programs on ifindex {ifindex}"), e))?;
    // SAFETY: the kernel wrote the count back into the union.
    let n = (unsafe { opts.__bindgen_anon_1.count } as usize).min(MAX);
    Ok((0..n)
        .map(|i| TcxProgram {
            prog_id: prog_ids[i],
            link_id: link_ids[i],
            name: libbpf_rs::ProgramHandle::from_prog_id(prog_ids[i])
                .map(|p| p.name().to_string_lossy().into_owned())
                .unwrap_or_default(),
        })
        .collect())
}

/// A libbpf fd result (negative errno on failure) as an owned fd.
pub(crate) fn owned_fd(fd: i32) -> std::io::Result<OwnedFd> {
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a fresh fd the kernel just returned to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(rc: i32) -> std::io::Result<()> {
    if rc < 0 {
        Err(std::io::Error::from_raw_os_error(-rc))
    } else {
        Ok(())
    }
}
