//! Packet captures inside a host with tcpdump.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;

use crate::host::Host;

/// How long tcpdump may take to open the interface.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long tcpdump may take to flush and exit after SIGINT before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// What a finished capture reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureSummary {
    /// The pcap file.
    pub path: PathBuf,
    /// "N packets captured" from tcpdump.
    pub packets_captured: Option<u64>,
    /// "N packets dropped by kernel" from tcpdump (non-zero means the pcap is incomplete).
    pub packets_dropped_by_kernel: Option<u64>,
}

/// A running tcpdump; stopped with SIGINT (so the pcap is complete) on [`CaptureGuard::finish`]
/// or on drop.
#[derive(Debug)]
pub struct CaptureGuard {
    child: Option<Child>,
    path: PathBuf,
    what: String,
    stderr: Option<JoinHandle<String>>,
}

impl Host {
    /// Starts `tcpdump -U` on `iface` of this host writing to `path`, with a pcap `filter`
    /// (empty: everything), and returns once tcpdump listens.
    ///
    /// Full packets are captured (`-s 0`); `-U` writes each packet at once so the file is
    /// usable even if tcpdump is killed.
    pub fn capture(
        &self,
        iface: &str,
        filter: &str,
        path: impl AsRef<Path>,
    ) -> Result<CaptureGuard> {
        let path = path.as_ref().to_path_buf();
        let what = format!(
            "tcpdump on {iface} of host {} to {}",
            self.name(),
            path.display()
        );
        let mut cmd = self.command("tcpdump");
        // -Z root: Debian's tcpdump otherwise drops to user tcpdump, which may not be allowed
        // to write `path`. --immediate-mode: libpcap otherwise hands packets over in blocks
        // with a 1 s timeout, and the SIGINT of finish() loses the pending block (a short
        // transfer then leaves a capture without its packets).
        cmd.args([
            "-U",
            "--immediate-mode",
            "-n",
            "-s",
            "0",
            "-Z",
            "root",
            "-i",
            iface,
            "-w",
        ])
        .arg(&path);
        cmd.args(filter.split_whitespace());
        tracing::debug!(command = %crate::cmd::display(&cmd), "starting capture");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (ready_tx, ready_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = ready_tx.send(());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let mut guard = CaptureGuard {
            child: Some(child),
            path,
            what,
            stderr: Some(reader),
        };
        let started = Instant::now();
        loop {
            match ready_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(()) => break,
                Err(mpsc::RecvTimeoutError::Timeout) if started.elapsed() < START_TIMEOUT => {
                    if let Some(status) = guard
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten())
                    {
                        guard.child = None;
                        let err = guard
                            .stderr
                            .take()
                            .and_then(|h| h.join().ok())
                            .unwrap_or_default();
                        bail!("{} exited ({status}): {}", guard.what, err.trim());
                    }
                }
                Err(_) => {
                    let what = guard.what.clone();
                    let err = guard
                        .stop()
                        .map(|_| String::new())
                        .unwrap_or_else(|e| format!("{e:#}"));
                    bail!("{what} did not start listening within {START_TIMEOUT:?} {err}");
                }
            }
        }
        Ok(guard)
    }
}

fn count_before(stderr: &str, suffix: &str) -> Option<u64> {
    stderr
        .lines()
        .find(|l| l.trim_end().ends_with(suffix))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

impl CaptureGuard {
    /// The pcap file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops tcpdump (SIGINT, then SIGKILL after 5 s) and waits for it; the pcap is complete
    /// when this returns.
    pub fn finish(mut self) -> Result<CaptureSummary> {
        self.stop()
    }

    fn stop(&mut self) -> Result<CaptureSummary> {
        let Some(mut child) = self.child.take() else {
            bail!("{} already stopped", self.what);
        };
        // Give packets sent just before finish() time to pass the capture point.
        std::thread::sleep(Duration::from_millis(50));
        let pid = Pid::from_raw(child.id() as i32);
        // SIGINT makes tcpdump flush its buffer and print its statistics. Signal nsenter's
        // child too: nsenter execs tcpdump, so the pid is tcpdump's own.
        let _ = kill(pid, Signal::SIGINT);
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .with_context(|| format!("waiting for {}", self.what))?
            {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        tracing::debug!(what = %self.what, ?status, stderr = %stderr.trim(), "capture stopped");
        if status.is_none() {
            bail!(
                "{} ignored SIGINT for {STOP_TIMEOUT:?} and was killed",
                self.what
            );
        }
        Ok(CaptureSummary {
            path: self.path.clone(),
            packets_captured: count_before(&stderr, "packets captured"),
            packets_dropped_by_kernel: count_before(&stderr, "packets dropped by kernel"),
        })
    }
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        if self.child.is_some()
            && let Err(e) = self.stop()
        {
            tracing::warn!(error = %format!("{e:#}"), "stopping capture");
        }
    }
}
