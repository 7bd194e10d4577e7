//! What Deployments and ReplicaSets share: a pod template, a selector, replica counts.

use crate::kinds::prelude::*;
use crate::kinds::core::pod_spec::{default_pod_spec, validate_pod_spec};

/// Strategic-merge strategy of the lists of a workload's pod template.
pub(crate) fn template_list_strategy(path: &str) -> Option<ListStrategy> {
    path.strip_prefix("spec.template.spec.")
        .map(crate::kinds::core::pod_spec::pod_spec_list_strategy)
}

/// `spec.selector` of a workload may not change.
pub(crate) fn validate_selector_unchanged(new: &Value, old: &Value, errs: &mut Errors) {
    let (n, o) = (spec_of(new).get("selector"), spec_of(old).get("selector"));
    check_immutable("spec.selector", n, o, errs);
}

/// The replica counts of a workload's status are never negative.
pub(crate) fn validate_replica_counts(status: &Value, errs: &mut Errors) {
    let path = Path::new("status");
    for key in [
        "replicas",
        "readyReplicas",
        "availableReplicas",
        "updatedReplicas",
        "unavailableReplicas",
        "fullyLabeledReplicas",
        "observedGeneration",
    ] {
        if let Some(n) = int(status, key).filter(|n| *n < 0) {
            errs.push(FieldError::invalid(
                &path.child(key),
                n.into(),
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// What the server resets on create: a workload's status is the controller's.
pub(crate) fn drop_status(obj: &mut Map<String, Value>) {
    obj.remove("status");
}

pub(crate) fn default_template(spec: &mut Map<String, Value>) {
    let template = spec.entry("template").or_insert(Value::Null);
    if template.is_null() {
        return;
    }
    if let Some(pod_spec) = child_object(template, "spec") {
        default_pod_spec(pod_spec);
    }
}

pub(crate) fn validate_workload_spec(spec: &Value, path: &Path, deployment: bool, errs: &mut Errors) {
    if !spec.is_object() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    for key in ["replicas", "minReadySeconds", "revisionHistoryLimit"] {
        if let Some(n) = int(spec, key).filter(|n| *n < 0) {
            errs.push(FieldError::invalid(
                &path.child(key),
                n.into(),
                "must be greater than or equal to 0",
            ));
        }
    }
    let what = if deployment { "deployment" } else { "replicaset" };
    validate_workload_selector(spec, path, what, errs);
    validate_template(spec, path, errs);
    if deployment {
        validate_strategy(spec, path, errs);
        if let Some(pd) = int(spec, "progressDeadlineSeconds") {
            let min_ready = int(spec, "minReadySeconds").unwrap_or(0);
            if pd <= min_ready {
                errs.push(FieldError::invalid(
                    &path.child("progressDeadlineSeconds"),
                    pd.into(),
                    "must be greater than minReadySeconds",
                ));
            }
        }
    }
}

/// `spec.selector`: required, not empty, a valid label selector.
fn validate_workload_selector(spec: &Value, path: &Path, what: &str, errs: &mut Errors) {
    let sel_path = path.child("selector");
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => errs.push(FieldError::required(&sel_path, "")),
        Some(sel) => {
            if is_empty_selector(sel) {
                errs.push(FieldError::invalid(
                    &sel_path,
                    sel.clone(),
                    format!("empty selector is invalid for {what}"),
                ));
            }
            validate_label_selector(sel, &sel_path, errs);
        }
    }
}

/// `spec.template`: labels the selector matches, a valid pod spec restarting `Always`.
fn validate_template(spec: &Value, path: &Path, errs: &mut Errors) {
    let tpl_path = path.child("template");
    let labels_path = tpl_path.child("metadata").child("labels");
    let template = spec.get("template").unwrap_or(&Value::Null);
    let tpl_labels = template.pointer("/metadata/labels");
    validate_labels(tpl_labels, &labels_path, errs);
    let selector = spec
        .get("selector")
        .filter(|s| !s.is_null() && !is_empty_selector(s));
    if let Some(Ok(matcher)) = selector.map(crate::selectors::Selector::from_value) {
        let labels_value = tpl_labels.cloned().unwrap_or(Value::Object(Map::new()));
        let empty = Map::new();
        let labels = labels_value.as_object().unwrap_or(&empty);
        if !matcher.matches(labels) {
            errs.push(FieldError::invalid(
                &labels_path,
                labels_value.clone(),
                "`selector` does not match template `labels`",
            ));
        }
    }
    let pod_spec_path = tpl_path.child("spec");
    let pod_spec = template.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(pod_spec, &pod_spec_path, errs);
    if let Some(rp) = s(pod_spec, "restartPolicy").filter(|r| *r != "Always") {
        errs.push(FieldError::not_supported(
            &pod_spec_path.child("restartPolicy"),
            Value::String(rp.into()),
            &["Always"],
        ));
    }
}

/// An int-or-percent value: `Ok((n, is_percent))`, or the message why it is invalid.
pub(crate) fn int_or_percent(v: &Value) -> Result<(i64, bool), &'static str> {
    const PERCENT_MSG: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";
    match v {
        Value::Number(n) => n.as_i64().map(|n| (n, false)).ok_or("must be an integer"),
        Value::String(s) => s
            .strip_suffix('%')
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
            .map(|n| (n, true))
            .ok_or(PERCENT_MSG),
        _ => Err("must be an integer or percentage (e.g '5%')"),
    }
}

pub(crate) fn validate_strategy(spec: &Value, path: &Path, errs: &mut Errors) {
    let Some(strategy) = spec.get("strategy").filter(|s| !s.is_null()) else {
        return;
    };
    let sp = path.child("strategy");
    let ty = s(strategy, "type").unwrap_or("RollingUpdate");
    check_enum(errs, &sp, strategy, "type", &["Recreate", "RollingUpdate"]);
    let Some(ru) = strategy.get("rollingUpdate").filter(|r| !r.is_null()) else {
        return;
    };
    let rp = sp.child("rollingUpdate");
    if ty == "Recreate" {
        errs.push(FieldError::forbidden(
            &rp,
            "may not be specified when strategy `type` is 'Recreate'",
        ));
        return;
    }
    let mut values = BTreeMap::new();
    for key in ["maxUnavailable", "maxSurge"] {
        let Some(v) = ru.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        match int_or_percent(v) {
            Err(m) => errs.push(FieldError::invalid(&rp.child(key), v.clone(), m)),
            Ok((n, _)) if n < 0 => errs.push(FieldError::invalid(
                &rp.child(key),
                v.clone(),
                "must be greater than or equal to 0",
            )),
            Ok((n, true)) if key == "maxUnavailable" && n > 100 => errs.push(FieldError::invalid(
                &rp.child(key),
                v.clone(),
                "must not be greater than 100%",
            )),
            Ok((n, _)) => {
                values.insert(key, n);
            }
        }
    }
    if values.get("maxUnavailable") == Some(&0) && values.get("maxSurge") == Some(&0) {
        errs.push(FieldError::invalid(
            &rp.child("maxUnavailable"),
            ru.get("maxUnavailable").cloned().unwrap_or(Value::Null),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
}

pub(crate) fn template_containers(spec: &Value) -> (String, String) {
    let containers = list_at(spec, "/template/spec/containers");
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, "/image")).collect();
    (names.join(","), images.join(","))
}

#[cfg(test)]
mod tests {
    use crate::kinds::test_support::*;
    use serde_json::json;

    #[test]
    fn deployment_selector_mismatch() {
        let mut d = nginx_deployment();
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "web"});
        assert_eq!(
            check("Deployment", d),
            ["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"]
        );
        let mut d = nginx_deployment();
        d["spec"].as_object_mut().unwrap().remove("selector");
        assert_eq!(check("Deployment", d), ["spec.selector: Required value"]);
        let mut d = nginx_deployment();
        d["spec"]["selector"] = json!({});
        assert_eq!(
            fields("Deployment", d),
            [("spec.selector".to_string(), "FieldValueInvalid")]
        );
        let mut d = nginx_deployment();
        d["spec"]["selector"] =
            json!({"matchExpressions": [{"key": "app", "operator": "Is", "values": ["nginx"]}]});
        assert_eq!(
            fields("Deployment", d),
            [(
                "spec.selector.matchExpressions[0].operator".to_string(),
                "FieldValueInvalid"
            )]
        );
    }

    #[test]
    fn deployment_spec_rules() {
        let mut d = nginx_deployment();
        d["spec"]["replicas"] = json!(-1);
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}});
        assert_eq!(
            check("Deployment", d),
            [
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.spec.containers[0].image: Required value",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0",
            ]
        );
        let mut d = nginx_deployment();
        d["spec"]["strategy"] =
            json!({"type": "Blue", "rollingUpdate": {"maxUnavailable": "x%", "maxSurge": -1}});
        assert_eq!(
            fields("Deployment", d),
            [
                ("spec.strategy.type".to_string(), "FieldValueNotSupported"),
                (
                    "spec.strategy.rollingUpdate.maxUnavailable".to_string(),
                    "FieldValueInvalid"
                ),
                (
                    "spec.strategy.rollingUpdate.maxSurge".to_string(),
                    "FieldValueInvalid"
                ),
            ]
        );
        let mut d = nginx_deployment();
        d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}});
        assert_eq!(
            fields("Deployment", d),
            [(
                "spec.strategy.rollingUpdate".to_string(),
                "FieldValueForbidden"
            )]
        );
        let mut d = nginx_deployment();
        d["spec"]["strategy"] = json!({"rollingUpdate": {"maxUnavailable": "150%"}});
        assert_eq!(
            check("Deployment", d),
            ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"]
        );
        let mut d = nginx_deployment();
        d["spec"]["minReadySeconds"] = json!(700);
        assert_eq!(
            fields("Deployment", d),
            [(
                "spec.progressDeadlineSeconds".to_string(),
                "FieldValueInvalid"
            )]
        );
    }

    #[test]
    fn replica_set_rules() {
        let mut rs = nginx_deployment();
        rs["kind"] = json!("ReplicaSet");
        rs["spec"]["template"]["metadata"]["labels"] = json!({});
        assert_eq!(
            fields("ReplicaSet", rs),
            [(
                "spec.template.metadata.labels".to_string(),
                "FieldValueInvalid"
            )]
        );
    }
}
