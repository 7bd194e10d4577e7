//! What the build, tests, demo and benchmarks need from the machine: Debian packages installed
//! when missing (idempotent), then a check of every file and tool with the package or command
//! that provides it, so the next missing piece fails loudly instead of deep inside a build.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::build_ebpf;

/// How the presence of a need is checked.
enum Probe {
    /// A command on PATH.
    Command(&'static str),
    /// A file at an absolute path.
    File(&'static str),
    /// The nightly toolchain's rust-src component.
    RustSrc,
    /// bpf-linker, loading the nightly's libLLVM.
    BpfLinker,
}

/// Where a missing need comes from.
enum Provider {
    /// A Debian package `apt-get install` provides.
    Debian(&'static str),
    /// A command to run (or a thing to do) by hand; nothing installs it automatically here.
    Hint(&'static str),
}

struct Need {
    /// What it is and who uses it, for the report.
    what: &'static str,
    probe: Probe,
    provider: Provider,
}

const fn deb(what: &'static str, probe: Probe, package: &'static str) -> Need {
    Need {
        what,
        probe,
        provider: Provider::Debian(package),
    }
}

/// Everything the build, tests, demo and benchmarks use.
const NEEDS: &[Need] = &[
    deb(
        "protoc (etcd-client and the CRI protos)",
        Probe::Command("protoc"),
        "protobuf-compiler",
    ),
    deb(
        "protoc's well-known types (google/protobuf/descriptor.proto)",
        Probe::File("/usr/include/google/protobuf/descriptor.proto"),
        "libprotobuf-dev",
    ),
    deb("etcd", Probe::Command("etcd"), "etcd-server"),
    deb("etcdctl", Probe::Command("etcdctl"), "etcd-client"),
    deb("containerd", Probe::Command("containerd"), "containerd"),
    deb("runc", Probe::Command("runc"), "runc"),
    deb(
        "CNI bridge plugin",
        Probe::File("/usr/lib/cni/bridge"),
        "containernetworking-plugins",
    ),
    deb(
        "CNI host-local IPAM plugin",
        Probe::File("/usr/lib/cni/host-local"),
        "containernetworking-plugins",
    ),
    deb(
        "CNI loopback plugin",
        Probe::File("/usr/lib/cni/loopback"),
        "containernetworking-plugins",
    ),
    deb(
        "busybox (stand-in images)",
        Probe::Command("busybox"),
        "busybox-static",
    ),
    deb(
        "docker-registry (the lab's OCI registry)",
        Probe::Command("docker-registry"),
        "docker-registry",
    ),
    deb(
        "skopeo (pushes the stand-in images to the lab registry)",
        Probe::Command("skopeo"),
        "skopeo",
    ),
    deb(
        "htpasswd (the lab registry's basic-auth file)",
        Probe::Command("htpasswd"),
        "apache2-utils",
    ),
    deb("iperf3 (datapath benchmark)", Probe::Command("iperf3"), "iperf3"),
    deb("wrk (datapath benchmark)", Probe::Command("wrk"), "wrk"),
    deb("iptables", Probe::Command("iptables"), "iptables"),
    deb("nft", Probe::Command("nft"), "nftables"),
    deb("bpftool", Probe::Command("bpftool"), "bpftool"),
    deb("ip", Probe::Command("ip"), "iproute2"),
    deb("nsenter", Probe::Command("nsenter"), "util-linux"),
    deb(
        "g++ (builds bpf-linker)",
        Probe::Command("g++"),
        "g++",
    ),
    Need {
        what: "kubectl v1.32 (the tests drive the API server with the real kubectl)",
        probe: Probe::Command("kubectl"),
        provider: Provider::Hint(
            "install kubectl v1.32 on PATH (https://dl.k8s.io/release/v1.32.4/bin/linux/amd64/kubectl)",
        ),
    },
    Need {
        what: "the nightly toolchain's rust-src (eBPF programs, -Z build-std=core)",
        probe: Probe::RustSrc,
        provider: Provider::Hint("cargo xtask build-ebpf (or rustup component add rust-src --toolchain nightly)"),
    },
    Need {
        what: "bpf-linker built against the nightly's libLLVM",
        probe: Probe::BpfLinker,
        provider: Provider::Hint("cargo xtask build-ebpf"),
    },
];

fn on_path(command: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(command).is_file()))
        .unwrap_or(false)
}

fn present(probe: &Probe) -> bool {
    match probe {
        Probe::Command(name) => on_path(name),
        Probe::File(path) => Path::new(path).exists(),
        Probe::RustSrc => build_ebpf::rust_src_installed(),
        Probe::BpfLinker => build_ebpf::bpf_linker_installed(),
    }
}

/// The Debian packages providing needs that are missing, each once.
fn missing_packages() -> Vec<&'static str> {
    let mut packages: Vec<&str> = NEEDS
        .iter()
        .filter(|need| !present(&need.probe))
        .filter_map(|need| match need.provider {
            Provider::Debian(package) => Some(package),
            Provider::Hint(_) => None,
        })
        .collect();
    packages.sort_unstable();
    packages.dedup();
    packages
}

/// Installs every missing Debian package with apt-get (nothing else: the eBPF toolchain is
/// `build_ebpf`'s, and [`verify`] reports what is still absent).
pub fn install_packages() -> Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    if !on_path("apt-get") {
        bail!(
            "missing Debian packages {} and no apt-get to install them: install them by hand",
            missing.join(" ")
        );
    }
    apt_get(&["update", "-qq"])
        .context("apt-get update failed (are you root? is a Debian mirror reachable?)")?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(&missing);
    apt_get(&install).with_context(|| format!("apt-get install {} failed", missing.join(" ")))?;
    Ok(())
}

/// Runs apt-get non-interactively; fails unless it succeeds.
fn apt_get(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get {} exited with {status}", args.join(" "));
    }
    Ok(())
}

/// The report line of one missing need: what it is and what provides it.
fn report_line(need: &Need) -> String {
    match need.provider {
        Provider::Debian(package) => {
            format!("  - {}: Debian package {package}", need.what)
        }
        Provider::Hint(hint) => format!("  - {}: {hint}", need.what),
    }
}

/// Checks every need; fails with the list of what is missing and what provides each.
pub fn verify() -> Result<()> {
    let missing: Vec<String> = NEEDS
        .iter()
        .filter(|need| !present(&need.probe))
        .map(report_line)
        .collect();
    if !missing.is_empty() {
        bail!(
            "this machine lacks {} thing(s) the build, tests, demo or benchmarks need:\n{}",
            missing.len(),
            missing.join("\n")
        );
    }
    eprintln!("xtask: all {} prerequisites are present", NEEDS.len());
    Ok(())
}

/// Everything `deps`, `test` and `demo` start with: Debian packages, the eBPF toolchain and
/// object, then the check of all of it.
pub fn prepare() -> Result<()> {
    install_packages()?;
    build_ebpf::run(&build_ebpf::Options::default())?;
    verify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_need_names_its_provider() {
        for need in NEEDS {
            let line = report_line(need);
            assert!(
                line.contains("Debian package ")
                    || line.contains("cargo xtask")
                    || line.contains("install"),
                "{line}"
            );
        }
    }

    #[test]
    fn the_well_known_protos_are_checked_apart_from_protoc() {
        let packages: Vec<&str> = NEEDS
            .iter()
            .filter_map(|n| match n.provider {
                Provider::Debian(p) => Some(p),
                Provider::Hint(_) => None,
            })
            .collect();
        assert!(packages.contains(&"protobuf-compiler"));
        assert!(packages.contains(&"libprotobuf-dev"));
    }
}
