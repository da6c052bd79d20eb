use std::fmt;

/// What kind of failure an [`Error`] is, for callers that react to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Missing CAP_BPF / CAP_NET_ADMIN (run as root).
    PermissionDenied,
    /// An interface, namespace or pinned object does not exist.
    NotFound,
    /// Something is already attached where we would attach.
    Busy,
    /// The kernel refused to load or verify a program.
    Load,
    /// A request that cannot be met as asked (mode for the wrong hook,
    /// nothing to roll back to, pinned state from another version).
    InvalidInput,
    /// Any other failure of a kernel or libbpf call.
    Kernel,
}

/// A library error: what failed, on which object, and the underlying cause.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    what: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(kind: ErrorKind, what: impl Into<String>) -> Self {
        Error {
            kind,
            what: what.into(),
            source: None,
        }
    }

    /// Wraps a libbpf-rs error, classifying it by its kind.
    pub(crate) fn bpf(what: impl Into<String>, err: libbpf_rs::Error) -> Self {
        let kind = match err.kind() {
            libbpf_rs::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            libbpf_rs::ErrorKind::NotFound => ErrorKind::NotFound,
            libbpf_rs::ErrorKind::AlreadyExists => ErrorKind::Busy,
            _ => ErrorKind::Kernel,
        };
        Error {
            kind,
            what: what.into(),
            source: Some(Box::new(err)),
        }
    }

    /// Wraps an I/O error, classifying it by its kind.
    pub(crate) fn io(what: impl Into<String>, err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            _ if err.raw_os_error() == Some(libc::EBUSY) => ErrorKind::Busy,
            _ => ErrorKind::Kernel,
        };
        Error {
            kind,
            what: what.into(),
            source: Some(Box::new(err)),
        }
    }

    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)?;
        if self.kind == ErrorKind::PermissionDenied {
            f.write_str(" (needs CAP_BPF and CAP_NET_ADMIN: run as root)")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
