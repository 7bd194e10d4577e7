//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and Kubernetes' strategic merge patch.
//!
//! The strategic merge patch follows Kubernetes' `strategicpatch` package for the built-in
//! kinds served here: lists with a merge key (containers by `name`, container ports by
//! `containerPort`, service ports by `port`, env by `name`, ...) are merged element by
//! element, lists of primitives with the merge strategy (`finalizers`) are unioned, every
//! other list is replaced. Directives: `$patch: replace|delete|merge` (in maps and list
//! elements), `$retainKeys`, `$deleteFromPrimitiveList/<field>`, `$setElementOrder/<field>`;
//! `null` deletes a key. The merge metadata is a table keyed by the list field's path within
//! the kind ([`list_strategy`]).

use serde_json::{Map, Value};

use crate::registry::ResourceInfo;

/// Errors from applying a patch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The JSON patch document is not a list of RFC 6902 operations.
    #[error("invalid JSON patch: {0}")]
    InvalidJsonPatch(String),
    /// An RFC 6902 operation failed (missing path, failed test, ...).
    #[error("{0}")]
    JsonPatchFailed(String),
    /// The patch (or the object) is not a JSON object where one is needed.
    #[error("{0}")]
    NotAnObject(String),
    /// A `$patch` directive has an unknown value or is used where it is not allowed.
    #[error("unknown patch type: {directive:?} in map: {context}")]
    BadDirective {
        /// The directive's value.
        directive: String,
        /// The map it appeared in.
        context: String,
    },
    /// A list element of a merge-keyed list lacks its merge key.
    #[error("map: {element} does not contain declared merge key: {key}")]
    NoMergeKey {
        /// The element.
        element: String,
        /// The merge key.
        key: String,
    },
    /// A directive's value has the wrong shape.
    #[error("invalid patch: {0}")]
    BadFormat(String),
}

/// Shorthand for results of this module.
pub type Result<T, E = PatchError> = std::result::Result<T, E>;

/// Applies an RFC 7386 JSON merge patch: objects merge recursively, `null` deletes, anything
/// else (including arrays) replaces.
pub fn json_merge_patch(target: &Value, patch: &Value) -> Value {
    let mut out = target.clone();
    json_patch::merge(&mut out, patch);
    out
}

/// Applies an RFC 6902 JSON patch (a list of `add`/`remove`/`replace`/`move`/`copy`/`test`
/// operations); all-or-nothing.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::InvalidJsonPatch(e.to_string()))?;
    let mut out = target.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| PatchError::JsonPatchFailed(e.to_string()))?;
    Ok(out)
}

/// How a list field is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Elements are maps merged by this key.
    MergeByKey(&'static str),
    /// Elements are primitives; the patch's elements are added (set union).
    MergePrimitives,
    /// The patch's list replaces the original (atomic lists, the default).
    Replace,
}

const METADATA_LISTS: &[(&str, ListStrategy)] = &[
    ("ownerReferences", ListStrategy::MergeByKey("uid")),
    ("finalizers", ListStrategy::MergePrimitives),
];

/// The strategy of the list at `path` (field names joined by `.`, list indices left out,
/// e.g. `spec.template.spec.containers.ports`) in objects of `res`.
pub fn list_strategy(res: &ResourceInfo, path: &str) -> ListStrategy {
    if let Some(strategy) = res.strategy.list_strategy(path) {
        return strategy;
    }
    if let Some(field) = path
        .strip_prefix("metadata.")
        .or_else(|| path.strip_prefix("spec.template.metadata."))
    {
        return METADATA_LISTS
            .iter()
            .find(|(name, _)| *name == field)
            .map_or(ListStrategy::Replace, |(_, s)| *s);
    }
    match path {
        "status.conditions" => ListStrategy::MergeByKey("type"),
        _ => ListStrategy::Replace,
    }
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Applies a Kubernetes strategic merge patch to `original`, an object of resource `res`.
/// The result never contains directive keys.
pub fn strategic_merge_patch(res: &ResourceInfo, original: &Value, patch: &Value) -> Result<Value> {
    let patch = patch.as_object().ok_or_else(|| {
        PatchError::NotAnObject("a strategic merge patch must be a JSON object".into())
    })?;
    let original = match original {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => {
            return Err(PatchError::NotAnObject(
                "the object to patch must be a JSON object".into(),
            ))
        }
    };
    let merger = Merger { res };
    Ok(Value::Object(merger.merge_map(
        original,
        patch.clone(),
        "",
    )?))
}

struct Merger<'a> {
    res: &'a ResourceInfo,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn as_list<'v>(v: &'v Value, what: &str) -> Result<&'v Vec<Value>> {
    v.as_array()
        .ok_or_else(|| PatchError::BadFormat(format!("{what} must be a list")))
}

impl Merger<'_> {
    fn merge_map(
        &self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        path: &str,
    ) -> Result<Map<String, Value>> {
        if let Some(d) = patch.remove(DIRECTIVE) {
            return match d.as_str() {
                // Kubernetes returns the patch itself: strip nested directives by merging it
                // into nothing.
                Some("replace") => self.merge_map(Map::new(), patch, path),
                Some("delete") => Ok(Map::new()),
                Some("merge") => self.merge_map(original, patch, path),
                _ => Err(PatchError::BadDirective {
                    directive: d.to_string(),
                    context: Value::Object(patch).to_string(),
                }),
            };
        }
        if let Some(retain) = patch.remove(RETAIN_KEYS) {
            let keys: Vec<&str> = as_list(&retain, RETAIN_KEYS)?
                .iter()
                .map(|k| k.as_str().unwrap_or_default())
                .collect();
            for (k, v) in &patch {
                if !v.is_null() && !k.starts_with('$') && !keys.contains(&k.as_str()) {
                    return Err(PatchError::BadFormat(format!(
                        "{RETAIN_KEYS} must contain every key in the patch, {k:?} is missing"
                    )));
                }
            }
            original.retain(|k, _| keys.contains(&k.as_str()));
        }
        // `$setElementOrder/<field>`: merge the list now, then order it.
        let order_keys: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
            .cloned()
            .collect();
        for key in order_keys {
            let order = patch.remove(&key).unwrap_or(Value::Null);
            let order = as_list(&order, &key)?.clone();
            let field = &key[SET_ELEMENT_ORDER.len()..];
            let field_path = join(path, field);
            let strategy = list_strategy(self.res, &field_path);
            let orig_list = original.get(field).and_then(Value::as_array).cloned();
            let patch_list = match patch.remove(field) {
                Some(Value::Array(l)) => Some(l),
                Some(other) => {
                    // not a list: let the generic loop below handle it
                    patch.insert(field.to_string(), other);
                    None
                }
                None => None,
            };
            let merged = match (orig_list.clone(), patch_list) {
                (Some(o), None) => o,
                (None, Some(p)) => self.merge_list(Vec::new(), p, strategy, &field_path)?,
                (Some(o), Some(p)) => self.merge_list(o, p, strategy, &field_path)?,
                (None, None) => continue,
            };
            let key_name = match strategy {
                ListStrategy::MergeByKey(k) => Some(k),
                _ => None,
            };
            let (in_order, server_only): (Vec<Value>, Vec<Value>) = merged
                .into_iter()
                .partition(|item| index_of(&order, item, key_name).is_some());
            let ordered = normalize_element_order(
                in_order,
                server_only,
                &order,
                &orig_list.unwrap_or_default(),
                key_name,
            );
            original.insert(field.to_string(), Value::Array(ordered));
        }
        for (k, pv) in patch {
            if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE) {
                let to_delete = as_list(&pv, &k)?;
                if let Some(Value::Array(list)) = original.get_mut(field) {
                    list.retain(|v| !to_delete.contains(v));
                }
                continue;
            }
            if k.starts_with('$') {
                return Err(PatchError::BadFormat(format!("unknown directive {k:?}")));
            }
            if pv.is_null() {
                original.remove(&k);
                continue;
            }
            let child_path = join(path, &k);
            let merged = match (original.remove(&k), pv) {
                (Some(Value::Object(o)), Value::Object(p)) => {
                    Value::Object(self.merge_map(o, p, &child_path)?)
                }
                (Some(Value::Array(o)), Value::Array(p)) => {
                    let strategy = list_strategy(self.res, &child_path);
                    Value::Array(self.merge_list(o, p, strategy, &child_path)?)
                }
                // New values (and type changes) are taken from the patch, without directives.
                (_, Value::Object(p)) => {
                    Value::Object(self.merge_map(Map::new(), p, &child_path)?)
                }
                (_, Value::Array(p)) => {
                    let strategy = list_strategy(self.res, &child_path);
                    Value::Array(self.merge_list(Vec::new(), p, strategy, &child_path)?)
                }
                (_, p) => p,
            };
            original.insert(k, merged);
        }
        Ok(original)
    }

    fn merge_list(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        strategy: ListStrategy,
        path: &str,
    ) -> Result<Vec<Value>> {
        match strategy {
            ListStrategy::Replace => {
                // An atomic list is replaced; strip directives from map elements.
                patch
                    .into_iter()
                    .map(|v| match v {
                        Value::Object(m) => {
                            Ok(Value::Object(self.merge_map(Map::new(), m, path)?))
                        }
                        other => Ok(other),
                    })
                    .collect()
            }
            ListStrategy::MergePrimitives => {
                let mut merged = original.clone();
                for v in &patch {
                    if !merged.contains(v) {
                        merged.push(v.clone());
                    }
                }
                let (in_patch, server_only): (Vec<Value>, Vec<Value>) =
                    merged.into_iter().partition(|v| patch.contains(v));
                Ok(normalize_element_order(
                    in_patch,
                    server_only,
                    &patch,
                    &original,
                    None,
                ))
            }
            ListStrategy::MergeByKey(key) => self.merge_keyed_list(original, patch, key, path),
        }
    }

    fn merge_keyed_list(
        &self,
        mut original: Vec<Value>,
        patch: Vec<Value>,
        key: &'static str,
        path: &str,
    ) -> Result<Vec<Value>> {
        let mut plain = Vec::new();
        let mut replace = false;
        for item in patch {
            let Value::Object(m) = &item else {
                return Err(PatchError::BadFormat(format!(
                    "elements of {path} must be objects with the merge key {key:?}"
                )));
            };
            match m.get(DIRECTIVE).map(|d| d.as_str()) {
                None => plain.push(item),
                Some(Some("delete")) => {
                    let kv = m.get(key).ok_or_else(|| PatchError::NoMergeKey {
                        element: item.to_string(),
                        key: key.to_string(),
                    })?;
                    original.retain(|o| o.get(key) != Some(kv));
                }
                Some(Some("replace")) => replace = true,
                Some(Some("merge")) => {
                    return Err(PatchError::BadFormat(
                        "merging lists cannot yet be specified in the patch".into(),
                    ))
                }
                Some(_) => {
                    return Err(PatchError::BadDirective {
                        directive: m.get(DIRECTIVE).map(Value::to_string).unwrap_or_default(),
                        context: item.to_string(),
                    })
                }
            }
        }
        if replace {
            return plain
                .into_iter()
                .map(|v| match v {
                    Value::Object(m) => Ok(Value::Object(self.merge_map(Map::new(), m, path)?)),
                    other => Ok(other),
                })
                .collect();
        }
        let base = original.clone();
        let mut merged = original;
        for item in &plain {
            let Value::Object(pm) = item else { continue };
            let kv = pm.get(key).ok_or_else(|| PatchError::NoMergeKey {
                element: item.to_string(),
                key: key.to_string(),
            })?;
            match merged.iter().position(|o| o.get(key) == Some(kv)) {
                Some(i) => {
                    let existing = match std::mem::take(&mut merged[i]) {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    merged[i] = Value::Object(self.merge_map(existing, pm.clone(), path)?);
                }
                None => merged.push(Value::Object(self.merge_map(
                    Map::new(),
                    pm.clone(),
                    path,
                )?)),
            }
        }
        let (in_patch, server_only): (Vec<Value>, Vec<Value>) = merged
            .into_iter()
            .partition(|v| index_of(&plain, v, Some(key)).is_some());
        Ok(normalize_element_order(
            in_patch,
            server_only,
            &plain,
            &base,
            Some(key),
        ))
    }
}

/// Position of `item` in `list`, comparing merge-key values for maps (`key` given) or whole
/// values for primitives.
fn index_of(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    match key {
        Some(k) => {
            let want = item.get(k)?;
            list.iter().position(|v| v.get(k) == Some(want))
        }
        None => list.iter().position(|v| v == item),
    }
}

/// Kubernetes' ordering of a merged list: patch items in `patch_order`, server-only items in
/// `server_order`, then interleaved so that both relative orders are kept and items known to
/// the server keep their server positions where possible.
fn normalize_element_order(
    mut patch_items: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let sort_by = |items: &mut Vec<Value>, order: &[Value]| {
        items.sort_by_key(|v| index_of(order, v, key).unwrap_or(usize::MAX));
    };
    sort_by(&mut patch_items, patch_order);
    sort_by(&mut server_only, server_order);
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        patch_items.into_iter().peekable(),
    );
    loop {
        match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(left.next()),
            (None, Some(_)) => out.extend(right.next()),
            (Some(l), Some(r)) => {
                let li = index_of(server_order, l, key);
                let ri = index_of(server_order, r, key);
                match (li, ri) {
                    (Some(li), Some(ri)) if li < ri => out.extend(left.next()),
                    _ => out.extend(right.next()),
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::apply_defaults;
    use crate::registry::by_kind;
    use serde_json::json;

    fn smp(kind: &str, original: Value, patch: Value) -> Value {
        strategic_merge_patch(by_kind(kind).unwrap(), &original, &patch).unwrap()
    }

    /// The nginx Deployment as stored: defaulted, with the last-applied annotation.
    fn live_deployment(containers: Value, labels: Value) -> Value {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "nginx-deployment", "namespace": "default", "labels": labels,
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                         "uid": "u", "resourceVersion": "5", "generation": 1},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "nginx"}},
                     "template": {"metadata": {"labels": {"app": "nginx"}},
                                  "spec": {"containers": containers}}},
            "status": {"replicas": 1}});
        apply_defaults(by_kind("Deployment").unwrap(), &mut d);
        d
    }

    fn nginx(extra: Value) -> Value {
        let mut c =
            json!({"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}]});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    #[test]
    fn merge_patch_rfc7386() {
        assert_eq!(
            json_merge_patch(
                &json!({"a": "b", "c": {"d": "e", "f": "g"}}),
                &json!({"a": "z", "c": {"f": null}})
            ),
            json!({"a": "z", "c": {"d": "e"}})
        );
        assert_eq!(
            json_merge_patch(&json!({"a": [1, 2]}), &json!({"a": [3]})),
            json!({"a": [3]})
        );
        assert_eq!(json_merge_patch(&json!({"a": 1}), &json!("x")), json!("x"));
        assert_eq!(
            json_merge_patch(&json!("x"), &json!({"a": {"b": null, "c": 1}})),
            json!({"a": {"c": 1}})
        );
    }

    #[test]
    fn json_patch_rfc6902() {
        let doc = json!({"spec": {"replicas": 1, "list": [1, 2]}});
        let out = json_patch(
            &doc,
            &json!([{"op": "replace", "path": "/spec/replicas", "value": 3},
                    {"op": "add", "path": "/spec/list/-", "value": 3},
                    {"op": "remove", "path": "/spec/list/0"},
                    {"op": "test", "path": "/spec/replicas", "value": 3}]),
        )
        .unwrap();
        assert_eq!(out, json!({"spec": {"replicas": 3, "list": [2, 3]}}));
        assert!(matches!(
            json_patch(
                &doc,
                &json!([{"op": "test", "path": "/spec/replicas", "value": 9}])
            ),
            Err(PatchError::JsonPatchFailed(_))
        ));
        assert!(matches!(
            json_patch(&doc, &json!([{"op": "remove", "path": "/nope"}])),
            Err(PatchError::JsonPatchFailed(_))
        ));
        assert!(matches!(
            json_patch(&doc, &json!({"op": "add"})),
            Err(PatchError::InvalidJsonPatch(_))
        ));
    }

    #[test]
    fn strategy_table() {
        let d = by_kind("Deployment").unwrap();
        let p = by_kind("Pod").unwrap();
        assert_eq!(
            list_strategy(d, "spec.template.spec.containers"),
            ListStrategy::MergeByKey("name")
        );
        assert_eq!(
            list_strategy(d, "spec.template.spec.containers.ports"),
            ListStrategy::MergeByKey("containerPort")
        );
        assert_eq!(
            list_strategy(p, "spec.containers.env"),
            ListStrategy::MergeByKey("name")
        );
        assert_eq!(
            list_strategy(p, "spec.initContainers.volumeMounts"),
            ListStrategy::MergeByKey("mountPath")
        );
        assert_eq!(
            list_strategy(p, "spec.volumes"),
            ListStrategy::MergeByKey("name")
        );
        assert_eq!(list_strategy(p, "spec.tolerations"), ListStrategy::Replace);
        assert_eq!(
            list_strategy(p, "spec.containers.args"),
            ListStrategy::Replace
        );
        assert_eq!(
            list_strategy(p, "metadata.finalizers"),
            ListStrategy::MergePrimitives
        );
        assert_eq!(
            list_strategy(d, "metadata.ownerReferences"),
            ListStrategy::MergeByKey("uid")
        );
        assert_eq!(
            list_strategy(d, "status.conditions"),
            ListStrategy::MergeByKey("type")
        );
        assert_eq!(
            list_strategy(by_kind("Service").unwrap(), "spec.ports"),
            ListStrategy::MergeByKey("port")
        );
        assert_eq!(
            list_strategy(by_kind("Node").unwrap(), "status.addresses"),
            ListStrategy::MergeByKey("type")
        );
        // a Deployment's spec.containers is not a pod spec path
        assert_eq!(list_strategy(d, "spec.containers"), ListStrategy::Replace);
    }

    // The following patches are what kubectl v1.32's client-side apply sends for the nginx
    // Deployment (3-way diff of last-applied, new manifest and live object).

    #[test]
    fn kubectl_apply_change_image() {
        let live = live_deployment(json!([nginx(json!({}))]), json!({"app": "nginx"}));
        let out = smp(
            "Deployment",
            live.clone(),
            json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"new\":1}\n"}},
                   "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}],
                                                  "containers": [{"image": "nginx:1.16.1", "name": "nginx"}]}}}}),
        );
        let mut want = live;
        want["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
            json!("{\"new\":1}\n");
        want["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.16.1");
        assert_eq!(out, want);
    }

    #[test]
    fn kubectl_apply_change_replicas() {
        let live = live_deployment(json!([nginx(json!({}))]), json!({"app": "nginx"}));
        let out = smp("Deployment", live.clone(), json!({"spec": {"replicas": 3}}));
        let mut want = live;
        want["spec"]["replicas"] = json!(3);
        assert_eq!(out, want);
    }

    #[test]
    fn kubectl_apply_add_and_remove_port() {
        let live = live_deployment(json!([nginx(json!({}))]), json!({"app": "nginx"}));
        let added = smp(
            "Deployment",
            live.clone(),
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [{"$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 443}],
                                "name": "nginx", "ports": [{"containerPort": 443}]}]}}}}),
        );
        assert_eq!(
            added["spec"]["template"]["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}])
        );
        // the server defaults again after patching
        let mut added = added;
        apply_defaults(by_kind("Deployment").unwrap(), &mut added);
        let removed = smp(
            "Deployment",
            added,
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [{"$setElementOrder/ports": [{"containerPort": 80}], "name": "nginx",
                                "ports": [{"$patch": "delete", "containerPort": 443}]}]}}}}),
        );
        assert_eq!(removed, live);
    }

    #[test]
    fn kubectl_apply_port_reorder_and_insert_first() {
        let live = live_deployment(json!([nginx(json!({}))]), json!({"app": "nginx"}));
        let out = smp(
            "Deployment",
            live,
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [{"$setElementOrder/ports": [{"containerPort": 8080}, {"containerPort": 80}],
                                "name": "nginx", "ports": [{"containerPort": 8080}]}]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 8080}, {"containerPort": 80, "protocol": "TCP"}])
        );
    }

    #[test]
    fn kubectl_apply_env_add_and_remove() {
        let live = live_deployment(json!([nginx(json!({}))]), json!({"app": "nginx"}));
        let with_env = smp(
            "Deployment",
            live.clone(),
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [{"env": [{"name": "FOO", "value": "1"}, {"name": "BAR", "value": "2"}],
                                "name": "nginx"}]}}}}),
        );
        assert_eq!(
            with_env["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "FOO", "value": "1"}, {"name": "BAR", "value": "2"}])
        );
        let one_left = smp(
            "Deployment",
            with_env,
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [{"$setElementOrder/env": [{"name": "FOO"}], "name": "nginx",
                                "env": [{"$patch": "delete", "name": "BAR"}]}]}}}}),
        );
        assert_eq!(
            one_left["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "FOO", "value": "1"}])
        );
        let none_left = smp(
            "Deployment",
            one_left,
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [{"env": null, "name": "nginx"}]}}}}),
        );
        assert_eq!(none_left, live);
    }

    #[test]
    fn kubectl_apply_remove_label() {
        let live = live_deployment(
            json!([nginx(json!({}))]),
            json!({"app": "nginx", "tier": "web"}),
        );
        let out = smp(
            "Deployment",
            live.clone(),
            json!({"metadata": {"labels": {"tier": null}}}),
        );
        assert_eq!(out["metadata"]["labels"], json!({"app": "nginx"}));
        let mut want = live;
        want["metadata"]["labels"] = json!({"app": "nginx"});
        assert_eq!(out, want);
    }

    /// The exact patch bodies kubectl v1.32 sent (captured with `kubectl apply -v=8`) for a
    /// sequence of edits of a Deployment with env vars and a `tier` label; the annotation value
    /// is shortened.
    #[test]
    fn kubectl_v132_captured_sequence() {
        let res = by_kind("Deployment").unwrap();
        let mut live = live_deployment(
            json!([nginx(
                json!({"env": [{"name": "FOO", "value": "1"}, {"name": "BAR", "value": "2"}]})
            )]),
            json!({"app": "nginx", "tier": "web"}),
        );
        let ann = |v: &str| json!({"annotations": {"kubectl.kubernetes.io/last-applied-configuration": v}});
        let patches = [
            json!({"metadata": ann("1"), "spec": {"replicas": 3, "template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [{"image": "nginx:1.16.1", "name": "nginx"}]}}}}),
            json!({"metadata": ann("2"), "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [{"$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 443}],
                                "name": "nginx", "ports": [{"containerPort": 443}]}]}}}}),
            json!({"metadata": ann("3"), "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [{"$setElementOrder/env": [{"name": "FOO"}],
                                "$setElementOrder/ports": [{"containerPort": 80}],
                                "env": [{"$patch": "delete", "name": "BAR"}], "name": "nginx",
                                "ports": [{"$patch": "delete", "containerPort": 443}]}]}}}}),
            json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "4"},
                                "labels": {"tier": null}},
                   "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}],
                                                  "containers": [{"env": null, "name": "nginx"}]}}}}),
        ];
        let mut states = Vec::new();
        for p in &patches {
            live = strategic_merge_patch(res, &live, p).unwrap();
            apply_defaults(res, &mut live);
            states.push(live.clone());
        }
        let containers = |i: usize| states[i]["spec"]["template"]["spec"]["containers"].clone();
        assert_eq!(states[0]["spec"]["replicas"], 3);
        assert_eq!(containers(0)[0]["image"], "nginx:1.16.1");
        assert_eq!(
            containers(1)[0]["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "protocol": "TCP"}])
        );
        assert_eq!(
            containers(2)[0]["ports"],
            json!([{"containerPort": 80, "protocol": "TCP"}])
        );
        assert_eq!(
            containers(2)[0]["env"],
            json!([{"name": "FOO", "value": "1"}])
        );
        assert_eq!(states[3]["metadata"]["labels"], json!({"app": "nginx"}));
        assert_eq!(
            states[3]["metadata"]["annotations"]
                ["kubectl.kubernetes.io/last-applied-configuration"],
            "4"
        );
        assert_eq!(
            containers(3),
            json!([{"name": "nginx", "image": "nginx:1.16.1", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File", "resources": {}}])
        );
    }

    #[test]
    fn kubectl_apply_add_second_container() {
        let live = live_deployment(json!([nginx(json!({}))]), json!({"app": "nginx"}));
        let out = smp(
            "Deployment",
            live,
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                "containers": [{"image": "busybox", "name": "sidecar"}]}}}}),
        );
        let names: Vec<_> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["nginx", "sidecar"]);
    }

    #[test]
    fn without_set_element_order_new_items_come_first() {
        // Kubernetes' ordering when no $setElementOrder is sent
        let out = smp(
            "Pod",
            json!({"spec": {"containers": [{"name": "a", "image": "x"}]}}),
            json!({"spec": {"containers": [{"name": "b", "image": "y"}]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "b", "image": "y"}, {"name": "a", "image": "x"}])
        );
        let out = smp(
            "Pod",
            json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}),
            json!({"spec": {"containers": [{"name": "b", "image": "z"}]}}),
        );
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "a", "image": "x"}, {"name": "b", "image": "z"}])
        );
    }

    #[test]
    fn directives() {
        // $patch: replace on a map and on a list
        let out = smp(
            "Pod",
            json!({"spec": {"nodeSelector": {"a": "1", "b": "2"},
                            "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}),
            json!({"spec": {"nodeSelector": {"$patch": "replace", "c": "3"},
                            "containers": [{"name": "c", "image": "z"}, {"$patch": "replace"}]}}),
        );
        assert_eq!(out["spec"]["nodeSelector"], json!({"c": "3"}));
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "c", "image": "z"}])
        );
        // $patch: delete on a map empties it
        let out = smp(
            "Deployment",
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
            json!({"spec": {"strategy": {"$patch": "delete"}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({}));
        // $retainKeys drops the keys not listed (kubectl switching to Recreate)
        let out = smp(
            "Deployment",
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        // $deleteFromPrimitiveList and primitive merge on finalizers
        let out = smp(
            "Pod",
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"], "$setElementOrder/finalizers": ["a", "c"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "c"]));
        let out = smp(
            "Pod",
            json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": ["b", "a"]}}),
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "a"]));
        // atomic lists are replaced
        let out = smp(
            "Pod",
            json!({"spec": {"tolerations": [{"key": "a"}], "containers": [{"name": "a", "args": ["1", "2"]}]}}),
            json!({"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "a", "args": ["3"]}]}}),
        );
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "b"}]));
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["3"]));
        // null deletes, and no directive survives in a new subtree
        let out = smp(
            "Pod",
            json!({"metadata": {"labels": {"a": "1"}}}),
            json!({"metadata": {"labels": null}, "spec": {"$setElementOrder/containers": [{"name": "a"}],
                   "containers": [{"name": "a", "$setElementOrder/ports": [{"containerPort": 1}],
                                   "ports": [{"containerPort": 1}]}]}}),
        );
        assert_eq!(
            out,
            json!({"metadata": {}, "spec": {"containers": [{"name": "a", "ports": [{"containerPort": 1}]}]}})
        );
    }

    #[test]
    fn service_ports_and_conditions() {
        let out = smp(
            "Service",
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}),
            json!({"spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 443}],
                            "ports": [{"port": 80, "targetPort": 9090}, {"port": 443, "targetPort": 8443}]}}),
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090, "protocol": "TCP"}, {"port": 443, "targetPort": 8443}])
        );
        let out = smp(
            "Deployment",
            json!({"status": {"conditions": [{"type": "Available", "status": "False"}, {"type": "Progressing", "status": "True"}]}}),
            json!({"status": {"conditions": [{"type": "Available", "status": "True"}]}}),
        );
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}])
        );
    }

    #[test]
    fn empty_patches_change_nothing() {
        let live = live_deployment(
            json!([nginx(json!({"env": [{"name": "A", "value": "1"}]}))]),
            json!({"app": "nginx"}),
        );
        assert_eq!(smp("Deployment", live.clone(), json!({})), live);
        assert_eq!(json_merge_patch(&live, &json!({})), live);
        assert_eq!(json_patch(&live, &json!([])).unwrap(), live);
        // patching with the object itself is a no-op as well
        assert_eq!(smp("Deployment", live.clone(), live.clone()), live);
        assert_eq!(json_merge_patch(&live, &live), live);
    }

    #[test]
    fn errors() {
        let pod = by_kind("Pod").unwrap();
        assert!(matches!(
            strategic_merge_patch(pod, &json!({}), &json!([1])),
            Err(PatchError::NotAnObject(_))
        ));
        assert!(matches!(
            strategic_merge_patch(
                pod,
                &json!({"spec": {"containers": [{"name": "a"}]}}),
                &json!({"spec": {"containers": [{"image": "x"}]}})
            ),
            Err(PatchError::NoMergeKey { .. })
        ));
        assert!(matches!(
            strategic_merge_patch(pod, &json!({}), &json!({"spec": {"$patch": "explode"}})),
            Err(PatchError::BadDirective { .. })
        ));
        assert!(matches!(
            strategic_merge_patch(
                pod,
                &json!({}),
                &json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}, 3]}})
            ),
            Err(PatchError::BadFormat(_))
        ));
        assert!(matches!(
            strategic_merge_patch(
                pod,
                &json!({}),
                &json!({"spec": {"$retainKeys": ["a"], "b": 1}})
            ),
            Err(PatchError::BadFormat(_))
        ));
        assert!(matches!(
            strategic_merge_patch(pod, &json!({}), &json!({"spec": {"$bogus": 1}})),
            Err(PatchError::BadFormat(_))
        ));
    }
}
