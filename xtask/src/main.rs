//! Developer tasks: `cargo xtask <command>`.

mod build_ebpf;
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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::BuildEbpf(opts) => build_ebpf::run(&opts),
    }
}
