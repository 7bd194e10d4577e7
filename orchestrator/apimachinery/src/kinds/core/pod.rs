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
        // policy/v1 Eviction: a delete (with the Eviction's deleteOptions) that disruption
        // budgets may refuse; this server serves no PodDisruptionBudgets, so none refuses
        Subresource {
            name: "eviction",
            group: Some("policy"),
            version: Some("v1"),
            kind: "Eviction",
            verbs: CREATE_ONLY,
        },
        Subresource {
            name: "log",
            group: None,
            version: None,
            kind: "Pod",
            verbs: &["get"],
        },
        // streaming subresources: listed as kube-apiserver lists them; the API server
        // answers them 405 "not supported" until it proxies them to the kubelet
        streaming("exec", "PodExecOptions"),
        streaming("attach", "PodAttachOptions"),
        streaming("portforward", "PodPortForwardOptions"),
    ],
    verbs: ALL_VERBS,
    strategy: &PodStrategy,
};

/// A streaming subresource of pods (GET and POST upgrade to a stream).
const fn streaming(name: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name,
        group: None,
        version: None,
        kind,
        verbs: &["create", "get"],
    }
}

/// The strategy of `Pod`.
pub struct PodStrategy;

impl KindStrategy for PodStrategy {
    fn pod_spec_path(&self) -> Option<&'static str> {
        Some("spec")
    }

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
    let mut row = PodProgress::new(status);
    let (initializing, sidecar_restarts) = row.scan_init_containers(spec, status);
    if !initializing || has_true_condition(status, "Initialized") {
        row.restarts = sidecar_restarts;
        row.scan_containers(status);
    }
    if pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        let phase = str_at(status, "/phase");
        if str_at(status, "/reason") == "NodeLost" {
            row.reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            row.reason = "Terminating".into();
        }
    }
    let total = list_at(spec, "/containers").len();
    vec![
        name,
        json!(format!("{}/{total}", row.ready)),
        json!(row.reason),
        json!(row.restarts_text(now)),
        age,
        json!(or_none(str_at(status, "/podIP"))),
        json!(or_none(str_at(spec, "/nodeName"))),
        json!(or_none(str_at(status, "/nominatedNodeName"))),
        json!(readiness_gates(spec, status)),
    ]
}

/// What kubectl's pod printer derives the READY, STATUS and RESTARTS cells from.
struct PodProgress {
    ready: usize,
    restarts: i64,
    last_restart: Option<DateTime<Utc>>,
    reason: String,
}

impl PodProgress {
    /// Starts from `status.reason`, else the phase; a scheduling gate wins.
    fn new(status: &Value) -> PodProgress {
        let mut reason = match str_at(status, "/reason") {
            "" => str_at(status, "/phase").to_string(),
            r => r.to_string(),
        };
        let gated = list_at(status, "/conditions").iter().any(|c| {
            str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated"
        });
        if gated {
            reason = "SchedulingGated".into();
        }
        PodProgress {
            ready: 0,
            restarts: 0,
            last_restart: None,
            reason,
        }
    }

    fn note_restart(&mut self, c: &Value) {
        if let Some(t) = parse_time(c.pointer("/lastState/terminated/finishedAt")) {
            if self.last_restart.is_none_or(|l| t > l) {
                self.last_restart = Some(t);
            }
        }
    }

    /// Counts init container restarts and sets `Init:...` while one has not finished.
    /// Returns whether the pod is still initializing, and the restarts of sidecars.
    fn scan_init_containers(&mut self, spec: &Value, status: &Value) -> (bool, i64) {
        let init_specs = list_at(spec, "/initContainers");
        let mut sidecar_restarts = 0;
        for (i, c) in list_at(status, "/initContainerStatuses").iter().enumerate() {
            let count = int_at(c, "/restartCount").unwrap_or(0);
            self.restarts += count;
            self.note_restart(c);
            let sidecar = init_specs.iter().any(|s| {
                str_at(s, "/name") == str_at(c, "/name") && str_at(s, "/restartPolicy") == "Always"
            });
            if sidecar {
                sidecar_restarts += count;
            }
            let succeeded = c.pointer("/state/terminated").is_some()
                && int_at(c, "/state/terminated/exitCode") == Some(0);
            if succeeded || (sidecar && c.get("started") == Some(&Value::Bool(true))) {
                continue;
            }
            self.reason = init_reason(c, i, init_specs.len());
            return (true, sidecar_restarts);
        }
        (false, sidecar_restarts)
    }

    /// Counts ready containers and restarts; the last container (in spec order, the first
    /// seen) waiting or terminated gives the reason.
    fn scan_containers(&mut self, status: &Value) {
        let mut has_running = false;
        for c in list_at(status, "/containerStatuses").iter().rev() {
            self.restarts += int_at(c, "/restartCount").unwrap_or(0);
            self.note_restart(c);
            let waiting = str_at(c, "/state/waiting/reason");
            let terminated = c.pointer("/state/terminated").is_some();
            let term_reason = str_at(c, "/state/terminated/reason");
            if !waiting.is_empty() {
                self.reason = waiting.to_string();
            } else if terminated && !term_reason.is_empty() {
                self.reason = term_reason.to_string();
            } else if terminated {
                self.reason = match int_at(c, "/state/terminated/signal").filter(|s| *s != 0) {
                    Some(sig) => format!("Signal:{sig}"),
                    None => format!("ExitCode:{}", exit_code(c)),
                };
            } else if c.get("ready") == Some(&Value::Bool(true))
                && c.pointer("/state/running").is_some()
            {
                has_running = true;
                self.ready += 1;
            }
        }
        if self.reason == "Completed" && has_running {
            let ready = has_true_condition(status, "Ready");
            self.reason = if ready { "Running" } else { "NotReady" }.into();
        }
    }

    /// `3 (5m ago)`, or the bare count without restarts.
    fn restarts_text(&self, now: DateTime<Utc>) -> String {
        match self.last_restart {
            Some(t) if self.restarts != 0 => format!(
                "{} ({} ago)",
                self.restarts,
                human_duration(now.signed_duration_since(t))
            ),
            _ => self.restarts.to_string(),
        }
    }
}

fn exit_code(c: &Value) -> i64 {
    int_at(c, "/state/terminated/exitCode").unwrap_or(0)
}

/// STATUS of a pod whose init container `c` (the `i`-th of `count`) has not finished.
fn init_reason(c: &Value, i: usize, count: usize) -> String {
    let waiting_reason = str_at(c, "/state/waiting/reason");
    if c.pointer("/state/terminated").is_some() {
        let r = str_at(c, "/state/terminated/reason");
        if !r.is_empty() {
            format!("Init:{r}")
        } else if let Some(sig) = int_at(c, "/state/terminated/signal").filter(|s| *s != 0) {
            format!("Init:Signal:{sig}")
        } else {
            format!("Init:ExitCode:{}", exit_code(c))
        }
    } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
        format!("Init:{waiting_reason}")
    } else {
        format!("Init:{i}/{count}")
    }
}

fn has_true_condition(status: &Value, kind: &str) -> bool {
    list_at(status, "/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == kind && str_at(c, "/status") == "True")
}

/// READINESS GATES: `<none>`, or how many of the gates' conditions are true.
fn readiness_gates(spec: &Value, status: &Value) -> String {
    let gates = list_at(spec, "/readinessGates");
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let true_count = gates
        .iter()
        .filter(|g| has_true_condition(status, str_at(g, "/conditionType")))
        .count();
    format!("{true_count}/{}", gates.len())
}
