//! `bpfk-server`: the control plane in one process — the API server, the scheduler and the
//! controller manager. Scheduler and controllers are ordinary API clients of the server (over
//! HTTP through kube-rs, never etcd); each can be switched off here and run as its own process
//! (`bpfk-scheduler`, `bpfk-controller-manager`) instead.

use clap::Parser;

/// bpfk control plane: Kubernetes-compatible API server on etcd, scheduler, controllers.
#[derive(Debug, Parser)]
#[command(name = "bpfk-server", version)]
pub struct Cli {
    #[command(flatten)]
    pub apiserver: bpfk_apiserver::ApiServerConfig,
    /// Do not run the scheduler in this process.
    #[arg(long)]
    pub disable_scheduler: bool,
    /// Do not run the controller manager in this process.
    #[arg(long)]
    pub disable_controllers: bool,
    #[command(flatten)]
    pub scheduler: bpfk_scheduler::SchedulerConfig,
    #[command(flatten)]
    pub controllers: bpfk_controllers::ControllersConfig,
}

/// Run the control plane until a component fails or the process is stopped.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let server = bpfk_apiserver::start(&cli.apiserver).await?;
    // the in-process components reach the API like any client, over loopback HTTP
    let config = kube::Config::new(server.url().parse()?);
    let client = kube::Client::try_from(config)?;
    let scheduler = async {
        if cli.disable_scheduler {
            return std::future::pending().await;
        }
        bpfk_scheduler::run(client.clone(), cli.scheduler.clone()).await
    };
    let controllers = async {
        if cli.disable_controllers {
            return std::future::pending().await;
        }
        bpfk_controllers::run(client.clone(), cli.controllers.clone()).await
    };
    tokio::select! {
        r = server.wait() => r?,
        r = scheduler => r?,
        r = controllers => r?,
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Logging to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
