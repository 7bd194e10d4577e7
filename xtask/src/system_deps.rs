//! The Debian packages the tests and the demo need, installed when missing (idempotent).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// (what must exist, Debian package providing it). Commands are looked up on PATH;
/// absolute paths are checked as files.
const NEEDED: &[(&str, &str)] = &[
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
    ("containerd", "containerd"),
    ("runc", "runc"),
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
    ("busybox", "busybox-static"),
    ("protoc", "protobuf-compiler"),
    ("iperf3", "iperf3"),
    ("wrk", "wrk"),
    ("iptables", "iptables"),
    ("nft", "nftables"),
    ("bpftool", "bpftool"),
    ("ip", "iproute2"),
];

fn present(what: &str) -> bool {
    if what.starts_with('/') {
        return Path::new(what).exists();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(what).is_file()))
        .unwrap_or(false)
}

/// Install every missing package with apt-get; fail with a clear message when that is impossible.
pub fn ensure() -> Result<()> {
    let mut missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(what, _)| !present(what))
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.dedup();
    if !missing.is_empty() {
        eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
        if !present("apt-get") {
            bail!(
                "missing packages {missing:?} and no apt-get to install them: install them by hand"
            );
        }
        let status = Command::new("apt-get")
            .arg("update")
            .arg("-qq")
            .status()
            .context("running apt-get update")?;
        if !status.success() {
            bail!("apt-get update failed (are you root? is a Debian mirror reachable?)");
        }
        let status = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get install")?;
        if !status.success() {
            bail!("apt-get install {} failed", missing.join(" "));
        }
    }
    let still: Vec<&str> = NEEDED
        .iter()
        .filter(|(what, _)| !present(what))
        .map(|(what, _)| *what)
        .collect();
    if !still.is_empty() {
        bail!("still missing after installing packages: {still:?}");
    }
    if !present("kubectl") {
        bail!("kubectl is not installed: the tests drive the API server with the real kubectl (v1.32); install it on PATH");
    }
    Ok(())
}
