//! Errors of the path-manager client.

use std::io;

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to the kernel's path manager.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel refused a request. `message` is its extended ack (`NLMSGERR_ATTR_MSG`), when
    /// it gave one: usually the clearest account of what was wrong.
    #[error("{operation}: {}", kernel_text(*errno, message.as_deref()))]
    Kernel {
        /// The request, in words (e.g. "adding endpoint 10.0.0.1").
        operation: String,
        /// Positive errno.
        errno: i32,
        /// The kernel's extended-ack message.
        message: Option<String>,
    },
    /// The generic netlink family or its event group does not exist in this kernel.
    #[error("generic netlink {0} not found: is the kernel built with CONFIG_MPTCP?")]
    NotFound(String),
    /// A message from the kernel did not parse.
    #[error("malformed netlink message: {0}")]
    Malformed(String),
    /// The event socket's receive buffer overflowed (`ENOBUFS`): some events were dropped by
    /// the kernel. The subscription keeps working.
    #[error("events were lost: the event socket's receive buffer overflowed")]
    EventsLost,
    /// An argument the kernel would reject anyway, caught before sending.
    #[error("{0}")]
    InvalidArgument(String),
}

fn kernel_text(errno: i32, message: Option<&str>) -> String {
    let os = io::Error::from_raw_os_error(errno);
    match message {
        Some(m) => format!("{m} ({os})"),
        None => os.to_string(),
    }
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The errno of a kernel refusal or OS error, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The kernel's extended-ack message, if it sent one.
    pub fn kernel_message(&self) -> Option<&str> {
        match self {
            Error::Kernel { message, .. } => message.as_deref(),
            _ => None,
        }
    }
}
