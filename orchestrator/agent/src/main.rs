//! `bpfk-agent`: thin binary around [`bpfk_agent::run`].

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bpfk_common::logging::init("info");
    let args = bpfk_agent::Args::parse();
    let result = bpfk_agent::run(args).await.map_err(anyhow::Error::from);
    bpfk_common::exit::report("bpfk-agent", result)
}
