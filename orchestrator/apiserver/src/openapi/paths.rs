//! The `paths` of a group-version document: each served operation on a resource and its
//! subresources, as kube-apiserver describes it: `x-kubernetes-action`, the
//! `x-kubernetes-group-version-kind` it exchanges (what `kubectl explain` finds a resource's
//! kind by), its query parameters (kubectl checks `fieldValidation` on PATCH to leave field
//! validation to the server), request body and response.
//!
//! PATCH bodies are offered as JSON patch and merge patch, not strategic merge patch:
//! kubectl (v1.32) computes a strategic merge patch from this document only when the PATCH
//! operation offers it, and then merges lists by the `x-kubernetes-patch-merge-key`s of the
//! schemas, which `k8s-openapi`'s schemas do not carry (every list would be replaced whole).
//! Without it kubectl computes its patches from its compiled-in types, whose merge keys are
//! the ones the server merges with.

use bpfk_apimachinery::registry::{ResourceInfo, Subresource};
use serde_json::{json, Map, Value};

use super::schemas::SCHEMAS_PATH;

/// Names the schema of a kind (group, version, kind) in the document, if it describes it.
pub(super) type SchemaOf<'a> = &'a dyn Fn(&str, &str, &str) -> Option<String>;

/// The group, version and kind an operation exchanges.
#[derive(Debug, Clone, Copy)]
struct Gvk<'a> {
    group: &'a str,
    version: &'a str,
    kind: &'a str,
}

/// One operation: its verb (`operationId` prefix), its `x-kubernetes-action`, what it takes
/// and what it answers.
struct Operation<'a> {
    verb: &'static str,
    action: &'static str,
    gvk: Gvk<'a>,
    /// `operationId` after the verb (`CoreV1NamespacedPodStatus`).
    id: String,
    /// The request body's schema name; `None` for no body.
    body: Option<String>,
    /// The response's schema name.
    response: String,
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub(super) fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// What the operations of a document refer to: the schemas of its kinds and the names of the
/// `Status`, `Patch` and `DeleteOptions` schemas.
struct Names<'s> {
    schema_of: SchemaOf<'s>,
    status: &'s str,
    patch: &'s str,
    delete_options: &'s str,
}

/// The paths of `resources` (all of one group-version) whose kinds `schema_of` names;
/// `common` are the names of the `Status`, `Patch` and `DeleteOptions` schemas.
pub(super) fn paths(
    resources: &[&ResourceInfo],
    schema_of: SchemaOf<'_>,
    common: &[String; 3],
) -> Map<String, Value> {
    let [status, patch, delete_options] = common;
    let names = Names {
        schema_of,
        status,
        patch,
        delete_options,
    };
    let mut paths = Map::new();
    for res in resources {
        let Some(kind) = schema_of(res.group, res.version, res.kind) else {
            continue;
        };
        let (collection, item) = resource_paths(res);
        let ops = collection_operations(res, &kind, &names);
        insert(&mut paths, &collection, res.namespaced, false, ops);
        let ops = item_operations(res, &kind, &names);
        insert(&mut paths, &item, res.namespaced, true, ops);
        for sub in res.subresources {
            let ops = subresource_operations(res, sub, &names);
            let path = format!("{item}/{}", sub.name);
            insert(&mut paths, &path, res.namespaced, true, ops);
        }
    }
    paths
}

fn gvk_of(res: &ResourceInfo) -> Gvk<'_> {
    Gvk {
        group: res.group,
        version: res.version,
        kind: res.kind,
    }
}

/// The operations on the collection of `res` (whose kind's schema is `kind`).
fn collection_operations<'a>(
    res: &'a ResourceInfo,
    kind: &str,
    names: &Names<'_>,
) -> Vec<Operation<'a>> {
    let (gvk, id) = (gvk_of(res), operation_id(res, ""));
    let mut ops = Vec::new();
    let list = (names.schema_of)(res.group, res.version, res.list_kind);
    if let Some(list) = list.filter(|_| res.supports("list")) {
        ops.push(op("list", "list", gvk, id.clone(), None, list));
    }
    if res.supports("create") {
        ops.push(op(
            "create",
            "post",
            gvk,
            id.clone(),
            Some(kind),
            kind.into(),
        ));
    }
    if res.supports("deletecollection") {
        let body = Some(names.delete_options);
        let status = names.status.to_string();
        ops.push(op(
            "deleteCollection",
            "deletecollection",
            gvk,
            id,
            body,
            status,
        ));
    }
    ops
}

/// The operations on one object of `res` (whose kind's schema is `kind`).
fn item_operations<'a>(res: &'a ResourceInfo, kind: &str, names: &Names<'_>) -> Vec<Operation<'a>> {
    let (gvk, id) = (gvk_of(res), operation_id(res, ""));
    let mut ops = Vec::new();
    if res.supports("get") {
        ops.push(op("read", "get", gvk, id.clone(), None, kind.into()));
    }
    if res.supports("update") {
        ops.push(op(
            "replace",
            "put",
            gvk,
            id.clone(),
            Some(kind),
            kind.into(),
        ));
    }
    if res.supports("patch") {
        ops.push(op(
            "patch",
            "patch",
            gvk,
            id.clone(),
            Some(names.patch),
            kind.into(),
        ));
    }
    if res.supports("delete") {
        let body = Some(names.delete_options);
        ops.push(op("delete", "delete", gvk, id, body, kind.into()));
    }
    ops
}

/// The operations of subresource `sub` of `res` whose kind the document describes. A
/// subresource served for reading only (`pods/log`) answers text, not its kind, and has none.
fn subresource_operations<'a>(
    res: &'a ResourceInfo,
    sub: &'a Subresource,
    names: &Names<'_>,
) -> Vec<Operation<'a>> {
    let patch = names.patch;
    if sub.verbs == ["get"] {
        return Vec::new();
    }
    let gvk = Gvk {
        group: sub.group.unwrap_or(res.group),
        version: sub.version.unwrap_or(res.version),
        kind: if sub.kind.is_empty() {
            res.kind
        } else {
            sub.kind
        },
    };
    let Some(kind) = (names.schema_of)(gvk.group, gvk.version, gvk.kind) else {
        return Vec::new();
    };
    let id = operation_id(res, &capitalized(sub.name));
    let mut ops = Vec::new();
    for verb in sub.verbs {
        ops.push(match *verb {
            "get" => op("read", "get", gvk, id.clone(), None, kind.clone()),
            "create" => op("create", "post", gvk, id.clone(), Some(&kind), kind.clone()),
            "update" => op("replace", "put", gvk, id.clone(), Some(&kind), kind.clone()),
            "patch" => op("patch", "patch", gvk, id.clone(), Some(patch), kind.clone()),
            _ => continue,
        });
    }
    ops
}

fn op<'a>(
    verb: &'static str,
    action: &'static str,
    gvk: Gvk<'a>,
    id: String,
    body: Option<&str>,
    response: String,
) -> Operation<'a> {
    Operation {
        verb,
        action,
        gvk,
        id,
        body: body.map(str::to_string),
        response,
    }
}

/// The collection's and an item's path of `res`.
fn resource_paths(res: &ResourceInfo) -> (String, String) {
    let base = format!("/{}", gv_path(res.group, res.version));
    let collection = if res.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", res.plural)
    } else {
        format!("{base}/{}", res.plural)
    };
    let item = format!("{collection}/{{name}}");
    (collection, item)
}

/// Adds `path` with `ops` (when there are any) and its path parameters.
fn insert(
    paths: &mut Map<String, Value>,
    path: &str,
    namespaced: bool,
    named: bool,
    ops: Vec<Operation<'_>>,
) {
    if ops.is_empty() {
        return;
    }
    let mut item = Map::new();
    let mut parameters = Vec::new();
    if named {
        parameters.push(path_parameter("name", "name of the object"));
    }
    if namespaced {
        parameters.push(path_parameter(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        ));
    }
    parameters.push(query(
        "pretty",
        "string",
        "If 'true', then the output is pretty printed.",
    ));
    item.insert("parameters".into(), Value::Array(parameters));
    for o in ops {
        item.insert(method(o.action).into(), operation(&o));
    }
    paths.insert(path.to_string(), Value::Object(item));
}

/// The HTTP method of an `x-kubernetes-action`, as the path item's key.
fn method(action: &str) -> &'static str {
    match action {
        "list" | "get" => "get",
        "post" => "post",
        "put" => "put",
        "patch" => "patch",
        _ => "delete",
    }
}

fn operation(o: &Operation<'_>) -> Value {
    let mut op = json!({
        "operationId": format!("{}{}", o.verb, o.id),
        "x-kubernetes-action": o.action,
        "x-kubernetes-group-version-kind": {"group": o.gvk.group, "version": o.gvk.version, "kind": o.gvk.kind},
        "parameters": parameters(o.action),
        "responses": responses(o.action, &o.response),
    });
    if let Some(body) = &o.body {
        op["requestBody"] = request_body(o.action, body);
    }
    op
}

fn request_body(action: &str, schema: &str) -> Value {
    let reference = json!({"schema": {"$ref": format!("{SCHEMAS_PATH}{schema}")}});
    let content = if action == "patch" {
        json!({"application/json-patch+json": reference, "application/merge-patch+json": reference})
    } else {
        json!({"*/*": reference})
    };
    json!({"content": content, "required": action != "delete" && action != "deletecollection"})
}

fn responses(action: &str, schema: &str) -> Value {
    let reference = json!({"schema": {"$ref": format!("{SCHEMAS_PATH}{schema}")}});
    let content = json!({
        "application/json": reference,
        "application/yaml": reference,
        "application/vnd.kubernetes.protobuf": reference,
    });
    let mut responses = json!({"200": {"description": "OK", "content": content}});
    if action == "post" || action == "put" {
        responses["201"] = json!({"description": "Created", "content": content});
    }
    responses
}

/// The query parameters of an action.
fn parameters(action: &str) -> Vec<Value> {
    let write = || {
        vec![
            query("dryRun", "string", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"),
            query("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes."),
            query("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn or Strict."),
        ]
    };
    match action {
        "post" | "put" => write(),
        "patch" => {
            let mut params = write();
            params.push(query("force", "boolean", "Force is going to \"force\" Apply requests."));
            params
        }
        "list" => ["labelSelector", "fieldSelector", "continue", "resourceVersion", "resourceVersionMatch"]
            .into_iter()
            .map(|name| query(name, "string", ""))
            .chain(["limit", "timeoutSeconds"].into_iter().map(|name| query(name, "integer", "")))
            .chain(["allowWatchBookmarks", "watch"].into_iter().map(|name| query(name, "boolean", "")))
            .collect(),
        "delete" | "deletecollection" => vec![
            query("dryRun", "string", "When present, indicates that modifications should not be persisted."),
            query("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted."),
            query("propagationPolicy", "string", "Whether and how garbage collection will be performed: Orphan, Background or Foreground."),
        ],
        _ => Vec::new(),
    }
}

fn query(name: &str, ty: &str, description: &str) -> Value {
    let mut p = json!({"name": name, "in": "query", "schema": {"type": ty, "uniqueItems": true}});
    if !description.is_empty() {
        p["description"] = description.into();
    }
    p
}

fn path_parameter(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "description": description, "required": true, "schema": {"type": "string", "uniqueItems": true}})
}

/// `operationId` after the verb, as kube-apiserver forms it: group and version, scope, kind
/// and subresource (`CoreV1NamespacedPodStatus`, `AppsV1NamespacedDeployment`).
fn operation_id(res: &ResourceInfo, suffix: &str) -> String {
    let group = if res.group.is_empty() {
        "Core".to_string()
    } else {
        let short = res.group.strip_suffix(".k8s.io").unwrap_or(res.group);
        short.split('.').map(capitalized).collect()
    };
    let scope = if res.namespaced { "Namespaced" } else { "" };
    let version = capitalized(res.version);
    format!("{group}{version}{scope}{}{suffix}", res.kind)
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfk_apimachinery::registry;

    fn named(_: &str, _: &str, kind: &str) -> Option<String> {
        Some(format!("test.{kind}"))
    }

    fn common() -> [String; 3] {
        [
            "test.Status".into(),
            "test.Patch".into(),
            "test.DeleteOptions".into(),
        ]
    }

    #[test]
    fn every_patch_names_its_kind_and_takes_field_validation() {
        let pods = registry::find("", "v1", "pods").expect("pods are served");
        let paths = paths(&[pods], &named, &common());
        let patches: Vec<&Value> = paths.values().filter_map(|p| p.get("patch")).collect();
        assert!(patches.len() >= 2, "{patches:?}"); // the pod and its status
        for patch in patches {
            assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
            let params = patch["parameters"].as_array().expect("parameters");
            assert!(params
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
            let content = patch["requestBody"]["content"]
                .as_object()
                .expect("content");
            assert!(!content.contains_key("application/strategic-merge-patch+json"));
        }
    }

    #[test]
    fn collection_and_item_paths_follow_the_scope() {
        let deployments = registry::find("apps", "v1", "deployments").expect("served");
        let nodes = registry::find("", "v1", "nodes").expect("served");
        let paths = paths(&[deployments, nodes], &named, &common());
        let list = &paths["/apis/apps/v1/namespaces/{namespace}/deployments"]["get"];
        assert_eq!(list["x-kubernetes-action"], "list");
        assert_eq!(
            list["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/test.DeploymentList"
        );
        assert_eq!(list["operationId"], "listAppsV1NamespacedDeployment");
        let scale = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["put"];
        assert_eq!(
            scale["x-kubernetes-group-version-kind"]["group"],
            "autoscaling"
        );
        assert_eq!(
            scale["operationId"],
            "replaceAppsV1NamespacedDeploymentScale"
        );
        let node = &paths["/api/v1/nodes/{name}"];
        assert_eq!(node["delete"]["operationId"], "deleteCoreV1Node");
        let names: Vec<&Value> = node["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|p| &p["name"])
            .collect();
        assert!(!names.contains(&&json!("namespace")), "{names:?}");
    }

    #[test]
    fn kinds_the_document_does_not_describe_have_no_operations() {
        let pods = registry::find("", "v1", "pods").expect("served");
        let only_pods =
            |_: &str, _: &str, kind: &str| (kind == "Pod").then(|| "test.Pod".to_string());
        let paths = paths(&[pods], &only_pods, &common());
        assert!(paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}"));
        assert!(paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}/status"));
        assert!(!paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}/binding"));
        assert!(!paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}/log"));
        // no PodList named: the collection has create but no list
        let collection = &paths["/api/v1/namespaces/{namespace}/pods"];
        assert!(collection.get("get").is_none() && collection.get("post").is_some());
    }
}
