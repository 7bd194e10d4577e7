//! bpfk CLI: a kubectl-like client for bpfk-server (or any Kubernetes API
//! server), built on kube-rs. Every resource the server's discovery offers works
//! (`DynamicObject`-style, untyped JSON), with server-side Table output for `get`,
//! client-side apply compatible with `kubectl apply`, describe, delete, scale and logs.

pub mod apply;
pub mod cli;
pub mod client;
pub mod delete;
pub mod describe;
pub mod discovery;
pub mod error;
pub mod get;
pub mod logs;
pub mod manifest;
pub mod patch;
pub mod scale;
pub mod table;
pub mod tabwriter;
pub mod token;

pub use cli::Cli;
pub use error::{Error, Result};

use cli::Command;
use client::{ConnectOptions, Ctx};
use discovery::Resources;

/// Run one `bpfk` command. Output goes to stdout, per-object errors to stderr;
/// the returned error (if any) is printed by the caller with [`Error::report`].
pub async fn run(cli: Cli) -> Result<()> {
    let opts = ConnectOptions {
        kubeconfig: cli.kubeconfig.clone(),
        server: cli.server.clone(),
        context: cli.context.clone(),
        namespace: cli.namespace.clone(),
        certificate_authority: cli.certificate_authority.clone(),
        client_certificate: cli.client_certificate.clone(),
        client_key: cli.client_key.clone(),
        token: cli.token.clone(),
    };
    // Manifests are read (stdin only once) and checked before contacting the server.
    let manifests = match &cli.command {
        Command::Apply(a) => manifest::load_all(&a.filenames)?,
        Command::Delete(d) => manifest::load_all(&d.filenames)?,
        _ => Vec::new(),
    };
    let ctx = Ctx::connect(&opts).await?;
    if let Command::Token(t) = &cli.command {
        return token::run(&ctx, t).await;
    }
    let resources = Resources::discover(&ctx).await?;
    match &cli.command {
        Command::Apply(a) if a.server_side => {
            apply::run_server_side(&ctx, &resources, &manifests, a).await
        }
        Command::Apply(_) => apply::run(&ctx, &resources, &manifests).await,
        Command::Get(g) => get::run(&ctx, &resources, g).await,
        Command::Describe(d) => describe::run(&ctx, &resources, d).await,
        Command::Delete(d) => delete::run(&ctx, &resources, d, &manifests).await,
        Command::Scale(s) => scale::run(&ctx, &resources, s).await,
        Command::Logs(l) => logs::run(&ctx, &resources, l).await,
        Command::ApiResources => {
            print_api_resources(&resources);
            Ok(())
        }
        Command::Token(t) => token::run(&ctx, t).await,
    }
}

fn print_api_resources(resources: &Resources) {
    let mut lines = vec![vec![
        "NAME".to_string(),
        "SHORTNAMES".to_string(),
        "APIVERSION".to_string(),
        "NAMESPACED".to_string(),
        "KIND".to_string(),
    ]];
    for r in resources.all.iter().filter(|r| r.preferred) {
        lines.push(vec![
            r.plural.clone(),
            r.short_names.join(","),
            r.api_version(),
            r.namespaced.to_string(),
            r.kind.clone(),
        ]);
    }
    print!("{}", table::render(&lines));
}
