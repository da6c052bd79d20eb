//! Kernel SNMP and netstat counters of a host (what `nstat -asz` prints).
//!
//! Read straight from `/proc/thread-self/net/{snmp,netstat,snmp6}` on a thread inside the host,
//! so no process is spawned. Names follow nstat: section prefix plus field, e.g.
//! `TcpInCsumErrors`, `TcpExtTCPSackMerged`, `MPTcpExtMPJoinSynRx`, `Ip6InReceives`.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::host::Host;

/// A snapshot of every counter of one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters(pub BTreeMap<String, u64>);

impl Counters {
    /// The counter `name`, 0 when the kernel does not have it.
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// True when the kernel reports counter `name` (absent counters mean an older kernel).
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// `self - earlier` for every counter (saturating; counters only grow).
    pub fn delta(&self, earlier: &Counters) -> Counters {
        Counters(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(earlier.get(k))))
                .collect(),
        )
    }

    /// Only the `MPTcpExt*` counters.
    pub fn mptcp(&self) -> Counters {
        self.with_prefix("MPTcpExt")
    }

    /// Counters whose name starts with `prefix`.
    pub fn with_prefix(&self, prefix: &str) -> Counters {
        Counters(
            self.0
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        )
    }

    /// Counters that are not zero.
    pub fn nonzero(&self) -> Counters {
        Counters(
            self.0
                .iter()
                .filter(|(_, v)| **v != 0)
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        )
    }

    /// `TcpInCsumErrors`: TCP segments dropped for a bad checksum.
    pub fn tcp_in_csum_errors(&self) -> u64 {
        self.get("TcpInCsumErrors")
    }

    /// `MPTcpExtDataCsumErr`: MPTCP DSS checksum failures.
    pub fn mptcp_data_csum_err(&self) -> u64 {
        self.get("MPTcpExtDataCsumErr")
    }

    /// `MPTcpExtMPJoinSynRx`: MP_JOIN SYNs received.
    pub fn mp_join_syn_rx(&self) -> u64 {
        self.get("MPTcpExtMPJoinSynRx")
    }
}

/// Parses the two-line-per-section format of `/proc/net/snmp` and `/proc/net/netstat`:
/// `Prefix: name1 name2 ...` followed by `Prefix: value1 value2 ...`.
pub fn parse_paired(text: &str, out: &mut BTreeMap<String, u64>) -> Result<()> {
    let mut lines = text.lines();
    while let Some(names) = lines.next() {
        let Some(values) = lines.next() else {
            bail!("section {names:?} has no value line")
        };
        let (prefix, names) = names
            .split_once(':')
            .context("missing ':' in a name line")?;
        let (prefix2, values) = values
            .split_once(':')
            .context("missing ':' in a value line")?;
        if prefix != prefix2 {
            bail!("name line {prefix:?} is followed by value line {prefix2:?}");
        }
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            // Negative values exist (Tcp MaxConn is -1); nstat skips them too.
            if let Ok(v) = value.parse::<u64>() {
                out.insert(format!("{prefix}{name}"), v);
            }
        }
    }
    Ok(())
}

/// Parses the one-counter-per-line format of `/proc/net/snmp6`.
pub fn parse_flat(text: &str, out: &mut BTreeMap<String, u64>) {
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if let (Some(name), Some(value)) = (it.next(), it.next())
            && let Ok(v) = value.parse::<u64>()
        {
            out.insert(name.to_owned(), v);
        }
    }
}

impl Host {
    /// Every counter of this host's namespace.
    pub fn nstat(&self) -> Result<Counters> {
        let texts = self
            .run(|| -> std::io::Result<[String; 3]> {
                // thread-self: /proc/net follows the main thread's namespace, not this thread's.
                Ok([
                    std::fs::read_to_string("/proc/thread-self/net/snmp")?,
                    std::fs::read_to_string("/proc/thread-self/net/netstat")?,
                    std::fs::read_to_string("/proc/thread-self/net/snmp6").unwrap_or_default(),
                ])
            })?
            .with_context(|| format!("reading counters of host {}", self.name()))?;
        let mut map = BTreeMap::new();
        parse_paired(&texts[0], &mut map).context("parsing snmp")?;
        parse_paired(&texts[1], &mut map).context("parsing netstat")?;
        parse_flat(&texts[2], &mut map);
        Ok(Counters(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paired_sections() {
        let text = "Tcp: RtoAlgorithm MaxConn InCsumErrors\nTcp: 1 -1 7\n\
                    MPTcpExt: MPCapableSYNRX MPJoinSynRx\nMPTcpExt: 3 2\n";
        let mut m = BTreeMap::new();
        parse_paired(text, &mut m).unwrap();
        let c = Counters(m);
        assert_eq!(c.tcp_in_csum_errors(), 7);
        assert_eq!(c.mp_join_syn_rx(), 2);
        assert!(!c.has("TcpMaxConn"));
        assert_eq!(c.mptcp().0.len(), 2);
    }

    #[test]
    fn rejects_mismatched_sections() {
        let mut m = BTreeMap::new();
        assert!(parse_paired("Tcp: A\nUdp: 1\n", &mut m).is_err());
    }

    #[test]
    fn delta_subtracts() {
        let a = Counters([("X".to_string(), 5)].into());
        let b = Counters([("X".to_string(), 8), ("Y".to_string(), 1)].into());
        let d = b.delta(&a);
        assert_eq!(d.get("X"), 3);
        assert_eq!(d.get("Y"), 1);
    }
}
