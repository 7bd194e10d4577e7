//! A snapshot of every Role, ClusterRole and binding, and what it lets a user do (the
//! RBAC authorizer's `VisitRulesFor`).

use std::collections::HashMap;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::rules;
use crate::authz::{Attributes, Decision};
use crate::user::{UserInfo, SERVICE_ACCOUNT_PREFIX};

/// The RBAC objects of a cluster at one moment.
#[derive(Debug, Default, Clone)]
pub struct RbacPolicy {
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    /// By `(namespace, name)`.
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    cluster_bindings: Vec<ClusterRoleBinding>,
    /// By namespace.
    bindings: HashMap<String, Vec<RoleBinding>>,
}

/// One binding that grants rules: the binding and the rules of the role it refers to.
pub struct Grant<'p> {
    pub binding: Binding<'p>,
    pub rules: &'p [PolicyRule],
}

/// The binding a [`Grant`] comes from.
#[derive(Clone, Copy)]
pub enum Binding<'p> {
    Cluster(&'p ClusterRoleBinding),
    Namespaced(&'p RoleBinding),
}

impl Grant<'_> {
    /// `ClusterRoleBinding "x" of ClusterRole "y" to ...`, for the allow reason: made only
    /// for the grant that allows (every request is authorized, most by their first grant).
    pub fn source(&self) -> String {
        match self.binding {
            Binding::Cluster(b) => format!(
                "ClusterRoleBinding {:?} of ClusterRole {:?} to {}",
                b.metadata.name.as_deref().unwrap_or(""),
                b.role_ref.name,
                describe_subjects(b.subjects.as_deref())
            ),
            Binding::Namespaced(b) => format!(
                "RoleBinding {:?} of {} {:?} to {}",
                b.metadata.name.as_deref().unwrap_or(""),
                b.role_ref.kind,
                b.role_ref.name,
                describe_subjects(b.subjects.as_deref())
            ),
        }
    }
}

impl RbacPolicy {
    pub fn new(
        cluster_roles: Vec<ClusterRole>,
        roles: Vec<Role>,
        cluster_bindings: Vec<ClusterRoleBinding>,
        bindings: Vec<RoleBinding>,
    ) -> RbacPolicy {
        let cluster_roles = cluster_roles
            .into_iter()
            .filter_map(|r| Some((r.metadata.name?, r.rules.unwrap_or_default())))
            .collect();
        let roles = roles
            .into_iter()
            .filter_map(|r| {
                let key = (r.metadata.namespace?, r.metadata.name?);
                Some((key, r.rules.unwrap_or_default()))
            })
            .collect();
        let mut by_namespace: HashMap<String, Vec<RoleBinding>> = HashMap::new();
        for b in bindings {
            if let Some(ns) = b.metadata.namespace.clone() {
                by_namespace.entry(ns).or_default().push(b);
            }
        }
        RbacPolicy {
            cluster_roles,
            roles,
            cluster_bindings,
            bindings: by_namespace,
        }
    }

    /// Allow when a binding that applies to the user grants a rule that allows the request;
    /// otherwise no opinion (RBAC never denies).
    pub fn authorize(&self, attrs: &Attributes<'_>) -> Decision {
        let namespace = attrs.resource.map_or("", |r| r.namespace.as_str());
        for grant in self.grants(attrs.user, namespace) {
            if grant.rules.iter().any(|r| rules::allows(r, attrs)) {
                return Decision::Allow(format!("RBAC: allowed by {}", grant.source()));
            }
        }
        Decision::NoOpinion
    }

    /// Every rule the user holds in `namespace` (cluster-wide ones only for `""`), as
    /// SelfSubjectRulesReview and the escalation check read them.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<PolicyRule> {
        self.grants(user, namespace)
            .flat_map(|g| g.rules.iter().cloned())
            .collect()
    }

    /// The role rules of every binding that applies to `user`: the ClusterRoleBindings,
    /// then the RoleBindings of `namespace`.
    pub fn grants<'p>(
        &'p self,
        user: &'p UserInfo,
        namespace: &'p str,
    ) -> impl Iterator<Item = Grant<'p>> + 'p {
        let cluster = self
            .cluster_bindings
            .iter()
            .filter(move |b| applies(b.subjects.as_deref(), user, ""))
            .filter_map(move |b| {
                let rules = self.cluster_roles.get(&b.role_ref.name)?;
                let binding = Binding::Cluster(b);
                Some(Grant { binding, rules })
            });
        let local = self
            .bindings
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(move |b| applies(b.subjects.as_deref(), user, namespace))
            .filter_map(move |b| {
                let rules = self.role_rules(&b.role_ref, namespace)?;
                let binding = Binding::Namespaced(b);
                Some(Grant { binding, rules })
            });
        cluster.chain(local)
    }

    /// The rules a binding in `namespace` refers to (a Role there, or a ClusterRole).
    pub fn role_rules(&self, role_ref: &RoleRef, namespace: &str) -> Option<&[PolicyRule]> {
        match role_ref.kind.as_str() {
            "ClusterRole" => self.cluster_roles.get(&role_ref.name).map(Vec::as_slice),
            "Role" => self
                .roles
                .get(&(namespace.to_string(), role_ref.name.clone()))
                .map(Vec::as_slice),
            _ => None,
        }
    }
}

/// Whether one of `subjects` (of a binding in `namespace`, `""` for cluster bindings) is
/// `user`.
pub fn applies(subjects: Option<&[Subject]>, user: &UserInfo, namespace: &str) -> bool {
    subjects
        .into_iter()
        .flatten()
        .any(|s| subject_is(s, user, namespace))
}

fn subject_is(subject: &Subject, user: &UserInfo, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => subject.name == user.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            let ns = subject.namespace.as_deref().filter(|n| !n.is_empty());
            let ns = ns.unwrap_or(binding_namespace);
            // `system:serviceaccount:NS:NAME`, compared without building it
            let named = user.name.strip_prefix(SERVICE_ACCOUNT_PREFIX);
            !ns.is_empty()
                && named.and_then(|n| n.split_once(':')) == Some((ns, subject.name.as_str()))
        }
        _ => false,
    }
}

fn describe_subjects(subjects: Option<&[Subject]>) -> String {
    let described: Vec<String> = subjects
        .into_iter()
        .flatten()
        .map(|s| format!("{} {:?}", s.kind, s.name))
        .collect();
    described.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::ResourceAttributes;
    use crate::rbac::rules::rule;
    use crate::user;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn meta(ns: Option<&str>, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: ns.map(String::from),
            ..Default::default()
        }
    }

    fn subject(kind: &str, name: &str, ns: Option<&str>) -> Subject {
        Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(String::from),
            ..Default::default()
        }
    }

    fn role_ref(kind: &str, name: &str) -> RoleRef {
        RoleRef {
            api_group: super::super::GROUP.into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    fn policy() -> RbacPolicy {
        let view = ClusterRole {
            metadata: meta(None, "view"),
            rules: Some(vec![rule(&["get", "list", "watch"], &[""], &["pods"])]),
            ..Default::default()
        };
        let deployer = Role {
            metadata: meta(Some("dev"), "deployer"),
            rules: Some(vec![rule(&["create"], &["apps"], &["deployments"])]),
        };
        let everyone_views = ClusterRoleBinding {
            metadata: meta(None, "viewers"),
            role_ref: role_ref("ClusterRole", "view"),
            subjects: Some(vec![subject("Group", "viewers", None)]),
        };
        let dev = RoleBinding {
            metadata: meta(Some("dev"), "deployers"),
            role_ref: role_ref("Role", "deployer"),
            subjects: Some(vec![
                subject("User", "alice", None),
                subject("ServiceAccount", "ci", None),
            ]),
        };
        let dev_view = RoleBinding {
            metadata: meta(Some("dev"), "bob-views"),
            role_ref: role_ref("ClusterRole", "view"),
            subjects: Some(vec![subject("User", "bob", None)]),
        };
        RbacPolicy::new(
            vec![view],
            vec![deployer],
            vec![everyone_views],
            vec![dev, dev_view],
        )
    }

    fn can(p: &RbacPolicy, u: &UserInfo, verb: &str, ns: &str, group: &str, res: &str) -> bool {
        let r = ResourceAttributes {
            namespace: ns.into(),
            api_group: group.into(),
            resource: res.into(),
            ..Default::default()
        };
        p.authorize(&Attributes {
            user: u,
            verb,
            resource: Some(&r),
            path: "",
        })
        .allowed()
    }

    #[test]
    fn bindings_grant_their_roles_rules_where_they_apply() {
        let p = policy();
        let alice = user::authenticated("alice".into(), String::new(), vec![]);
        let bob = user::authenticated("bob".into(), String::new(), vec![]);
        let viewer = user::authenticated("carol".into(), String::new(), vec!["viewers".into()]);
        let ci = user::service_account("dev", "ci", "u1");
        let other_ci = user::service_account("prod", "ci", "u2");
        assert!(can(&p, &alice, "create", "dev", "apps", "deployments"));
        assert!(!can(&p, &alice, "create", "prod", "apps", "deployments"));
        assert!(!can(&p, &alice, "list", "dev", "", "pods"));
        assert!(can(&p, &ci, "create", "dev", "apps", "deployments"));
        assert!(!can(&p, &other_ci, "create", "dev", "apps", "deployments"));
        assert!(
            can(&p, &bob, "list", "dev", "", "pods"),
            "a ClusterRole bound in a namespace"
        );
        assert!(!can(&p, &bob, "list", "prod", "", "pods"));
        assert!(
            !can(&p, &bob, "list", "", "", "pods"),
            "not across namespaces"
        );
        assert!(can(&p, &viewer, "list", "", "", "pods"));
        assert!(can(&p, &viewer, "watch", "prod", "", "pods"));
        assert_eq!(p.rules_for(&bob, "dev").len(), 1);
        assert!(p.rules_for(&bob, "").is_empty());
    }
}
