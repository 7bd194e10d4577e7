//! Authorization of every authenticated request, as kube-apiserver's authorizer chain:
//! `system:masters` may do anything, then the Node authorizer (nodes' identities), then RBAC (roles and bindings read from the watch
//! caches). A refusal is 403 with Kubernetes' wording. The user a request runs as is kept for
//! its handlers in [`REQUESTER`] (kube-apiserver keeps it in the request context): admission
//! (the RBAC escalation check) reads it there; writes with none are the server's own.

use std::sync::Arc;

use axum::http::Method;
use bpfk_apimachinery::registry::{self, ResourceInfo};
use bpfk_auth::authz::{Attributes, Decision, ResourceAttributes};
use bpfk_auth::rbac::RbacPolicy;
use bpfk_auth::user::{UserInfo, SYSTEM_MASTERS};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, Result};
use crate::path::{self, Target};
use crate::state::AppState;

tokio::task_local! {
    /// The user the current request runs as (unset for the server's own writes).
    pub static REQUESTER: Arc<UserInfo>;
}

/// The user of the request being served, if this runs inside one.
pub fn requester() -> Option<Arc<UserInfo>> {
    REQUESTER.try_with(Arc::clone).ok()
}

/// What a request asks, owned (the attributes borrow from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAttributes {
    pub verb: String,
    pub resource: Option<ResourceAttributes>,
    pub path: String,
}

impl RequestAttributes {
    pub fn of<'a>(&'a self, user: &'a UserInfo) -> Attributes<'a> {
        Attributes {
            user,
            verb: &self.verb,
            resource: self.resource.as_ref(),
            path: &self.path,
        }
    }
}

/// The attributes of a request, as kube-apiserver's `RequestInfoFactory` derives them: a
/// resource request's verb from its method, name and `watch`; a non-resource request's verb
/// is its lower-case method.
pub fn request_attributes(method: &Method, path: &str, watch: bool) -> RequestAttributes {
    let Some(Target::Resource(rp)) = path::parse(path) else {
        return RequestAttributes {
            verb: method.as_str().to_ascii_lowercase(),
            resource: None,
            path: path.to_string(),
        };
    };
    let named = rp.name.is_some();
    let streaming = matches!(
        rp.subresource.as_deref(),
        Some("exec" | "attach" | "portforward")
    );
    let verb = match *method {
        // an upgraded exec/attach/portforward creates a session whatever its method
        Method::GET | Method::HEAD if streaming => "create",
        Method::GET | Method::HEAD if watch || rp.watch => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "",
    };
    // `/api/v1/namespaces/x` is in namespace x, as Kubernetes has it
    let namespace = match (&rp.namespace, rp.resource.as_str(), rp.group.is_empty()) {
        (None, "namespaces", true) => rp.name.clone().unwrap_or_default(),
        (ns, _, _) => ns.clone().unwrap_or_default(),
    };
    RequestAttributes {
        verb: verb.to_string(),
        resource: Some(ResourceAttributes {
            namespace,
            api_group: rp.group,
            resource: rp.resource,
            subresource: rp.subresource.unwrap_or_default(),
            name: rp.name.unwrap_or_default(),
        }),
        path: path.to_string(),
    }
}

/// The server's authorizers.
pub struct Authorizer {
    rbac: RbacCache,
    node_rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule>,
}

impl Default for Authorizer {
    fn default() -> Self {
        Authorizer {
            rbac: RbacCache::default(),
            node_rules: bpfk_auth::node::node_base_rules(),
        }
    }
}

impl Authorizer {
    /// The chain's decision on `attrs`: the first authorizer with an opinion decides.
    pub async fn decide(&self, state: &AppState, attrs: &Attributes<'_>) -> Result<Decision> {
        if attrs.user.in_group(SYSTEM_MASTERS) {
            return Ok(Decision::Allow(format!("member of {SYSTEM_MASTERS}")));
        }
        if let Some(node) = attrs.user.node_name() {
            let graph = crate::node_authorizer::PodsOfNode::load(state, node, attrs).await?;
            let decision = bpfk_auth::node::authorize(attrs, &self.node_rules, &graph);
            if decision != Decision::NoOpinion {
                return Ok(decision);
            }
        }
        Ok(self.rbac.policy(state).await?.authorize(attrs))
    }

    /// Ok when allowed, 403 otherwise.
    pub async fn authorize(&self, state: &AppState, attrs: &Attributes<'_>) -> Result<()> {
        if self.decide(state, attrs).await?.allowed() {
            return Ok(());
        }
        Err(forbidden(attrs))
    }

    /// The RBAC objects as the caches hold them now.
    pub async fn rbac_policy(&self, state: &AppState) -> Result<Arc<RbacPolicy>> {
        self.rbac.policy(state).await
    }
}

/// 403 for `attrs`, worded as kube-apiserver's (`pods is forbidden: User "x" cannot ...`).
pub fn forbidden(attrs: &Attributes<'_>) -> ApiError {
    let (group, kind, name) = match attrs.resource {
        Some(r) => (r.api_group.clone(), r.resource.clone(), r.name.clone()),
        None => (String::new(), String::new(), String::new()),
    };
    ApiError::Forbidden {
        group,
        kind,
        name,
        message: attrs.forbidden_message(),
    }
}

const RBAC_RESOURCES: [&str; 4] = [
    "clusterroles",
    "roles",
    "clusterrolebindings",
    "rolebindings",
];

/// The RBAC policy built from the four RBAC watch caches, rebuilt when one of them moved.
#[derive(Default)]
struct RbacCache {
    snapshot: tokio::sync::Mutex<Option<([i64; 4], Arc<RbacPolicy>)>>,
}

impl RbacCache {
    async fn policy(&self, state: &AppState) -> Result<Arc<RbacPolicy>> {
        let resources = rbac_resources()?;
        let mut revisions = [0; 4];
        for (i, res) in resources.iter().enumerate() {
            revisions[i] = state.ready_cache(res).await?.revision();
        }
        let mut snapshot = self.snapshot.lock().await;
        if let Some((at, policy)) = snapshot.as_ref() {
            if *at == revisions {
                return Ok(policy.clone());
            }
        }
        let policy = Arc::new(RbacPolicy::new(
            typed::<ClusterRole>(state, resources[0]).await?,
            typed::<Role>(state, resources[1]).await?,
            typed::<ClusterRoleBinding>(state, resources[2]).await?,
            typed::<RoleBinding>(state, resources[3]).await?,
        ));
        *snapshot = Some((revisions, policy.clone()));
        Ok(policy)
    }
}

fn rbac_resources() -> Result<[&'static ResourceInfo; 4]> {
    let find = |plural| {
        registry::find(bpfk_auth::rbac::GROUP, "v1", plural)
            .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))
    };
    Ok([
        find(RBAC_RESOURCES[0])?,
        find(RBAC_RESOURCES[1])?,
        find(RBAC_RESOURCES[2])?,
        find(RBAC_RESOURCES[3])?,
    ])
}

/// Every object of `res` in the watch cache, decoded as `T` (objects that do not decode
/// are left out with a warning: the store only holds validated objects).
async fn typed<T: DeserializeOwned>(state: &AppState, res: &ResourceInfo) -> Result<Vec<T>> {
    let (items, _) = state.ready_cache(res).await?.list().await;
    Ok(items
        .iter()
        .filter_map(|kv| match serde_json::from_slice(&kv.value) {
            Ok(obj) => Some(obj),
            Err(e) => {
                tracing::warn!(key = %kv.key, error = %e, "an RBAC object does not decode");
                None
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: Method, path: &str, watch: bool) -> (String, ResourceAttributes) {
        let a = request_attributes(&method, path, watch);
        (a.verb, a.resource.unwrap_or_default())
    }

    #[test]
    fn verbs_and_resources_from_requests() {
        let (verb, r) = attrs(Method::GET, "/api/v1/namespaces/dev/pods", false);
        assert_eq!(
            (verb.as_str(), r.namespace.as_str(), r.resource.as_str()),
            ("list", "dev", "pods")
        );
        assert_eq!(attrs(Method::GET, "/api/v1/pods", true).0, "watch");
        assert_eq!(
            attrs(Method::GET, "/api/v1/watch/namespaces/a/pods", false).0,
            "watch"
        );
        let (verb, r) = attrs(Method::GET, "/api/v1/namespaces/dev/pods/web/log", false);
        assert_eq!(
            (verb.as_str(), r.subresource.as_str(), r.name.as_str()),
            ("get", "log", "web")
        );
        assert_eq!(
            attrs(Method::GET, "/api/v1/namespaces/d/pods/w/exec", false).0,
            "create"
        );
        assert_eq!(
            attrs(
                Method::DELETE,
                "/apis/apps/v1/namespaces/d/deployments",
                false
            )
            .0,
            "deletecollection"
        );
        let (verb, r) = attrs(
            Method::PATCH,
            "/apis/apps/v1/namespaces/d/deployments/w/scale",
            false,
        );
        assert_eq!(
            (verb.as_str(), r.api_group.as_str(), r.subresource.as_str()),
            ("patch", "apps", "scale")
        );
        let (_, r) = attrs(Method::GET, "/api/v1/namespaces/dev", false);
        assert_eq!(
            (r.namespace.as_str(), r.resource.as_str(), r.name.as_str()),
            ("dev", "namespaces", "dev")
        );
        let non = request_attributes(&Method::GET, "/apis/apps", false);
        assert_eq!(
            (non.verb.as_str(), non.resource, non.path.as_str()),
            ("get", None, "/apis/apps")
        );
    }

    #[test]
    fn forbidden_messages_as_kubernetes() {
        let user = bpfk_auth::user::authenticated("alice".into(), String::new(), vec![]);
        let a = request_attributes(&Method::GET, "/api/v1/namespaces/dev/pods", false);
        let message = forbidden(&a.of(&user)).message();
        assert_eq!(
            message,
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "dev""#
        );
        let a = request_attributes(&Method::GET, "/apis/apps/v1/deployments", false);
        let message = forbidden(&a.of(&user)).message();
        assert_eq!(
            message,
            r#"deployments.apps is forbidden: User "alice" cannot list resource "deployments" in API group "apps" at the cluster scope"#
        );
        let a = request_attributes(&Method::GET, "/metrics", false);
        let message = forbidden(&a.of(&user)).message();
        assert_eq!(
            message,
            r#"forbidden: User "alice" cannot get path "/metrics""#
        );
    }
}
