//! `apiregistration.k8s.io/v1 APIService` (cluster-scoped), as kube-aggregator's
//! `pkg/registry/apiservice` and `pkg/apis/apiregistration/validation`: one object per group
//! version the server answers, named `<version>.<group>` (`v1.` for the core group), whose
//! priorities order discovery. The API server registers a *local* APIService for every group
//! version it serves (see [`LOCAL_PRIORITIES`]). APIServices that name a Service (an
//! aggregated API server to proxy to) are refused: this server does not aggregate, and an
//! object it would never serve is not stored.

use crate::kinds::prelude::*;

/// The API group.
pub const GROUP: &str = "apiregistration.k8s.io";

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: GROUP,
    version: "v1",
    kind: "APIService",
    plural: "apiservices",
    singular: "apiservice",
    namespaced: false,
    short_names: &[],
    categories: &["api-extensions"],
    list_kind: "APIServiceList",
    subresources: &[status_of("APIService")],
    verbs: ALL_VERBS,
    strategy: &APIServiceStrategy,
};

/// The label of APIServices the server registers itself and keeps in step with what it
/// serves (value [`AUTOMANAGED_ON_START`]), as kube-apiserver's autoregister controller.
pub const AUTOMANAGED_LABEL: &str = "kube-aggregator.kubernetes.io/automanaged";
/// [`AUTOMANAGED_LABEL`]'s value for APIServices registered at every start.
pub const AUTOMANAGED_ON_START: &str = "onstart";

/// The discovery priorities of the group versions Kubernetes serves, `(group, version,
/// groupPriorityMinimum, versionPriority)`, highest group first: kube-apiserver's table for
/// its local APIServices. Discovery lists groups in this order.
pub const LOCAL_PRIORITIES: &[(&str, &str, i64, i64)] = &[
    ("", "v1", 18000, 1),
    (GROUP, "v1", 18000, 15),
    ("apps", "v1", 17800, 15),
    ("events.k8s.io", "v1", 17750, 15),
    ("authentication.k8s.io", "v1", 17700, 15),
    ("authorization.k8s.io", "v1", 17600, 15),
    ("autoscaling", "v1", 17500, 15),
    ("batch", "v1", 17400, 15),
    ("certificates.k8s.io", "v1", 17300, 15),
    ("networking.k8s.io", "v1", 17200, 15),
    ("policy", "v1", 17100, 15),
    ("rbac.authorization.k8s.io", "v1", 17000, 15),
    ("storage.k8s.io", "v1", 16800, 15),
    ("admissionregistration.k8s.io", "v1", 16700, 15),
    ("apiextensions.k8s.io", "v1", 16700, 15),
    ("scheduling.k8s.io", "v1", 16600, 15),
    ("coordination.k8s.io", "v1", 16500, 15),
    ("node.k8s.io", "v1", 16300, 15),
    ("discovery.k8s.io", "v1", 16200, 15),
    ("flowcontrol.apiserver.k8s.io", "v1", 16100, 21),
];

/// The name of the APIService of `group`/`version`: `<version>.<group>`.
pub fn name_of(group: &str, version: &str) -> String {
    format!("{version}.{group}")
}

/// The local APIService of a served group version, with the condition a local one always
/// has; `None` for a group version without a known priority (never registered, as
/// kube-apiserver skips those).
pub fn local(group: &str, version: &str, now: &str) -> Option<Value> {
    let (_, _, group_priority, version_priority) = LOCAL_PRIORITIES
        .iter()
        .find(|(g, v, _, _)| (*g, *v) == (group, version))?;
    let mut spec = json!({
        "version": version,
        "groupPriorityMinimum": group_priority,
        "versionPriority": version_priority,
    });
    if !group.is_empty() {
        spec["group"] = json!(group);
    }
    Some(json!({
        "apiVersion": RESOURCE.api_version(),
        "kind": RESOURCE.kind,
        "metadata": {
            "name": name_of(group, version),
            "labels": {AUTOMANAGED_LABEL: AUTOMANAGED_ON_START},
        },
        "spec": spec,
        "status": {"conditions": [{
            "type": "Available",
            "status": "True",
            "lastTransitionTime": now,
            "reason": "Local",
            "message": "Local APIServices are always available",
        }]},
    }))
}

/// The strategy of `APIService`.
pub struct APIServiceStrategy;

impl KindStrategy for APIServiceStrategy {
    fn name_rule(&self) -> fn(&str) -> Vec<String> {
        names::path_segment
    }

    fn validate(&self, obj: &Value, errs: &mut Errors) {
        validate_name_matches_spec(obj, errs);
        validate_spec(spec_of(obj), &Path::new("spec"), errs);
    }

    fn validate_status(&self, status: &Value, errs: &mut Errors) {
        let path = Path::new("status").child("conditions");
        for (i, condition) in arr(status, "conditions").iter().enumerate() {
            let statuses = ["True", "False", "Unknown"];
            check_enum(errs, &path.index(i), condition, "status", &statuses);
        }
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService>(
            res, obj,
        )
    }

    fn table_columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Service", "string", "The reference to the service that hosts this API endpoint.", 0),
            col("Available", "string", "Whether this service is available.", 0),
            AGE,
        ]
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        vec![row.name, json!(service_cell(obj)), json!(available_cell(obj)), row.age]
    }

    fn prepare_create(&self, obj: &mut Map<String, Value>) {
        obj.remove("status");
    }
}

/// `metadata.name` must be `spec.version + "." + spec.group`.
fn validate_name_matches_spec(obj: &Value, errs: &mut Errors) {
    let spec = spec_of(obj);
    let required = name_of(s(spec, "group").unwrap_or(""), s(spec, "version").unwrap_or(""));
    let name = str_at(obj, "/metadata/name");
    if !name.is_empty() && name != required {
        let detail = format!("must be `spec.version+\".\"+spec.group`: {required:?}");
        errs.push(FieldError::invalid(&Path::new("metadata").child("name"), json!(name), detail));
    }
}

fn validate_spec(spec: &Value, path: &Path, errs: &mut Errors) {
    let group = s(spec, "group").unwrap_or("");
    let version = s(spec, "version").unwrap_or("");
    if group.is_empty() && version != "v1" {
        let detail = "only v1 may have an empty group and it better be legacy kube";
        errs.push(FieldError::required(&path.child("group"), detail));
    }
    if !group.is_empty() {
        push_msgs(errs, &path.child("group"), group, names::dns1123_subdomain(group));
    }
    push_msgs(errs, &path.child("version"), version, names::dns1035_label(version));
    check_priority(spec, path, "groupPriorityMinimum", 20000, errs);
    check_priority(spec, path, "versionPriority", 1000, errs);
    if present(spec, "service") {
        let detail = "aggregated API servers are not supported: this server answers only its \
                      own (local) APIServices";
        errs.push(FieldError::forbidden(&path.child("service"), detail));
        return;
    }
    if let Some(ca) = s(spec, "caBundle").filter(|ca| !ca.is_empty()) {
        let value = json!(format!("{} bytes", ca.len() * 3 / 4));
        let detail = "local APIServices may not have a caBundle";
        errs.push(FieldError::invalid(&path.child("caBundle"), value, detail));
    }
    if spec.get("insecureSkipTLSVerify") == Some(&Value::Bool(true)) {
        let detail = "local APIServices may not have insecureSkipTLSVerify";
        errs.push(FieldError::invalid(&path.child("insecureSkipTLSVerify"), json!(true), detail));
    }
}

/// A priority must be in `1..=max`.
fn check_priority(spec: &Value, path: &Path, field: &str, max: i64, errs: &mut Errors) {
    let value = int(spec, field).unwrap_or(0);
    if value <= 0 || value > max {
        let detail = format!("must be positive and less than {max}");
        errs.push(FieldError::invalid(&path.child(field), json!(value), detail));
    }
}

/// `Local`, or the Service's `namespace/name`.
fn service_cell(obj: &Value) -> String {
    match spec_of(obj).get("service").filter(|s| !s.is_null()) {
        Some(service) => format!(
            "{}/{}",
            s(service, "namespace").unwrap_or(""),
            s(service, "name").unwrap_or("")
        ),
        None => "Local".into(),
    }
}

/// The `Available` condition's status, with its reason when it is not `True`.
fn available_cell(obj: &Value) -> String {
    let conditions = obj.pointer("/status/conditions").and_then(Value::as_array);
    let available = conditions
        .into_iter()
        .flatten()
        .find(|c| s(c, "type") == Some("Available"));
    match available {
        None => "Unknown".into(),
        Some(c) if s(c, "status") == Some("True") => "True".into(),
        Some(c) => format!(
            "{} ({})",
            s(c, "status").unwrap_or("Unknown"),
            s(c, "reason").unwrap_or("")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::test_support::*;

    fn api_service(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
               "metadata": {"name": name}, "spec": spec})
    }

    #[test]
    fn every_local_api_service_is_valid_and_named_version_dot_group() {
        for (group, version, _, _) in LOCAL_PRIORITIES {
            let obj = local(group, version, "2026-01-01T00:00:00Z").expect("a priority");
            assert_eq!(str_at(&obj, "/metadata/name"), format!("{version}.{group}"));
            assert_eq!(check("APIService", obj.clone()), Vec::<String>::new(), "{group}/{version}");
            assert_eq!(available_cell(&obj), "True");
            assert_eq!(service_cell(&obj), "Local");
        }
        assert_eq!(str_at(&local("", "v1", "t").unwrap(), "/metadata/name"), "v1.");
        assert!(local("example.com", "v1", "t").is_none());
    }

    #[test]
    fn every_served_group_version_has_a_priority_and_discovery_follows_them() {
        let position = |group: &str, version: &str| {
            LOCAL_PRIORITIES
                .iter()
                .position(|(g, v, _, _)| (*g, *v) == (group, version))
        };
        let served = crate::registry::group_versions();
        let positions: Vec<_> = served.iter().map(|(g, v)| position(g, v)).collect();
        assert!(positions.iter().all(Option::is_some), "{served:?}");
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{served:?}");
        for pair in LOCAL_PRIORITIES.windows(2) {
            assert!(pair[0].2 >= pair[1].2, "{pair:?}");
        }
    }

    #[test]
    fn names_priorities_and_aggregation_are_checked() {
        let spec = json!({"group": "apps", "version": "v1", "groupPriorityMinimum": 17800,
                          "versionPriority": 15});
        let errs = check("APIService", api_service("v1.app", spec));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("metadata.name") && errs[0].contains("\"v1.apps\""));

        let spec = json!({"group": "", "version": "v2", "groupPriorityMinimum": 0,
                          "versionPriority": 1001});
        let errs = check("APIService", api_service("v2.", spec));
        assert!(errs.iter().any(|e| e.contains("spec.group")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("spec.groupPriorityMinimum")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("spec.versionPriority")), "{errs:?}");

        let spec = json!({"group": "metrics.k8s.io", "version": "v1beta1",
                          "groupPriorityMinimum": 100, "versionPriority": 100,
                          "service": {"namespace": "kube-system", "name": "metrics-server"}});
        let errs = check("APIService", api_service("v1beta1.metrics.k8s.io", spec));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("spec.service") && errs[0].contains("not supported"));
    }

    #[test]
    fn the_table_says_where_an_api_is_served_and_why_it_is_unavailable() {
        let mut obj = local("apps", "v1", "t").unwrap();
        obj["status"]["conditions"][0]["status"] = json!("False");
        obj["status"]["conditions"][0]["reason"] = json!("MissingEndpoints");
        assert_eq!(available_cell(&obj), "False (MissingEndpoints)");
        obj["spec"]["service"] = json!({"namespace": "kube-system", "name": "metrics"});
        assert_eq!(service_cell(&obj), "kube-system/metrics");
    }

    #[test]
    fn a_create_sets_no_status() {
        let mut created = local("apps", "v1", "t").unwrap().as_object().unwrap().clone();
        APIServiceStrategy.prepare_create(&mut created);
        assert!(!created.contains_key("status"));
    }
}
