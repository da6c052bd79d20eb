//! Test and plugin objects built from `bpf/tests/` and `bpf/plugins/`, for
//! BPF_PROG_TEST_RUN tests of the helper library and the plugin examples.

use libbpf_rs::{Object, ObjectBuilder};

use crate::{Error, ErrorKind, Result};

mod objects {
    include!(concat!(env!("OUT_DIR"), "/objects.rs"));
}

/// Names of the embedded objects (`tests/<stem>`, `plugins/<stem>`).
pub fn object_names() -> impl Iterator<Item = &'static str> {
    objects::OBJECTS.iter().map(|(name, _)| *name)
}

/// The bytes of an embedded object.
pub fn object_bytes(name: &str) -> Option<&'static [u8]> {
    objects::OBJECTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
}

/// Opens and loads an embedded object.
pub fn load_object(name: &str) -> Result<Object> {
    let bytes = object_bytes(name)
        .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no embedded object {name}")))?;
    ObjectBuilder::default()
        .open_memory(bytes)
        .map_err(|e| Error::bpf(format!("opening {name}"), e))?
        .load()
        .map_err(|e| Error::bpf(format!("loading {name}"), e))
}

/// Attaches program `name` of embedded object `object` with tcx at `hook`
/// of `ifindex` (calling thread's namespace), as a program that is not
/// emptcp's would be; detached when the returned link fd closes.
pub fn attach_tcx(
    object: &Object,
    name: &str,
    hook: crate::Hook,
    ifindex: u32,
) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    let prog = object
        .progs()
        .find(|p| p.name() == name)
        .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no program {name}")))?;
    match crate::attach::attach(prog.as_fd(), hook, ifindex, crate::AttachMode::Tcx)? {
        crate::attach::HookLink::Link(fd) => Ok(fd),
        crate::attach::HookLink::Clsact(_) => unreachable!("tcx makes a link"),
    }
}
