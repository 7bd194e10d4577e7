//! `meta.k8s.io/v1` `Table` rendering, the server-side printing `kubectl get` asks for.
//!
//! Columns and cell values follow Kubernetes' printers. As in Kubernetes, every row carries
//! cells for every column, wide ones (priority 1) included: kubectl hides priority-1 columns
//! unless `-o wide`. The caller sets `metadata.resourceVersion` / `metadata.continue`.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::kinds::RowContext;
use crate::registry::ResourceInfo;

/// What each row's `object` holds (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object.
    None,
    /// A `PartialObjectMetadata` with the object's metadata (kubectl's default).
    #[default]
    Metadata,
    /// The full object.
    Object,
}

/// Options for [`to_table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableOptions {
    /// What each row's `object` holds.
    pub include_object: IncludeObject,
    /// Leave out the column definitions (`kubectl get --no-headers`, watch continuations).
    pub no_headers: bool,
}

/// One column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Header (`Name`, `Ready`, ...; kubectl upper-cases it).
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, ...
    pub type_: &'static str,
    /// OpenAPI format (`name` for the name column).
    pub format: &'static str,
    /// Description.
    pub description: &'static str,
    /// 0 = always shown, 1 = only with `-o wide`.
    pub priority: u8,
}

pub(crate) const fn col(
    name: &'static str,
    type_: &'static str,
    description: &'static str,
    priority: u8,
) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority,
    }
}

pub(crate) const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated.",
    priority: 0,
};
pub(crate) const AGE: Column = col(
    "Age",
    "string",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
    0,
);

/// The columns `res` is printed with.
pub fn columns(res: &ResourceInfo) -> Vec<Column> {
    res.strategy.table_columns()
}

/// Builds the `Table` for `items` (objects of `res`) as of `now` (for the AGE columns).
pub fn to_table(
    res: &ResourceInfo,
    items: &[Value],
    opts: &TableOptions,
    now: DateTime<Utc>,
) -> Value {
    let column_definitions: Vec<Value> = if opts.no_headers {
        Vec::new()
    } else {
        columns(res)
            .iter()
            .map(|c| {
                json!({"name": c.name, "type": c.type_, "format": c.format,
                       "description": c.description, "priority": c.priority})
            })
            .collect()
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells(res, item, now)));
            match opts.include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert(
                        "object".into(),
                        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": item.get("metadata").cloned().unwrap_or(json!({}))}),
                    );
                }
                IncludeObject::Object => {
                    row.insert("object".into(), item.clone());
                }
            }
            Value::Object(row)
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

/// The cells of one row, one per column of [`columns`].
pub fn cells(res: &ResourceInfo, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = Value::String(str_at(obj, "/metadata/name").to_string());
    let age = Value::String(age_of(obj.pointer("/metadata/creationTimestamp"), now));
    res.strategy.table_cells(obj, RowContext { name, age, now })
}

pub(crate) fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn int_at(v: &Value, pointer: &str) -> Option<i64> {
    v.pointer(pointer).and_then(Value::as_i64)
}

pub(crate) fn list_at<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub(crate) fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

pub(crate) fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let s = v?.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `translateTimestampSince`: the human duration since a timestamp, `<unknown>` without one.
pub(crate) fn age_of(ts: Option<&Value>, now: DateTime<Utc>) -> String {
    match parse_time(ts) {
        Some(t) => human_duration(now.signed_duration_since(t)),
        None => "<unknown>".into(),
    }
}

/// Kubernetes' `duration.HumanDuration`: `5s`, `3m2s`, `10m`, `5h3m`, `2d3h`, `400d`, `2y5d`.
pub fn human_duration(d: chrono::TimeDelta) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// `metav1.FormatLabelSelector`: `app=nginx,tier in (a,b)`; `<none>` when empty or missing.
pub fn format_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return "<none>".into();
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    for e in list_at(sel, "/matchExpressions") {
        let key = str_at(e, "/key");
        let values: Vec<&str> = list_at(e, "/values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match str_at(e, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            op => format!("{key} {op} ({})", values.join(",")),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// `labels.FormatLabels` of a plain map: `a=b,c=d` (sorted), `<none>` when empty.
pub(crate) fn format_labels(m: Option<&Value>) -> String {
    let parts: Vec<String> = m
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// Shows at most three entries then ` + N more...`, as kubectl does.
pub(crate) fn first_three(items: Vec<String>, empty: &str) -> String {
    if items.is_empty() {
        return empty.to_string();
    }
    let shown = items.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if items.len() > 3 {
        format!("{shown} + {} more...", items.len() - 3)
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{by_kind, resources};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap()
    }

    fn ago(secs: i64) -> String {
        (now() - chrono::TimeDelta::seconds(secs))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    fn row(kind: &str, obj: Value) -> Vec<Value> {
        let t = to_table(
            by_kind(kind).unwrap(),
            &[obj],
            &TableOptions::default(),
            now(),
        );
        t["rows"][0]["cells"].as_array().unwrap().clone()
    }

    #[test]
    fn human_durations() {
        let d = |s: i64| human_duration(chrono::TimeDelta::seconds(s));
        assert_eq!(d(-5), "<invalid>");
        assert_eq!(d(-1), "0s");
        assert_eq!(d(5), "5s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(182), "3m2s");
        assert_eq!(d(240), "4m");
        assert_eq!(d(600), "10m");
        assert_eq!(d(179 * 60), "179m");
        assert_eq!(d(3 * 3600 + 5 * 60), "3h5m");
        assert_eq!(d(5 * 3600), "5h");
        assert_eq!(d(30 * 3600), "30h");
        assert_eq!(d(51 * 3600), "2d3h");
        assert_eq!(d(72 * 3600), "3d");
        assert_eq!(d(400 * 86400), "400d");
        assert_eq!(d(365 * 2 * 86400 + 5 * 86400), "2y5d");
        assert_eq!(d(365 * 9 * 86400), "9y");
    }

    #[test]
    fn table_shape() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "nginx", "namespace": "default", "creationTimestamp": ago(5)},
            "spec": {"containers": [{"name": "nginx"}]}, "status": {"phase": "Pending"}});
        let res = by_kind("Pod").unwrap();
        let t = to_table(
            res,
            std::slice::from_ref(&pod),
            &TableOptions::default(),
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        let cols = t["columnDefinitions"].as_array().unwrap();
        let names: Vec<_> = cols.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert_eq!(cols[0]["format"], "name");
        assert_eq!(cols[4]["priority"], 0);
        assert_eq!(cols[5]["priority"], 1);
        assert_eq!(
            t["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": pod["metadata"]})
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["nginx", "0/1", "Pending", "0", "5s", "<none>", "<none>", "<none>", "<none>"])
        );
        let full = to_table(
            res,
            std::slice::from_ref(&pod),
            &TableOptions {
                include_object: IncludeObject::Object,
                no_headers: true,
            },
            now(),
        );
        assert_eq!(full["rows"][0]["object"], pod);
        assert_eq!(full["columnDefinitions"], json!([]));
        let none = to_table(
            res,
            &[pod],
            &TableOptions {
                include_object: IncludeObject::None,
                no_headers: false,
            },
            now(),
        );
        assert!(none["rows"][0].get("object").is_none());
    }

    #[test]
    fn every_resource_has_matching_cells() {
        for res in resources() {
            let t = to_table(
                res,
                &[json!({"metadata": {"name": "x"}})],
                &TableOptions::default(),
                now(),
            );
            assert_eq!(
                t["columnDefinitions"].as_array().unwrap().len(),
                t["rows"][0]["cells"].as_array().unwrap().len(),
                "{}",
                res.kind
            );
        }
        // no creationTimestamp
        assert_eq!(
            row("Namespace", json!({"metadata": {"name": "x"}}))[2],
            "<unknown>"
        );
    }

    #[test]
    fn pod_status_column() {
        let base = |status: Value| {
            json!({"metadata": {"name": "p", "creationTimestamp": ago(3600)},
                   "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "node-1"},
                   "status": status})
        };
        let running = row(
            "Pod",
            base(
                json!({"phase": "Running", "podIP": "10.244.1.5", "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
            {"name": "b", "ready": true, "restartCount": 2, "state": {"running": {}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(125)}}}]}),
            ),
        );
        assert_eq!(
            running,
            json!([
                "p",
                "2/2",
                "Running",
                "2 (2m5s ago)",
                "60m",
                "10.244.1.5",
                "node-1",
                "<none>",
                "<none>"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let waiting = row(
            "Pod",
            base(json!({"phase": "Pending", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}},
            {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull"}}}]})),
        );
        assert_eq!(waiting[1], "0/2");
        // kubectl walks statuses from last to first: the first container's reason wins
        assert_eq!(waiting[2], "ContainerCreating");
        let crashed = row(
            "Pod",
            base(json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 5, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
            {"name": "b", "ready": true, "restartCount": 0, "state": {"running": {}}}]})),
        );
        assert_eq!(
            (crashed[1].clone(), crashed[2].clone(), crashed[3].clone()),
            (json!("1/2"), json!("CrashLoopBackOff"), json!("5"))
        );
        let exited = row(
            "Pod",
            base(json!({"phase": "Failed", "containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 3}}},
            {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})),
        );
        assert_eq!(exited[2], "ExitCode:3");
        let mut terminating = base(json!({"phase": "Running"}));
        terminating["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(row("Pod", terminating)[2], "Terminating");
        let init = row(
            "Pod",
            json!({"metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
                {"name": "i2", "state": {"running": {}}}]}}),
        );
        assert_eq!(init[2], "Init:1/2");
        let gated = row(
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}],
            "readinessGates": [{"conditionType": "x"}, {"conditionType": "y"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "x", "status": "True"},
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}}),
        );
        assert_eq!(
            (gated[2].clone(), gated[8].clone()),
            (json!("SchedulingGated"), json!("1/2"))
        );
    }

    #[test]
    fn workload_columns() {
        let d = row(
            "Deployment",
            json!({"metadata": {"name": "nginx-deployment", "creationTimestamp": ago(30)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "nginx"}},
                     "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2"},
                                                          {"name": "side", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}),
        );
        assert_eq!(
            d,
            json!([
                "nginx-deployment",
                "2/3",
                3,
                2,
                "30s",
                "nginx,side",
                "nginx:1.14.2,busybox",
                "app=nginx"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let fresh = row(
            "Deployment",
            json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}}),
        );
        assert_eq!(
            (fresh[1].clone(), fresh[2].clone(), fresh[7].clone()),
            (json!("0/1"), json!(0), json!("<none>"))
        );
        let rs = row(
            "ReplicaSet",
            json!({"metadata": {"name": "nginx-deployment-66b6c48dd5", "creationTimestamp": ago(600)},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "nginx"},
                     "matchExpressions": [{"key": "pod-template-hash", "operator": "In", "values": ["66b6c48dd5"]}]},
                     "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}},
            "status": {"replicas": 2, "readyReplicas": 1}}),
        );
        assert_eq!(
            rs,
            json!([
                "nginx-deployment-66b6c48dd5",
                2,
                2,
                1,
                "10m",
                "nginx",
                "nginx",
                "app=nginx,pod-template-hash in (66b6c48dd5)"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
    }

    #[test]
    fn service_columns() {
        let svc = row(
            "Service",
            json!({"metadata": {"name": "web", "creationTimestamp": ago(200)},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "selector": {"app": "nginx", "tier": "web"},
                     "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}}),
        );
        assert_eq!(
            svc,
            json!([
                "web",
                "ClusterIP",
                "10.96.0.10",
                "<none>",
                "80/TCP,53/UDP",
                "3m20s",
                "app=nginx,tier=web"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let np = row(
            "Service",
            json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.11",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}}),
        );
        assert_eq!(
            (np[3].clone(), np[4].clone(), np[6].clone()),
            (json!("<none>"), json!("80:30080/TCP"), json!("<none>"))
        );
        let lb = row(
            "Service",
            json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": []}}),
        );
        assert_eq!(
            (lb[2].clone(), lb[3].clone(), lb[4].clone()),
            (json!("<none>"), json!("<pending>"), json!("<none>"))
        );
        let ext = row(
            "Service",
            json!({"metadata": {"name": "x"}, "spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
        );
        assert_eq!(ext[3], "db.example.com");
    }

    #[test]
    fn node_namespace_lease_columns() {
        let node = row(
            "Node",
            json!({"metadata": {"name": "node-1", "creationTimestamp": ago(86400 * 2 + 3600 * 3),
                "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "10.250.0.2"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0-bpfk", "osImage": "Debian GNU/Linux 13",
                                    "kernelVersion": "6.18.0", "containerRuntimeVersion": "containerd://1.6.20"}}}),
        );
        assert_eq!(
            node,
            json!([
                "node-1",
                "Ready,SchedulingDisabled",
                "control-plane,worker",
                "2d3h",
                "v1.32.0-bpfk",
                "10.250.0.2",
                "<none>",
                "Debian GNU/Linux 13",
                "6.18.0",
                "containerd://1.6.20"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let nr = row(
            "Node",
            json!({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
        );
        assert_eq!(
            (nr[1].clone(), nr[2].clone(), nr[7].clone()),
            (json!("NotReady"), json!("<none>"), json!("<unknown>"))
        );
        assert_eq!(
            row("Node", json!({"metadata": {"name": "n"}}))[1],
            "Unknown"
        );
        assert_eq!(
            row(
                "Namespace",
                json!({"metadata": {"name": "default", "creationTimestamp": ago(7200)}, "status": {"phase": "Active"}})
            ),
            json!(["default", "Active", "120m"])
                .as_array()
                .unwrap()
                .clone()
        );
        assert_eq!(
            row(
                "Lease",
                json!({"metadata": {"name": "node-1", "creationTimestamp": ago(10)}, "spec": {"holderIdentity": "node-1"}})
            ),
            json!(["node-1", "node-1", "10s"])
                .as_array()
                .unwrap()
                .clone()
        );
    }

    #[test]
    fn endpoint_columns() {
        let ep = row(
            "Endpoints",
            json!({"metadata": {"name": "web"}, "subsets": [{
            "addresses": [{"ip": "10.244.0.5"}, {"ip": "10.244.1.5"}, {"ip": "10.244.2.5"}, {"ip": "10.244.3.5"}],
            "ports": [{"port": 80}]}]}),
        );
        assert_eq!(
            ep[1],
            "10.244.0.5:80,10.244.1.5:80,10.244.2.5:80 + 1 more..."
        );
        assert_eq!(
            row("Endpoints", json!({"metadata": {"name": "web"}}))[1],
            "<none>"
        );
        let es = row(
            "EndpointSlice",
            json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "ports": [{"port": 80}, {"port": 443}], "endpoints": [{"addresses": ["10.244.0.5"]}, {"addresses": ["10.244.1.5"]}]}),
        );
        assert_eq!(
            (es[1].clone(), es[2].clone(), es[3].clone()),
            (
                json!("IPv4"),
                json!("80,443"),
                json!("10.244.0.5,10.244.1.5")
            )
        );
        let empty = row(
            "EndpointSlice",
            json!({"metadata": {"name": "e"}, "addressType": "IPv4"}),
        );
        assert_eq!(
            (empty[2].clone(), empty[3].clone()),
            (json!("<unset>"), json!("<unset>"))
        );
    }

    #[test]
    fn event_columns() {
        let ev = row(
            "Event",
            json!({"metadata": {"name": "nginx.1"}, "type": "Normal", "reason": "Scheduled",
            "message": "Successfully assigned default/nginx to node-1 ",
            "involvedObject": {"kind": "Pod", "name": "nginx", "fieldPath": "spec.containers{nginx}"},
            "source": {"component": "default-scheduler"},
            "firstTimestamp": ago(300), "lastTimestamp": ago(20), "count": 2}),
        );
        assert_eq!(
            ev,
            json!([
                "20s",
                "Normal",
                "Scheduled",
                "pod/nginx",
                "spec.containers{nginx}",
                "default-scheduler",
                "Successfully assigned default/nginx to node-1",
                "5m",
                2,
                "nginx.1"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        let new_style = row(
            "Event",
            json!({"metadata": {"name": "e"}, "eventTime": "2026-01-10T11:59:50.000000Z",
            "involvedObject": {"kind": "Node"}, "reportingComponent": "bpfk-agent", "reportingInstance": "node-1"}),
        );
        assert_eq!(
            (
                new_style[0].clone(),
                new_style[3].clone(),
                new_style[5].clone(),
                new_style[8].clone()
            ),
            (
                json!("10s"),
                json!("node"),
                json!("bpfk-agent, node-1"),
                json!(1)
            )
        );
    }
}
