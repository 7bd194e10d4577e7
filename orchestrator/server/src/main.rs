use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bpfk_common::logging::init("info");
    let cli = bpfk_server::Cli::parse();
    bpfk_common::exit::report("bpfk-server", bpfk_server::run(cli).await)
}
