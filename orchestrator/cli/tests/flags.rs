//! The `bpfk` binary without a reachable server and with bad flags: one clear line, exit 1.

use std::process::Command;

fn bpfk() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bpfk"))
}

#[test]
fn unreachable_server_is_one_clear_line() {
    // a port nothing listens on: bind, note it, close it
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = bpfk()
        .args([
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "get",
            "pods",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the API server"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unknown_flag_fails() {
    let out = bpfk()
        .args(["get", "pods", "--no-such-flag"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--no-such-flag"), "{err}");
}
