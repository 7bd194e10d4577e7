//! The resources bpfk serves, and the discovery documents built from them.
//!
//! [`resources`] is the single table the API server routes from. Lookups resolve the names a
//! client may use (`(group, version, plural)` from a URL, a `kind` from a manifest, a short name
//! or singular name from `kubectl get po`). The `api_*` functions build the documents served at
//! `/api`, `/apis`, `/api/v1` and `/apis/<group>/<version>`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, GroupVersionForDiscovery,
    ServerAddressByClientCIDR,
};

use crate::kinds::{KindStrategy, RESOURCES};

/// The verbs of an ordinary, fully-featured collection.
pub(crate) const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces have no `deletecollection` (as in Kubernetes).
pub(crate) const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// Verbs of a `status` or `scale` subresource.
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
pub(crate) const CREATE_ONLY: &[&str] = &["create"];

/// A subresource such as `pods/status` or `deployments/scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subresource {
    /// Subresource name (`status`, `binding`, `scale`, ...).
    pub name: &'static str,
    /// API group of the subresource's kind (`autoscaling` for `scale`); `None` = parent's group.
    pub group: Option<&'static str>,
    /// Version of the subresource's kind; `None` = parent's version.
    pub version: Option<&'static str>,
    /// Kind exchanged through the subresource (`Pod` for `pods/status`, `Scale`, `Binding`).
    pub kind: &'static str,
    /// Verbs the subresource supports.
    pub verbs: &'static [&'static str],
}

/// Static description of one served resource (one group/version/kind), and the strategy the
/// generic code asks for its kind-specific behaviour. Each is defined in its kind's file
/// under [`crate::kinds`].
#[derive(Clone)]
pub struct ResourceInfo {
    /// API group; `""` for the core group.
    pub group: &'static str,
    /// Version, e.g. `v1`.
    pub version: &'static str,
    /// Kind, e.g. `Deployment`.
    pub kind: &'static str,
    /// Resource (plural, URL path segment), e.g. `deployments`.
    pub plural: &'static str,
    /// Singular name, e.g. `deployment`.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names (`deploy`).
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Kind of the list object, e.g. `DeploymentList`.
    pub list_kind: &'static str,
    /// Subresources.
    pub subresources: &'static [Subresource],
    /// Verbs on the main resource.
    pub verbs: &'static [&'static str],
    /// Defaulting, validation, columns, ... of the kind.
    pub strategy: &'static dyn KindStrategy,
}

impl std::fmt::Debug for ResourceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceInfo")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("plural", &self.plural)
            .finish_non_exhaustive()
    }
}

/// Resources are the same when they serve the same group, version and plural.
impl PartialEq for ResourceInfo {
    fn eq(&self, other: &Self) -> bool {
        (self.group, self.version, self.plural) == (other.group, other.version, other.plural)
    }
}

impl Eq for ResourceInfo {}

impl ResourceInfo {
    /// The `apiVersion` string of objects of this resource: `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `resource.group` as kubectl prints it (`deployments.apps`, `pods`).
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The subresource named `name`, if this resource has it.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether the main resource supports `verb`.
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    /// Whether this is `kind` in `group` (convenience for dispatching on the resource).
    pub fn is(&self, group: &str, kind: &str) -> bool {
        self.group == group && self.kind == kind
    }
}

const STATUS: Subresource = Subresource {
    name: "status",
    group: None,
    version: None,
    kind: "",
    verbs: GET_PATCH_UPDATE,
};

pub(crate) const fn status_of(kind: &'static str) -> Subresource {
    Subresource { kind, ..STATUS }
}

pub(crate) const SCALE: Subresource = Subresource {
    name: "scale",
    group: Some("autoscaling"),
    version: Some("v1"),
    kind: "Scale",
    verbs: GET_PATCH_UPDATE,
};

/// Every served resource.
pub fn resources() -> &'static [ResourceInfo] {
    RESOURCES
}

/// The resource at `(group, version, plural)` (a URL's segments); `group` is `""` for core.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of objects with this `apiVersion` (`v1`, `apps/v1`) and `kind`.
pub fn by_api_version_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    let (group, version) = split_api_version(api_version);
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// The resource with this kind, in whichever group serves it (kinds are unique here).
pub fn by_kind(kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.kind == kind)
}

/// The resource with this short name (`po`, `deploy`, ...).
pub fn by_short_name(short: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.short_names.contains(&short))
}

/// Resolves what a user types (`pods`, `pod`, `po`, `Pod`, `deployments.apps`,
/// `deploy.apps`): plural, singular, short name or kind (case-insensitive), optionally
/// suffixed by `.group`.
pub fn resolve(name: &str) -> Option<&'static ResourceInfo> {
    let lower = name.to_ascii_lowercase();
    let matches = |r: &ResourceInfo, n: &str| {
        r.plural == n
            || r.singular == n
            || r.short_names.contains(&n)
            || r.kind.eq_ignore_ascii_case(n)
    };
    if let Some(r) = RESOURCES.iter().find(|r| matches(r, &lower)) {
        return Some(r);
    }
    let (n, group) = lower.split_once('.')?;
    RESOURCES.iter().find(|r| r.group == group && matches(r, n))
}

/// Splits `apps/v1` into `("apps", "v1")` and `v1` into `("", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// The distinct group-versions served, core first, in table order (`("", "v1")`, ...).
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The `APIResourceList` served at `/api/v1` (group `""`) or `/apis/<group>/<version>`, with
/// an entry per resource and per subresource (`pods/status`, `deployments/scale` of kind
/// `autoscaling/v1 Scale`). `None` when the group-version is not served.
pub fn api_resource_list(group: &str, version: &str) -> Option<APIResourceList> {
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resources.push(APIResource {
            name: r.plural.to_string(),
            singular_name: r.singular.to_string(),
            namespaced: r.namespaced,
            kind: r.kind.to_string(),
            verbs: strings(r.verbs),
            short_names: (!r.short_names.is_empty()).then(|| strings(r.short_names)),
            categories: (!r.categories.is_empty()).then(|| strings(r.categories)),
            ..Default::default()
        });
        for s in r.subresources {
            resources.push(APIResource {
                name: format!("{}/{}", r.plural, s.name),
                singular_name: String::new(),
                namespaced: r.namespaced,
                kind: s.kind.to_string(),
                group: s.group.map(str::to_string),
                version: s.version.map(str::to_string),
                verbs: strings(s.verbs),
                ..Default::default()
            });
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(APIResourceList {
        group_version,
        resources,
    })
}

/// The `APIGroupList` served at `/apis`: every non-core group, each with its versions and
/// preferred version.
pub fn api_group_list() -> APIGroupList {
    let mut groups: Vec<APIGroup> = Vec::new();
    for (group, version) in group_versions() {
        if group.is_empty() {
            continue;
        }
        let gv = GroupVersionForDiscovery {
            group_version: format!("{group}/{version}"),
            version: version.to_string(),
        };
        match groups.iter_mut().find(|g| g.name == group) {
            Some(g) => g.versions.push(gv),
            None => groups.push(APIGroup {
                name: group.to_string(),
                preferred_version: Some(gv.clone()),
                server_address_by_client_cidrs: None,
                versions: vec![gv],
            }),
        }
    }
    APIGroupList { groups }
}

/// The `APIVersions` served at `/api`; `server_address` (e.g. `127.0.0.1:6443`) is reported
/// for the client CIDR `0.0.0.0/0` as Kubernetes does.
pub fn api_versions(server_address: &str) -> APIVersions {
    APIVersions {
        server_address_by_client_cidrs: vec![ServerAddressByClientCIDR {
            client_cidr: "0.0.0.0/0".to_string(),
            server_address: server_address.to_string(),
        }],
        versions: vec!["v1".to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookups() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(pods.kind, "Pod");
        assert_eq!(pods.api_version(), "v1");
        assert!(pods.namespaced);
        assert_eq!(by_kind("Deployment").unwrap().api_version(), "apps/v1");
        assert_eq!(
            by_api_version_kind("apps/v1", "ReplicaSet").unwrap().plural,
            "replicasets"
        );
        assert!(by_api_version_kind("v1", "Deployment").is_none());
        assert!(find("apps", "v1", "pods").is_none());
        for (short, plural) in [
            ("po", "pods"),
            ("deploy", "deployments"),
            ("rs", "replicasets"),
            ("svc", "services"),
            ("no", "nodes"),
            ("ns", "namespaces"),
            ("ep", "endpoints"),
            ("ev", "events"),
            ("csr", "certificatesigningrequests"),
        ] {
            assert_eq!(by_short_name(short).unwrap().plural, plural, "{short}");
        }
        assert_eq!(resolve("Pods").unwrap().plural, "pods");
        assert_eq!(resolve("pod").unwrap().plural, "pods");
        assert_eq!(resolve("deployments.apps").unwrap().kind, "Deployment");
        assert_eq!(resolve("deploy.apps").unwrap().kind, "Deployment");
        assert_eq!(
            resolve("endpointslices.discovery.k8s.io").unwrap().kind,
            "EndpointSlice"
        );
        assert!(resolve("pods.apps").is_none());
        assert!(resolve("widgets").is_none());
        assert_eq!(
            by_kind("Deployment").unwrap().group_resource(),
            "deployments.apps"
        );
        assert!(!find("", "v1", "nodes").unwrap().namespaced);
        assert!(find("", "v1", "bindings").unwrap().supports("create"));
        assert!(!find("", "v1", "bindings").unwrap().supports("list"));
    }

    #[test]
    fn categories_all() {
        let all: Vec<_> = resources()
            .iter()
            .filter(|r| r.categories.contains(&"all"))
            .map(|r| r.plural)
            .collect();
        assert_eq!(all, ["pods", "services", "deployments", "replicasets"]);
    }

    #[test]
    fn core_resource_list() {
        let list = serde_json::to_value(api_resource_list("", "v1").unwrap()).unwrap();
        assert_eq!(list["kind"], "APIResourceList");
        assert_eq!(list["groupVersion"], "v1");
        let res = list["resources"].as_array().unwrap();
        let pods = res.iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(
            pods,
            &json!({"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch",
                          "update", "watch"],
                "shortNames": ["po"], "categories": ["all"]})
        );
        let status = res.iter().find(|r| r["name"] == "pods/status").unwrap();
        assert_eq!(status["kind"], "Pod");
        assert_eq!(status["verbs"], json!(["get", "patch", "update"]));
        let binding = res.iter().find(|r| r["name"] == "pods/binding").unwrap();
        assert_eq!(binding["kind"], "Binding");
        assert_eq!(binding["verbs"], json!(["create"]));
        assert!(res.iter().any(|r| r["name"] == "bindings"));
        assert!(res.iter().all(|r| r["name"] != "deployments"));
    }

    #[test]
    fn apps_resource_list_has_scale() {
        let list = serde_json::to_value(api_resource_list("apps", "v1").unwrap()).unwrap();
        assert_eq!(list["groupVersion"], "apps/v1");
        let scale = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap()
            .clone();
        assert_eq!(
            scale,
            json!({"name": "deployments/scale", "singularName": "", "namespaced": true,
                "group": "autoscaling", "version": "v1", "kind": "Scale",
                "verbs": ["get", "patch", "update"]})
        );
        assert!(api_resource_list("apps", "v2").is_none());
    }

    #[test]
    fn certificates_resource_list_has_approval() {
        let list = api_resource_list("certificates.k8s.io", "v1").unwrap();
        let names: Vec<_> = list.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "certificatesigningrequests",
                "certificatesigningrequests/status",
                "certificatesigningrequests/approval"
            ]
        );
        let approval = &list.resources[2];
        assert_eq!(approval.kind, "CertificateSigningRequest");
        assert_eq!(approval.verbs, ["get", "patch", "update"]);
        assert!(!list.resources[0].namespaced);
    }

    #[test]
    fn group_list_and_versions() {
        let groups = serde_json::to_value(api_group_list()).unwrap();
        assert_eq!(groups["kind"], "APIGroupList");
        let names: Vec<_> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "apiregistration.k8s.io",
                "apps",
                "events.k8s.io",
                "authentication.k8s.io",
                "authorization.k8s.io",
                "certificates.k8s.io",
                "rbac.authorization.k8s.io",
                "coordination.k8s.io",
                "discovery.k8s.io",
            ]
        );
        assert_eq!(
            groups["groups"][1]["preferredVersion"],
            json!({"groupVersion": "apps/v1", "version": "v1"})
        );
        let v = serde_json::to_value(api_versions("127.0.0.1:6443")).unwrap();
        assert_eq!(v["kind"], "APIVersions");
        assert_eq!(v["versions"], json!(["v1"]));
        assert_eq!(
            v["serverAddressByClientCIDRs"][0]["serverAddress"],
            "127.0.0.1:6443"
        );
    }
}
