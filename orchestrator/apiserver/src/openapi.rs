//! `/openapi/v3`: the index of the group-version documents and, at
//! `/openapi/v3/api/v1` and `/openapi/v3/apis/<group>/<version>`, each document as
//! kube-apiserver serves it: the full schema of every served kind of the group-version (and
//! of its List, and of everything they reference, generated from `k8s-openapi`'s types: see
//! [`schemas`]), and the paths of its operations ([`paths`]). `kubectl explain` reads these
//! documents, and kubectl's field validation checks their PATCH operations for
//! `fieldValidation` before leaving validation to the server.
//!
//! `/openapi/v2` holds the same schemas, all group-versions' in one Swagger 2.0 document
//! ([`v2`]): kubectl validates `kind: List` manifests against it.
//!
//! Every document is built once, on first use, and served from its text; the index's
//! `?hash=` of each document is the hash of that text.

mod models;
mod paths;
mod schemas;
mod v2;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use bpfk_apimachinery::registry::{self, ResourceInfo};
use bytes::Bytes;
use serde_json::{json, Value};

use schemas::Described;

/// One served document.
#[derive(Debug, Clone)]
pub struct Document {
    /// Its JSON text, as served.
    json: Bytes,
    /// The hash of the text, as the index's URL of it carries it.
    hash: String,
}

impl Document {
    fn new(value: &Value) -> Document {
        let text = value.to_string();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut h);
        Document {
            hash: format!("{:016X}", h.finish()),
            json: Bytes::from(text),
        }
    }

    /// The JSON text (a cheap clone of shared bytes).
    pub fn json(&self) -> Bytes {
        self.json.clone()
    }

    /// The hash in the index's URL of the document.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

/// `info.version` of every document.
const INFO_VERSION: &str = "v1.33.0-bpfk";

/// The served documents: every group-version's, by its path under `/openapi/v3/`
/// (`api/v1`, `apis/apps/v1`), the index, and the v2 document in JSON and protobuf.
struct Documents {
    by_path: BTreeMap<String, Document>,
    index: Document,
    v2_json: Bytes,
    v2_protobuf: Bytes,
}

fn documents() -> &'static Documents {
    static DOCUMENTS: OnceLock<Documents> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        let mut by_path = BTreeMap::new();
        let mut all_schemas = serde_json::Map::new();
        for (group, version) in registry::group_versions() {
            let Some(doc) = build(group, version) else {
                continue;
            };
            if let Value::Object(schemas) = &doc["components"]["schemas"] {
                for (name, schema) in schemas {
                    all_schemas
                        .entry(name.clone())
                        .or_insert_with(|| schema.clone());
                }
            }
            by_path.insert(paths::gv_path(group, version), Document::new(&doc));
        }
        let index = Document::new(&index_of(&by_path));
        let swagger = v2::document(&all_schemas);
        Documents {
            by_path,
            index,
            v2_protobuf: Bytes::from(v2::protobuf(&swagger)),
            v2_json: Bytes::from(swagger.to_string()),
        }
    })
}

/// The `/openapi/v3` index: each document's path and hash-carrying URL.
fn index_of(by_path: &BTreeMap<String, Document>) -> Value {
    let paths: serde_json::Map<String, Value> = by_path
        .iter()
        .map(|(p, doc)| {
            let url = format!("/openapi/v3/{p}?hash={}", doc.hash);
            (p.clone(), json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

/// Builds every document now (a second of work in a debug build) rather than on the first
/// request for one (for embedders that want the cost paid up front).
pub fn prepare() {
    documents();
}

/// The `/openapi/v3` index.
pub fn index() -> &'static Document {
    &documents().index
}

/// The document of one group-version; `None` when the group-version is not served.
pub fn group_version_document(group: &str, version: &str) -> Option<&'static Document> {
    documents().by_path.get(&paths::gv_path(group, version))
}

/// The `/openapi/v2` document: its Content-Type and text, in protobuf when `protobuf`, else
/// in JSON.
pub fn v2_document(protobuf: bool) -> (&'static str, Bytes) {
    let docs = documents();
    if protobuf {
        (v2::PROTOBUF, docs.v2_protobuf.clone())
    } else {
        ("application/json", docs.v2_json.clone())
    }
}

/// Whether an `Accept` header asks for the protobuf form of `/openapi/v2`.
pub fn v2_wants_protobuf(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| v2::PROTOBUF_ACCEPTED.iter().any(|t| a.contains(t)))
}

/// Builds the document of one group-version; `None` when it serves nothing.
fn build(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<&ResourceInfo> = registry::resources()
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let described = described(&resources);
    let schemas = schemas::components(&described);
    let schema_of = |g: &str, v: &str, k: &str| {
        let d = described.iter().find(|d| {
            (d.model.group, d.model.version) == (g, v)
                && (d.model.kind == k || (d.with_list && d.model.list_kind == Some(k)))
        })?;
        Some(schemas::schema_name(&d.model, k))
    };
    let paths = paths::paths(&resources, &schema_of, &schemas::common_schema_names());
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": INFO_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The kinds a document of `resources` describes: each resource's (with its List when the
/// resource is listed) and the kinds its subresources exchange, once each.
fn described(resources: &[&ResourceInfo]) -> Vec<Described> {
    let mut out: Vec<Described> = Vec::new();
    let mut add = |group: &str, version: &str, kind: &str, with_list: bool| {
        if let Some(d) = out
            .iter_mut()
            .find(|d| (d.model.group, d.model.version, d.model.kind) == (group, version, kind))
        {
            d.with_list |= with_list;
        } else if let Some(model) = models::find(group, version, kind) {
            out.push(Described { model, with_list });
        }
    };
    for res in resources {
        add(res.group, res.version, res.kind, res.supports("list"));
        for sub in res.subresources {
            let group = sub.group.unwrap_or(res.group);
            let version = sub.version.unwrap_or(res.version);
            let kind = if sub.kind.is_empty() {
                res.kind
            } else {
                sub.kind
            };
            add(group, version, kind, false);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(group: &str, version: &str) -> Value {
        let doc = group_version_document(group, version).expect("served");
        serde_json::from_slice(&doc.json()).expect("JSON")
    }

    /// The schema whose `x-kubernetes-group-version-kind` names `kind`.
    fn kind_schema<'d>(doc: &'d Value, group: &str, kind: &str) -> Option<&'d Value> {
        let want = json!({"group": group, "version": "v1", "kind": kind});
        doc["components"]["schemas"]
            .as_object()?
            .values()
            .find(|s| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|g| g.contains(&want))
            })
    }

    #[test]
    fn every_served_kind_and_its_list_has_a_schema_in_its_document() {
        for res in registry::resources() {
            let doc = document(res.group, res.version);
            let schema = kind_schema(&doc, res.group, res.kind);
            let schema = schema.unwrap_or_else(|| panic!("no schema for {res:?}"));
            assert!(schema["properties"]["metadata"].is_object(), "{res:?}");
            if res.supports("list") {
                assert!(
                    kind_schema(&doc, res.group, res.list_kind).is_some(),
                    "{res:?}"
                );
            }
        }
    }

    #[test]
    fn kubectl_finds_each_kind_from_its_resource_path() {
        // kubectl explain reads the kind off the operations of the resource's paths
        for res in registry::resources() {
            let doc = document(res.group, res.version);
            let base = format!("/{}", paths::gv_path(res.group, res.version));
            let scope = if res.namespaced {
                "/namespaces/{namespace}"
            } else {
                ""
            };
            let path = format!("{base}{scope}/{}", res.plural);
            let ops = doc["paths"]
                .get(&path)
                .or_else(|| doc["paths"].get(format!("{path}/{{name}}")));
            let ops = ops.unwrap_or_else(|| panic!("no path {path}"));
            let gvk = ops.as_object().and_then(|o| {
                o.values()
                    .find_map(|op| op.get("x-kubernetes-group-version-kind"))
            });
            assert_eq!(
                gvk.map(|g| g["kind"].clone()),
                Some(json!(res.kind)),
                "{path}"
            );
        }
    }

    #[test]
    fn nested_fields_of_a_pod_are_in_the_core_document() {
        let doc = document("", "v1");
        let schemas = &doc["components"]["schemas"];
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["type"], "array");
        let container = &schemas["io.k8s.api.core.v1.Container"];
        assert!(container["properties"]["image"]["description"].is_string());
        assert!(container["properties"].get("imagee").is_none());
        assert_eq!(container["required"], json!(["name"]));
    }

    #[test]
    fn the_index_links_every_document_by_its_hash() {
        let index: Value = serde_json::from_slice(&index().json()).expect("JSON");
        let paths = index["paths"].as_object().expect("paths");
        assert_eq!(paths.len(), registry::group_versions().len());
        for (group, version) in registry::group_versions() {
            let p = paths::gv_path(group, version);
            let doc = group_version_document(group, version).expect("served");
            let url = format!("/openapi/v3/{p}?hash={}", doc.hash());
            assert_eq!(paths[&p]["serverRelativeURL"], url.as_str());
        }
        assert!(group_version_document("apps", "v2").is_none());
        assert!(group_version_document("nothing.example.com", "v1").is_none());
    }

    #[test]
    fn the_v2_document_defines_every_served_kind_once_for_all_groups() {
        let (content_type, json) = v2_document(false);
        assert_eq!(content_type, "application/json");
        let swagger: Value = serde_json::from_slice(&json).expect("JSON");
        assert_eq!(swagger["swagger"], "2.0");
        let definitions = swagger["definitions"].as_object().expect("definitions");
        for res in registry::resources() {
            let want = json!({"group": res.group, "version": res.version, "kind": res.kind});
            let found = definitions.values().any(|d| {
                d["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|g| g.contains(&want))
            });
            assert!(found, "{res:?}");
        }
        let text = String::from_utf8_lossy(&json);
        assert!(!text.contains("#/components/schemas/"));
        let (content_type, protobuf) = v2_document(true);
        assert!(content_type.ends_with("+protobuf"));
        assert!(
            protobuf.len() > json.len() / 4,
            "{} {}",
            protobuf.len(),
            json.len()
        );
        assert!(v2_wants_protobuf(Some(content_type)));
        let kubectl = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
        assert!(v2_wants_protobuf(Some(kubectl)));
        assert!(!v2_wants_protobuf(Some("application/json")));
        assert!(!v2_wants_protobuf(None));
    }

    #[test]
    fn a_document_is_built_once() {
        let first = group_version_document("apps", "v1").expect("served");
        let second = group_version_document("apps", "v1").expect("served");
        assert!(std::ptr::eq(first, second));
    }
}
