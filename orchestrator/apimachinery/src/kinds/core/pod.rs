//! `core/v1 Pod`.

use crate::kinds::prelude::*;
use super::pod_spec::{default_pod_spec, pod_qos_class, pod_spec_list_strategy, validate_pod_spec};

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "Pod",
    plural: "pods",
    singular: "pod",
    namespaced: true,
    short_names: &["po"],
    categories: &["all"],
    list_kind: "PodList",
    subresources: &[
        status_of("Pod"),
        Subresource {
            name: "binding",
            group: None,
            version: None,
            kind: "Binding",
            verbs: CREATE_ONLY,
        },
        Subresource {
            name: "log",
            group: None,
            version: None,
            kind: "Pod",
            verbs: &["get"],
        },
    ],
    verbs: ALL_VERBS,
    strategy: &PodStrategy,
};

/// The strategy of `Pod`.
pub struct PodStrategy;

impl KindStrategy for PodStrategy {
    fn default(&self, obj: &mut Value) {
        default_pod(obj);
    }

    fn validate(&self, obj: &Value, errs: &mut Errors) {
        validate_pod_spec(spec_of(obj), &Path::new("spec"), errs);
    }

    fn validate_update(&self, new: &Value, old: &Value, errs: &mut Errors) {
        validate_pod_spec_update(spec_of(new), spec_of(old), errs);
    }

    fn validate_status(&self, status: &Value, errs: &mut Errors) {
        let phases = ["Pending", "Running", "Succeeded", "Failed", "Unknown"];
        check_enum(errs, &Path::new("status"), status, "phase", &phases);
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::core::v1::Pod>(res, obj)
    }

    fn list_strategy(&self, path: &str) -> Option<ListStrategy> {
        if let Some(rest) = path.strip_prefix("spec.") {
            return Some(pod_spec_list_strategy(rest));
        }
        match path {
            "status.podIPs" | "status.hostIPs" => Some(ListStrategy::MergeByKey("ip")),
            "status.resourceClaimStatuses" => Some(ListStrategy::MergeByKey("name")),
            _ => None,
        }
    }

    fn table_columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", 0),
            col("Status", "string", "The aggregate status of the containers in this pod.", 0),
            col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
            AGE,
            col("IP", "string", "IP address allocated to the pod. Routable at least within the cluster.", 1),
            col("Node", "string", "NodeName is a request to schedule this pod onto a specific node.", 1),
            col("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node.", 1),
            col("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness.", 1),
        ]
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        pod_cells(obj, row.name, row.age, row.now)
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }

    fn prepare_create(&self, obj: &mut Map<String, Value>) {
        obj.insert("status".into(), json!({"phase": "Pending"}));
    }

    fn deletion_grace_seconds(&self, pod: &Value, requested: Option<i64>) -> i64 {
        deletion_grace_seconds(pod, requested)
    }
}

/// Seconds of graceful termination a pod delete asks for (0 = delete now).
/// Only pods bound to a node and not yet finished terminate gracefully: their kubelet
/// confirms with a delete of grace period 0 once the containers are stopped.
fn deletion_grace_seconds(pod: &Value, requested: Option<i64>) -> i64 {
    let bound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !bound || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    let grace = requested
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30);
    // as Kubernetes: a grace period of 0 without force means 1 second
    grace.max(0)
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

/// Fields of a pod spec that may change on update (Kubernetes allows images, the active
/// deadline, tolerations additions, scheduling gates removal, and the grace period).
fn mask_mutable_pod_fields(spec: &Value, keep_node_name: bool) -> Value {
    let mut spec = spec.clone();
    if let Some(map) = spec.as_object_mut() {
        if !keep_node_name {
            map.remove("nodeName");
        }
        for key in [
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
            "schedulingGates",
        ] {
            map.remove(key);
        }
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            if let Some(Value::Array(items)) = map.get_mut(list) {
                for c in items.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("image");
                }
            }
        }
    }
    spec
}

fn validate_pod_spec_update(new: &Value, old: &Value, errs: &mut Errors) {
    // Binding (`pods/binding`) sets spec.nodeName once; the API server applies it as an
    // update, so a first assignment is accepted here. Changing an assigned node is not.
    let binding = s(old, "nodeName").unwrap_or("").is_empty();
    if mask_mutable_pod_fields(new, !binding) != mask_mutable_pod_fields(old, !binding) {
        errs.push(FieldError::forbidden(
            &Path::new("spec"),
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
}

fn pod_cells(pod: &Value, name: Value, age: Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let status = pod.get("status").unwrap_or(&Value::Null);
    let total = list_at(spec, "/containers").len();
    let mut ready = 0;
    let mut restarts = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut note_restart = |c: &Value| {
        if let Some(t) = parse_time(c.pointer("/lastState/terminated/finishedAt")) {
            if last_restart.is_none_or(|l| t > l) {
                last_restart = Some(t);
            }
        }
    };
    let phase = str_at(status, "/phase");
    let mut reason = if str_at(status, "/reason").is_empty() {
        phase.to_string()
    } else {
        str_at(status, "/reason").to_string()
    };
    if list_at(status, "/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }
    let init_specs = list_at(spec, "/initContainers");
    let mut initializing = false;
    let mut sidecar_restarts = 0;
    for (i, c) in list_at(status, "/initContainerStatuses").iter().enumerate() {
        let count = int_at(c, "/restartCount").unwrap_or(0);
        restarts += count;
        note_restart(c);
        let sidecar = init_specs.iter().any(|s| {
            str_at(s, "/name") == str_at(c, "/name") && str_at(s, "/restartPolicy") == "Always"
        });
        if sidecar {
            sidecar_restarts += count;
        }
        let terminated = c.pointer("/state/terminated");
        let waiting_reason = str_at(c, "/state/waiting/reason");
        if terminated.is_some() && int_at(c, "/state/terminated/exitCode") == Some(0) {
            continue;
        }
        if sidecar && c.get("started") == Some(&Value::Bool(true)) {
            continue;
        }
        initializing = true;
        reason = if terminated.is_some() {
            let r = str_at(c, "/state/terminated/reason");
            if !r.is_empty() {
                format!("Init:{r}")
            } else if let Some(sig) = int_at(c, "/state/terminated/signal").filter(|s| *s != 0) {
                format!("Init:Signal:{sig}")
            } else {
                format!(
                    "Init:ExitCode:{}",
                    int_at(c, "/state/terminated/exitCode").unwrap_or(0)
                )
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        break;
    }
    let initialized = list_at(status, "/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == "Initialized" && str_at(c, "/status") == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        let mut has_running = false;
        for c in list_at(status, "/containerStatuses").iter().rev() {
            restarts += int_at(c, "/restartCount").unwrap_or(0);
            note_restart(c);
            let waiting = str_at(c, "/state/waiting/reason");
            let terminated = c.pointer("/state/terminated");
            let term_reason = str_at(c, "/state/terminated/reason");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if terminated.is_some() && !term_reason.is_empty() {
                reason = term_reason.to_string();
            } else if terminated.is_some() {
                reason = match int_at(c, "/state/terminated/signal").filter(|s| *s != 0) {
                    Some(sig) => format!("Signal:{sig}"),
                    None => format!(
                        "ExitCode:{}",
                        int_at(c, "/state/terminated/exitCode").unwrap_or(0)
                    ),
                };
            } else if c.get("ready") == Some(&Value::Bool(true))
                && c.pointer("/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = list_at(status, "/conditions")
                .iter()
                .any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }
    if pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        if str_at(status, "/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }
    let restarts_str = match last_restart {
        Some(t) if restarts != 0 => {
            format!(
                "{restarts} ({} ago)",
                human_duration(now.signed_duration_since(t))
            )
        }
        _ => restarts.to_string(),
    };
    let gates = list_at(spec, "/readinessGates");
    let gates_str = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = list_at(status, "/conditions");
        let true_count = gates
            .iter()
            .filter(|g| {
                conditions.iter().any(|c| {
                    str_at(c, "/type") == str_at(g, "/conditionType")
                        && str_at(c, "/status") == "True"
                })
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        name,
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_str),
        age,
        json!(or_none(str_at(status, "/podIP"))),
        json!(or_none(str_at(spec, "/nodeName"))),
        json!(or_none(str_at(status, "/nominatedNodeName"))),
        json!(gates_str),
    ]
}
