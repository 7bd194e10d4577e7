//! A binary's command-line edges as a newcomer meets them: `--help` and `-h` print its usage on
//! stdout and exit 0; a user error exits non-zero with a message naming what is wrong, never
//! a panic or a backtrace, even with `RUST_BACKTRACE` set in the environment.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
}

/// `--help` and `-h` succeed and print a usage text.
pub fn assert_help(bin: &Path) {
    for flag in ["--help", "-h"] {
        let out = run(bin, &[flag]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.to_lowercase().contains("usage"),
            "{} {flag}: {} stdout:\n{stdout}\nstderr:\n{}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `args` fail with a message that contains `names`, with no panic or backtrace; with
/// `one_line`, the message is exactly one line.
pub fn assert_user_error(bin: &Path, args: &[&str], names: &str, one_line: bool) {
    let out = run(bin, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let what = format!(
        "{} {args:?}: {}, stderr:\n{stderr}",
        bin.display(),
        out.status
    );
    assert!(!out.status.success(), "{what}");
    assert!(stderr.contains(names), "does not name {names:?}: {what}");
    let lower = stderr.to_lowercase();
    assert!(
        !lower.contains("backtrace") && !lower.contains("panicked"),
        "{what}"
    );
    if one_line {
        assert_eq!(stderr.trim_end().lines().count(), 1, "{what}");
    }
}
