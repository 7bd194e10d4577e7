//! The plain baseline of `apiserver_bench`: bpfk-server's API server (the same
//! `bpfk_apiserver` library code, the same flags, the same global allocator) served over plain
//! HTTP on loopback with every request as a fixed user in `system:masters`: no TLS, no
//! credentials read, every request allowed. What the benchmark measures TLS, authentication
//! and authorization against; `apiserver_bench` starts it. Not a product binary: bpfk-server
//! itself has no plain mode.
//!
//! Takes bpfk-server's API server flags (`--etcd-servers`, `--etcd-cafile`, `--listen`,
//! `--data-dir`, ...); `--listen` must be a loopback address.

use std::sync::Arc;

use anyhow::{ensure, Result};
use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The user every request of the plain baseline runs as.
const USER: &str = "bench-admin";

/// bpfk's API server over plain HTTP on loopback, every request as `bench-admin` in
/// system:masters: the baseline apiserver_bench measures TLS, authentication and
/// authorization against. For the benchmark only.
#[derive(Debug, Parser)]
#[command(name = "apiserver_plain")]
struct Cli {
    #[command(flatten)]
    apiserver: bpfk_apiserver::ApiServerConfig,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bpfk_common::logging::init("info");
    let cli = Cli::parse();
    bpfk_common::exit::report("apiserver_plain", serve(cli).await)
}

async fn serve(cli: Cli) -> Result<()> {
    let listen = cli.apiserver.listen;
    ensure!(
        listen.ip().is_loopback(),
        "--listen {listen}: the plain baseline serves loopback only (it authenticates nobody)"
    );
    let user = bpfk_auth::user::authenticated(
        USER.into(),
        String::new(),
        vec![bpfk_auth::user::SYSTEM_MASTERS.into()],
    );
    let transport = bpfk_apiserver::Transport::PlainFixedUser(Arc::new(user));
    let server = bpfk_apiserver::start_serving(&cli.apiserver, transport).await?;
    server.wait().await?;
    Ok(())
}
