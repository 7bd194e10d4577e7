//! `apps/v1 Deployment`.

use crate::kinds::prelude::*;
use super::workload::{
    default_template, drop_status, template_containers, template_list_strategy,
    validate_replica_counts, validate_selector_unchanged, validate_workload_spec,
};

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "apps",
    version: "v1",
    kind: "Deployment",
    plural: "deployments",
    singular: "deployment",
    namespaced: true,
    short_names: &["deploy"],
    categories: &["all"],
    list_kind: "DeploymentList",
    subresources: &[status_of("Deployment"), SCALE],
    verbs: ALL_VERBS,
    strategy: &DeploymentStrategy,
};

/// The strategy of `Deployment`.
pub struct DeploymentStrategy;

impl KindStrategy for DeploymentStrategy {
    fn pod_spec_path(&self) -> Option<&'static str> {
        Some("spec.template.spec")
    }

    fn default(&self, obj: &mut Value) {
        default_deployment(obj);
    }

    fn validate(&self, obj: &Value, errs: &mut Errors) {
        validate_workload_spec(spec_of(obj), &Path::new("spec"), true, errs);
    }

    fn validate_update(&self, new: &Value, old: &Value, errs: &mut Errors) {
        validate_selector_unchanged(new, old, errs);
    }

    fn validate_status(&self, status: &Value, errs: &mut Errors) {
        validate_replica_counts(status, errs);
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::apps::v1::Deployment>(res, obj)
    }

    fn list_strategy(&self, path: &str) -> Option<ListStrategy> {
        template_list_strategy(path)
    }

    fn table_columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Ready", "string", "Number of the pod with ready state", 0),
            col("Up-to-date", "integer", "Total number of non-terminated pods targeted by this deployment that have the desired template spec.", 0),
            col("Available", "integer", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.", 0),
            AGE,
            col("Containers", "string", "Names of each container in the template.", 1),
            col("Images", "string", "Images referenced by each container in the template.", 1),
            col("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.", 1),
        ]
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        let spec = spec_of(obj);
        let status = obj.get("status").unwrap_or(&Value::Null);
        let desired = int_at(spec, "/replicas").unwrap_or(0);
        let ready = int_at(status, "/readyReplicas").unwrap_or(0);
        let (containers, images) = template_containers(spec);
        vec![
            row.name,
            json!(format!("{ready}/{desired}")),
            json!(int_at(status, "/updatedReplicas").unwrap_or(0)),
            json!(int_at(status, "/availableReplicas").unwrap_or(0)),
            row.age,
            json!(containers),
            json!(images),
            json!(format_label_selector(spec.get("selector"))),
        ]
    }

    fn prepare_create(&self, obj: &mut Map<String, Value>) {
        drop_status(obj);
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
