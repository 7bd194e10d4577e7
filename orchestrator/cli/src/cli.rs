//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// bpfk: drive a Kubernetes-compatible API server (bpfk-server or any other).
#[derive(Debug, Parser)]
#[command(name = "bpfk", version, about, propagate_version = true)]
pub struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// API server URL (http:// or https://); when set, no kubeconfig is read.
    #[arg(short = 's', long, global = true, value_name = "URL")]
    pub server: Option<String>,

    /// With --server: the CA certificate (PEM file) the server's certificate must chain to.
    #[arg(
        long = "certificate-authority",
        global = true,
        value_name = "PATH",
        requires = "server"
    )]
    pub certificate_authority: Option<PathBuf>,

    /// With --server: a client certificate (PEM file) to authenticate with.
    #[arg(long = "client-certificate", global = true, value_name = "PATH", requires_all = ["server", "client_key"])]
    pub client_certificate: Option<PathBuf>,

    /// With --server: the key (PEM file) of --client-certificate.
    #[arg(long = "client-key", global = true, value_name = "PATH", requires_all = ["server", "client_certificate"])]
    pub client_key: Option<PathBuf>,

    /// With --server: a bearer token to authenticate with.
    #[arg(long, global = true, value_name = "TOKEN", requires = "server")]
    pub token: Option<String>,

    /// Kubeconfig context to use (default: its current-context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// Namespace (default: the kubeconfig context's namespace, else `default`).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update objects from manifests (client-side apply, like kubectl apply).
    Apply(ApplyArgs),
    /// List or show objects.
    Get(GetArgs),
    /// Show details of an object and its events.
    Describe(DescribeArgs),
    /// Delete objects by type and name, or those in manifests.
    Delete(DeleteArgs),
    /// Set the replica count of a Deployment or ReplicaSet.
    Scale(ScaleArgs),
    /// Print the logs of a pod's container.
    Logs(LogsArgs),
    /// List the resource types the server offers.
    ApiResources,
    /// Manage the bootstrap tokens machines join with (`bpfk-agent --token`).
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print the join token (CA hash and token) a machine joins with.
    Create(TokenCreateArgs),
    /// List the tokens (ids, lifetimes, usages; never their secrets).
    List,
    /// Delete tokens (by id, token or join token): machines can no longer join with them.
    Delete {
        #[arg(required = true, value_name = "ID")]
        tokens: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// How long the token works (e.g. 24h, 30m); 0 = it never expires.
    #[arg(long, default_value = "24h", value_parser = crate::token::parse_ttl)]
    pub ttl: std::time::Duration,
    /// What the token is for.
    #[arg(long)]
    pub description: Option<String>,
    /// Groups the token authenticates as besides system:bootstrappers.
    #[arg(long, value_delimiter = ',', default_value = bpfk_auth::bootstrap_token::DEFAULT_NODE_GROUP)]
    pub groups: Vec<String>,
    /// Use this token (abcdef.0123456789abcdef) rather than a random one.
    #[arg(value_name = "TOKEN")]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Manifest file, directory (its *.yaml, *.yml, *.json) or `-` for stdin.
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE|DIR|-"
    )]
    pub filenames: Vec<String>,
    /// Apply on the server (server-side apply): the server merges the manifest and records
    /// which fields this manager owns.
    #[arg(long)]
    pub server_side: bool,
    /// With --server-side: take the fields other managers own instead of failing.
    #[arg(long, requires = "server_side")]
    pub force_conflicts: bool,
    /// The manager the server records for the applied fields.
    #[arg(long, default_value = "bpfk", requires = "server_side")]
    pub field_manager: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Wide,
    Yaml,
    Json,
    Name,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Resource type(s) (pods, po, deploy, svc, po,svc ...), or TYPE/NAME.
    pub kind: String,
    /// Object names (or more TYPE/NAME).
    pub names: Vec<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector, e.g. app=nginx.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Field selector, e.g. status.phase=Running.
    #[arg(long, value_name = "SELECTOR")]
    pub field_selector: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<OutputFormat>,
    /// After listing, watch for changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Resource type, or TYPE/NAME.
    pub kind: String,
    /// Object names (all objects of the type when none).
    pub names: Vec<String>,
    /// Label selector.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cascade {
    Background,
    Foreground,
    Orphan,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Resource type and names (`pod nginx`, `pod/nginx`).
    pub args: Vec<String>,
    /// Delete the objects in these manifests instead.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    pub filenames: Vec<String>,
    /// Delete every object of the type matching this label selector.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// How dependents are deleted.
    #[arg(long, value_enum, default_value = "background")]
    pub cascade: Cascade,
    /// Seconds given to the object to terminate gracefully (server default when unset).
    #[arg(long, value_name = "SECONDS")]
    pub grace_period: Option<i64>,
    /// Treat "not found" as success.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Wait until the objects are gone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub wait: bool,
    /// How long to wait for deletion, in seconds.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// `deployment NAME`, `deployment/NAME`, `rs NAME`...
    #[arg(required = true)]
    pub args: Vec<String>,
    /// The new replica count.
    #[arg(long, required = true)]
    pub replicas: u32,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Pod name (or pod/NAME).
    pub pod: String,
    /// Container name (default: the pod's only container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<i64>,
    /// Keep streaming new log lines.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Logs of the previous instance of the container.
    #[arg(short = 'p', long)]
    pub previous: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_common_forms() {
        let c = Cli::try_parse_from(["bpfk", "get", "po", "-A", "-o", "wide", "-l", "app=nginx"])
            .unwrap();
        let Command::Get(g) = c.command else { panic!() };
        assert!(g.all_namespaces);
        assert_eq!(g.output, Some(OutputFormat::Wide));
        let c = Cli::try_parse_from(["bpfk", "-n", "x", "scale", "deploy", "d", "--replicas", "3"])
            .unwrap();
        assert_eq!(c.namespace.as_deref(), Some("x"));
        let c = Cli::try_parse_from([
            "bpfk",
            "delete",
            "pod",
            "nginx",
            "--cascade=orphan",
            "--grace-period",
            "0",
        ])
        .unwrap();
        let Command::Delete(d) = c.command else {
            panic!()
        };
        assert_eq!(d.cascade, Cascade::Orphan);
        assert_eq!(d.grace_period, Some(0));
        assert!(Cli::try_parse_from(["bpfk", "get", "po", "-o", "table"]).is_err());
        assert!(Cli::try_parse_from(["bpfk", "apply"]).is_err());
    }
}
