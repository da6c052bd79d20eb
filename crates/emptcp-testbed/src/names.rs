//! Unique names for everything a testbed creates.
//!
//! The machine is shared with other users and with tests running in parallel, so every namespace
//! name carries the process id and a per-process counter: `emtb-<pid>-<n>-<label>-<host>`.

use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every network namespace created by this crate.
pub const NAME_PREFIX: &str = "emtb-";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Returns a fresh testbed id `<pid>-<n>`, unique within this machine while this process lives.
pub(crate) fn fresh_id() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{}", std::process::id(), n)
}

/// True when running as root (euid 0); testbeds need CAP_NET_ADMIN and CAP_SYS_ADMIN.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// For root-only tests: true when the test can run. Without root it prints
/// why and returns false, so the test passes as skipped, except under
/// `CI=true`, where a missing prerequisite must fail the run: then it panics.
pub fn root_or_skip() -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and not root: this test needs root (namespaces, eBPF)"
    );
    eprintln!("skipped: needs root");
    false
}

/// Deletes namespaces left by processes of this crate that no longer run (e.g. killed by a
/// timeout, where Drop never ran). Namespaces of live processes are left alone.
///
/// Returns the names deleted.
pub fn reap_stale() -> anyhow::Result<Vec<String>> {
    let mut deleted = Vec::new();
    let entries = match std::fs::read_dir("/run/netns") {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(deleted),
        Err(e) => return Err(anyhow::Error::new(e).context("listing /run/netns")),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "del", &name]);
        if crate::cmd::run_checked(&mut cmd).is_ok() {
            deleted.push(name);
        }
    }
    Ok(deleted)
}
