//! `bpfk-server`: the control plane in one process — the API server, the scheduler and the
//! controller manager. Scheduler and controllers are ordinary API clients of the server (over
//! HTTP through kube-rs, never etcd); each can be switched off here and run as its own process
//! (`bpfk-scheduler`, `bpfk-controller-manager`) instead.

use clap::Parser;
use futures::StreamExt;

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
    // the in-process components reach the API like any client, over loopback TLS, each with
    // its own identity (and so its own RBAC)
    let client = component_client(&server, "system:kube-controller-manager").await?;
    let scheduler_client = component_client(&server, "system:kube-scheduler").await?;
    // each component is its own task: polled inside this function, they would all share the
    // runtime's main thread (and one task's wake-ups) with each other
    let mut pods = bpfk_controllers::pod_informer(&client);
    // with the controllers here, the scheduler follows their pod watch instead of opening its
    // own (one watch stream and one decode of every pod event less)
    let shared_pods = (!cli.disable_controllers && !cli.disable_scheduler).then(|| {
        let events = pods.subscribe_events().map(Ok);
        Box::pin(events) as bpfk_scheduler::PodEvents
    });
    let scheduler = {
        let (client, config) = (scheduler_client, cli.scheduler.clone());
        let disabled = cli.disable_scheduler;
        tokio::spawn(async move {
            if disabled {
                return std::future::pending().await;
            }
            match shared_pods {
                Some(events) => bpfk_scheduler::run_with_pods(client, config, events).await,
                None => bpfk_scheduler::run(client, config).await,
            }
        })
    };
    let controllers = {
        let (client, config) = (client.clone(), controllers_config(&cli, &server));
        let disabled = cli.disable_controllers;
        tokio::spawn(async move {
            if disabled {
                return std::future::pending().await;
            }
            bpfk_controllers::run_with_pods(client, config, pods).await
        })
    };
    let result = tokio::select! {
        r = server.wait() => r.map_err(anyhow::Error::from),
        r = scheduler => match r {
            Ok(r) => r.map_err(anyhow::Error::from),
            Err(e) => Err(anyhow::anyhow!("scheduler task: {e}")),
        },
        r = controllers => match r {
            Ok(r) => r.map_err(anyhow::Error::from),
            Err(e) => Err(anyhow::anyhow!("controllers task: {e}")),
        },
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    };
    result?;
    Ok(())
}

/// The controllers' settings, with the cluster CA (to publish and to sign with) and the service-account key of this
/// server's PKI where the flags name none.
fn controllers_config(
    cli: &Cli,
    server: &bpfk_apiserver::Running,
) -> bpfk_controllers::ControllersConfig {
    let mut config = cli.controllers.clone();
    let dir = &server.pki.dir;
    config
        .root_ca_file
        .get_or_insert_with(|| dir.join("ca.crt"));
    config
        .service_account_private_key_file
        .get_or_insert_with(|| dir.join("sa.key"));
    config
        .cluster_signing_cert_file
        .get_or_insert_with(|| dir.join("ca.crt"));
    config
        .cluster_signing_key_file
        .get_or_insert_with(|| dir.join("ca.key"));
    config
}

/// A client of `server` as `user`, with a client certificate of its own and the
/// User-Agent of the Kubernetes component it stands for (`kube-controller-manager/…` for
/// `system:kube-controller-manager`), which names its writes in `managedFields`.
async fn component_client(
    server: &bpfk_apiserver::Running,
    user: &str,
) -> anyhow::Result<kube::Client> {
    let text = server.component_kubeconfig(user, &[])?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let component = user.strip_prefix("system:").unwrap_or(user);
    let agent = format!("{component}/v1.33.0 (linux/amd64) bpfk");
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(&agent)?,
    ));
    Ok(kube::Client::try_from(config)?)
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
