use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bpfk_server::init_logging();
    bpfk_server::run(bpfk_server::Cli::parse()).await
}
