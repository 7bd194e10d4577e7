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
    /// Install what building and testing need: Debian packages and the eBPF toolchain, then
    /// build the eBPF programs.
    Deps,
    /// Run every test (needs root): installs prerequisites, builds eBPF, `cargo test --workspace`.
    Test(test::Options),
    /// The main job: a local cluster running the nginx Deployment and a Service.
    Demo(demo::Options),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::BuildEbpf(opts) => build_ebpf::run(&opts),
        Command::Deps => {
            system_deps::ensure()?;
            build_ebpf::run(&build_ebpf::Options::default())
        }
        Command::Test(opts) => test::run(&opts),
        Command::Demo(opts) => demo::run(&opts),
    }
}
