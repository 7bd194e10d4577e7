//! `bpfk-server`: the API server, plus (as later issues land) the scheduler and controllers.

use clap::Parser;

/// bpfk control plane: Kubernetes-compatible API server on etcd.
#[derive(Debug, Parser)]
#[command(name = "bpfk-server", version)]
pub struct Cli {
    #[command(flatten)]
    pub apiserver: bpfk_apiserver::ApiServerConfig,
}

/// Run the control plane until it fails or the process is stopped.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let server = bpfk_apiserver::start(&cli.apiserver).await?;
    tokio::select! {
        r = server.wait() => r?,
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
