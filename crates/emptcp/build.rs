//! Compiles the eBPF data plane (`bpf/`) with clang.
//!
//! - `bpf/entry/*.bpf.c`: entry objects; libbpf-cargo also generates their
//!   skeletons, whose `types` module is the Rust view of
//!   `bpf/include/emptcp/abi.h` (the single source of truth for layouts).
//! - `bpf/tests/*.bpf.c` and `bpf/plugins/*.bpf.c`: objects embedded by name
//!   (`emptcp::testing::object`), for BPF_PROG_TEST_RUN tests of the helper
//!   library and for plugin examples. Plugins get only `-I bpf/include`: they
//!   prove that the public helper library stands alone.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use libbpf_cargo::SkeletonBuilder;

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

    let public_args = |extra: &[&Path]| -> Vec<String> {
        let mut args = vec![format!("-I{}", bpf_dir.join("include").display())];
        args.extend(extra.iter().map(|p| format!("-I{}", p.display())));
        args.extend([
            // <asm/types.h> of the uapi headers lives in the multiarch dir,
            // which clang does not search for -target bpf.
            format!("-I/usr/include/{multiarch}"),
            format!("-D__TARGET_ARCH_{karch}"),
            "-Wall".into(),
            "-Werror".into(),
            // clang 14 knows cpu v1..v3; v3 gives 32-bit jumps and ALU32.
            "-mcpu=v3".into(),
        ]);
        args
    };

    let private = [bpf_dir.join("lib")];
    let private: Vec<&Path> = private.iter().map(PathBuf::as_path).collect();
    for source in bpf_sources(&bpf_dir.join("entry")) {
        let name = stem(&source);
        SkeletonBuilder::new()
            .source(&source)
            .obj(out_dir.join(format!("{name}.bpf.o")))
            .clang_args(public_args(&private))
            .build_and_generate(out_dir.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {}: {e:#}", source.display()));
    }

    let mut index = String::from("/// (name, object bytes) of every test and plugin object.\n");
    index.push_str("pub static OBJECTS: &[(&str, &[u8])] = &[\n");
    for (dir, extra) in [("tests", private.clone()), ("plugins", Vec::new())] {
        for source in bpf_sources(&bpf_dir.join(dir)) {
            let name = format!("{dir}/{}", stem(&source));
            let obj = out_dir.join(format!("{}.bpf.o", name.replace('/', "_")));
            SkeletonBuilder::new()
                .source(&source)
                .obj(&obj)
                .clang_args(public_args(&extra))
                .build()
                .unwrap_or_else(|e| panic!("building {}: {e:#}", source.display()));
            writeln!(
                index,
                "    ({name:?}, include_bytes!({:?})),",
                obj.display().to_string()
            )
            .unwrap();
        }
    }
    index.push_str("];\n");
    std::fs::write(out_dir.join("objects.rs"), index).expect("writing objects.rs");
}

/// `*.bpf.c` files of a directory, sorted; none when it does not exist.
fn bpf_sources(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.to_string_lossy().ends_with(".bpf.c"));
    v.sort();
    v
}

fn stem(source: &Path) -> String {
    let file = source.file_name().expect("file name").to_string_lossy();
    file.trim_end_matches(".bpf.c").to_owned()
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
