//! The emptcp library: loads the eBPF data plane (`bpf/`), attaches it to
//! interfaces (tcx, XDP), and reads what it saw.
//!
//! The C side (`bpf/include/emptcp/abi.h`) is the single source of truth for
//! every shared layout; [`abi`] re-exports the Rust types that libbpf-cargo
//! generates from the compiled objects' BTF.
#![deny(missing_docs)]

pub mod abi;
mod attach;
pub mod bench;
mod dataplane;
mod error;
pub mod events;
mod hook;
mod kept_addrs;
pub mod netns;
pub mod pins;
pub mod plugin;
pub mod policy;
pub mod policy_file;
#[doc(hidden)]
pub mod testing;

pub use attach::{AttachMode, ClsactFilter, TcxProgram, tcx_programs, xdp_program_on};
pub use dataplane::{
    Attachment, Dataplane, EntryCounters, FlowKey, FlowStats, Generation, LoadOptions,
    OP_REASON_NAMES, OpStats, ProgramInfo, RecordDirection, SubflowRecord, TestRun,
    TrackedConnection, TrackedSubflow,
};
pub use error::{Error, ErrorKind, Result};
pub use hook::Hook;
pub use kept_addrs::{KeptAddAddr, KeptState};

/// The generated libbpf-rs skeleton of `bpf/entry/emptcp.bpf.c`.
#[doc(hidden)]
pub mod skel {
    #![allow(
        missing_docs,
        clippy::all,
        non_camel_case_types,
        non_upper_case_globals,
        dead_code
    )]
    #![allow(unsafe_op_in_unsafe_fn)]
    include!(concat!(env!("OUT_DIR"), "/emptcp.skel.rs"));
}
