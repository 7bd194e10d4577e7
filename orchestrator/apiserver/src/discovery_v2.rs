//! Aggregated discovery (`apidiscovery.k8s.io/v2`, KEP-3352), as Kubernetes 1.30+ serves it:
//! a client that asks `/api` or `/apis` with
//! `Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList` (kubectl and
//! client-go do) gets every group, version and resource in one document instead of one
//! request per group-version. Other clients get the legacy documents of [`crate::discovery`].
//! Built from the same registry, so both always list the same resources.

use bpfk_apimachinery::registry::{self, ResourceInfo, Subresource};
use serde_json::{json, Value};

/// The versions of the aggregated format a client may ask for, newest first.
const VERSIONS: &[&str] = &["v2", "v2beta1"];

/// The aggregated discovery version `accept` asks for, in the client's order of preference;
/// None when it asks for none (the legacy documents are served then).
pub fn requested(accept: Option<&str>) -> Option<&'static str> {
    for part in accept?.split(',') {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        if !params.contains(&"g=apidiscovery.k8s.io")
            || !params.contains(&"as=APIGroupDiscoveryList")
        {
            continue;
        }
        if let Some(v) = VERSIONS
            .iter()
            .find(|v| params.contains(&format!("v={v}").as_str()))
        {
            return Some(v);
        }
    }
    None
}

/// The `Content-Type` of an aggregated document of `version`.
pub fn content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

/// The `APIGroupDiscoveryList` of `/api` (`core`: the legacy group) or `/apis` (every
/// named group).
pub fn document(version: &str, core: bool) -> Value {
    let mut items: Vec<Value> = Vec::new();
    let mut groups: Vec<(&str, Vec<VersionResources>)> = Vec::new();
    for (group, gv) in registry::group_versions() {
        if group.is_empty() != core {
            continue;
        }
        let resources: Vec<Value> = registry::resources()
            .iter()
            .filter(|r| r.group == group && r.version == gv)
            .map(resource_entry)
            .collect();
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, versions)) => versions.push((gv, resources)),
            None => groups.push((group, vec![(gv, resources)])),
        }
    }
    items.extend(groups.iter().map(|(g, vs)| group_entry(g, vs)));
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

/// A version and the discovery entries of its resources.
type VersionResources = (&'static str, Vec<Value>);

fn group_entry(group: &str, versions: &[VersionResources]) -> Value {
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    json!({
        "metadata": metadata,
        "versions": versions.iter().map(|(v, resources)| json!({
            "version": v,
            "resources": resources,
            "freshness": "Current",
        })).collect::<Vec<_>>(),
    })
}

fn resource_entry(r: &ResourceInfo) -> Value {
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        entry["subresources"] = r
            .subresources
            .iter()
            .map(|s| subresource_entry(r, s))
            .collect();
    }
    entry
}

fn subresource_entry(r: &ResourceInfo, s: &Subresource) -> Value {
    json!({
        "subresource": s.name,
        "responseKind": {
            "group": s.group.unwrap_or(r.group),
            "version": s.version.unwrap_or(r.version),
            "kind": s.kind,
        },
        "verbs": s.verbs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_as_kubectl_asks() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(requested(Some(kubectl)), Some("v2"));
        assert_eq!(
            requested(Some(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            )),
            Some("v2beta1")
        );
        assert_eq!(requested(Some("application/json")), None);
        assert_eq!(requested(None), None);
        assert_eq!(
            requested(Some(
                "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList"
            )),
            None
        );
    }

    #[test]
    fn lists_the_registry_with_subresources() {
        let core = document("v2", true);
        assert_eq!(core["items"].as_array().unwrap().len(), 1);
        let v1 = &core["items"][0]["versions"][0];
        assert_eq!(v1["version"], "v1");
        let pods = v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .expect("pods");
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["responseKind"]["kind"], "Pod");
        assert!(pods["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["subresource"] == "status"));

        let apis = document("v2", false);
        let items = apis["items"].as_array().unwrap();
        assert_eq!(items[0]["metadata"]["name"], "apiregistration.k8s.io");
        let apps = items
            .iter()
            .find(|g| g["metadata"]["name"] == "apps")
            .expect("apps");
        let deployments = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .expect("deployments");
        let scale = deployments["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "scale")
            .expect("scale");
        assert_eq!(scale["responseKind"]["group"], "autoscaling");
        assert!(items.iter().all(|g| g["metadata"]["name"] != ""));
    }
}
