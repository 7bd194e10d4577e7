//! The pod spec (`core/v1 PodSpec`), shared by Pods and the pod templates of workloads:
//! its defaults, validation and strategic-merge keys.

use bpfk_common::quantity::{Quantity, QUANTITY_REGEX_MSG};

use crate::kinds::prelude::*;

const POD_SPEC_LISTS: &[(&str, ListStrategy)] = &[
    ("containers", ListStrategy::MergeByKey("name")),
    ("initContainers", ListStrategy::MergeByKey("name")),
    ("ephemeralContainers", ListStrategy::MergeByKey("name")),
    ("volumes", ListStrategy::MergeByKey("name")),
    ("imagePullSecrets", ListStrategy::MergeByKey("name")),
    ("hostAliases", ListStrategy::MergeByKey("ip")),
    (
        "topologySpreadConstraints",
        ListStrategy::MergeByKey("topologyKey"),
    ),
    ("resourceClaims", ListStrategy::MergeByKey("name")),
    ("schedulingGates", ListStrategy::MergeByKey("name")),
];

const CONTAINER_LISTS: &[(&str, ListStrategy)] = &[
    ("ports", ListStrategy::MergeByKey("containerPort")),
    ("env", ListStrategy::MergeByKey("name")),
    ("volumeMounts", ListStrategy::MergeByKey("mountPath")),
    ("volumeDevices", ListStrategy::MergeByKey("devicePath")),
];

/// The strategic-merge strategy of a list at `rest`, a path inside a pod spec
/// (`containers`, `containers.ports`).
pub(crate) fn pod_spec_list_strategy(rest: &str) -> ListStrategy {
    let lookup = |table: &[(&str, ListStrategy)], field: &str| {
        table
            .iter()
            .find(|(name, _)| *name == field)
            .map(|(_, s)| *s)
            .unwrap_or(ListStrategy::Replace)
    };
    match rest.split('.').collect::<Vec<_>>().as_slice() {
        [field] => lookup(POD_SPEC_LISTS, field),
        ["containers" | "initContainers" | "ephemeralContainers", field] => {
            lookup(CONTAINER_LISTS, field)
        }
        _ => ListStrategy::Replace,
    }
}

/// The QoS class of a pod spec, as Kubernetes computes it from cpu and memory requests and
/// limits: `Guaranteed` (every container has equal requests and limits for both),
/// `BestEffort` (none has any), else `Burstable`.
pub fn pod_qos_class(spec: &Map<String, Value>) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten()
        .collect();
    let amount = |c: &Value, kind: &str, res: &str| {
        c.pointer(&format!("/resources/{kind}/{res}"))
            .and_then(quantity_of)
            .filter(|q| q.milli() > 0)
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        for res in ["cpu", "memory"] {
            let limit = amount(c, "limits", res);
            // a missing request defaults to the limit
            let request = amount(c, "requests", res).or(limit);
            any |= limit.is_some() || request.is_some();
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Defaults of a pod spec (also used for the templates of Deployments and ReplicaSets).
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    for list in ["initContainers", "containers"] {
        each_item(spec, list, default_container);
    }
}

pub(crate) fn default_container(c: &mut Map<String, Value>) {
    let policy = match c.get("image").and_then(Value::as_str) {
        Some(image) if image_tag(image).is_some_and(|t| t != "latest") => "IfNotPresent",
        // Kubernetes: a digest pins the image, so it is not pulled every time.
        Some(image) if image.contains('@') => "IfNotPresent",
        _ => "Always",
    };
    set_default(c, "imagePullPolicy", json!(policy));
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    set_default(c, "resources", json!({}));
    each_item(c, "ports", |p| set_default(p, "protocol", json!("TCP")));
}

/// The tag of an image reference (`nginx:1.14.2` → `1.14.2`, `localhost:5000/nginx` → none).
pub(crate) fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split_once(':').map(|(_, tag)| tag)
}

/// Validates a pod spec at `path` (`spec` for a Pod, `spec.template.spec` for templates).
pub fn validate_pod_spec(spec: &Value, path: &Path, errs: &mut Vec<FieldError>) {
    if !spec.is_object() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let volumes = validate_volumes(spec, &path.child("volumes"), errs);
    let containers = arr(spec, "containers");
    if containers.is_empty() {
        errs.push(FieldError::required(&path.child("containers"), ""));
    }
    let mut seen_names = BTreeSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in arr(spec, list).iter().enumerate() {
            validate_container(
                c,
                &path.child(list).index(i),
                &volumes,
                &mut seen_names,
                errs,
            );
        }
    }
    check_enum(
        errs,
        path,
        spec,
        "restartPolicy",
        &["Always", "OnFailure", "Never"],
    );
    check_enum(
        errs,
        path,
        spec,
        "dnsPolicy",
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    validate_pod_scalars(spec, path, errs);
    validate_labels(spec.get("nodeSelector"), &path.child("nodeSelector"), errs);
    validate_tolerations(spec, path, errs);
}


/// The grace period, active deadline and node name of a pod spec.
fn validate_pod_scalars(spec: &Value, path: &Path, errs: &mut Errors) {
    if let Some(n) = int(spec, "terminationGracePeriodSeconds").filter(|n| *n < 0) {
        errs.push(FieldError::invalid(
            &path.child("terminationGracePeriodSeconds"),
            n.into(),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(n) = int(spec, "activeDeadlineSeconds").filter(|n| *n <= 0) {
        errs.push(FieldError::invalid(
            &path.child("activeDeadlineSeconds"),
            n.into(),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(node) = s(spec, "nodeName").filter(|n| !n.is_empty()) {
        push_msgs(
            errs,
            &path.child("nodeName"),
            node,
            names::dns1123_subdomain(node),
        );
    }
}
/// `tolerations`: known operators and effects; `Exists` has no value.
fn validate_tolerations(spec: &Value, path: &Path, errs: &mut Errors) {
    for (i, t) in arr(spec, "tolerations").iter().enumerate() {
        let tp = path.child("tolerations").index(i);
        check_enum(errs, &tp, t, "operator", &["Equal", "Exists"]);
        check_enum(
            errs,
            &tp,
            t,
            "effect",
            &["NoExecute", "NoSchedule", "PreferNoSchedule"],
        );
        if s(t, "operator") == Some("Exists") && s(t, "value").is_some_and(|v| !v.is_empty()) {
            errs.push(FieldError::invalid(
                &tp.child("operator"),
                Value::String("Exists".into()),
                "value must be empty when `operator` is 'Exists'",
            ));
        }
    }
}

pub(crate) fn validate_volumes(spec: &Value, path: &Path, errs: &mut Errors) -> BTreeSet<String> {
    let mut names_seen = BTreeSet::new();
    for (i, v) in arr(spec, "volumes").iter().enumerate() {
        let name_path = path.index(i).child("name");
        match s(v, "name").filter(|n| !n.is_empty()) {
            None => errs.push(FieldError::required(&name_path, "")),
            Some(n) => {
                push_msgs(errs, &name_path, n, names::dns1123_label(n));
                if !names_seen.insert(n.to_string()) {
                    errs.push(FieldError::duplicate(&name_path, Value::String(n.into())));
                }
            }
        }
    }
    names_seen
}

pub(crate) fn validate_container(
    c: &Value,
    path: &Path,
    volumes: &BTreeSet<String>,
    seen_names: &mut BTreeSet<String>,
    errs: &mut Errors,
) {
    match s(c, "name").filter(|n| !n.is_empty()) {
        None => errs.push(FieldError::required(&path.child("name"), "")),
        Some(name) => {
            push_msgs(errs, &path.child("name"), name, names::dns1123_label(name));
            if !seen_names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(
                    &path.child("name"),
                    Value::String(name.into()),
                ));
            }
        }
    }
    match s(c, "image") {
        None | Some("") => errs.push(FieldError::required(&path.child("image"), "")),
        Some(image) if image.trim() != image => errs.push(FieldError::invalid(
            &path.child("image"),
            Value::String(image.into()),
            "must not have leading or trailing whitespace",
        )),
        Some(_) => {}
    }
    check_enum(
        errs,
        path,
        c,
        "imagePullPolicy",
        &["Always", "IfNotPresent", "Never"],
    );
    check_enum(
        errs,
        path,
        c,
        "terminationMessagePolicy",
        &["File", "FallbackToLogsOnError"],
    );
    validate_container_ports(c, path, errs);
    validate_env_names(c, path, errs);
    validate_volume_mounts(c, path, volumes, errs);
    validate_resources(
        c.get("resources").unwrap_or(&Value::Null),
        &path.child("resources"),
        errs,
    );
}

/// A container's `ports`: valid numbers, a known protocol, unique IANA service names.
fn validate_container_ports(c: &Value, path: &Path, errs: &mut Errors) {
    let mut port_names = BTreeSet::new();
    for (i, p) in arr(c, "ports").iter().enumerate() {
        let pp = path.child("ports").index(i);
        validate_port_number(errs, &pp, p, "containerPort", true);
        if int(p, "hostPort") != Some(0) {
            validate_port_number(errs, &pp, p, "hostPort", false);
        }
        check_enum(errs, &pp, p, "protocol", PROTOCOLS);
        if let Some(name) = s(p, "name").filter(|n| !n.is_empty()) {
            push_msgs(errs, &pp.child("name"), name, names::iana_svc_name(name));
            if !port_names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(
                    &pp.child("name"),
                    Value::String(name.into()),
                ));
            }
        }
    }
}

/// A container's `env` names: present, printable ASCII without `=`.
fn validate_env_names(c: &Value, path: &Path, errs: &mut Errors) {
    for (i, e) in arr(c, "env").iter().enumerate() {
        let ep = path.child("env").index(i).child("name");
        match s(e, "name").filter(|n| !n.is_empty()) {
            None => errs.push(FieldError::required(&ep, "")),
            Some(n) if n.contains('=') || !n.bytes().all(|b| (32..127).contains(&b)) => {
                errs.push(FieldError::invalid(
                    &ep,
                    Value::String(n.into()),
                    "a valid environment variable name must consist only of printable ASCII characters other than '='",
                ))
            }
            Some(_) => {}
        }
    }
}

/// A container's `volumeMounts`: of a volume the pod has, with a mount path.
fn validate_volume_mounts(c: &Value, path: &Path, volumes: &BTreeSet<String>, errs: &mut Errors) {
    for (i, m) in arr(c, "volumeMounts").iter().enumerate() {
        let mp = path.child("volumeMounts").index(i);
        match s(m, "name").filter(|n| !n.is_empty()) {
            None => errs.push(FieldError::required(&mp.child("name"), "")),
            Some(n) if !volumes.contains(n) => errs.push(FieldError::not_found(
                &mp.child("name"),
                Value::String(n.into()),
            )),
            Some(_) => {}
        }
        if s(m, "mountPath").is_none_or(str::is_empty) {
            errs.push(FieldError::required(&mp.child("mountPath"), ""));
        }
    }
}

pub(crate) fn validate_resources(r: &Value, path: &Path, errs: &mut Errors) {
    let mut parsed: BTreeMap<(&str, String), Quantity> = BTreeMap::new();
    for kind in ["limits", "requests"] {
        let Some(map) = r.get(kind).and_then(Value::as_object) else {
            continue;
        };
        for (name, q) in map {
            let qp = path.child(kind).key(name);
            match quantity_of(q) {
                None => errs.push(FieldError::invalid(&qp, q.clone(), QUANTITY_REGEX_MSG)),
                Some(v) if v.milli() < 0 => errs.push(FieldError::invalid(
                    &qp,
                    q.clone(),
                    "must be greater than or equal to 0",
                )),
                Some(v) => {
                    parsed.insert((kind, name.clone()), v);
                }
            }
        }
    }
    for ((kind, name), req) in &parsed {
        if *kind != "requests" {
            continue;
        }
        if let Some(limit) = parsed.get(&("limits", name.clone())) {
            if req > limit {
                let raw = r
                    .pointer(&format!("/limits/{name}"))
                    .map(go_plain)
                    .unwrap_or_default();
                let req_raw = r
                    .pointer(&format!("/requests/{name}"))
                    .cloned()
                    .unwrap_or(Value::Null);
                errs.push(FieldError::invalid(
                    &path.child("requests").key(name),
                    Value::String(go_plain(&req_raw)),
                    format!("must be less than or equal to {name} limit of {raw}"),
                ));
            }
        }
    }
}

/// A quantity rendered without quotes (`1`, `500m`).
pub(crate) fn go_plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON quantity: a string, or a number (YAML `cpu: 1`).
fn quantity_of(v: &Value) -> Option<Quantity> {
    match v {
        Value::String(s) => Quantity::parse(s).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::kinds::test_support::*;
    use serde_json::json;

    #[test]
    fn pod_containers() {
        assert_eq!(
            check("Pod", pod(json!({"containers": []}))),
            ["spec.containers: Required value"]
        );
        assert_eq!(
            check("Pod", pod(json!({}))),
            ["spec.containers: Required value"]
        );
        assert_eq!(
            fields(
                "Pod",
                pod(json!({"containers": [
                    {"image": "x"},
                    {"name": "Bad", "image": "x"},
                    {"name": "a", "image": ""},
                    {"name": "a", "image": "x"}
                ]}))
            ),
            [
                ("spec.containers[0].name".to_string(), "FieldValueRequired"),
                ("spec.containers[1].name".to_string(), "FieldValueInvalid"),
                ("spec.containers[2].image".to_string(), "FieldValueRequired"),
                ("spec.containers[3].name".to_string(), "FieldValueDuplicate"),
            ]
        );
        assert_eq!(
            check("Pod", pod(json!({"containers": [{"name": "nginx"}]}))),
            ["spec.containers[0].image: Required value"]
        );
        // init container names share the namespace of container names
        assert_eq!(
            fields(
                "Pod",
                pod(json!({"initContainers": [{"name": "a", "image": "x"}],
                                     "containers": [{"name": "a", "image": "x"}]}))
            ),
            [("spec.containers[0].name".to_string(), "FieldValueDuplicate")]
        );
    }

    #[test]
    fn pod_ports_and_policies() {
        let errs = check(
            "Pod",
            pod(json!({"restartPolicy": "Sometimes", "containers": [{
            "name": "a", "image": "x", "imagePullPolicy": "Maybe",
            "ports": [{"containerPort": 70000}, {"containerPort": 80, "hostPort": 0},
                      {"containerPort": 81, "hostPort": -1, "protocol": "tcp"},
                      {"containerPort": 0}, {"name": "http", "containerPort": 82},
                      {"name": "http", "containerPort": 83}]}]})),
        );
        assert_eq!(
            errs,
            [
                "spec.containers[0].imagePullPolicy: Unsupported value: \"Maybe\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[2].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[2].protocol: Unsupported value: \"tcp\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.containers[0].ports[3].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[5].name: Duplicate value: \"http\"",
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ]
        );
    }

    #[test]
    fn pod_resources_env_volumes() {
        let errs = check(
            "Pod",
            pod(
                json!({"volumes": [{"name": "data", "emptyDir": {}}, {"name": "data"}],
            "containers": [{"name": "a", "image": "x",
            "env": [{"name": ""}, {"name": "A=B"}, {"name": "OK", "value": "1"}],
            "volumeMounts": [{"name": "data", "mountPath": "/d"}, {"name": "nope", "mountPath": ""}],
            "resources": {"limits": {"cpu": "500m", "memory": "1Gi"},
                          "requests": {"cpu": "1", "memory": "bogus"}}}]}),
            ),
        );
        assert_eq!(
            errs,
            [
                "spec.volumes[1].name: Duplicate value: \"data\"",
                "spec.containers[0].env[0].name: Required value",
                "spec.containers[0].env[1].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                "spec.containers[0].volumeMounts[1].name: Not found: \"nope\"",
                "spec.containers[0].volumeMounts[1].mountPath: Required value",
                "spec.containers[0].resources.requests[memory]: Invalid value: \"bogus\": must match the regex ^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$",
                "spec.containers[0].resources.requests[cpu]: Invalid value: \"1\": must be less than or equal to cpu limit of 500m",
            ]
        );
        assert!(check(
            "Pod",
            pod(json!({"containers": [{"name": "a", "image": "x",
            "resources": {"limits": {"cpu": 2}, "requests": {"cpu": "1500m"}}}]}))
        )
        .is_empty());
    }
}
