//! Kubernetes defaulting for the served kinds.
//!
//! [`apply_defaults`] fills in what Kubernetes fills in when it decodes an object. It only ever
//! adds missing fields, so applying it twice gives the same result as applying it once (which
//! `kubectl apply` relies on to report `unchanged`). Values the server allocates (a Service's
//! `clusterIP`, uid, timestamps) are not defaults and are left to the caller.

use serde_json::{Map, Value};

use crate::registry::ResourceInfo;

/// Applies Kubernetes' defaults for `res` to `obj` in place. Objects that are not JSON objects
/// are left alone (validation reports them).
pub fn apply_defaults(res: &ResourceInfo, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    res.strategy.default(obj);
}

/// Returns the object at `obj[key]`, creating an empty object there when it is missing or
/// null. `None` when `obj` is not an object or `obj[key]` holds a non-object.
pub(crate) fn child_object<'a>(
    obj: &'a mut Value,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    let map = obj.as_object_mut()?;
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
}

/// Sets `map[key] = value` when the key is absent or null.
pub(crate) fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = value;
    }
}

/// Calls `f` on every object element of the array at `map[key]`.
pub(crate) fn each_item(
    map: &mut Map<String, Value>,
    key: &str,
    mut f: impl FnMut(&mut Map<String, Value>),
) {
    if let Some(Value::Array(items)) = map.get_mut(key) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            f(item);
        }
    }
}

pub(crate) fn map_child<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
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
    use serde_json::json;

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
