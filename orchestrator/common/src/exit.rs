//! How a binary ends: success, or one line `NAME: error: <the error and its causes>` on stderr
//! and exit status 1. Never anyhow's `Debug` report, which carries a backtrace whenever
//! `RUST_BACKTRACE` is set.

use std::process::ExitCode;

/// The one line a failed binary prints: the error and its causes, `: `-separated.
pub fn error_line(program: &str, err: &anyhow::Error) -> String {
    format!("{program}: error: {err:#}")
}

/// The exit of `program` for `result`; an error is printed as [`error_line`].
pub fn report(program: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{}", error_line(program, &err));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn one_line_with_the_causes_and_no_backtrace() {
        std::env::set_var("RUST_BACKTRACE", "1");
        let err = Err::<(), _>(std::io::Error::other("connection refused"))
            .context("reaching etcd at 127.0.0.1:2379")
            .unwrap_err();
        let line = error_line("bpfk-server", &err);
        assert_eq!(
            line,
            "bpfk-server: error: reaching etcd at 127.0.0.1:2379: connection refused"
        );
        assert!(!line.contains('\n'));
    }
}
