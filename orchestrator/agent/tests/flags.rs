//! The `bpfk-agent` binary's command line: its flags (the proxy's, the kubelet's and the
//! cluster DNS's) are listed, and a bad one is a clear flag error with exit code 2, never a
//! panic. (Being an integration test of the package, it also makes `cargo test` build the
//! binary the lab runs.)

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bpfk-agent"))
}

#[test]
fn help_lists_the_proxy_kubelet_and_dns_flags() {
    let out = agent().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--node-name",
        "--kubeconfig",
        "--pin-root",
        "--teardown",
        "--kubelet",
        "--cluster-dns",
        "--cluster-domain",
        "--dns-no-forward",
        "--serialize-image-pulls",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}

#[test]
fn a_bad_flag_value_names_the_flag() {
    let out = agent()
        .args([
            "--node-name",
            "n",
            "--kubeconfig",
            "/dev/null",
            "--cluster-dns",
            "not-an-ip",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cluster-dns"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
