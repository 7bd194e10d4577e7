//! The host a lab runs on: the checks that make a missing piece fail loudly (root, tools), names
//! unique to this process, and running commands.

use std::fs;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process: `<prefix>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Panics unless the test runs as root.
pub fn require_root(what: &str) {
    let uid = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "{what} needs root (network namespaces, containerd, mounts)"
    );
}

/// Panics with an install hint unless `program` runs.
pub fn require_tool(program: &str, args: &[&str], package: &str) {
    match Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "`{program} {}` failed with {s}: install Debian package {package}",
            args.join(" ")
        ),
        Err(e) => panic!("{program} not found ({e}): install Debian package {package}"),
    }
}

/// Runs `cmd` to completion (stdin closed); panics with its stderr unless it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run {command}: {source}")]
    Start {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {output}")]
    Failed {
        command: String,
        status: String,
        output: String,
    },
}

/// Runs `args` to completion (stdin closed); its stdout, or why it failed (with its output).
pub fn sh(args: &[&str]) -> Result<String, CommandError> {
    let command = format!("{args:?}");
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| CommandError::Start {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(CommandError::Failed {
            command,
            status: out.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// [`sh`] for lab set-up, where a failing command fails the lab: panics with the reason.
pub fn sh_or_panic(args: &[&str]) -> String {
    sh(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `args` and ignores how it ends (clean-up of what may not exist).
pub fn sh_quiet(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
