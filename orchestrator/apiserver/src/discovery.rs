//! Discovery documents: `/version`, `/api`, `/apis`, `/apis/<group>`, group-version resource lists.

use bpfk_apimachinery::registry;
use serde_json::{json, Value};

/// The Kubernetes version this server's API corresponds to.
pub const KUBE_MINOR: &str = "33";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0-bpfk.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}

fn to_value<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

pub fn core_versions(server: &str) -> Value {
    let mut v = to_value(registry::api_versions(server));
    v["kind"] = json!("APIVersions");
    v
}

/// The group of APIService (API aggregation): served, as by Kubernetes, and empty here (no
/// aggregated API servers), because discovery clients look for it.
pub const APIREGISTRATION_GROUP: &str = "apiregistration.k8s.io";

/// Every group: the registry's, after the (empty) API registration group as Kubernetes lists
/// it first.
fn all_groups() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroupList {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIGroup, GroupVersionForDiscovery};
    let mut list = registry::api_group_list();
    let v1 = GroupVersionForDiscovery {
        group_version: format!("{APIREGISTRATION_GROUP}/v1"),
        version: "v1".into(),
    };
    list.groups.insert(
        0,
        APIGroup {
            name: APIREGISTRATION_GROUP.into(),
            preferred_version: Some(v1.clone()),
            server_address_by_client_cidrs: None,
            versions: vec![v1],
        },
    );
    list
}

pub fn group_list() -> Value {
    let mut v = to_value(all_groups());
    v["kind"] = json!("APIGroupList");
    v["apiVersion"] = json!("v1");
    v
}

pub fn group(name: &str) -> Option<Value> {
    let list = all_groups();
    let g = list.groups.into_iter().find(|g| g.name == name)?;
    let mut v = to_value(g);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Some(v)
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if (group, version) == (APIREGISTRATION_GROUP, "v1") {
        return Some(json!({
            "kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": format!("{APIREGISTRATION_GROUP}/v1"), "resources": [],
        }));
    }
    let mut v = to_value(registry::api_resource_list(group, version)?);
    v["kind"] = json!("APIResourceList");
    v["apiVersion"] = json!("v1");
    Some(v)
}
