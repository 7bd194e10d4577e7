//! `/openapi/v3`: enough of an OpenAPI v3 description for kubectl to know that the server
//! validates fields itself (`fieldValidation`) and which kind each path serves.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use bpfk_apimachinery::registry::{self, ResourceInfo};
use serde_json::{json, Value};

/// The URL path of a group-version's document, relative to the server (`api/v1`, `apis/apps/v1`).
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn operation(res: &ResourceInfo, verb: &str, action: &str) -> Value {
    json!({
        "operationId": format!("{verb}{}", res.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": res.group, "version": res.version, "kind": res.kind},
        "parameters": [
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "description": "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn or Strict.", "schema": {"type": "string", "uniqueItems": true}},
        ],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", schema_name(res))}}}}},
    })
}

fn schema_name(res: &ResourceInfo) -> String {
    let group = match res.group {
        "" => "core",
        "discovery.k8s.io" => "discovery",
        "coordination.k8s.io" => "coordination",
        "certificates.k8s.io" => "certificates",
        other => other,
    };
    format!("io.k8s.api.{group}.{}.{}", res.version, res.kind)
}

/// The OpenAPI v3 document of one group-version.
pub fn group_version_document(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<&ResourceInfo> = registry::resources()
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for res in resources {
        let base = format!("/{}", gv_path(group, version));
        let collection = if res.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", res.plural)
        } else {
            format!("{base}/{}", res.plural)
        };
        let item = format!("{collection}/{{name}}");
        if res.supports("create") {
            paths.insert(
                collection.clone(),
                json!({"post": operation(res, "create", "post")}),
            );
        }
        let mut item_ops = serde_json::Map::new();
        if res.supports("patch") {
            item_ops.insert("patch".into(), operation(res, "patch", "patch"));
        }
        if res.supports("update") {
            item_ops.insert("put".into(), operation(res, "replace", "put"));
        }
        if !item_ops.is_empty() {
            paths.insert(item, Value::Object(item_ops));
        }
        schemas.insert(
            schema_name(res),
            json!({
                "type": "object",
                "x-kubernetes-group-version-kind": [{"group": res.group, "version": res.version, "kind": res.kind}],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    "spec": {"type": "object"},
                    "status": {"type": "object"},
                },
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0-bpfk"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

fn hash_of(v: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:016X}", h.finish())
}

/// The `/openapi/v3` index.
pub fn index() -> Value {
    let mut paths = BTreeMap::new();
    for (group, version) in registry::group_versions() {
        if let Some(doc) = group_version_document(group, version) {
            let p = gv_path(group, version);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash_of(&doc))}),
            );
        }
    }
    json!({"paths": paths})
}
