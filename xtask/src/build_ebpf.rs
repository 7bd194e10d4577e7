//! `cargo xtask build-ebpf`: makes sure the eBPF toolchain is present (nightly
//! with rust-src, bpf-linker linked against that nightly's LLVM), builds
//! `ebpf/programs` for `bpfel-unknown-none` and copies the object to
//! [`OBJECT_PATH`], where `bpfk-datapath`'s build script picks it up.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::util::{self, output, repo_root, NESTED_CARGO_ENV};

/// Where the built object is left, relative to the repository root.
pub const OBJECT_PATH: &str = "ebpf/programs/target/bpfk.o";
const TOOLCHAIN: &str = "nightly";
const TARGET: &str = "bpfel-unknown-none";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// LLVM majors bpf-linker 0.13 has a feature for.
const BPF_LINKER_LLVM_FEATURES: &[u32] = &[21, 22, 23];

#[derive(clap::Args, Default)]
pub struct Options {
    /// Build with the release profile.
    #[arg(long)]
    release: bool,
}

pub fn run(opts: &Options) -> Result<()> {
    ensure_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    build(opts)
}

fn rustup(args: &[&str]) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(args);
    for var in NESTED_CARGO_ENV {
        cmd.env_remove(var);
    }
    cmd
}

fn ensure_nightly() -> Result<()> {
    let out = output(&mut rustup(&["toolchain", "list"])).context(
        "rustup is required to manage the nightly toolchain; install it from your distribution",
    )?;
    let list = String::from_utf8_lossy(&out.stdout);
    if list.lines().any(|l| l.starts_with(TOOLCHAIN)) {
        return Ok(());
    }
    eprintln!("xtask: installing the {TOOLCHAIN} toolchain");
    util::run(&mut rustup(&[
        "toolchain",
        "install",
        TOOLCHAIN,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
    .context("could not install the nightly toolchain; run `rustup toolchain install nightly --component rust-src` by hand")
}

/// Whether the nightly toolchain has its rust-src component.
pub fn rust_src_installed() -> bool {
    output(&mut rustup(&[
        "component",
        "list",
        "--toolchain",
        TOOLCHAIN,
        "--installed",
    ]))
    .map(|out| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("rust-src"))
    })
    .unwrap_or(false)
}

/// Whether bpf-linker is installed and loads the nightly's libLLVM.
pub fn bpf_linker_installed() -> bool {
    let (Ok((llvm, _)), Ok(bin_dir)) = (nightly_llvm(), cargo_bin_dir()) else {
        return false;
    };
    let llvm_file = llvm
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    bpf_linker_ok(&bin_dir.join("bpf-linker"), &llvm_file)
}

fn ensure_rust_src() -> Result<()> {
    if rust_src_installed() {
        return Ok(());
    }
    eprintln!("xtask: adding rust-src to the {TOOLCHAIN} toolchain");
    util::run(&mut rustup(&[
        "component",
        "add",
        "rust-src",
        "--toolchain",
        TOOLCHAIN,
    ]))
    .context(
        "could not add rust-src; run `rustup component add rust-src --toolchain nightly` by hand",
    )
}

/// The nightly's shared libLLVM (e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`).
fn nightly_llvm() -> Result<(PathBuf, u32)> {
    let out = output(&mut rustup(&[
        "run", TOOLCHAIN, "rustc", "--print", "sysroot",
    ]))?;
    if !out.status.success() {
        bail!(
            "cannot query the {TOOLCHAIN} sysroot: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let lib = sysroot.join("lib");
    for entry in fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(version) = name.strip_prefix("libLLVM.so.") {
            let major = version
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .with_context(|| format!("cannot read the LLVM major version from {name}"))?;
            return Ok((lib.join(name), major));
        }
    }
    bail!(
        "no libLLVM.so.* in {}: this nightly has no shared LLVM to build bpf-linker against",
        lib.display()
    )
}

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("HOME is not set")
}

fn cargo_bin_dir() -> Result<PathBuf> {
    Ok(match std::env::var_os("CARGO_HOME") {
        Some(h) => PathBuf::from(h).join("bin"),
        None => home()?.join(".cargo/bin"),
    })
}

/// Makes an LLVM prefix (`lib/libLLVM.so` + the soname) pointing at the
/// nightly's libLLVM; bpf-linker links against it and keeps it as its runpath.
fn llvm_prefix(llvm: &Path) -> Result<PathBuf> {
    let file = llvm
        .file_name()
        .context("libLLVM path has no file name")?
        .to_string_lossy()
        .into_owned();
    let prefix = home()?
        .join(".cache/bpfk")
        .join(format!("llvm-prefix-{file}"));
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    for name in ["libLLVM.so", file.as_str()] {
        let link = lib.join(name);
        let _ = fs::remove_file(&link);
        symlink(llvm, &link).with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(prefix)
}

/// Whether the installed bpf-linker loads the nightly's libLLVM.
fn bpf_linker_ok(bin: &Path, llvm_file: &str) -> bool {
    if !bin.exists() {
        return false;
    }
    let Ok(ldd) = Command::new("ldd").arg(bin).output() else {
        return false;
    };
    let ldd = String::from_utf8_lossy(&ldd.stdout);
    let links_llvm = ldd
        .lines()
        .any(|l| l.contains(llvm_file) && !l.contains("not found"));
    links_llvm
        && Command::new(bin)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}

fn ensure_bpf_linker() -> Result<()> {
    let (llvm, major) = nightly_llvm()?;
    let llvm_file = llvm
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bin = cargo_bin_dir()?.join("bpf-linker");
    if bpf_linker_ok(&bin, &llvm_file) {
        return Ok(());
    }
    if !BPF_LINKER_LLVM_FEATURES.contains(&major) {
        bail!(
            "the nightly toolchain ships LLVM {major}, which bpf-linker {BPF_LINKER_VERSION} cannot use \
             (supported: {BPF_LINKER_LLVM_FEATURES:?}); pin a matching nightly"
        );
    }
    let prefix = llvm_prefix(&llvm)?;
    eprintln!(
        "xtask: installing bpf-linker {BPF_LINKER_VERSION} against {} (takes a minute or two)",
        llvm.display()
    );
    let mut cmd = Command::new("cargo");
    for var in NESTED_CARGO_ENV {
        cmd.env_remove(var);
    }
    cmd.args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--locked",
        "--force",
        "--no-default-features",
        "--features",
    ])
    .arg(format!("llvm-{major}"))
    .env("LLVM_PREFIX", &prefix);
    util::run(&mut cmd).context(
        "could not build bpf-linker; it needs a C++ toolchain (g++), libstdc++, zlib and zstd \
         development files, and network access to crates.io",
    )?;
    if !bpf_linker_ok(&bin, &llvm_file) {
        bail!(
            "{} was installed but does not load {}; check `ldd {}`",
            bin.display(),
            llvm.display(),
            bin.display()
        );
    }
    Ok(())
}

fn build(opts: &Options) -> Result<()> {
    let root = repo_root();
    let dir = root.join("ebpf/programs");
    let mut cmd = Command::new("cargo");
    for var in NESTED_CARGO_ENV {
        cmd.env_remove(var);
    }
    // bpf-linker is found on PATH; make sure cargo's bin dir is there.
    let bin_dir = cargo_bin_dir()?;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if !paths.contains(&bin_dir) {
        paths.insert(0, bin_dir);
    }
    cmd.env("PATH", std::env::join_paths(paths)?);
    cmd.current_dir(&dir).arg(format!("+{TOOLCHAIN}")).args([
        "build",
        "--locked",
        "--target",
        TARGET,
        "-Z",
        "build-std=core",
    ]);
    if opts.release {
        cmd.arg("--release");
    }
    util::run(&mut cmd).context("building the eBPF programs failed")?;
    let profile = if opts.release { "release" } else { "debug" };
    let built = dir.join("target").join(TARGET).join(profile).join("bpfk");
    let dest = root.join(OBJECT_PATH);
    let changed = copy_if_changed(&built, &dest)?;
    let state = if changed { "ready" } else { "unchanged" };
    eprintln!("xtask: eBPF object {state} at {}", dest.display());
    Ok(())
}

/// Copies `built` over `dest` only when their bytes differ, so an unchanged object keeps its
/// mtime and the crates that embed it (bpfk-datapath and its dependents) stay fresh.
fn copy_if_changed(built: &Path, dest: &Path) -> Result<bool> {
    let new = fs::read(built).with_context(|| format!("reading {}", built.display()))?;
    if fs::read(dest).is_ok_and(|old| old == new) {
        return Ok(false);
    }
    let partial = dest.with_extension("o.partial");
    fs::write(&partial, &new).with_context(|| format!("writing {}", partial.display()))?;
    fs::rename(&partial, dest).with_context(|| format!("renaming to {}", dest.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_object_keeps_its_mtime_and_a_changed_one_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (built, dest) = (dir.path().join("built"), dir.path().join("bpfk.o"));
        fs::write(&built, b"one").expect("write");
        assert!(copy_if_changed(&built, &dest).expect("first copy"));
        let old = fs::metadata(&dest)
            .and_then(|m| m.modified())
            .expect("mtime");
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!copy_if_changed(&built, &dest).expect("same bytes"));
        let same = fs::metadata(&dest)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(old, same);
        fs::write(&built, b"two").expect("write");
        assert!(copy_if_changed(&built, &dest).expect("new bytes"));
        assert_eq!(fs::read(&dest).expect("read"), b"two");
    }
}
