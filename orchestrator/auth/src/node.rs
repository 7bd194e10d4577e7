//! The Node authorizer, as Kubernetes': a node's identity (`system:node:<name>` in
//! `system:nodes`) may do what a kubelet and a kube-proxy do (bpfk's agent is both, and
//! serves cluster DNS from the same watches: namespaces), and may read a Secret, ConfigMap,
//! PersistentVolumeClaim or PersistentVolume, or request a ServiceAccount's token, only when
//! a pod bound to it refers to that object. Which objects a node's pods refer to is the
//! caller's to answer ([`NodeGraph`]); everything else is decided from the attributes alone.
//! Writes to the node's own objects only are NodeRestriction's (admission), not this.

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::authz::{Attributes, Decision};
use crate::rbac::bootstrap::{node_proxier_rules, node_rules};
use crate::rbac::rules::{allows, rule};

/// Objects a node reaches only through its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodObject {
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    PersistentVolume,
    /// A token of this ServiceAccount (`serviceaccounts/token`).
    ServiceAccountToken,
}

/// What the Node authorizer needs to know beyond a request: whether a pod bound to `node`
/// refers to `object` (`namespace`/`name`; PersistentVolumes are cluster-scoped).
pub trait NodeGraph {
    fn refers(&self, node: &str, object: PodObject, namespace: &str, name: &str) -> bool;
}

/// The graph-only object a request is about, if it is one (`get` of the object, `create`
/// of a token).
pub fn pod_object(attrs: &Attributes<'_>) -> Option<PodObject> {
    let r = attrs.resource?;
    let object = match (
        r.api_group.as_str(),
        r.resource.as_str(),
        r.subresource.as_str(),
    ) {
        ("", "secrets", "") => PodObject::Secret,
        ("", "configmaps", "") => PodObject::ConfigMap,
        ("", "persistentvolumeclaims", "") => PodObject::PersistentVolumeClaim,
        ("", "persistentvolumes", "") => PodObject::PersistentVolume,
        ("", "serviceaccounts", "token") => PodObject::ServiceAccountToken,
        _ => return None,
    };
    Some(object)
}

/// The rules a node has without looking at its pods: the kubelet's and kube-proxy's,
/// without the graph-only objects, and namespace reads for the DNS server.
pub fn node_base_rules() -> Vec<PolicyRule> {
    let graph_only = [
        "configmaps",
        "secrets",
        "persistentvolumeclaims",
        "persistentvolumes",
        "serviceaccounts/token",
    ];
    let mut rules: Vec<PolicyRule> = node_rules()
        .into_iter()
        .chain(node_proxier_rules())
        .collect();
    for r in &mut rules {
        if let Some(resources) = &mut r.resources {
            resources.retain(|res| !graph_only.contains(&res.as_str()));
        }
    }
    rules.retain(|r| r.resources.as_ref().is_none_or(|res| !res.is_empty()));
    rules.push(rule(&["get", "list", "watch"], &[""], &["namespaces"]));
    // what it may read anyway, for clients that read a subresource before patching it
    rules.push(rule(&["get"], &[""], &["pods/status", "nodes/status"]));
    rules
}

/// The Node authorizer's decision on `attrs`: no opinion for anyone but a node.
pub fn authorize(
    attrs: &Attributes<'_>,
    base_rules: &[PolicyRule],
    graph: &dyn NodeGraph,
) -> Decision {
    let Some(node) = attrs.user.node_name() else {
        return Decision::NoOpinion;
    };
    if let (Some(object), Some(r)) = (pod_object(attrs), attrs.resource) {
        let verb_ok = match object {
            PodObject::ServiceAccountToken => attrs.verb == "create",
            _ => attrs.verb == "get",
        };
        if !verb_ok || r.name.is_empty() {
            return Decision::NoOpinion;
        }
        return match graph.refers(node, object, &r.namespace, &r.name) {
            true => Decision::Allow(format!("a pod bound to node {node:?} refers to it")),
            false => Decision::NoOpinion,
        };
    }
    match base_rules.iter().any(|rule| allows(rule, attrs)) {
        true => Decision::Allow("the Node authorizer's rules for kubelets".into()),
        false => Decision::NoOpinion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::ResourceAttributes;
    use crate::user::UserInfo;

    struct OnePod;
    impl NodeGraph for OnePod {
        fn refers(&self, node: &str, object: PodObject, ns: &str, name: &str) -> bool {
            node == "n1"
                && ns == "web"
                && matches!(
                    (object, name),
                    (PodObject::Secret, "tls") | (PodObject::ServiceAccountToken, "default")
                )
        }
    }

    fn ask(user: &UserInfo, verb: &str, resource: &str, sub: &str, ns: &str, name: &str) -> bool {
        let r = ResourceAttributes {
            namespace: ns.into(),
            api_group: if resource == "endpointslices" {
                "discovery.k8s.io".into()
            } else {
                String::new()
            },
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
        };
        let attrs = Attributes {
            user,
            verb,
            resource: Some(&r),
            path: "",
        };
        authorize(&attrs, &node_base_rules(), &OnePod).allowed()
    }

    fn node(name: &str) -> UserInfo {
        UserInfo {
            name: format!("system:node:{name}"),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_node_reads_what_its_pods_use_and_nothing_else() {
        let n1 = node("n1");
        assert!(ask(&n1, "get", "secrets", "", "web", "tls"));
        assert!(!ask(&n1, "get", "secrets", "", "web", "db-password"));
        assert!(
            !ask(&n1, "list", "secrets", "", "web", ""),
            "no listing of secrets"
        );
        assert!(!ask(&n1, "watch", "configmaps", "", "", ""));
        assert!(ask(
            &n1,
            "create",
            "serviceaccounts",
            "token",
            "web",
            "default"
        ));
        assert!(!ask(
            &n1,
            "create",
            "serviceaccounts",
            "token",
            "kube-system",
            "default"
        ));
        assert!(
            !ask(&node("n2"), "get", "secrets", "", "web", "tls"),
            "another node's pod"
        );
    }

    #[test]
    fn a_node_does_a_kubelets_and_a_proxys_work() {
        let n1 = node("n1");
        assert!(ask(&n1, "watch", "pods", "", "", ""));
        assert!(ask(&n1, "patch", "pods", "status", "web", "p"));
        assert!(ask(&n1, "list", "endpointslices", "", "", ""));
        assert!(ask(&n1, "watch", "services", "", "", ""));
        assert!(ask(&n1, "list", "namespaces", "", "", ""));
        assert!(!ask(&n1, "create", "deployments", "", "web", ""));
        assert!(!ask(&n1, "delete", "namespaces", "", "", "web"));
        let not_a_node = UserInfo {
            name: "system:node:n1".into(),
            ..Default::default()
        };
        assert!(
            !ask(&not_a_node, "watch", "pods", "", "", ""),
            "a name without the group is no node"
        );
    }
}
