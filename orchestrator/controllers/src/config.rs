//! Controller manager settings, usable as command-line flags (`#[command(flatten)]`).

use std::path::PathBuf;
use std::time::Duration;

/// Names accepted by `--controllers`.
pub const ALL_CONTROLLERS: &[&str] = &[
    "deployment",
    "replicaset",
    "endpoint",
    "endpointslice",
    "nodeipam",
    "nodelifecycle",
    "garbagecollector",
    "namespace",
    "clusterrole-aggregation",
    "serviceaccount",
    "serviceaccount-token",
    "root-ca-cert-publisher",
    "csrapproving",
    "csrsigning",
    "tokencleaner",
];

pub use bpfk_common::duration::parse_duration;

/// Settings of the controller manager.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllersConfig {
    /// Controllers to run: `*` for all, a name to enable one, `-name` to disable one
    /// (deployment, replicaset, endpoint, endpointslice, nodeipam, nodelifecycle,
    /// garbagecollector, namespace, clusterrole-aggregation, serviceaccount,
    /// serviceaccount-token, root-ca-cert-publisher, csrapproving, csrsigning, tokencleaner).
    #[arg(long = "controllers", value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// A node whose lease was not renewed for this long becomes NotReady and tainted.
    #[arg(long = "node-monitor-grace-period", default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked.
    #[arg(long = "node-monitor-period", default_value = "5s", value_parser = parse_duration)]
    pub node_monitor_period: Duration,
    /// CIDR node pod ranges are taken from.
    #[arg(long = "cluster-cidr", default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// Prefix length of each node's pod range.
    #[arg(long = "node-cidr-mask-size", default_value_t = 24)]
    pub node_cidr_mask_size: u8,
    /// Objects of one kind reconciled at the same time.
    #[arg(long = "concurrent-syncs", default_value_t = 16)]
    pub concurrent_syncs: u16,
    /// The cluster CA (PEM) published in every namespace as the `kube-root-ca.crt`
    /// ConfigMap and put into token Secrets; without it, root-ca-cert-publisher and
    /// serviceaccount-token do not run.
    #[arg(long = "root-ca-file")]
    pub root_ca_file: Option<PathBuf>,
    /// The key (PEM PKCS#8, ECDSA P-256) legacy token Secrets are signed with, the API
    /// server's service-account key; without it, serviceaccount-token does not run.
    #[arg(long = "service-account-private-key-file")]
    pub service_account_private_key_file: Option<PathBuf>,
    /// The CA certificate (PEM) csrsigning signs client certificates with; without it and
    /// `--cluster-signing-key-file`, csrsigning does not run.
    #[arg(long = "cluster-signing-cert-file")]
    pub cluster_signing_cert_file: Option<PathBuf>,
    /// The key (PEM) of `--cluster-signing-cert-file`.
    #[arg(long = "cluster-signing-key-file")]
    pub cluster_signing_key_file: Option<PathBuf>,
    /// How long the certificates csrsigning signs are valid (at most: a request may ask for
    /// less with spec.expirationSeconds).
    #[arg(long = "cluster-signing-duration", default_value = "8760h", value_parser = parse_duration)]
    pub cluster_signing_duration: Duration,
}

impl Default for ControllersConfig {
    fn default() -> Self {
        ControllersConfig {
            controllers: vec!["*".into()],
            node_monitor_grace_period: Duration::from_secs(40),
            node_monitor_period: Duration::from_secs(5),
            cluster_cidr: "10.244.0.0/16".into(),
            node_cidr_mask_size: 24,
            concurrent_syncs: 16,
            root_ca_file: None,
            service_account_private_key_file: None,
            cluster_signing_cert_file: None,
            cluster_signing_key_file: None,
            cluster_signing_duration: Duration::from_secs(365 * 24 * 3600),
        }
    }
}

impl ControllersConfig {
    /// Whether the named controller runs, following `--controllers` (later entries win).
    pub fn enabled(&self, name: &str) -> bool {
        let mut on = false;
        for c in &self.controllers {
            let c = c.trim();
            if c == "*" || c == name {
                on = true;
            } else if c.strip_prefix('-') == Some(name) {
                on = false;
            }
        }
        on
    }

    /// Checks that `--controllers` only names known controllers.
    pub fn validate(&self) -> Result<(), crate::Error> {
        for c in &self.controllers {
            let name = c.trim().trim_start_matches('-');
            if name != "*" && !ALL_CONTROLLERS.contains(&name) {
                return Err(crate::Error::Config {
                    flag: "controllers",
                    reason: format!(
                        "unknown controller {name:?} (known: {})",
                        ALL_CONTROLLERS.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_switches() {
        let mut c = ControllersConfig::default();
        assert!(ALL_CONTROLLERS.iter().all(|n| c.enabled(n)));
        c.controllers = vec!["*".into(), "-nodelifecycle".into()];
        assert!(!c.enabled("nodelifecycle"));
        assert!(c.enabled("deployment"));
        c.controllers = vec!["replicaset".into()];
        assert!(c.enabled("replicaset"));
        assert!(!c.enabled("deployment"));
        assert!(c.validate().is_ok());
        c.controllers = vec!["bogus".into()];
        assert!(c.validate().is_err());
    }
}
