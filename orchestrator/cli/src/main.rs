//! `bpfk`: thin binary around [`bpfk_cli::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Like other Unix tools, end quietly when stdout is closed (`bpfk get po -w | head`)
    // instead of failing on EPIPE.
    // SAFETY: called first thing in main, before any other thread exists; restoring
    // the default disposition of SIGPIPE has no memory-safety implications.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match bpfk_cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help / --version print to stdout and succeed; bad flags exit 1 like kubectl.
            let _ = e.print();
            return if e.use_stderr() {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            };
        }
    };
    bpfk_common::logging::init_from_env("BPFK_LOG", "warn,kube_client=off");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bpfk_cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let report = e.report();
            if !report.is_empty() {
                eprintln!("{report}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
