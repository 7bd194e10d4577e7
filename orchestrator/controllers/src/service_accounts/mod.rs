//! The ServiceAccount controllers of kube-controller-manager: [`default_account`] (a
//! `default` ServiceAccount in every active namespace, recreated when deleted),
//! [`root_ca`] (the `kube-root-ca.crt` ConfigMap with the cluster CA in every namespace,
//! what the projected token volume mounts as `ca.crt`) and [`legacy_tokens`] (Secrets of
//! type `kubernetes.io/service-account-token` filled with a token of their ServiceAccount,
//! and removed with it).

pub mod default_account;
pub mod legacy_tokens;
pub mod root_ca;

use k8s_openapi::api::core::v1::Namespace;

/// Whether `ns` takes new objects (not being deleted).
fn active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}
