//! What the kinds' unit tests share: validation of defaulted objects, and sample objects.

use serde_json::{json, Value};

use crate::defaults::apply_defaults;
use crate::registry::by_kind;
use crate::validation::validate_create;

pub(crate) fn check(kind: &str, mut obj: Value) -> Vec<String> {
    let res = by_kind(kind).unwrap();
    apply_defaults(res, &mut obj);
    validate_create(res, &obj)
        .iter()
        .map(|e| e.to_string())
        .collect()
}

pub(crate) fn fields(kind: &str, obj: Value) -> Vec<(String, &'static str)> {
    let res = by_kind(kind).unwrap();
    let mut obj = obj;
    apply_defaults(res, &mut obj);
    validate_create(res, &obj)
        .into_iter()
        .map(|e| (e.field.clone(), e.reason()))
        .collect()
}

pub(crate) fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "nginx", "namespace": "default"}, "spec": spec})
}

pub(crate) fn nginx_deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "nginx-deployment", "namespace": "default",
                        "labels": {"app": "nginx"}},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "nginx"}},
                    "template": {"metadata": {"labels": {"app": "nginx"}},
                                 "spec": {"containers": [{"name": "nginx",
                                    "image": "nginx:1.14.2",
                                    "ports": [{"containerPort": 80}]}]}}}})
}
