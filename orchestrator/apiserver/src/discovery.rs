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

pub fn group_list() -> Value {
    let mut v = to_value(registry::api_group_list());
    v["kind"] = json!("APIGroupList");
    v["apiVersion"] = json!("v1");
    v
}

pub fn group(name: &str) -> Option<Value> {
    let list = registry::api_group_list();
    let g = list.groups.into_iter().find(|g| g.name == name)?;
    let mut v = to_value(g);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Some(v)
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut v = to_value(registry::api_resource_list(group, version)?);
    v["kind"] = json!("APIResourceList");
    v["apiVersion"] = json!("v1");
    Some(v)
}
