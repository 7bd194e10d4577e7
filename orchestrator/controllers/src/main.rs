//! `bpfk-controller-manager --kubeconfig PATH [flags]`: the controllers as their own process.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "bpfk-controller-manager", about = "bpfk controller manager")]
struct Args {
    /// kubeconfig to reach the API server (default: KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<std::path::PathBuf>,
    #[command(flatten)]
    config: bpfk_controllers::ControllersConfig,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bpfk_common::logging::init("info");
    let args = Args::parse();
    bpfk_common::exit::report("bpfk-controller-manager", run(args).await)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let client = bpfk_common::client::from_kubeconfig(args.kubeconfig.as_deref()).await?;
    bpfk_controllers::run(client, args.config).await?;
    Ok(())
}
