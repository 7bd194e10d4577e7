//! Client-side apply's pure part: the `last-applied-configuration` annotation
//! (byte-for-byte what kubectl writes) and the three-way merge patch.
//!
//! The patch is a JSON merge patch (RFC 7386) computed from three objects:
//! - `original`: the manifest as last applied (from the annotation),
//! - `modified`: the manifest being applied now (with its new annotation),
//! - `current`: the live object.
//!
//! Fields removed from the manifest since `original` are set to `null` (deleted)
//! when the live object still has them; fields of `modified` that differ from
//! `current` are set. Maps are compared key by key, so fields the server filled
//! in (defaults, status, uid, ...) never count as changes. A list is replaced as a
//! whole, but only when one of its elements really changed: elements are
//! compared pairwise with the same three-way rule, so a container the server
//! defaulted (`imagePullPolicy`, `protocol: TCP`, ...) still counts as unchanged.

use serde_json::{Map, Value};

/// The annotation kubectl and bpfk use for client-side apply.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Build the object to send for `manifest` and the `last-applied-configuration`
/// value, exactly as kubectl's `GetModifiedConfiguration` does: the manifest with
/// `metadata.annotations` present (empty when the manifest has none) and without
/// the annotation itself, encoded as Go's `encoding/json` would (sorted keys,
/// compact, HTML-escaped, trailing newline); then the same manifest with that
/// string stored under the annotation.
pub fn modified_configuration(manifest: &Value) -> (Value, String) {
    let mut root = object_of(manifest.clone());
    let mut meta = object_of(root.remove("metadata").unwrap_or(Value::Null));
    let mut annotations = object_of(meta.remove("annotations").unwrap_or(Value::Null));
    annotations.remove(LAST_APPLIED);
    meta.insert("annotations".into(), Value::Object(annotations.clone()));
    root.insert("metadata".into(), Value::Object(meta.clone()));
    let mut encoded = go_json(&Value::Object(root.clone()));
    encoded.push('\n');
    annotations.insert(LAST_APPLIED.into(), Value::String(encoded.clone()));
    meta.insert("annotations".into(), Value::Object(annotations));
    root.insert("metadata".into(), Value::Object(meta));
    (Value::Object(root), encoded)
}

/// The map inside an object value; anything else becomes an empty map.
fn object_of(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The `last-applied-configuration` of a live object, parsed, if it has a valid one.
pub fn last_applied(current: &Value) -> Option<Value> {
    let text = current
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    serde_json::from_str(text).ok()
}

/// Encode like Go's `json.Marshal` of a `map[string]interface{}`: keys sorted,
/// no whitespace, `<`, `>`, `&`, U+2028 and U+2029 escaped.
pub fn go_json(v: &Value) -> String {
    let mut out = String::new();
    write_go_json(v, &mut out);
    out
}

fn write_go_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_string(k, out);
                out.push(':');
                write_go_json(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(item, out);
            }
            out.push(']');
        }
        Value::String(s) => write_go_string(s, out),
        Value::Number(n) => match n.as_f64().filter(|_| n.is_f64()) {
            Some(f) => out.push_str(&go_float(f)),
            None => out.push_str(&n.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

/// Go's `encoding/json` float64 format: no exponent between 1e-6 and 1e21 (so an
/// integral `1.0` is `1`), otherwise `1e-07` / `1e+21` style.
fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        return format!("{f}");
    }
    let e = format!("{f:e}");
    match e.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => e,
    }
}

fn write_go_string(s: &str, out: &mut String) {
    let quoted = Value::String(s.to_string()).to_string();
    for c in quoted.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
}

/// The three-way merge patch turning `current` into `modified`, deleting what
/// was removed since `original`. Returns an empty object when nothing would change.
pub fn three_way_merge_patch(original: Option<&Value>, modified: &Value, current: &Value) -> Value {
    let empty = Map::new();
    let modified = modified.as_object().unwrap_or(&empty);
    Value::Object(diff_object(
        original.and_then(Value::as_object),
        modified,
        current.as_object(),
    ))
}

/// True when a patch from [`three_way_merge_patch`] would change nothing.
pub fn is_empty_patch(patch: &Value) -> bool {
    patch.as_object().is_some_and(Map::is_empty)
}

fn is_absent(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

fn diff_object(
    original: Option<&Map<String, Value>>,
    modified: &Map<String, Value>,
    current: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let mut patch = Map::new();
    if let Some(original) = original {
        for key in original.keys() {
            if !modified.contains_key(key) && !is_absent(current.and_then(|c| c.get(key))) {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }
    for (key, m) in modified {
        let c = current.and_then(|c| c.get(key));
        let o = original.and_then(|o| o.get(key));
        match m {
            Value::Null => {
                if !is_absent(c) {
                    patch.insert(key.clone(), Value::Null);
                }
            }
            Value::Object(mo) => match c {
                Some(Value::Object(co)) => {
                    let sub = diff_object(o.and_then(Value::as_object), mo, Some(co));
                    if !sub.is_empty() {
                        patch.insert(key.clone(), Value::Object(sub));
                    }
                }
                _ => {
                    if !(mo.is_empty() && is_absent(c)) {
                        patch.insert(key.clone(), m.clone());
                    }
                }
            },
            Value::Array(ma) => {
                if list_changed(o, ma, c) {
                    patch.insert(key.clone(), m.clone());
                }
            }
            scalar => {
                if !c.is_some_and(|c| scalars_equal(scalar, c)) {
                    patch.insert(key.clone(), m.clone());
                }
            }
        }
    }
    patch
}

fn list_changed(original: Option<&Value>, modified: &[Value], current: Option<&Value>) -> bool {
    let current = match current {
        Some(Value::Array(c)) => c,
        other => return !(modified.is_empty() && is_absent(other)),
    };
    if modified.len() != current.len() {
        return true;
    }
    let original = original.and_then(Value::as_array);
    modified.iter().zip(current).enumerate().any(|(i, (m, c))| {
        let o = original.and_then(|o| o.get(i));
        match (m, c) {
            (Value::Object(mo), Value::Object(co)) => {
                !diff_object(o.and_then(Value::as_object), mo, Some(co)).is_empty()
            }
            (Value::Array(ma), _) => list_changed(o, ma, Some(c)),
            (m, c) => !scalars_equal(m, c),
        }
    })
}

fn scalars_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// /work/shared/manifests/nginx-deployment.yaml as JSON, with the namespace
    /// the CLI adds before applying.
    fn nginx_deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "nginx-deployment", "namespace": "default", "labels": {"app": "nginx"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{
                        "name": "nginx", "image": "nginx:1.14.2",
                        "ports": [{"containerPort": 80}]
                    }]}
                }
            }
        })
    }

    /// What a Kubernetes API server stores for `manifest` once applied: defaults,
    /// server-set metadata and a status.
    fn live_from(modified: &Value) -> Value {
        let mut live = modified.clone();
        let meta = live["metadata"].as_object_mut().unwrap();
        meta.insert("uid".into(), json!("4b1c8a36-1111-2222-3333-444455556666"));
        meta.insert("resourceVersion".into(), json!("1234"));
        meta.insert("generation".into(), json!(1));
        meta.insert("creationTimestamp".into(), json!("2026-01-01T00:00:00Z"));
        let spec = live["spec"].as_object_mut().unwrap();
        spec.insert("revisionHistoryLimit".into(), json!(10));
        spec.insert("progressDeadlineSeconds".into(), json!(600));
        spec.insert(
            "strategy".into(),
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
        );
        let pod = live["spec"]["template"]["spec"].as_object_mut().unwrap();
        pod.insert("restartPolicy".into(), json!("Always"));
        pod.insert("dnsPolicy".into(), json!("ClusterFirst"));
        pod.insert("terminationGracePeriodSeconds".into(), json!(30));
        let c = live["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap();
        c.insert("imagePullPolicy".into(), json!("IfNotPresent"));
        c.insert(
            "terminationMessagePath".into(),
            json!("/dev/termination-log"),
        );
        c.insert("resources".into(), json!({}));
        c["ports"][0]
            .as_object_mut()
            .unwrap()
            .insert("protocol".into(), json!("TCP"));
        live["status"] = json!({"replicas": 1, "observedGeneration": 1});
        live
    }

    #[test]
    fn annotation_is_what_kubectl_writes() {
        let (modified, annotation) = modified_configuration(&nginx_deployment());
        assert_eq!(
            annotation,
            "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"annotations\":{},\"labels\":{\"app\":\"nginx\"},\"name\":\"nginx-deployment\",\"namespace\":\"default\"},\"spec\":{\"replicas\":1,\"selector\":{\"matchLabels\":{\"app\":\"nginx\"}},\"template\":{\"metadata\":{\"labels\":{\"app\":\"nginx\"}},\"spec\":{\"containers\":[{\"image\":\"nginx:1.14.2\",\"name\":\"nginx\",\"ports\":[{\"containerPort\":80}]}]}}}}\n"
        );
        assert_eq!(
            modified["metadata"]["annotations"][LAST_APPLIED].as_str(),
            Some(annotation.as_str())
        );
        // The manifest's own annotations are kept, an old last-applied is replaced.
        let mut m = nginx_deployment();
        m["metadata"]["annotations"] = json!({"team": "a&b", LAST_APPLIED: "old"});
        let (modified, annotation) = modified_configuration(&m);
        assert!(annotation.contains("\"annotations\":{\"team\":\"a\\u0026b\"}"));
        assert_eq!(modified["metadata"]["annotations"]["team"], "a&b");
    }

    #[test]
    fn reapplying_the_same_manifest_is_unchanged() {
        let (modified, _) = modified_configuration(&nginx_deployment());
        let live = live_from(&modified);
        let original = last_applied(&live);
        assert!(original.is_some());
        let patch = three_way_merge_patch(original.as_ref(), &modified, &live);
        assert!(is_empty_patch(&patch), "unexpected patch {patch}");
    }

    #[test]
    fn image_change_replaces_the_container_list() {
        let (first, _) = modified_configuration(&nginx_deployment());
        let live = live_from(&first);
        let mut manifest = nginx_deployment();
        manifest["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.16.1");
        let (modified, annotation) = modified_configuration(&manifest);
        let patch = three_way_merge_patch(last_applied(&live).as_ref(), &modified, &live);
        assert_eq!(
            patch,
            json!({
                "metadata": {"annotations": {LAST_APPLIED: annotation}},
                "spec": {"template": {"spec": {"containers": [{
                    "name": "nginx", "image": "nginx:1.16.1", "ports": [{"containerPort": 80}]
                }]}}}
            })
        );
    }

    #[test]
    fn removed_label_is_deleted() {
        let mut manifest = nginx_deployment();
        manifest["metadata"]["labels"]["tier"] = json!("web");
        let (first, _) = modified_configuration(&manifest);
        let mut live = live_from(&first);
        // Someone else's label on the live object must survive.
        live["metadata"]["labels"]["owner"] = json!("ops");
        let (modified, annotation) = modified_configuration(&nginx_deployment());
        let patch = three_way_merge_patch(last_applied(&live).as_ref(), &modified, &live);
        assert_eq!(
            patch,
            json!({"metadata": {
                "labels": {"tier": null},
                "annotations": {LAST_APPLIED: annotation}
            }})
        );
    }

    #[test]
    fn removed_field_is_deleted_and_removed_container_field_replaces_list() {
        let mut manifest = nginx_deployment();
        manifest["spec"]["minReadySeconds"] = json!(5);
        manifest["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "A", "value": "1"}]);
        let (first, _) = modified_configuration(&manifest);
        let live = live_from(&first);
        let (modified, _) = modified_configuration(&nginx_deployment());
        let patch = three_way_merge_patch(last_applied(&live).as_ref(), &modified, &live);
        assert_eq!(patch["spec"]["minReadySeconds"], Value::Null);
        assert!(patch["spec"]
            .as_object()
            .unwrap()
            .contains_key("minReadySeconds"));
        assert_eq!(
            patch["spec"]["template"]["spec"]["containers"],
            json!([{"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}]}])
        );
    }

    #[test]
    fn field_already_gone_from_live_needs_no_delete() {
        let mut manifest = nginx_deployment();
        manifest["spec"]["minReadySeconds"] = json!(5);
        let (first, _) = modified_configuration(&manifest);
        let mut live = live_from(&first);
        live["spec"]
            .as_object_mut()
            .unwrap()
            .remove("minReadySeconds");
        let (modified, annotation) = modified_configuration(&nginx_deployment());
        let patch = three_way_merge_patch(last_applied(&live).as_ref(), &modified, &live);
        // Only the annotation changes.
        assert_eq!(
            patch,
            json!({"metadata": {"annotations": {LAST_APPLIED: annotation}}})
        );
    }

    #[test]
    fn live_drift_on_a_managed_field_is_reverted() {
        let (modified, _) = modified_configuration(&nginx_deployment());
        let mut live = live_from(&modified);
        live["spec"]["replicas"] = json!(3);
        let patch = three_way_merge_patch(last_applied(&live).as_ref(), &modified, &live);
        assert_eq!(patch, json!({"spec": {"replicas": 1}}));
    }

    #[test]
    fn object_without_annotation_gets_it() {
        let (modified, annotation) = modified_configuration(&nginx_deployment());
        let mut live = live_from(&modified);
        live["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        let patch = three_way_merge_patch(last_applied(&live).as_ref(), &modified, &live);
        assert_eq!(
            patch,
            json!({"metadata": {"annotations": {LAST_APPLIED: annotation}}})
        );
    }

    #[test]
    fn numbers_compare_by_value() {
        let patch = three_way_merge_patch(None, &json!({"a": 1}), &json!({"a": 1.0}));
        assert!(is_empty_patch(&patch));
    }

    #[test]
    fn go_json_formats_floats_like_go() {
        assert_eq!(
            go_json(&json!([1.0, 0.5, 2.5e-7, 1e21, -3.0, 0.0, 7])),
            "[1,0.5,2.5e-07,1e+21,-3,0,7]"
        );
    }

    #[test]
    fn go_json_escapes_like_go() {
        assert_eq!(
            go_json(&json!({"b": "<x>", "a": [1, true, null, "\u{2028}"]})),
            "{\"a\":[1,true,null,\"\\u2028\"],\"b\":\"\\u003cx\\u003e\"}"
        );
    }
}
