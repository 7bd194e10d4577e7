//! `tracing` to stderr, filtered by an environment variable, with ANSI colours only when stderr
//! is a terminal: logs redirected into files stay plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Logging to stderr filtered by `RUST_LOG` (an unset or unparsable one means `default`).
pub fn init(default: &str) {
    init_from_env("RUST_LOG", default);
}

/// Logging to stderr filtered by the variable `var` (an unset or unparsable one means
/// `default`). A second call is a no-op.
pub fn init_from_env(var: &str, default: &str) {
    let filter = EnvFilter::try_from_env(var).unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
