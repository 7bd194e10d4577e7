//! Whether one RBAC `PolicyRule` allows a request (Kubernetes' `RuleAllows`).

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::authz::Attributes;

/// The wildcard of every rule field.
pub const ALL: &str = "*";

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == ALL || v == value)
}

fn list(field: &Option<Vec<String>>) -> &[String] {
    field.as_deref().unwrap_or(&[])
}

/// Whether `rule` allows the request `attrs`.
pub fn allows(rule: &PolicyRule, attrs: &Attributes<'_>) -> bool {
    if !has(&rule.verbs, attrs.verb) {
        return false;
    }
    match attrs.resource {
        Some(r) => {
            has(list(&rule.api_groups), &r.api_group)
                && resource_matches(
                    list(&rule.resources),
                    &attrs.combined_resource(),
                    &r.subresource,
                )
                && names_match(list(&rule.resource_names), &r.name)
        }
        None => non_resource_url_matches(list(&rule.non_resource_urls), attrs.path),
    }
}

/// `resources` names `combined` (`pods/log`) exactly, or `*`, or `*/<subresource>`.
pub fn resource_matches(resources: &[String], combined: &str, subresource: &str) -> bool {
    resources.iter().any(|r| {
        r == ALL
            || r == combined
            || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
    })
}

/// No resource names allow every name; otherwise the name must be listed.
pub fn names_match(names: &[String], name: &str) -> bool {
    names.is_empty() || names.iter().any(|n| n == name)
}

/// `urls` holds `path`, `*`, or a prefix ending in `*` that `path` starts with.
pub fn non_resource_url_matches(urls: &[String], path: &str) -> bool {
    urls.iter().any(|u| {
        u == ALL
            || u == path
            || u.strip_suffix('*')
                .is_some_and(|prefix| path.starts_with(prefix))
    })
}

/// A rule from its parts (the bootstrap policy's shorthand).
pub fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    PolicyRule {
        verbs: owned(verbs),
        api_groups: Some(owned(groups)),
        resources: Some(owned(resources)),
        ..Default::default()
    }
}

/// A rule of non-resource URLs.
pub fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    PolicyRule {
        verbs: owned(verbs),
        non_resource_urls: Some(owned(urls)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::ResourceAttributes;
    use crate::user;

    fn attrs<'a>(
        u: &'a crate::UserInfo,
        verb: &'a str,
        r: &'a ResourceAttributes,
    ) -> Attributes<'a> {
        Attributes {
            user: u,
            verb,
            resource: Some(r),
            path: "",
        }
    }

    #[test]
    fn verbs_groups_resources_and_names() {
        let u = user::authenticated("alice".into(), String::new(), vec![]);
        let pods_log = ResourceAttributes {
            namespace: "dev".into(),
            resource: "pods".into(),
            subresource: "log".into(),
            name: "web".into(),
            ..Default::default()
        };
        let pods = ResourceAttributes {
            subresource: String::new(),
            ..pods_log.clone()
        };
        let read_pods = rule(&["get", "list"], &[""], &["pods"]);
        assert!(allows(&read_pods, &attrs(&u, "get", &pods)));
        assert!(!allows(&read_pods, &attrs(&u, "delete", &pods)));
        assert!(
            !allows(&read_pods, &attrs(&u, "get", &pods_log)),
            "a subresource is its own"
        );
        assert!(allows(
            &rule(&["get"], &[""], &["pods/log"]),
            &attrs(&u, "get", &pods_log)
        ));
        assert!(allows(
            &rule(&["get"], &[""], &["*/log"]),
            &attrs(&u, "get", &pods_log)
        ));
        assert!(!allows(
            &rule(&["get"], &["apps"], &["pods"]),
            &attrs(&u, "get", &pods)
        ));
        assert!(allows(
            &rule(&["*"], &["*"], &["*"]),
            &attrs(&u, "get", &pods_log)
        ));
        let mut named = rule(&["get"], &[""], &["pods"]);
        named.resource_names = Some(vec!["other".into()]);
        assert!(!allows(&named, &attrs(&u, "get", &pods)));
        named.resource_names = Some(vec!["web".into()]);
        assert!(allows(&named, &attrs(&u, "get", &pods)));
    }

    #[test]
    fn non_resource_urls() {
        let u = user::anonymous();
        let at = |path| Attributes {
            user: &u,
            verb: "get",
            resource: None,
            path,
        };
        let r = url_rule(&["get"], &["/healthz", "/readyz/*", "/api"]);
        assert!(allows(&r, &at("/healthz")));
        assert!(allows(&r, &at("/readyz/etcd")));
        assert!(!allows(&r, &at("/api/v1")));
        assert!(
            !allows(&rule(&["get"], &["*"], &["*"]), &at("/api")),
            "resource rules only"
        );
    }
}
