//! What the server serves, from its discovery documents (`/api`, `/apis`,
//! `/api/v1`, `/apis/<group>/<version>`), and resolving the names users type
//! (`po`, `pods`, `pod`, `Pod`, `deployments.apps`) to a resource.
//!
//! This uses kube-rs' low-level discovery calls (`Client::list_api_groups` and
//! friends) rather than `kube::discovery::Discovery`, because the latter drops the
//! short and singular names that `bpfk get po` needs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;

use crate::client::Ctx;
use crate::error::{Error, Result};

/// One resource type the server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Plural resource name (the URL segment), e.g. `deployments`.
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    /// Subresources such as `status`, `scale`, `log`.
    pub subresources: Vec<String>,
    /// Whether `version` is the group's preferred version.
    pub preferred: bool,
}

impl ResourceInfo {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// How kubectl names the type in messages: `pod`, `deployment.apps`.
    pub fn kind_ref(&self) -> String {
        let kind = self.kind.to_lowercase();
        if self.group.is_empty() {
            kind
        } else {
            format!("{kind}.{}", self.group)
        }
    }

    /// The group-qualified plural: `pods`, `deployments.apps`.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Collection URL, in `namespace` when the resource is namespaced and one is given.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let mut p = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if let (true, Some(ns)) = (self.namespaced, namespace) {
            p.push_str("/namespaces/");
            p.push_str(&encode_segment(ns));
        }
        p.push('/');
        p.push_str(&self.plural);
        p
    }

    /// URL of one object.
    pub fn object_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!(
            "{}/{}",
            self.collection_path(namespace),
            encode_segment(name)
        )
    }

    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.iter().any(|s| s == sub)
    }
}

/// Percent-encode one URL path segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Every resource the server serves, core group first, then groups in the order
/// the server lists them (preferred version first within a group).
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub all: Vec<ResourceInfo>,
}

impl Resources {
    /// Run discovery against the server.
    pub async fn discover(ctx: &Ctx) -> Result<Self> {
        let mut res = Resources::default();
        let core = ctx
            .client
            .list_core_api_versions()
            .await
            .map_err(|e| ctx.map_err(e))?;
        for (i, v) in core.versions.iter().enumerate() {
            let list = ctx
                .client
                .list_core_api_resources(v)
                .await
                .map_err(|e| ctx.map_err(e))?;
            res.add_list("", v, i == 0, &list);
        }
        let groups = ctx
            .client
            .list_api_groups()
            .await
            .map_err(|e| ctx.map_err(e))?;
        for g in &groups.groups {
            let preferred = g
                .preferred_version
                .as_ref()
                .map(|p| p.version.clone())
                .or_else(|| g.versions.first().map(|v| v.version.clone()))
                .unwrap_or_default();
            let mut versions: Vec<&str> = g.versions.iter().map(|v| v.version.as_str()).collect();
            versions.sort_by_key(|v| *v != preferred);
            for v in versions {
                let list = ctx
                    .client
                    .list_api_group_resources(&format!("{}/{v}", g.name))
                    .await
                    .map_err(|e| ctx.map_err(e))?;
                res.add_list(&g.name, v, v == preferred, &list);
            }
        }
        Ok(res)
    }

    /// Add the resources of one discovery document.
    pub fn add_list(
        &mut self,
        group: &str,
        version: &str,
        preferred: bool,
        list: &APIResourceList,
    ) {
        let mut subs: Vec<(String, String)> = Vec::new();
        for r in &list.resources {
            if let Some((parent, sub)) = r.name.split_once('/') {
                subs.push((parent.to_string(), sub.to_string()));
                continue;
            }
            self.all.push(ResourceInfo {
                group: group.to_string(),
                version: version.to_string(),
                kind: r.kind.clone(),
                plural: r.name.clone(),
                singular: if r.singular_name.is_empty() {
                    r.kind.to_lowercase()
                } else {
                    r.singular_name.clone()
                },
                short_names: r.short_names.clone().unwrap_or_default(),
                namespaced: r.namespaced,
                verbs: r.verbs.clone(),
                subresources: Vec::new(),
                preferred,
            });
        }
        for (parent, sub) in subs {
            if let Some(r) = self
                .all
                .iter_mut()
                .find(|r| r.group == group && r.version == version && r.plural == parent)
            {
                r.subresources.push(sub);
            }
        }
    }

    /// Resolve what a user typed (`po`, `pods`, `pod`, `Pod`, `deploy`,
    /// `deployments.apps`, `deployment.v1.apps`) to a served resource.
    pub fn resolve(&self, input: &str) -> Result<&ResourceInfo> {
        let lower = input.to_lowercase();
        if let Some(r) = self.find_name(&lower, None, None) {
            return Ok(r);
        }
        // `name.group` or `name.version.group`
        if let Some((name, rest)) = lower.split_once('.') {
            if let Some(r) = self.find_name(name, None, Some(rest)) {
                return Ok(r);
            }
            if let Some((version, group)) = rest.split_once('.') {
                if let Some(r) = self.find_name(name, Some(version), Some(group)) {
                    return Ok(r);
                }
            }
        }
        Err(Error::UnknownResource(input.to_string()))
    }

    fn find_name(
        &self,
        name: &str,
        version: Option<&str>,
        group: Option<&str>,
    ) -> Option<&ResourceInfo> {
        let candidates = || {
            self.all.iter().filter(move |r| {
                group.is_none_or(|g| r.group == g)
                    && match version {
                        Some(v) => r.version == v,
                        None => r.preferred,
                    }
            })
        };
        candidates()
            .find(|r| r.plural == name || r.singular == name || r.kind.to_lowercase() == name)
            .or_else(|| candidates().find(|r| r.short_names.iter().any(|s| s == name)))
    }

    /// The resource serving `kind` in `apiVersion` (as written in a manifest).
    pub fn for_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceInfo> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.all
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn list(v: serde_json::Value) -> APIResourceList {
        serde_json::from_value(v).unwrap()
    }

    /// Discovery documents like a Kubernetes API server's, for the resources bpfk serves.
    pub(crate) fn sample() -> Resources {
        let mut r = Resources::default();
        r.add_list("", "v1", true, &list(json!({
            "kind": "APIResourceList", "groupVersion": "v1",
            "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                 "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": ["po"]},
                {"name": "pods/status", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get", "patch", "update"]},
                {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]},
                {"name": "services", "singularName": "service", "namespaced": true, "kind": "Service",
                 "verbs": ["get", "list"], "shortNames": ["svc"]},
                {"name": "endpoints", "singularName": "endpoints", "namespaced": true, "kind": "Endpoints",
                 "verbs": ["get", "list"], "shortNames": ["ep"]},
                {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "Node",
                 "verbs": ["get", "list"], "shortNames": ["no"]},
                {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace",
                 "verbs": ["get", "list"], "shortNames": ["ns"]},
                {"name": "events", "singularName": "event", "namespaced": true, "kind": "Event",
                 "verbs": ["get", "list"], "shortNames": ["ev"]}
            ]
        })));
        r.add_list("apps", "v1", true, &list(json!({
            "kind": "APIResourceList", "groupVersion": "apps/v1",
            "resources": [
                {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment",
                 "verbs": ["get", "list"], "shortNames": ["deploy"]},
                {"name": "deployments/scale", "singularName": "", "namespaced": true, "group": "autoscaling",
                 "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]},
                {"name": "replicasets", "singularName": "replicaset", "namespaced": true, "kind": "ReplicaSet",
                 "verbs": ["get", "list"], "shortNames": ["rs"]},
                {"name": "replicasets/scale", "singularName": "", "namespaced": true, "kind": "Scale", "verbs": ["get"]}
            ]
        })));
        r.add_list("discovery.k8s.io", "v1", true, &list(json!({
            "kind": "APIResourceList", "groupVersion": "discovery.k8s.io/v1",
            "resources": [{"name": "endpointslices", "singularName": "endpointslice", "namespaced": true,
                           "kind": "EndpointSlice", "verbs": ["get", "list"]}]
        })));
        r.add_list("events.k8s.io", "v1", true, &list(json!({
            "kind": "APIResourceList", "groupVersion": "events.k8s.io/v1",
            "resources": [{"name": "events", "singularName": "event", "namespaced": true, "kind": "Event",
                           "verbs": ["get", "list"], "shortNames": ["ev"]}]
        })));
        r.add_list("coordination.k8s.io", "v1", true, &list(json!({
            "kind": "APIResourceList", "groupVersion": "coordination.k8s.io/v1",
            "resources": [{"name": "leases", "singularName": "lease", "namespaced": true, "kind": "Lease",
                           "verbs": ["get", "list"]}]
        })));
        r
    }

    #[test]
    fn resolves_plural_singular_kind_and_short_names() {
        let r = sample();
        for input in ["pods", "pod", "po", "Pod", "PODS"] {
            assert_eq!(r.resolve(input).unwrap().plural, "pods", "{input}");
        }
        for (input, plural) in [
            ("deploy", "deployments"),
            ("deployment", "deployments"),
            ("Deployment", "deployments"),
            ("rs", "replicasets"),
            ("svc", "services"),
            ("no", "nodes"),
            ("ns", "namespaces"),
            ("ep", "endpoints"),
            ("endpointslices", "endpointslices"),
            ("lease", "leases"),
        ] {
            assert_eq!(r.resolve(input).unwrap().plural, plural, "{input}");
        }
    }

    #[test]
    fn core_group_wins_and_group_qualified_names_work() {
        let r = sample();
        assert_eq!(r.resolve("events").unwrap().group, "");
        assert_eq!(
            r.resolve("events.events.k8s.io").unwrap().group,
            "events.k8s.io"
        );
        assert_eq!(r.resolve("deployments.apps").unwrap().kind, "Deployment");
        assert_eq!(r.resolve("deploy.v1.apps").unwrap().kind, "Deployment");
    }

    #[test]
    fn unknown_resource_is_an_error() {
        let err = sample().resolve("foo").unwrap_err();
        assert_eq!(
            err.report(),
            "error: the server doesn't have a resource type \"foo\""
        );
        assert!(sample().resolve("pods.apps").is_err());
    }

    #[test]
    fn subresources_and_paths() {
        let r = sample();
        let deploy = r.resolve("deploy").unwrap();
        assert!(deploy.has_subresource("scale"));
        assert_eq!(deploy.kind_ref(), "deployment.apps");
        assert_eq!(deploy.group_resource(), "deployments.apps");
        assert_eq!(
            deploy.object_path(Some("default"), "nginx-deployment"),
            "/apis/apps/v1/namespaces/default/deployments/nginx-deployment"
        );
        let pods = r.resolve("po").unwrap();
        assert!(pods.has_subresource("log"));
        assert_eq!(pods.kind_ref(), "pod");
        assert_eq!(pods.collection_path(None), "/api/v1/pods");
        let nodes = r.resolve("no").unwrap();
        assert_eq!(nodes.collection_path(Some("default")), "/api/v1/nodes");
        assert_eq!(
            pods.object_path(Some("a b"), "x/y"),
            "/api/v1/namespaces/a%20b/pods/x%2Fy"
        );
    }

    #[test]
    fn manifests_map_by_api_version_and_kind() {
        let r = sample();
        assert_eq!(
            r.for_kind("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
        assert_eq!(r.for_kind("v1", "Pod").unwrap().plural, "pods");
        assert!(r.for_kind("apps/v1beta1", "Deployment").is_none());
        assert!(r.for_kind("v1", "Scale").is_none());
    }
}
