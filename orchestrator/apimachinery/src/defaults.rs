//! Kubernetes defaulting for the served kinds.
//!
//! [`apply_defaults`] fills in what Kubernetes fills in when it decodes an object. It only ever
//! adds missing fields, so applying it twice gives the same result as applying it once (which
//! `kubectl apply` relies on to report `unchanged`). Values the server allocates (a Service's
//! `clusterIP`, uid, timestamps) are not defaults and are left to the caller.

use serde_json::{json, Map, Value};

use crate::registry::ResourceInfo;

/// Applies Kubernetes' defaults for `res` to `obj` in place. Objects that are not JSON objects
/// are left alone (validation reports them).
pub fn apply_defaults(res: &ResourceInfo, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    match (res.group, res.kind) {
        ("", "Pod") => default_pod(obj),
        ("", "Service") => default_service(obj),
        ("", "Namespace") => default_namespace(obj),
        ("", "Endpoints") => default_endpoints(obj),
        ("discovery.k8s.io", "EndpointSlice") => default_endpoint_slice(obj),
        ("apps", "Deployment") => default_deployment(obj),
        ("apps", "ReplicaSet") => default_replica_set(obj),
        _ => {}
    }
}

/// Returns the object at `obj[key]`, creating an empty object there when it is missing or
/// null. `None` when `obj` is not an object or `obj[key]` holds a non-object.
fn child_object<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let map = obj.as_object_mut()?;
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// Sets `map[key] = value` when the key is absent or null.
fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = value;
    }
}

/// Calls `f` on every object element of the array at `map[key]`.
fn each_item(map: &mut Map<String, Value>, key: &str, mut f: impl FnMut(&mut Map<String, Value>)) {
    if let Some(Value::Array(items)) = map.get_mut(key) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            f(item);
        }
    }
}

fn default_pod(obj: &mut Value) {
    let mut qos = "BestEffort";
    if let Some(spec) = child_object(obj, "spec") {
        default_pod_spec(spec);
        // What Kubernetes' Priority admission sets for a pod without a priority class.
        if spec.get("priorityClassName").is_none_or(Value::is_null) {
            set_default(spec, "priority", json!(0));
            set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        qos = pod_qos_class(spec);
    }
    if let Some(status) = child_object(obj, "status") {
        set_default(status, "phase", json!("Pending"));
        set_default(status, "qosClass", json!(qos));
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
            .and_then(crate::quantity::parse_value)
            .filter(|q| *q > 0.0)
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

fn default_container(c: &mut Map<String, Value>) {
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
fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split_once(':').map(|(_, tag)| tag)
}

fn default_service(obj: &mut Value) {
    let Some(spec) = child_object(obj, "spec") else {
        return;
    };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    each_item(spec, "ports", |p| {
        set_default(p, "protocol", json!("TCP"));
        if let Some(port) = p.get("port").cloned() {
            set_default(p, "targetPort", port);
        }
    });
    // Kubernetes keeps clusterIPs[0] == clusterIP; the allocated address is mirrored here.
    if let Some(ip) = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty())
    {
        let ip = ip.to_string();
        set_default(spec, "clusterIPs", json!([ip]));
    }
    if ty != "ExternalName" {
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if let Some(status) = child_object(obj, "status") {
        set_default(status, "loadBalancer", json!({}));
    }
}

fn default_namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let (Some(name), Some(meta)) = (name, child_object(obj, "metadata")) {
        let labels = meta.entry("labels").or_insert(Value::Null);
        if labels.is_null() {
            *labels = json!({});
        }
        if let Some(labels) = labels.as_object_mut() {
            // Kubernetes always sets this label to the namespace's name.
            labels.insert("kubernetes.io/metadata.name".to_string(), json!(name));
        }
    }
    if let Some(spec) = child_object(obj, "spec") {
        set_default(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = child_object(obj, "status") {
        set_default(status, "phase", json!("Active"));
    }
}

fn default_endpoints(obj: &mut Value) {
    if let Some(Value::Array(subsets)) = obj.get_mut("subsets") {
        for subset in subsets.iter_mut().filter_map(Value::as_object_mut) {
            each_item(subset, "ports", |p| {
                set_default(p, "protocol", json!("TCP"))
            });
        }
    }
}

fn default_endpoint_slice(obj: &mut Value) {
    if let Some(map) = obj.as_object_mut() {
        each_item(map, "ports", |p| {
            set_default(p, "protocol", json!("TCP"));
            set_default(p, "name", json!(""));
        });
    }
}

fn default_template(spec: &mut Map<String, Value>) {
    let template = spec.entry("template").or_insert(Value::Null);
    if template.is_null() {
        return;
    }
    if let Some(pod_spec) = child_object(template, "spec") {
        default_pod_spec(pod_spec);
    }
}

fn default_deployment(obj: &mut Value) {
    let Some(spec) = child_object(obj, "spec") else {
        return;
    };
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    if let Some(strategy) = map_child(spec, "strategy") {
        set_default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type") == Some(&json!("RollingUpdate")) {
            if let Some(ru) = map_child(strategy, "rollingUpdate") {
                set_default(ru, "maxUnavailable", json!("25%"));
                set_default(ru, "maxSurge", json!("25%"));
            }
        }
    }
    default_template(spec);
}

fn default_replica_set(obj: &mut Value) {
    let Some(spec) = child_object(obj, "spec") else {
        return;
    };
    set_default(spec, "replicas", json!(1));
    default_template(spec);
}

fn map_child<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::by_kind;

    fn defaulted(kind: &str, mut obj: Value) -> Value {
        let res = by_kind(kind).unwrap();
        apply_defaults(res, &mut obj);
        let once = obj.clone();
        apply_defaults(res, &mut obj);
        assert_eq!(obj, once, "defaulting {kind} is not idempotent");
        obj
    }

    fn nginx_pod_spec() -> Value {
        json!({"containers": [{"name": "nginx", "image": "nginx:1.14.2",
                               "ports": [{"containerPort": 80}]}]})
    }

    #[test]
    fn pod_defaults() {
        let pod = defaulted(
            "Pod",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nginx"},
                   "spec": nginx_pod_spec()}),
        );
        assert_eq!(
            pod["spec"],
            json!({
                "containers": [{"name": "nginx", "image": "nginx:1.14.2",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "imagePullPolicy": "IfNotPresent",
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File", "resources": {}}],
                "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30,
                "securityContext": {}, "enableServiceLinks": true,
                "priority": 0, "preemptionPolicy": "PreemptLowerPriority"
            })
        );
        assert_eq!(
            pod["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
        assert_eq!(pod["spec"]["priority"], 0);
        assert_eq!(pod["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    }

    #[test]
    fn qos_classes() {
        let qos = |resources: Value| {
            let pod = defaulted(
                "Pod",
                json!({"spec": {"containers": [{"name": "a", "image": "x", "resources": resources}]}}),
            );
            pod["status"]["qosClass"].as_str().unwrap().to_string()
        };
        assert_eq!(qos(json!({})), "BestEffort");
        assert_eq!(
            qos(json!({"limits": {"cpu": "1", "memory": "1Gi"}})),
            "Guaranteed"
        );
        assert_eq!(
            qos(
                json!({"limits": {"cpu": 1, "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}})
            ),
            "Guaranteed"
        );
        assert_eq!(qos(json!({"requests": {"cpu": "100m"}})), "Burstable");
        assert_eq!(
            qos(json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})),
            "Burstable"
        );
        // templates get no admission-time fields
        let d = defaulted(
            "Deployment",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}}),
        );
        assert!(d["spec"]["template"]["spec"].get("priority").is_none());
    }

    #[test]
    fn pod_keeps_given_values() {
        let pod = defaulted(
            "Pod",
            json!({"spec": {"restartPolicy": "Never", "containers": [
                {"name": "a", "image": "busybox", "imagePullPolicy": "Never"}]},
                "status": {"phase": "Running"}}),
        );
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(pod["status"]["phase"], "Running");
    }

    #[test]
    fn image_pull_policy_follows_tag() {
        for (image, policy) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.14.2", "IfNotPresent"),
            ("localhost:5000/nginx", "Always"),
            ("localhost:5000/nginx:1.0", "IfNotPresent"),
            ("nginx@sha256:abcd", "IfNotPresent"),
        ] {
            let pod = defaulted(
                "Pod",
                json!({"spec": {"containers": [{"name": "a", "image": image}]}}),
            );
            assert_eq!(
                pod["spec"]["containers"][0]["imagePullPolicy"], policy,
                "{image}"
            );
        }
    }

    #[test]
    fn service_defaults() {
        let svc = defaulted(
            "Service",
            json!({"metadata": {"name": "web"},
                   "spec": {"selector": {"app": "nginx"}, "ports": [{"port": 80}]}}),
        );
        assert_eq!(
            svc["spec"],
            json!({"selector": {"app": "nginx"},
                   "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                   "type": "ClusterIP", "sessionAffinity": "None",
                   "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
                   "internalTrafficPolicy": "Cluster"})
        );
        assert!(svc["spec"].get("clusterIP").is_none());
        assert!(svc["spec"].get("clusterIPs").is_none());
        let allocated = defaulted(
            "Service",
            json!({"spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}}),
        );
        assert_eq!(allocated["spec"]["clusterIPs"], json!(["10.96.0.10"]));
        let headless = defaulted("Service", json!({"spec": {"clusterIP": "None"}}));
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        let np = defaulted(
            "Service",
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": "http"}]}}),
        );
        assert_eq!(np["spec"]["ports"][0]["targetPort"], "http");
        assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
        let ext = defaulted(
            "Service",
            json!({"spec": {"type": "ExternalName", "externalName": "example.test"}}),
        );
        assert!(ext["spec"].get("ipFamilies").is_none());
    }

    #[test]
    fn deployment_defaults() {
        let d = defaulted(
            "Deployment",
            json!({"metadata": {"name": "nginx-deployment", "labels": {"app": "nginx"}},
                   "spec": {"selector": {"matchLabels": {"app": "nginx"}},
                            "template": {"metadata": {"labels": {"app": "nginx"}},
                                         "spec": nginx_pod_spec()}}}),
        );
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate",
                   "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let tpl = &d["spec"]["template"]["spec"];
        assert_eq!(tpl["restartPolicy"], "Always");
        assert_eq!(tpl["containers"][0]["ports"][0]["protocol"], "TCP");
        assert!(d.get("status").is_none());

        let recreate = defaulted(
            "Deployment",
            json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(recreate["spec"]["replicas"], 3);
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn replica_set_and_namespace_defaults() {
        let rs = defaulted(
            "ReplicaSet",
            json!({"spec": {"template": {"spec": nginx_pod_spec()}}}),
        );
        assert_eq!(rs["spec"]["replicas"], 1);
        assert_eq!(rs["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        let ns = defaulted("Namespace", json!({"metadata": {"name": "team-a"}}));
        assert_eq!(
            ns,
            json!({"metadata": {"name": "team-a",
                                "labels": {"kubernetes.io/metadata.name": "team-a"}},
                   "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        );
        let node = defaulted("Node", json!({"metadata": {"name": "n1"}}));
        assert_eq!(node, json!({"metadata": {"name": "n1"}}));
    }

    #[test]
    fn endpoint_defaults() {
        let ep = defaulted(
            "Endpoints",
            json!({"subsets": [{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 80}]}]}),
        );
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
        let es = defaulted(
            "EndpointSlice",
            json!({"addressType": "IPv4", "ports": [{"port": 80}], "endpoints": []}),
        );
        assert_eq!(
            es["ports"][0],
            json!({"port": 80, "protocol": "TCP", "name": ""})
        );
    }

    #[test]
    fn non_objects_are_ignored() {
        let mut v = json!([1, 2]);
        apply_defaults(by_kind("Pod").unwrap(), &mut v);
        assert_eq!(v, json!([1, 2]));
        let mut bad = json!({"spec": "oops"});
        apply_defaults(by_kind("Deployment").unwrap(), &mut bad);
        assert_eq!(bad, json!({"spec": "oops"}));
    }
}
