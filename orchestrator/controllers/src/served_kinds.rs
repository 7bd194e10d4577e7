//! The kinds the API server serves, as the garbage collector (owners by kind) and the
//! namespace controller (what to empty, in order) look them up.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::ApiResource;

/// One kind: its API resource and whether it lives in namespaces.
#[derive(Debug, Clone)]
pub struct Kind {
    /// Group, version, kind and plural.
    pub resource: ApiResource,
    /// Namespaced (`true`) or cluster-scoped.
    pub namespaced: bool,
}

fn kind<K: kube::Resource<DynamicType = ()>>(namespaced: bool) -> Kind {
    Kind {
        resource: ApiResource::erase::<K>(&()),
        namespaced,
    }
}

/// Every kind the API server serves, in the order a namespace is emptied (owners before what
/// they own so that nothing is recreated behind our back).
pub fn known() -> Vec<Kind> {
    vec![
        kind::<Deployment>(true),
        kind::<ReplicaSet>(true),
        kind::<Pod>(true),
        kind::<Service>(true),
        kind::<EndpointSlice>(true),
        kind::<Endpoints>(true),
        kind::<ConfigMap>(true),
        kind::<Secret>(true),
        kind::<ServiceAccount>(true),
        kind::<RoleBinding>(true),
        kind::<Role>(true),
        kind::<Lease>(true),
        kind::<Event>(true),
        kind::<Node>(false),
        kind::<Namespace>(false),
        kind::<ClusterRoleBinding>(false),
        kind::<ClusterRole>(false),
    ]
}

/// Finds a kind by `apiVersion` and `kind`.
pub fn find<'a>(kinds: &'a [Kind], api_version: &str, kind: &str) -> Option<&'a Kind> {
    kinds
        .iter()
        .find(|k| k.resource.api_version == api_version && k.resource.kind == kind)
}
