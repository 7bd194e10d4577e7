//! The `bpfk-server` binary's command line: bad flags and an unusable listen address fail
//! with a clear message and a non-zero exit, never a panic.

use std::process::Command;

fn server() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bpfk-server"))
}

#[test]
fn help_lists_the_flags() {
    let out = server().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--etcd-servers",
        "--listen",
        "--write-kubeconfig",
        "--disable-scheduler",
        "--disable-controllers",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}

#[test]
fn bad_listen_address_is_a_flag_error() {
    let out = server()
        .args(["--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--listen"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn occupied_port_fails_cleanly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = server()
        .args([
            "--etcd-servers",
            "http://127.0.0.1:1",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
