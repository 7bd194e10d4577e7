//! Whether a user's rules cover a role's (Kubernetes' `validation.Covers`): a user may write a
//! Role or bind one only when it holds every permission the role grants, unless RBAC gives it
//! `escalate` (roles) or `bind` (bindings) explicitly.

use k8s_openapi::api::rbac::v1::PolicyRule;

use super::rules::{names_match, non_resource_url_matches, ALL};

/// One permission: a verb on one group/resource/name, or on one non-resource URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub verb: String,
    pub api_group: String,
    pub resource: String,
    /// `""` for every name.
    pub name: String,
    /// A non-resource URL (then the resource fields are empty).
    pub url: String,
}

fn list(field: &Option<Vec<String>>) -> &[String] {
    field.as_deref().unwrap_or(&[])
}

/// The rules of `servant` that none of `owner` covers, one permission each; empty when the
/// owner holds them all.
pub fn uncovered(owner: &[PolicyRule], servant: &[PolicyRule]) -> Vec<Permission> {
    servant
        .iter()
        .flat_map(permissions)
        .filter(|p| !owner.iter().any(|o| rule_covers(o, p)))
        .collect()
}

/// A rule broken into its permissions (a verb × group × resource × name each).
pub fn permissions(rule: &PolicyRule) -> Vec<Permission> {
    let mut out = Vec::new();
    for verb in &rule.verbs {
        for url in list(&rule.non_resource_urls) {
            out.push(Permission {
                verb: verb.clone(),
                url: url.clone(),
                ..blank()
            });
        }
        for group in list(&rule.api_groups) {
            for resource in list(&rule.resources) {
                let names = list(&rule.resource_names);
                let one = |name: &str| Permission {
                    verb: verb.clone(),
                    api_group: group.clone(),
                    resource: resource.clone(),
                    name: name.to_string(),
                    url: String::new(),
                };
                if names.is_empty() {
                    out.push(one(""));
                } else {
                    out.extend(names.iter().map(|n| one(n)));
                }
            }
        }
    }
    out
}

fn blank() -> Permission {
    Permission {
        verb: String::new(),
        api_group: String::new(),
        resource: String::new(),
        name: String::new(),
        url: String::new(),
    }
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == ALL || v == value)
}

/// Whether `owner` grants the permission `p` (wildcards only cover on the owner's side).
fn rule_covers(owner: &PolicyRule, p: &Permission) -> bool {
    if !has(&owner.verbs, &p.verb) {
        return false;
    }
    if !p.url.is_empty() {
        return non_resource_url_matches(list(&owner.non_resource_urls), &p.url);
    }
    let resources = list(&owner.resources);
    let resource_ok = resources.iter().any(|r| {
        r == ALL
            || *r == p.resource
            || r.strip_prefix("*/")
                .is_some_and(|sub| p.resource.split_once('/').is_some_and(|(_, s)| s == sub))
    });
    let names = list(&owner.resource_names);
    let name_ok = names.is_empty() || (!p.name.is_empty() && names_match(names, &p.name));
    has(list(&owner.api_groups), &p.api_group) && resource_ok && name_ok
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.url.is_empty() {
            return write!(
                f,
                "{{NonResourceURLs:[{}], Verbs:[{}]}}",
                self.url, self.verb
            );
        }
        write!(
            f,
            "{{APIGroups:[{:?}], Resources:[{:?}]",
            self.api_group, self.resource
        )?;
        if !self.name.is_empty() {
            write!(f, ", ResourceNames:[{:?}]", self.name)?;
        }
        write!(f, ", Verbs:[{:?}]}}", self.verb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::rules::{rule, url_rule};

    #[test]
    fn owners_wildcards_cover_and_servants_do_not() {
        let owner = vec![
            rule(&["get", "list"], &[""], &["pods", "pods/log"]),
            rule(&["*"], &["apps"], &["*"]),
            url_rule(&["get"], &["/healthz/*"]),
        ];
        assert!(uncovered(&owner, &[rule(&["get"], &[""], &["pods/log"])]).is_empty());
        assert!(uncovered(&owner, &[rule(&["delete"], &["apps"], &["deployments"])]).is_empty());
        assert!(uncovered(&owner, &[url_rule(&["get"], &["/healthz/etcd"])]).is_empty());
        let missing = uncovered(&owner, &[rule(&["get", "delete"], &[""], &["pods"])]);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].verb, "delete");
        assert_eq!(uncovered(&owner, &[rule(&["get"], &[""], &["*"])]).len(), 1);
        let mut named = rule(&["get"], &[""], &["secrets"]);
        named.resource_names = Some(vec!["a".into()]);
        assert_eq!(
            uncovered(&[named.clone()], &[rule(&["get"], &[""], &["secrets"])]).len(),
            1
        );
        assert!(uncovered(&[rule(&["get"], &[""], &["secrets"])], &[named]).is_empty());
        assert_eq!(
            missing[0].to_string(),
            r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#
        );
    }
}
