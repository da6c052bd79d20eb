//! `cargo xtask`: sets a fresh machine up and runs the demo or the tests.
//!
//! Both commands first make sure the prerequisites are there: root, the
//! Debian packages the build and the tests use (installed with apt when
//! missing), bpffs mounted at /sys/fs/bpf, and the kernel features emptcp
//! uses. Under `CI=true` nothing is ever skipped: a missing prerequisite
//! fails the run.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

/// Debian packages: (package, what needs it).
const PACKAGES: &[(&str, &str)] = &[
    ("clang", "compiles the eBPF data plane (bpf/)"),
    ("llvm", "llvm-strip and llvm-objdump for BPF objects"),
    ("libelf-dev", "libbpf (libbpf-sys) links libelf"),
    ("zlib1g-dev", "libbpf (libbpf-sys) links zlib"),
    ("pkg-config", "libbpf-sys finds libelf and zlib"),
    ("bpftool", "inspecting loaded programs in tests"),
    ("iproute2", "ip, tc, nstat: namespace testbeds"),
    ("ethtool", "offload settings on testbed links"),
    (
        "tshark",
        "the independent MPTCP decoder tests compare against",
    ),
    ("tcpdump", "packet captures on testbed links"),
    ("iperf3", "bulk traffic in benchmarks"),
];

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  setup          install missing packages, mount bpffs, check the kernel
  demo [ARGS]    setup, build, then run `emptcp demo ARGS` (a namespace
                 testbed with real MPTCP traffic through emptcp)
  test [ARGS]    setup, then the whole test suite (what CI runs); ARGS go
                 to `cargo test`
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup(),
        Some("demo") => setup().and_then(|()| demo(&args[1..])),
        Some("test") => setup().and_then(|()| test(&args[1..])),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn setup() -> Result<()> {
    check_root()?;
    install_missing_packages()?;
    mount_bpffs()?;
    check_kernel()?;
    Ok(())
}

fn check_root() -> Result<()> {
    let uid = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .context("reading the effective uid")?;
    if uid != "0" {
        bail!(
            "emptcp loads eBPF programs and builds network namespaces: run as root \
             (for example `sudo -E cargo xtask ...`)"
        );
    }
    Ok(())
}

fn install_missing_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !package_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    for (p, why) in PACKAGES.iter().filter(|(p, _)| missing.contains(p)) {
        eprintln!("xtask: installing {p}: {why}");
    }
    run(Command::new("apt-get")
        .args(["update", "-qq"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("apt-get update")?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .with_context(|| format!("installing {}", missing.join(" ")))?;
    if let Some(p) = missing.iter().find(|p| !package_installed(p)) {
        bail!("package {p} still missing after apt-get install");
    }
    Ok(())
}

fn package_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn mount_bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf"))
    {
        return Ok(());
    }
    eprintln!("xtask: mounting bpffs at /sys/fs/bpf");
    run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))
}

/// Kernel features the data plane and the tests rely on; each is probed
/// where it lives rather than inferred from the version string alone.
fn check_kernel() -> Result<()> {
    let mut problems = Vec::new();
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        problems.push("no kernel BTF (/sys/kernel/btf/vmlinux): CONFIG_DEBUG_INFO_BTF=y needed");
    }
    if !Path::new("/proc/sys/net/mptcp/enabled").exists() {
        problems.push("no MPTCP in the kernel (/proc/sys/net/mptcp): CONFIG_MPTCP=y needed");
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    let mut nums = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok());
    let (major, minor): (u32, u32) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    if (major, minor) < (6, 6) {
        problems.push("kernel older than 6.6: tcx links (BPF_TCX_*) are missing");
    }
    if !problems.is_empty() {
        bail!(
            "this kernel cannot run emptcp's tests:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(())
}

fn demo(args: &[String]) -> Result<()> {
    let root = workspace_root();
    run(Command::new(cargo())
        .current_dir(&root)
        .args(["build", "--release", "-p", "emptcp-cli"]))?;
    run(Command::new(root.join("target/release/emptcp"))
        .arg("demo")
        .args(args))
}

fn test(args: &[String]) -> Result<()> {
    let root = workspace_root();
    let cargo = cargo();
    run(Command::new(&cargo)
        .current_dir(&root)
        .args(["fmt", "--all", "--check"]))
    .context("formatting differs: run `cargo fmt --all`")?;
    run(Command::new(&cargo).current_dir(&root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(Command::new(&cargo)
        .current_dir(&root)
        .args(["test", "--workspace"])
        .args(args))?;
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ is in the workspace")
        .to_owned()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
