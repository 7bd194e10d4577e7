//! Detection of fields a kind does not have (`fieldValidation=Strict|Warn`) and of values of
//! the wrong JSON type.
//!
//! The object is decoded into its `k8s-openapi` type (which drops what it does not know) and
//! encoded back; every non-null input field missing from the round trip is unknown. Maps with
//! free keys (labels, annotations, nodeSelector, data, ...) survive the round trip whole, so
//! their keys are never reported. Values of the wrong type are reported as [`TypeError`]s and
//! left out of the comparison, so one bad value does not hide unknown fields elsewhere.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::registry::ResourceInfo;

/// A value whose JSON type does not fit the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError {
    /// Field path, e.g. `spec.replicas`.
    pub field: String,
    /// What the decoder said, e.g. `invalid type: string "x", expected i32`.
    pub message: String,
}

/// Everything [`check_fields`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldReport {
    /// Paths of unknown fields (`spec.containers[0].imagee`), in document order.
    pub unknown: Vec<String>,
    /// Values of the wrong type.
    pub type_errors: Vec<TypeError>,
}

/// Paths of the fields of `obj` that its kind does not have, e.g.
/// `["spec.containers[0].imagee"]`. Null values are ignored. Resources without a typed model
/// report nothing.
pub fn unknown_fields(res: &ResourceInfo, obj: &Value) -> Vec<String> {
    check_fields(res, obj).unknown
}

/// Kubernetes' wording for one unknown field: `unknown field "spec.containers[0].imagee"`.
pub fn unknown_field_message(path: &str) -> String {
    format!("unknown field \"{path}\"")
}

/// Unknown fields and type errors of `obj` as an object of resource `res`.
pub fn check_fields(res: &ResourceInfo, obj: &Value) -> FieldReport {
    res.strategy.check_fields(res, obj)
}

/// Most type errors are dropped one at a time; past this many the object is hopeless.
const MAX_TYPE_ERRORS: usize = 64;

/// Unknown fields and type errors of `obj` decoded as the typed model `T` of `res`.
pub fn check_as<T: DeserializeOwned + Serialize>(res: &ResourceInfo, obj: &Value) -> FieldReport {
    let mut report = FieldReport::default();
    let Some(input) = obj.as_object() else {
        report.type_errors.push(TypeError {
            field: String::new(),
            message: "the object must be a JSON object".into(),
        });
        return report;
    };
    let mut work = Value::Object(input.clone());
    normalize_quantities(&mut work);
    if let Some(map) = work.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(res.api_version()));
        map.insert("kind".into(), Value::String(res.kind.into()));
        if map.get("metadata").is_none_or(Value::is_null) {
            map.insert("metadata".into(), Value::Object(Map::new()));
        }
    }
    let mut attempts = 0;
    let round_trip = loop {
        match serde_path_to_error::deserialize::<_, T>(work.clone()) {
            Ok(typed) => match serde_json::to_value(&typed) {
                Ok(v) => break v,
                Err(e) => {
                    report.type_errors.push(TypeError {
                        field: String::new(),
                        message: e.to_string(),
                    });
                    return report;
                }
            },
            Err(e) => {
                let field = e.path().to_string();
                let field = if field == "." { String::new() } else { field };
                let message = e.inner().to_string();
                // A missing required field is for validation to report; fill in a stand-in
                // so the rest of the object is still checked.
                if let Some(missing) = missing_field(&message) {
                    attempts += 1;
                    if attempts <= MAX_TYPE_ERRORS && fill_missing::<T>(&mut work, &field, &missing)
                    {
                        continue;
                    }
                }
                report.type_errors.push(TypeError {
                    field: field.clone(),
                    message: e.into_inner().to_string(),
                });
                // Drop the offending value and decode again; give up when it cannot be
                // removed (an error about the object itself) or after too many.
                if report.type_errors.len() >= MAX_TYPE_ERRORS || !remove_path(&mut work, &field) {
                    return report;
                }
            }
        }
    };
    let mut path = String::new();
    walk(&work, &round_trip, &mut path, &mut report.unknown);
    report
}

/// The field name in serde's `missing field `name`` message.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// Inserts a stand-in for the missing field `name` of the object at `path`, trying values of
/// each JSON type until the decoder accepts the field. False when none fits.
fn fill_missing<T: DeserializeOwned>(work: &mut Value, path: &str, name: &str) -> bool {
    let candidates = [
        Value::String(String::new()),
        Value::Object(Map::new()),
        Value::Array(Vec::new()),
        Value::from(0),
        Value::Bool(false),
    ];
    let child_path = if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    };
    for candidate in candidates {
        let Some(Value::Object(parent)) = get_path_mut(work, path) else {
            return false;
        };
        parent.insert(name.to_string(), candidate);
        match serde_path_to_error::deserialize::<_, T>(work.clone()) {
            Ok(_) => return true,
            Err(e) => {
                let same_place = e.path().to_string() == path
                    && missing_field(&e.inner().to_string()).as_deref() == Some(name);
                let inside = e.path().to_string().starts_with(&child_path);
                if !same_place && !inside {
                    return true;
                }
            }
        }
    }
    if let Some(Value::Object(parent)) = get_path_mut(work, path) {
        parent.remove(name);
    }
    false
}

fn get_path_mut<'v>(v: &'v mut Value, path: &str) -> Option<&'v mut Value> {
    let mut cur = v;
    for step in parse_path(path) {
        cur = match step {
            Step::Key(k) => cur.get_mut(k.as_str())?,
            Step::Index(i) => cur.get_mut(i)?,
        };
    }
    Some(cur)
}

/// Kubernetes accepts bare numbers for quantities (`cpu: 1`); `k8s-openapi`'s `Quantity` is a
/// string. Turns numbers inside quantity maps into strings.
fn normalize_quantities(v: &mut Value) {
    const QUANTITY_MAPS: &[&str] = &[
        "limits",
        "requests",
        "capacity",
        "allocatable",
        "overhead",
        "hard",
        "used",
    ];
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if QUANTITY_MAPS.contains(&k.as_str()) {
                    if let Value::Object(q) = child {
                        for qv in q.values_mut() {
                            if let Value::Number(n) = qv {
                                *qv = Value::String(n.to_string());
                            }
                        }
                        continue;
                    }
                }
                if k == "sizeLimit" {
                    if let Value::Number(n) = child {
                        *child = Value::String(n.to_string());
                        continue;
                    }
                }
                normalize_quantities(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_quantities),
        _ => {}
    }
}

/// Removes the value at a `serde_path_to_error` path (`spec.containers[0].ports`); false when
/// the path is empty or not found.
fn remove_path(v: &mut Value, path: &str) -> bool {
    let steps = parse_path(path);
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut cur = v;
    for step in parents {
        let next = match step {
            Step::Key(k) => cur.get_mut(k.as_str()),
            Step::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (last, cur) {
        (Step::Key(k), Value::Object(m)) => m.remove(k).is_some(),
        (Step::Index(i), Value::Array(a)) if *i < a.len() && !a[*i].is_null() => {
            // Keep indices stable for later paths: null out instead of removing.
            a[*i] = Value::Null;
            true
        }
        _ => false,
    }
}

enum Step {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                steps.push(Step::Key(rest[..open].to_string()));
            }
            rest = &rest[open..];
            while let Some(close) = rest.find(']') {
                match rest[1..close].parse() {
                    Ok(i) => steps.push(Step::Index(i)),
                    Err(_) => steps.push(Step::Key(rest[1..close].to_string())),
                }
                rest = &rest[close + 1..];
            }
        } else {
            steps.push(Step::Key(rest.to_string()));
        }
    }
    steps
}

fn walk(input: &Value, known: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(inp), Value::Object(kn)) => {
            for (k, v) in inp {
                if v.is_null() {
                    continue;
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                match kn.get(k) {
                    Some(kv) => walk(v, kv, path, out),
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(inp), Value::Array(kn)) => {
            for (i, (v, kv)) in inp.iter().zip(kn).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(v, kv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::by_kind;
    use serde_json::json;

    fn unknown(kind: &str, obj: Value) -> Vec<String> {
        unknown_fields(by_kind(kind).unwrap(), &obj)
    }

    #[test]
    fn valid_manifests_have_none() {
        assert!(unknown(
            "Deployment",
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "nginx-deployment", "labels": {"app": "nginx", "any/key": "v"},
                             "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "nginx"}},
                         "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                         "template": {"metadata": {"labels": {"app": "nginx"}, "creationTimestamp": null},
                                      "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2",
                                          "ports": [{"containerPort": 80}],
                                          "resources": {"limits": {"cpu": 1, "memory": "128Mi"}},
                                          "env": [{"name": "A", "value": "1"}]}],
                                          "nodeSelector": {"kubernetes.io/os": "linux"},
                                          "volumes": [{"name": "d", "emptyDir": {"sizeLimit": 1}}]}}},
                "status": {}})
        )
        .is_empty());
        assert!(unknown(
            "Service",
            json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80, "targetPort": "http"}],
                   "selector": {"app": "nginx"}}})
        )
        .is_empty());
        assert!(unknown(
            "Node",
            json!({"metadata": {"name": "n"},
            "status": {"capacity": {"cpu": 2, "pods": "110"}}})
        )
        .is_empty());
    }

    #[test]
    fn reports_paths() {
        assert_eq!(
            unknown(
                "Pod",
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nginx", "labelz": {}},
                    "spec": {"containers": [{"name": "a", "image": "x"},
                                            {"name": "nginx", "imagee": "nginx", "ports": [{"containerPort": 80, "hostport": 8}]}],
                             "restartpolicy": "Always"},
                    "extra": 1})
            ),
            [
                "extra",
                "metadata.labelz",
                "spec.containers[1].imagee",
                "spec.containers[1].ports[0].hostport",
                "spec.restartpolicy",
            ]
        );
        assert_eq!(
            unknown_field_message("spec.containers[0].imagee"),
            "unknown field \"spec.containers[0].imagee\""
        );
    }

    #[test]
    fn nulls_are_ignored() {
        assert!(unknown("Pod", json!({"metadata": {"name": "a", "creationTimestamp": null},
            "spec": {"containers": [{"name": "a", "image": "x", "resources": null}]}, "status": null})).is_empty());
        // an unknown key holding null is ignored as well (as Kubernetes does for nulls)
        assert!(unknown("Pod", json!({"spec": {"bogus": null, "containers": []}})).is_empty());
    }

    #[test]
    fn type_errors_do_not_hide_unknown_fields() {
        let report = check_fields(
            by_kind("Deployment").unwrap(),
            &json!({"metadata": {"name": "d"},
                    "spec": {"replicas": "three", "selectr": {},
                             "template": {"spec": {"containers": [{"name": "a", "image": "x",
                                 "ports": [{"containerPort": "eighty"}]}]}}}}),
        );
        assert_eq!(report.unknown, ["spec.selectr"]);
        let fields: Vec<_> = report
            .type_errors
            .iter()
            .map(|e| e.field.as_str())
            .collect();
        assert_eq!(
            fields,
            [
                "spec.replicas",
                "spec.template.spec.containers[0].ports[0].containerPort"
            ]
        );
        assert!(
            report.type_errors[0].message.contains("invalid type"),
            "{:?}",
            report.type_errors
        );
        // missing required fields (container name, slice endpoints) do not hide the rest
        let report = check_fields(
            by_kind("Pod").unwrap(),
            &json!({"spec": {"containers": [{"image": "x", "imagee": "y"}]}}),
        );
        assert_eq!(report.unknown, ["spec.containers[0].imagee"]);
        assert!(report.type_errors.is_empty(), "{:?}", report.type_errors);
        let report = check_fields(
            by_kind("EndpointSlice").unwrap(),
            &json!({"metadata": {"name": "e"}, "addressTyp": "IPv4"}),
        );
        assert_eq!(report.unknown, ["addressTyp"]);
        assert!(report.type_errors.is_empty(), "{:?}", report.type_errors);
        let report = check_fields(
            by_kind("Deployment").unwrap(),
            &json!({"metadata": {"name": "d"}, "spec": {"replica": 1}}),
        );
        assert_eq!(report.unknown, ["spec.replica"]);
        let not_object = check_fields(by_kind("Pod").unwrap(), &json!([1]));
        assert_eq!(not_object.type_errors.len(), 1);
    }

    #[test]
    fn other_kinds() {
        assert_eq!(
            unknown(
                "EndpointSlice",
                json!({"metadata": {"name": "e"}, "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": true, "fast": true}}]})
            ),
            ["endpoints[0].conditions.fast"]
        );
        assert_eq!(
            unknown(
                "Lease",
                json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a", "ttl": 3}})
            ),
            ["spec.ttl"]
        );
        assert_eq!(
            unknown(
                "Event",
                json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "nme": "x"}})
            ),
            ["involvedObject.nme"]
        );
        assert_eq!(
            unknown(
                "Binding",
                json!({"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n"}, "node": "n"})
            ),
            ["node"]
        );
        assert_eq!(
            unknown(
                "Namespace",
                json!({"metadata": {"name": "n"}, "spec": {"finalizers": ["kubernetes"], "x": 1}})
            ),
            ["spec.x"]
        );
        assert_eq!(
            unknown(
                "Endpoints",
                json!({"metadata": {"name": "n"}, "subset": []})
            ),
            ["subset"]
        );
        assert_eq!(
            unknown(
                "ReplicaSet",
                json!({"metadata": {"name": "n"}, "spec": {"replica": 1}})
            ),
            ["spec.replica"]
        );
    }
}
