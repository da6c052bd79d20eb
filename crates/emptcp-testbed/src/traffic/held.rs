//! An MPTCP connection held open between two hosts, both ends in the caller's hands.
//!
//! For tests that act on a live connection (path-manager commands naming it by token, subflow
//! changes) and then move bytes over it; [`super::transfer`] opens and closes its connection
//! inside one call.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::sockopt::{self, MptcpInfo, SubflowInfo};
use super::{bind, connect, fill_stream, mptcp_socket, set_int_opt, wildcard};
use crate::host::Host;
use crate::topology::Family;

/// Both ends of one MPTCP connection; dropping it closes them.
#[derive(Debug)]
pub struct HeldConnection {
    /// The connecting end (in the client host).
    pub client: TcpStream,
    /// The accepted end (in the server host).
    pub server: TcpStream,
    /// The server's listening address (`server_ip:port`).
    pub target: SocketAddr,
    /// Kept open: the kernel answers MP_JOIN SYNs on the listener, so closing it would refuse
    /// every further subflow.
    _listener: TcpListener,
    sent: u64,
}

impl HeldConnection {
    /// Listens on `server` (wildcard address, free port), connects from `client` to
    /// `server_ip` (from `bind` when given) and accepts. Fails unless both ends are MPTCP.
    pub fn open(
        client: &Host,
        server: &Host,
        server_ip: IpAddr,
        bind_ip: Option<IpAddr>,
    ) -> Result<HeldConnection> {
        let family = Family::of(&server_ip);
        let listener = server
            .run(move || -> std::io::Result<TcpListener> {
                let fd = mptcp_socket(family)?;
                set_int_opt(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
                bind(&fd, &wildcard(family, 0))?;
                // SAFETY: plain syscall on a valid socket.
                super::check(unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&fd), 1) })?;
                Ok(TcpListener::from(fd))
            })?
            .with_context(|| format!("listening for MPTCP on host {}", server.name()))?;
        let target = SocketAddr::new(server_ip, listener.local_addr()?.port());
        let client_stream = client
            .run(move || -> std::io::Result<TcpStream> {
                let fd = mptcp_socket(family)?;
                if let Some(ip) = bind_ip {
                    bind(&fd, &SocketAddr::new(ip, 0))?;
                }
                connect(&fd, &target)?;
                Ok(TcpStream::from(fd))
            })?
            .with_context(|| format!("connecting from host {} to {target}", client.name()))?;
        let (server_stream, _) = listener.accept().context("accepting the connection")?;
        for s in [&client_stream, &server_stream] {
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.set_write_timeout(Some(Duration::from_secs(10)))?;
        }
        let held = HeldConnection {
            client: client_stream,
            server: server_stream,
            target,
            _listener: listener,
            sent: 0,
        };
        for (end, info) in [
            ("client", held.client_info()?),
            ("server", held.server_info()?),
        ] {
            if info.fallback() {
                bail!("the {end} end of {target} fell back to TCP");
            }
        }
        Ok(held)
    }

    /// `MPTCP_INFO` of the client end (its `token` is the client's local token).
    pub fn client_info(&self) -> Result<MptcpInfo> {
        sockopt::mptcp_info(self.client.as_fd()).context("MPTCP_INFO of the client end")
    }

    /// `MPTCP_INFO` of the server end.
    pub fn server_info(&self) -> Result<MptcpInfo> {
        sockopt::mptcp_info(self.server.as_fd()).context("MPTCP_INFO of the server end")
    }

    /// The client end's subflows with their counters.
    pub fn client_subflows(&self) -> Result<Vec<SubflowInfo>> {
        sockopt::subflows(self.client.as_fd()).context("subflows of the client end")
    }

    /// Waits until the client end has `n` subflows (joins open once the connection is fully
    /// established, asynchronously), polling every 10 ms for at most `limit`.
    pub fn wait_client_subflows(&self, n: usize, limit: Duration) -> Result<Vec<SubflowInfo>> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let subflows = self.client_subflows()?;
            if subflows.len() >= n {
                return Ok(subflows);
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "{} of {n} subflows after {limit:?} on the connection to {}",
                    subflows.len(),
                    self.target
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `bytes` of the testbed stream from the client (on a second thread, so the whole
    /// window can be in flight) while the calling thread reads them on the server, checking
    /// every byte.
    pub fn client_to_server(&mut self, bytes: u64) -> Result<()> {
        const CHUNK: usize = 64 * 1024;
        let start = self.sent;
        let mut writer = self.client.try_clone().context("cloning the client end")?;
        std::thread::scope(|scope| -> Result<()> {
            let sending = scope.spawn(move || -> Result<()> {
                let mut out = vec![0u8; CHUNK];
                let mut done = 0;
                while done < bytes {
                    let n = ((bytes - done) as usize).min(CHUNK);
                    fill_stream(1, start + done, &mut out[..n]);
                    writer
                        .write_all(&out[..n])
                        .with_context(|| format!("sending after {done} of {bytes} bytes"))?;
                    done += n as u64;
                }
                Ok(())
            });
            let (mut expected, mut back) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
            let mut done = 0;
            while done < bytes {
                let n = ((bytes - done) as usize).min(CHUNK);
                self.server
                    .read_exact(&mut back[..n])
                    .with_context(|| format!("receiving after {done} of {bytes} bytes"))?;
                fill_stream(1, start + done, &mut expected[..n]);
                if expected[..n] != back[..n] {
                    bail!(
                        "bytes {}..{} arrived altered",
                        start + done,
                        start + done + n as u64
                    );
                }
                done += n as u64;
            }
            match sending.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })?;
        self.sent += bytes;
        Ok(())
    }
}
