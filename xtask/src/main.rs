//! Developer tasks: `cargo xtask <command>`.

mod build_ebpf;
mod demo;
mod system_deps;
mod test;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "bpfk developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the eBPF programs (installs rust-src and bpf-linker when missing).
    BuildEbpf(build_ebpf::Options),
    /// Install what building, testing, the demo and the benchmarks need (Debian packages, the
    /// eBPF toolchain), build the eBPF programs, then check that nothing is missing.
    Deps(DepsOptions),
    /// Run every test (needs root): installs prerequisites, builds eBPF, `cargo test --workspace`.
    Test(test::Options),
    /// The main job: a local cluster running the nginx Deployment and a Service.
    Demo(demo::Options),
}

#[derive(clap::Args)]
struct DepsOptions {
    /// Only check: list what is missing and what provides it, install nothing.
    #[arg(long)]
    check: bool,
}

fn main() -> std::process::ExitCode {
    // One clear line on failure, never a backtrace (even with RUST_BACKTRACE set).
    match run(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::BuildEbpf(opts) => build_ebpf::run(&opts),
        Command::Deps(DepsOptions { check: true }) => system_deps::verify(),
        Command::Deps(DepsOptions { check: false }) => system_deps::prepare(),
        Command::Test(opts) => test::run(&opts),
        Command::Demo(opts) => demo::run(&opts),
    }
}
