use std::fmt;
use std::str::FromStr;

use crate::abi::emptcp_hook;

/// Where an entry program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// XDP, ingress only. On veth, native XDP turns off TSO on the peer
    /// (docs/hooks.md): prefer TC on middle nodes.
    Xdp,
    /// TC ingress (tcx on kernels >= 6.6).
    TcIngress,
    /// TC egress (tcx on kernels >= 6.6).
    TcEgress,
}

impl Hook {
    /// Every hook, in `enum emptcp_hook` order.
    pub const ALL: [Hook; 3] = [Hook::Xdp, Hook::TcIngress, Hook::TcEgress];

    /// The hook's name in policies and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::TcIngress => "tc-ingress",
            Hook::TcEgress => "tc-egress",
        }
    }

    /// The entry program serving this hook (bpftool-readable name).
    pub fn program_name(self) -> &'static str {
        match self {
            Hook::Xdp => "emptcp_xdp",
            Hook::TcIngress => "emptcp_tc_in",
            Hook::TcEgress => "emptcp_tc_eg",
        }
    }

    /// The program that resumes this hook's chains after a plugin.
    pub fn resume_program_name(self) -> &'static str {
        match self {
            Hook::Xdp => "emptcp_xdp_res",
            Hook::TcIngress => "emptcp_tci_res",
            Hook::TcEgress => "emptcp_tce_res",
        }
    }

    /// The program array holding this hook's plugin slots.
    pub(crate) fn plugin_array_name(self) -> &'static str {
        match self {
            Hook::Xdp => "emptcp_plug_xdp",
            Hook::TcIngress => "emptcp_plug_tci",
            Hook::TcEgress => "emptcp_plug_tce",
        }
    }

    /// The expected attach type programs tail-called at this hook must share
    /// with the entry (the kernel's program-array compatibility rule).
    pub(crate) fn attach_type(self) -> libbpf_rs::ProgramAttachType {
        match self {
            Hook::Xdp => libbpf_rs::ProgramAttachType::Xdp,
            Hook::TcIngress => libbpf_rs::ProgramAttachType::TcxIngress,
            Hook::TcEgress => libbpf_rs::ProgramAttachType::TcxEgress,
        }
    }

    /// The ABI value (`enum emptcp_hook`).
    pub fn abi(self) -> emptcp_hook {
        match self {
            Hook::Xdp => emptcp_hook::EMPTCP_HOOK_XDP,
            Hook::TcIngress => emptcp_hook::EMPTCP_HOOK_TC_INGRESS,
            Hook::TcEgress => emptcp_hook::EMPTCP_HOOK_TC_EGRESS,
        }
    }

    /// The hook of an ABI value, if it names one.
    pub fn from_abi(value: u8) -> Option<Hook> {
        Hook::ALL
            .into_iter()
            .find(|h| h.abi().0 == u32::from(value))
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Hook {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hook::ALL
            .into_iter()
            .find(|h| h.name() == s)
            .ok_or_else(|| format!("unknown hook '{s}': expected xdp, tc-ingress or tc-egress"))
    }
}

impl serde::Serialize for Hook {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Hook {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}
