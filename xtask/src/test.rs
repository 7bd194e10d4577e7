//! `cargo xtask test`: everything the test suite needs, then the whole suite.

use anyhow::{bail, Result};

use crate::{system_deps, util};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Extra arguments passed to `cargo test` (after `--`, e.g. a test name filter).
    #[arg(trailing_var_arg = true)]
    pub cargo_args: Vec<String>,
}

pub fn run(opts: &Options) -> Result<()> {
    if !is_root() {
        bail!("the test suite needs root (network namespaces, eBPF, containerd): run it as root");
    }
    system_deps::prepare()?;
    let mut cmd = util::workspace_cargo();
    cmd.current_dir(util::repo_root())
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(&opts.cargo_args);
    util::run(&mut cmd)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
