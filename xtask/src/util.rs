//! Helpers shared by the xtask subcommands.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use anyhow::{bail, Context as _, Result};

/// The repository root (the directory holding the root `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Runs a command and returns its output, failing with the command line when
/// it cannot be started.
pub fn output(cmd: &mut Command) -> Result<Output> {
    cmd.output()
        .with_context(|| format!("cannot run {cmd:?} (is it installed and on PATH?)"))
}

/// Runs a command with inherited stdio and fails when it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?} (is it installed and on PATH?)"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// `cargo` for the workspace's own build, without what `cargo run` set for this xtask
/// process (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, …): ring's build script watches
/// `CARGO_MANIFEST_DIR`, and the lab's nested builds (`bpfk_lab::server::cargo_command`) run
/// without it, so a value here would make them rebuild the workspace under the test suite.
pub fn workspace_cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key == "CARGO_MANIFEST_DIR"
            || key == "CARGO_MANIFEST_PATH"
            || key == "CARGO_CRATE_NAME"
            || key == "CARGO_BIN_NAME"
            || key == "CARGO_PRIMARY_PACKAGE"
            || key.starts_with("CARGO_PKG_")
        {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Environment variables set by an outer `cargo`/`rustup` invocation that must
/// not leak into a nested build with another toolchain and target.
pub const NESTED_CARGO_ENV: &[&str] = &[
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTUP_TOOLCHAIN",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_MANIFEST_DIR",
    "CARGO_PKG_NAME",
    "CARGO",
];
