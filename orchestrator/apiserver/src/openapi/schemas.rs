//! The `components.schemas` of a group-version document: the schema of every kind the
//! document describes, of its List, and of everything they reference, generated from
//! `k8s-openapi`'s types (whose schemas carry Kubernetes' names and descriptions) and shaped
//! as kube-apiserver's `/openapi/v3` shapes them (`$ref`s beside a description wrapped in
//! `allOf`, definitions under `#/components/schemas/`, `x-kubernetes-group-version-kind` on
//! each kind).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ListMeta, Patch, Status};
use k8s_openapi::schemars::generate::SchemaSettings;
use k8s_openapi::schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::models::Model;

/// Where a document's schemas live, as its `$ref`s point to them.
pub(super) const SCHEMAS_PATH: &str = "#/components/schemas/";

/// What `k8s-openapi` says of `List<T>.metadata`, the list metadata of every List kind.
const LIST_METADATA: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// A kind a document describes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Described {
    /// Its model.
    pub model: Model,
    /// Whether its List kind is served (and so described) too.
    pub with_list: bool,
}

/// The name a kind of `model` is defined under (`io.k8s.api.core.v1.Pod`); `kind` is the
/// model's kind or its List kind (named beside it: `io.k8s.api.core.v1.PodList`).
pub(super) fn schema_name(model: &Model, kind: &str) -> String {
    let name = (model.name)();
    match name.rsplit_once('.') {
        Some((prefix, _)) if kind != model.kind => format!("{prefix}.{kind}"),
        _ => name.into_owned(),
    }
}

/// The schemas of `kinds`, their Lists and every schema they reference, and of the
/// request and response bodies every document's paths name ([`common_schema_names`]).
pub(super) fn components(kinds: &[Described]) -> Map<String, Value> {
    let mut generator = generator();
    let mut tagged = Vec::new();
    for described in kinds {
        let model = &described.model;
        (model.add)(&mut generator);
        tagged.push((model, model.kind));
        if let Some(list_kind) = model.list_kind.filter(|_| described.with_list) {
            add_list(&mut generator, model, list_kind);
            tagged.push((model, list_kind));
        }
    }
    for add in COMMON {
        add(&mut generator);
    }
    let mut schemas = generator.take_definitions(true);
    for (model, kind) in tagged {
        let gvk = json!([{"group": model.group, "version": model.version, "kind": kind}]);
        if let Some(Value::Object(schema)) = schemas.get_mut(&schema_name(model, kind)) {
            schema.insert("x-kubernetes-group-version-kind".into(), gvk);
        }
    }
    schemas
}

/// Schemas every document holds: what its operations take and answer besides the kinds.
const COMMON: [fn(&mut SchemaGenerator) -> Schema; 3] = [
    SchemaGenerator::subschema_for::<Status>,
    SchemaGenerator::subschema_for::<Patch>,
    SchemaGenerator::subschema_for::<DeleteOptions>,
];

/// The names of the [`COMMON`] schemas: `Status`, `Patch` and `DeleteOptions`.
pub(super) fn common_schema_names() -> [String; 3] {
    [
        Status::schema_name().into_owned(),
        Patch::schema_name().into_owned(),
        DeleteOptions::schema_name().into_owned(),
    ]
}

/// A generator of OpenAPI 3.0 schemas, without the JSON Schema `$schema` key.
fn generator() -> SchemaGenerator {
    SchemaSettings::openapi3()
        .with(|s| s.meta_schema = None)
        .into_generator()
}

/// Adds the schema of `model`'s List kind `list_kind` (`k8s-openapi` models Lists with one
/// generic type and no schema of its own): `apiVersion` and `kind` as the item's, `items` of
/// the item's schema, and list metadata.
fn add_list(generator: &mut SchemaGenerator, model: &Model, list_kind: &str) {
    let item = schema_name(model, model.kind);
    let field = |name: &str| {
        generator
            .definitions()
            .get(&item)
            .and_then(|s| s.pointer(&format!("/properties/{name}")))
            .cloned()
            .unwrap_or_else(|| json!({"type": "string"}))
    };
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let metadata = generator.subschema_for::<ListMeta>();
    let list = json_schema!({
        "description": format!("{list_kind} is a list of {}.", model.kind),
        "type": "object",
        "properties": {
            "apiVersion": api_version,
            "items": {
                "description": format!("List of {}.", model.kind),
                "type": "array",
                "items": {"$ref": format!("{SCHEMAS_PATH}{item}")},
            },
            "kind": kind,
            "metadata": with_description(metadata, LIST_METADATA),
        },
        "required": ["items"],
    });
    let name = schema_name(model, list_kind);
    generator.definitions_mut().insert(name, list.to_value());
}

/// `schema` (a `$ref`) with a description beside it.
fn with_description(mut schema: Schema, description: &str) -> Value {
    schema.insert("description".into(), description.into());
    schema.to_value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openapi::models;

    fn described(group: &str, kind: &str, with_list: bool) -> Described {
        let model = models::find(group, "v1", kind).expect("a model");
        Described { model, with_list }
    }

    #[test]
    fn kinds_carry_kubernetes_names_and_their_group_version_kind() {
        let schemas = components(&[described("", "Pod", true)]);
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        let list = &schemas["io.k8s.api.core.v1.PodList"];
        assert_eq!(
            list["x-kubernetes-group-version-kind"][0]["kind"],
            "PodList"
        );
        assert_eq!(
            list["properties"]["items"]["items"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.Pod"
        );
        // referenced schemas are there, without a kind of their own
        let meta = &schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"];
        assert!(meta.get("x-kubernetes-group-version-kind").is_none());
        assert!(schemas.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"));
    }

    #[test]
    fn nested_fields_are_described_down_to_the_leaves() {
        let schemas = components(&[described("apps", "Deployment", false)]);
        assert!(!schemas.contains_key("io.k8s.api.apps.v1.DeploymentList"));
        let ports = &schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["type"], "array");
        assert_eq!(
            ports["items"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.ContainerPort"
        );
        let port = &schemas["io.k8s.api.core.v1.ContainerPort"]["properties"]["containerPort"];
        assert_eq!(port["type"], "integer");
        assert!(port["description"].as_str().is_some_and(|d| !d.is_empty()));
    }

    #[test]
    fn a_ref_beside_a_description_is_wrapped_in_all_of() {
        let schemas = components(&[described("", "Service", false)]);
        let spec = &schemas["io.k8s.api.core.v1.Service"]["properties"]["spec"];
        assert!(spec.get("$ref").is_none(), "{spec}");
        assert_eq!(
            spec["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.ServiceSpec"
        );
        assert!(spec["description"].is_string());
    }

    #[test]
    fn every_ref_points_to_a_schema_of_the_document() {
        let schemas = components(&[described("", "Pod", true), described("", "Node", true)]);
        let mut refs = Vec::new();
        collect_refs(&Value::Object(schemas.clone()), &mut refs);
        assert!(refs.len() > 100, "{}", refs.len());
        for r in refs {
            let name = r.strip_prefix(SCHEMAS_PATH).unwrap_or(&r);
            assert!(schemas.contains_key(name), "dangling {r}");
        }
        for name in common_schema_names() {
            assert!(schemas.contains_key(&name), "{name}");
        }
    }

    #[test]
    fn list_kinds_are_named_beside_their_items() {
        let model = models::find("apps", "v1", "Deployment").expect("a model");
        assert_eq!(
            schema_name(&model, "Deployment"),
            "io.k8s.api.apps.v1.Deployment"
        );
        assert_eq!(
            schema_name(&model, "DeploymentList"),
            "io.k8s.api.apps.v1.DeploymentList"
        );
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| collect_refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
