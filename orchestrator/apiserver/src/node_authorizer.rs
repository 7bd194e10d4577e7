//! The Node authorizer's view of the pods ([`bpfk_auth::node`]): which Secrets, ConfigMaps,
//! claims and ServiceAccounts the pods bound to a node refer to, read from the pods' watch
//! cache for the request at hand (Kubernetes keeps a graph; a scan of the cached pods is
//! linear in their number, and only runs for a node's reads of those objects).

use std::collections::BTreeSet;

use bpfk_apimachinery::pod_references::references;
use bpfk_apimachinery::registry;
use bpfk_auth::authz::Attributes;
use bpfk_auth::node::{pod_object, NodeGraph, PodObject};
use k8s_openapi::api::core::v1::Pod;

use crate::error::{ApiError, Result};
use crate::state::AppState;

/// What the pods bound to one node refer to, in one namespace.
#[derive(Debug, Default)]
pub struct PodsOfNode {
    node: String,
    namespace: String,
    secrets: BTreeSet<String>,
    config_maps: BTreeSet<String>,
    claims: BTreeSet<String>,
    accounts: BTreeSet<String>,
}

impl PodsOfNode {
    /// The references of `node`'s pods in the request's namespace, when the request is about
    /// an object only pods grant (else nothing is read).
    pub async fn load(state: &AppState, node: &str, attrs: &Attributes<'_>) -> Result<PodsOfNode> {
        let mut out = PodsOfNode {
            node: node.to_string(),
            ..Default::default()
        };
        let (Some(_), Some(r)) = (pod_object(attrs), attrs.resource) else {
            return Ok(out);
        };
        out.namespace = r.namespace.clone();
        let res = registry::find("", "v1", "pods")
            .ok_or_else(|| ApiError::internal("pods are not served"))?;
        let prefix = crate::state::prefix(res, Some(&r.namespace));
        let (items, _) = state.ready_cache(res).await?.list_prefix(&prefix).await;
        for kv in items {
            let Ok(pod) = serde_json::from_slice::<Pod>(&kv.value) else {
                continue;
            };
            let spec = pod.spec.as_ref();
            if spec.and_then(|s| s.node_name.as_deref()) != Some(node) {
                continue;
            }
            let refs = references(&pod);
            out.secrets.extend(refs.secrets);
            out.config_maps.extend(refs.config_maps);
            out.claims.extend(refs.persistent_volume_claims);
            let account = spec
                .and_then(|s| s.service_account_name.clone())
                .filter(|a| !a.is_empty());
            out.accounts
                .insert(account.unwrap_or_else(|| "default".into()));
        }
        Ok(out)
    }
}

impl NodeGraph for PodsOfNode {
    fn refers(&self, node: &str, object: PodObject, namespace: &str, name: &str) -> bool {
        if node != self.node || namespace != self.namespace {
            return false;
        }
        let names = match object {
            PodObject::Secret => &self.secrets,
            PodObject::ConfigMap => &self.config_maps,
            PodObject::PersistentVolumeClaim => &self.claims,
            PodObject::ServiceAccountToken => &self.accounts,
            // no PersistentVolumes are served
            PodObject::PersistentVolume => return false,
        };
        names.contains(name)
    }
}
