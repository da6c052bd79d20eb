//! Compiles the eBPF data plane (`bpf/`) with clang and generates the
//! libbpf-rs skeleton, whose `types` module is the Rust view of
//! `bpf/include/emptcp/abi.h` (the single source of truth for shared layouts).

use std::env;
use std::path::{Path, PathBuf};

use libbpf_cargo::SkeletonBuilder;

/// Entry objects: (source under bpf/, skeleton name).
const OBJECTS: &[(&str, &str)] = &[("entry/emptcp.bpf.c", "emptcp")];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let bpf_dir = manifest
        .join("../../bpf")
        .canonicalize()
        .expect("bpf/ beside crates/");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("CARGO_CFG_TARGET_ARCH");
    let (karch, multiarch) = match arch.as_str() {
        "x86_64" => ("x86", "x86_64-linux-gnu"),
        "aarch64" => ("arm64", "aarch64-linux-gnu"),
        other => panic!("unsupported target architecture {other}"),
    };

    rerun_if_changed_under(&bpf_dir);

    let include = bpf_dir.join("include");
    for (source, name) in OBJECTS {
        let skel = out_dir.join(format!("{name}.skel.rs"));
        SkeletonBuilder::new()
            .source(bpf_dir.join(source))
            .obj(out_dir.join(format!("{name}.bpf.o")))
            .clang_args([
                format!("-I{}", include.display()),
                // <asm/types.h> of the uapi headers lives in the multiarch dir,
                // which clang does not search for -target bpf.
                format!("-I/usr/include/{multiarch}"),
                format!("-D__TARGET_ARCH_{karch}"),
                "-Wall".into(),
                "-Werror".into(),
                // clang 14 knows cpu v1..v3; v3 gives 32-bit jumps and ALU32.
                "-mcpu=v3".into(),
            ])
            .build_and_generate(&skel)
            .unwrap_or_else(|e| panic!("building {source}: {e:#}"));
    }
}

fn rerun_if_changed_under(dir: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
    for entry in std::fs::read_dir(dir).expect("reading bpf/").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rerun_if_changed_under(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
