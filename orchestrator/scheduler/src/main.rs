//! `bpfk-scheduler --kubeconfig PATH`: the scheduler as its own process.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "bpfk-scheduler", about = "bpfk pod scheduler")]
struct Args {
    /// kubeconfig to reach the API server (default: KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    #[command(flatten)]
    config: bpfk_scheduler::SchedulerConfig,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bpfk_common::logging::init("info");
    let args = Args::parse();
    bpfk_common::exit::report("bpfk-scheduler", run(args).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let client = bpfk_common::client::from_kubeconfig(args.kubeconfig.as_deref()).await?;
    bpfk_scheduler::run(client, args.config).await?;
    Ok(())
}
