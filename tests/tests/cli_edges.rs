//! Every binary a newcomer runs answers `--help`/`-h` with its usage (exit 0), and a user error
//! (an unknown flag, a missing kubeconfig, a bad value) with a message naming it: never a panic
//! or a backtrace, even with `RUST_BACKTRACE=1` in the environment.

use bpfk_lab::server::binary;
use bpfk_tests::cli_edges::{assert_help, assert_user_error};

const BINARIES: [&str; 7] = [
    "bpfk-server",
    "bpfk-agent",
    "bpfk",
    "bpfk-scheduler",
    "bpfk-controller-manager",
    "bpfk-lab",
    "bpfk-datapath-lab",
];

#[test]
fn every_binary_answers_help() {
    for name in BINARIES {
        assert_help(&binary(name));
    }
}

#[test]
fn an_unknown_flag_is_named_without_a_backtrace() {
    for name in BINARIES {
        assert_user_error(&binary(name), &["--no-such-flag"], "--no-such-flag", false);
    }
}

#[test]
fn runtime_user_errors_are_one_line() {
    let missing = "/nonexistent/bpfk-kubeconfig";
    for name in ["bpfk-scheduler", "bpfk-controller-manager"] {
        assert_user_error(&binary(name), &["--kubeconfig", missing], missing, true);
    }
    assert_user_error(
        &binary("bpfk-agent"),
        &["--node-name", "n1", "--kubeconfig", missing],
        missing,
        true,
    );
    assert_user_error(
        &binary("bpfk"),
        &["--kubeconfig", missing, "get", "pods"],
        missing,
        true,
    );
    let lab = binary("bpfk-lab");
    assert_user_error(
        &lab,
        &["--server", "/s", "--agent", "/a", "--nodes", "12"],
        "--nodes",
        true,
    );
}
