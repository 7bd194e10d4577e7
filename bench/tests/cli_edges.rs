//! The benchmarks' command lines: `--help` describes them and starts nothing; an argument they
//! do not take is named in one line, before anything is started.

use std::path::Path;

use bpfk_tests::cli_edges::{assert_help, assert_user_error};

const BENCHMARKS: [&str; 3] = [
    env!("CARGO_BIN_EXE_sched_bench"),
    env!("CARGO_BIN_EXE_apiserver_bench"),
    env!("CARGO_BIN_EXE_datapath_bench"),
];

#[test]
fn help_describes_and_starts_nothing() {
    for bin in BENCHMARKS {
        assert_help(Path::new(bin));
    }
}

/// apiserver_bench's plain baseline server takes bpfk-server's API server flags (clap's usage).
#[test]
fn the_plain_baseline_server_describes_itself() {
    let bin = Path::new(env!("CARGO_BIN_EXE_apiserver_plain"));
    assert_help(bin);
    assert_user_error(bin, &["--rounds", "3"], "--rounds", false);
}

#[test]
fn an_unknown_argument_is_one_clear_line() {
    for bin in BENCHMARKS {
        assert_user_error(Path::new(bin), &["--rounds", "3"], "\"--rounds\"", true);
    }
}
