//! The ClusterRoles and ClusterRoleBindings a cluster starts with (Kubernetes'
//! `bootstrappolicy`): the user-facing `cluster-admin`, `admin`, `edit` and `view` (the last
//! three aggregated from the `system:aggregate-to-*` roles), discovery and basic-user for
//! everyone authenticated, and one least-privilege role per component identity.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::rules::{rule, url_rule};
use super::GROUP;
use crate::user;

/// Label of the bootstrap objects.
pub const BOOTSTRAPPING_LABEL: &str = "kubernetes.io/bootstrapping";
/// Annotation saying the server may add missing rules and subjects at start-up.
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";
/// The aggregation labels (`rbac.authorization.k8s.io/aggregate-to-<role>: "true"`).
pub const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
pub const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
pub const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

/// Read verbs.
const READ: &[&str] = &["get", "list", "watch"];
/// Write verbs.
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const EVENT_WRITE: &[&str] = &["create", "patch", "update"];

fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    let mut all: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.insert(BOOTSTRAPPING_LABEL.into(), "rbac-defaults".into());
    ObjectMeta {
        name: Some(name.into()),
        labels: Some(all),
        annotations: Some(BTreeMap::from([(
            AUTOUPDATE_ANNOTATION.into(),
            "true".into(),
        )])),
        ..Default::default()
    }
}

fn role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    labelled_role(name, &[], rules)
}

fn labelled_role(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, labels),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

/// A role whose rules the aggregation controller fills from the roles labelled `label`.
fn aggregated(name: &str, label: &str) -> ClusterRole {
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([(label.to_string(), "true".to_string())])),
        ..Default::default()
    };
    ClusterRole {
        metadata: meta(name, &[]),
        rules: Some(Vec::new()),
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![selector]),
        }),
    }
}

const TRUE: &str = "true";

/// Every bootstrap ClusterRole.
pub fn cluster_roles() -> Vec<ClusterRole> {
    vec![
        role(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])],
        ),
        aggregated("admin", AGGREGATE_TO_ADMIN),
        aggregated("edit", AGGREGATE_TO_EDIT),
        aggregated("view", AGGREGATE_TO_VIEW),
        labelled_role(
            "system:aggregate-to-admin",
            &[(AGGREGATE_TO_ADMIN, TRUE)],
            admin_rules(),
        ),
        labelled_role(
            "system:aggregate-to-edit",
            &[(AGGREGATE_TO_ADMIN, TRUE), (AGGREGATE_TO_EDIT, TRUE)],
            edit_rules(),
        ),
        labelled_role(
            "system:aggregate-to-view",
            &[
                (AGGREGATE_TO_ADMIN, TRUE),
                (AGGREGATE_TO_EDIT, TRUE),
                (AGGREGATE_TO_VIEW, TRUE),
            ],
            view_rules(),
        ),
        role("system:basic-user", basic_user_rules()),
        role("system:discovery", vec![url_rule(&["get"], DISCOVERY_URLS)]),
        role(
            "system:public-info-viewer",
            vec![url_rule(&["get"], PUBLIC_URLS)],
        ),
        role(
            "system:monitoring",
            vec![url_rule(&["get"], MONITORING_URLS)],
        ),
        role("system:auth-delegator", auth_delegator_rules()),
        role("system:node", node_rules()),
        role("system:node-proxier", node_proxier_rules()),
        role(
            "system:node-bootstrapper",
            vec![rule(
                &["create", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            )],
        ),
        role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![rule(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/nodeclient"],
            )],
        ),
        role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![rule(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/selfnodeclient"],
            )],
        ),
        role(
            "system:kube-dns",
            vec![
                rule(&["list", "watch"], &[""], &["endpoints", "services"]),
                rule(
                    &["list", "watch"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
            ],
        ),
        role("system:kubelet-api-admin", kubelet_api_admin_rules()),
        role("system:kube-scheduler", scheduler_rules()),
        role("system:kube-controller-manager", controller_manager_rules()),
        role(
            "system:controller:certificate-controller",
            certificate_controller_rules(),
        ),
    ]
}

const DISCOVERY_URLS: &[&str] = &[
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/openapi",
    "/openapi/*",
    "/readyz",
    "/version",
    "/version/",
];
const PUBLIC_URLS: &[&str] = &["/healthz", "/livez", "/readyz", "/version", "/version/"];
const MONITORING_URLS: &[&str] = &[
    "/metrics",
    "/metrics/slis",
    "/livez",
    "/readyz",
    "/healthz",
    "/livez/*",
    "/readyz/*",
    "/healthz/*",
];

fn basic_user_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
        ),
        rule(
            &["create"],
            &["authentication.k8s.io"],
            &["selfsubjectreviews"],
        ),
    ]
}

fn auth_delegator_rules() -> Vec<PolicyRule> {
    vec![
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
        ),
    ]
}

fn admin_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
        ),
        rule(
            &[READ, WRITE].concat(),
            &[GROUP],
            &["rolebindings", "roles"],
        ),
    ]
}

fn edit_rules() -> Vec<PolicyRule> {
    let workloads = &[
        "deployments",
        "deployments/scale",
        "deployments/rollback",
        "replicasets",
        "replicasets/scale",
        "statefulsets",
        "statefulsets/scale",
        "daemonsets",
    ];
    vec![
        rule(&["impersonate"], &[""], &["serviceaccounts"]),
        rule(
            WRITE,
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
            ],
        ),
        rule(
            &["create"],
            &[""],
            &["pods/eviction", "serviceaccounts/token"],
        ),
        rule(
            &["get"],
            &[""],
            &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy"],
        ),
        rule(
            WRITE,
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
        ),
        rule(WRITE, &["apps"], workloads),
        rule(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
        rule(WRITE, &["batch"], &["cronjobs", "jobs"]),
        rule(
            WRITE,
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
        ),
        rule(WRITE, &["policy"], &["poddisruptionbudgets"]),
        rule(WRITE, &["discovery.k8s.io"], &["endpointslices"]),
        rule(READ, &[""], &["secrets"]),
    ]
}

fn view_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "pods/log",
                "pods/status",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "replicationcontrollers/status",
                "serviceaccounts",
                "services",
                "services/status",
                "bindings",
                "events",
                "limitranges",
                "namespaces",
                "namespaces/status",
                "resourcequotas",
                "resourcequotas/status",
            ],
        ),
        rule(
            READ,
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
        ),
        rule(
            READ,
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            READ,
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
        ),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        rule(READ, &["events.k8s.io"], &["events"]),
        rule(
            READ,
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
        ),
        rule(
            READ,
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
    ]
}

/// What a node's kubelet may do at most (the Node authorizer narrows it to the node's own
/// objects).
pub fn node_rules() -> Vec<PolicyRule> {
    vec![
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews", "localsubjectaccessreviews"],
        ),
        rule(
            READ,
            &[""],
            &[
                "services",
                "nodes",
                "pods",
                "configmaps",
                "secrets",
                "persistentvolumeclaims",
                "persistentvolumes",
                "endpoints",
            ],
        ),
        rule(
            &[
                "create", "get", "list", "watch", "update", "patch", "delete",
            ],
            &[""],
            &["nodes", "nodes/status", "pods"],
        ),
        rule(&["update", "patch"], &[""], &["pods/status"]),
        rule(
            &["create"],
            &[""],
            &["pods/eviction", "serviceaccounts/token"],
        ),
        rule(EVENT_WRITE, &["", "events.k8s.io"], &["events"]),
        rule(
            &["get", "create", "update", "patch", "delete"],
            &["coordination.k8s.io"],
            &["leases"],
        ),
        rule(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
        ),
    ]
}

/// Everything a kubelet's API serves (Kubernetes' `system:kubelet-api-admin`: what the API
/// server does to kubelets for pods/log, exec, attach and port-forward).
fn kubelet_api_admin_rules() -> Vec<PolicyRule> {
    vec![
        rule(&["get", "list", "watch", "proxy"], &[""], &["nodes"]),
        rule(
            &["*"],
            &[""],
            &[
                "nodes/proxy",
                "nodes/log",
                "nodes/stats",
                "nodes/metrics",
                "nodes/spec",
                "nodes/checkpoint",
            ],
        ),
    ]
}

/// What kube-proxy reads (and the events it writes).
pub fn node_proxier_rules() -> Vec<PolicyRule> {
    vec![
        rule(&["list", "watch"], &[""], &["endpoints", "services"]),
        rule(READ, &[""], &["nodes"]),
        rule(EVENT_WRITE, &["", "events.k8s.io"], &["events"]),
        rule(
            &["list", "watch"],
            &["discovery.k8s.io"],
            &["endpointslices"],
        ),
    ]
}

fn scheduler_rules() -> Vec<PolicyRule> {
    vec![
        rule(EVENT_WRITE, &["", "events.k8s.io"], &["events"]),
        rule(
            &["create", "get", "update"],
            &["coordination.k8s.io"],
            &["leases"],
        ),
        rule(
            READ,
            &[""],
            &[
                "nodes",
                "namespaces",
                "services",
                "replicationcontrollers",
                "persistentvolumeclaims",
                "persistentvolumes",
            ],
        ),
        rule(&["get", "list", "watch", "delete"], &[""], &["pods"]),
        rule(&["create"], &[""], &["bindings", "pods/binding"]),
        rule(&["patch", "update"], &[""], &["pods/status"]),
        rule(READ, &["apps"], &["replicasets", "statefulsets"]),
        rule(READ, &["policy"], &["poddisruptionbudgets"]),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
        ),
    ]
}

/// The union of what each of bpfk's in-process controllers needs (Kubernetes gives each
/// controller its own ServiceAccount and role; bpfk's run under one identity): the
/// garbage collector and the namespace controller act on every resource, as theirs do.
fn controller_manager_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            &[
                "get",
                "list",
                "watch",
                "patch",
                "update",
                "delete",
                "deletecollection",
            ],
            &["*"],
            &["*"],
        ),
        rule(EVENT_WRITE, &["", "events.k8s.io"], &["events"]),
        rule(
            &["create"],
            &[""],
            &[
                "pods",
                "endpoints",
                "serviceaccounts",
                "configmaps",
                "secrets",
            ],
        ),
        rule(&["create"], &["apps"], &["replicasets"]),
        rule(&["create"], &["discovery.k8s.io"], &["endpointslices"]),
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
        ),
        rule(&["escalate"], &[GROUP], &["clusterroles"]),
    ]
}

/// The API group of CertificateSigningRequests and signers.
const CERTIFICATES: &str = "certificates.k8s.io";

/// The built-in signers bpfk's certificate controllers approve for and sign with.
pub const CONTROLLER_SIGNERS: [&str; 3] = [
    "kubernetes.io/kube-apiserver-client-kubelet",
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kubelet-serving",
];

/// What the CSR approver and signer controllers do (Kubernetes'
/// `system:controller:certificate-controller`): read and clean up requests, write their
/// approval and status, and `approve` and `sign` for the built-in signers only.
fn certificate_controller_rules() -> Vec<PolicyRule> {
    let mut signers = rule(&["approve", "sign"], &[CERTIFICATES], &["signers"]);
    signers.resource_names = Some(CONTROLLER_SIGNERS.map(String::from).to_vec());
    vec![
        rule(
            &["get", "list", "watch", "delete"],
            &[CERTIFICATES],
            &["certificatesigningrequests"],
        ),
        rule(
            &["update"],
            &[CERTIFICATES],
            &[
                "certificatesigningrequests/approval",
                "certificatesigningrequests/status",
            ],
        ),
        signers,
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
        ),
        rule(EVENT_WRITE, &["", "events.k8s.io"], &["events"]),
    ]
}

fn subject(kind: &str, name: &str) -> Subject {
    let api_group = Some(if kind == "ServiceAccount" { "" } else { GROUP }.to_string());
    Subject {
        kind: kind.into(),
        name: name.into(),
        api_group,
        namespace: None,
    }
}

fn binding(name: &str, role: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, &[]),
        role_ref: RoleRef {
            api_group: GROUP.into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(subjects),
    }
}

/// Every bootstrap ClusterRoleBinding.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    let mut kube_dns = subject("ServiceAccount", "kube-dns");
    kube_dns.namespace = Some("kube-system".into());
    let group = |g: &str| subject("Group", g);
    let same = |name: &str, subjects| binding(name, name, subjects);
    vec![
        binding(
            "cluster-admin",
            "cluster-admin",
            vec![group(user::SYSTEM_MASTERS)],
        ),
        same("system:basic-user", vec![group(user::AUTHENTICATED)]),
        same("system:discovery", vec![group(user::AUTHENTICATED)]),
        same(
            "system:public-info-viewer",
            vec![group(user::AUTHENTICATED), group(user::UNAUTHENTICATED)],
        ),
        same("system:monitoring", vec![group("system:monitoring")]),
        same(
            "system:kube-scheduler",
            vec![subject("User", "system:kube-scheduler")],
        ),
        same(
            "system:kube-controller-manager",
            vec![subject("User", "system:kube-controller-manager")],
        ),
        // Kubernetes binds it to the controller's ServiceAccount; bpfk's controllers all
        // run as the controller manager
        same(
            "system:controller:certificate-controller",
            vec![subject("User", "system:kube-controller-manager")],
        ),
        same("system:kube-dns", vec![kube_dns]),
        same(
            "system:node-proxier",
            vec![subject("User", "system:kube-proxy")],
        ),
        // bpfk's agent is its node's kube-proxy too
        binding(
            "bpfk:node-proxier",
            "system:node-proxier",
            vec![group(user::NODES_GROUP)],
        ),
        // the API server's own identity toward kubelets (kubeadm gives its certificate
        // cluster-admin; this is what the kubelets' API needs and no more)
        binding(
            "bpfk:apiserver-kubelet-client",
            "system:kubelet-api-admin",
            vec![subject("User", crate::pki::KUBELET_CLIENT_USER)],
        ),
        // the Node authorizer grants nodes their objects; this binding stays empty
        same("system:node", vec![]),
        // kubelet TLS bootstrapping, as kubeadm binds it: bootstrap tokens may ask for a node
        // client certificate, which is approved; nodes may renew their own
        binding(
            "bpfk:kubelet-bootstrap",
            "system:node-bootstrapper",
            vec![group(user::BOOTSTRAPPERS_GROUP)],
        ),
        binding(
            "bpfk:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![group(user::BOOTSTRAPPERS_GROUP)],
        ),
        binding(
            "bpfk:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![group(user::NODES_GROUP)],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{Attributes, ResourceAttributes};
    use crate::rbac::RbacPolicy;

    #[test]
    fn component_identities_get_their_roles() {
        let policy = RbacPolicy::new(cluster_roles(), vec![], cluster_role_bindings(), vec![]);
        let scheduler = user::authenticated("system:kube-scheduler".into(), String::new(), vec![]);
        let nobody = user::authenticated("alice".into(), String::new(), vec![]);
        let bind = ResourceAttributes {
            namespace: "default".into(),
            resource: "pods".into(),
            subresource: "binding".into(),
            name: "web".into(),
            ..Default::default()
        };
        let at = |u| Attributes {
            user: u,
            verb: "create",
            resource: Some(&bind),
            path: "",
        };
        assert!(policy.authorize(&at(&scheduler)).allowed());
        assert!(!policy.authorize(&at(&nobody)).allowed());
        let discovery = Attributes {
            user: &nobody,
            verb: "get",
            resource: None,
            path: "/apis/apps",
        };
        assert!(policy.authorize(&discovery).allowed());
        let admin = user::authenticated(
            "root".into(),
            String::new(),
            vec![user::SYSTEM_MASTERS.into()],
        );
        let secrets = ResourceAttributes {
            resource: "secrets".into(),
            ..Default::default()
        };
        let list = Attributes {
            user: &admin,
            verb: "list",
            resource: Some(&secrets),
            path: "",
        };
        assert!(policy.authorize(&list).allowed());
    }

    #[test]
    fn the_controller_manager_approves_and_signs_for_the_built_in_signers_only() {
        let policy = RbacPolicy::new(cluster_roles(), vec![], cluster_role_bindings(), vec![]);
        let kcm = user::authenticated(
            "system:kube-controller-manager".into(),
            String::new(),
            vec![],
        );
        let allowed = |verb: &str, resource: &str, subresource: &str, name: &str| {
            let r = ResourceAttributes {
                api_group: CERTIFICATES.into(),
                resource: resource.into(),
                subresource: subresource.into(),
                name: name.into(),
                ..Default::default()
            };
            let attrs = Attributes {
                user: &kcm,
                verb,
                resource: Some(&r),
                path: "",
            };
            policy.authorize(&attrs).allowed()
        };
        for signer in CONTROLLER_SIGNERS {
            assert!(allowed("approve", "signers", "", signer), "{signer}");
            assert!(allowed("sign", "signers", "", signer), "{signer}");
        }
        assert!(!allowed("approve", "signers", "", "example.com/signer"));
        assert!(!allowed("sign", "signers", "", "kubernetes.io/*"));
        for verb in ["get", "list", "watch", "delete"] {
            assert!(
                allowed(verb, "certificatesigningrequests", "", "csr-1"),
                "{verb}"
            );
        }
        for sub in ["approval", "status"] {
            assert!(
                allowed("update", "certificatesigningrequests", sub, "csr-1"),
                "{sub}"
            );
        }
    }

    #[test]
    fn names_are_unique() {
        let roles = cluster_roles();
        let mut names: Vec<_> = roles
            .iter()
            .filter_map(|r| r.metadata.name.clone())
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), roles.len());
        for b in cluster_role_bindings() {
            assert!(names.contains(&b.role_ref.name), "{:?}", b.metadata.name);
        }
    }
}
