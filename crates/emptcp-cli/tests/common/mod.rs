//! What the CLI tests share: running `emptcp` on a pin directory of the
//! test's own, and reading its JSON.
#![allow(dead_code)] // each test file uses its part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use emptcp_testbed::Host;

/// A pin directory of this test; removed (with `detach --all`, then by
/// hand if that failed) when dropped.
pub struct PinDir(pub PathBuf);

impl PinDir {
    pub fn new(label: &str) -> PinDir {
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/emptcp-test-{}-{label}",
            std::process::id()
        ));
        PinDir(dir)
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = emptcp_at(&self.0, None, &["detach", "--all"]);
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn emptcp_at(pins: &Path, netns: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_emptcp"));
    cmd.env("EMPTCP_PIN_DIR", pins);
    if let Some(ns) = netns {
        cmd.args(["--netns", ns]);
    }
    cmd.args(args).output().expect("running emptcp")
}

/// Runs emptcp and expects exit status `code`; returns stdout.
pub fn run(pins: &Path, netns: Option<&str>, args: &[&str], code: i32) -> String {
    let out = emptcp_at(pins, netns, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "emptcp {args:?}: stdout {}\nstderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

pub fn json(pins: &Path, netns: Option<&str>, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    serde_json::from_str(&run(pins, netns, &a, 0)).expect("JSON output")
}

/// A scratch directory of this test, removed when dropped.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tempdir(label: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("emptcp-cli-{}-{label}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// The namespace name of a testbed host, for `--netns`.
pub fn netns_name(host: &Host) -> String {
    let path = host.netns_path();
    path.file_name().unwrap().to_string_lossy().into_owned()
}
