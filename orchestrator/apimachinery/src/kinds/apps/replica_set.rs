//! `apps/v1 ReplicaSet`.

use crate::kinds::prelude::*;
use super::workload::{
    default_template, drop_status, template_containers, template_list_strategy,
    validate_replica_counts, validate_selector_unchanged, validate_workload_spec,
};

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "apps",
    version: "v1",
    kind: "ReplicaSet",
    plural: "replicasets",
    singular: "replicaset",
    namespaced: true,
    short_names: &["rs"],
    categories: &["all"],
    list_kind: "ReplicaSetList",
    subresources: &[status_of("ReplicaSet"), SCALE],
    verbs: ALL_VERBS,
    strategy: &ReplicaSetStrategy,
};

/// The strategy of `ReplicaSet`.
pub struct ReplicaSetStrategy;

impl KindStrategy for ReplicaSetStrategy {
    fn pod_spec_path(&self) -> Option<&'static str> {
        Some("spec.template.spec")
    }

    fn default(&self, obj: &mut Value) {
        default_replica_set(obj);
    }

    fn validate(&self, obj: &Value, errs: &mut Errors) {
        validate_workload_spec(spec_of(obj), &Path::new("spec"), false, errs);
    }

    fn validate_update(&self, new: &Value, old: &Value, errs: &mut Errors) {
        validate_selector_unchanged(new, old, errs);
    }

    fn validate_status(&self, status: &Value, errs: &mut Errors) {
        validate_replica_counts(status, errs);
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::apps::v1::ReplicaSet>(res, obj)
    }

    fn list_strategy(&self, path: &str) -> Option<ListStrategy> {
        template_list_strategy(path)
    }

    fn table_columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Desired", "integer", "Replicas is the number of desired replicas.", 0),
            col("Current", "integer", "Replicas is the most recently observed number of replicas.", 0),
            col("Ready", "integer", "The number of ready replicas for this replica set.", 0),
            AGE,
            col("Containers", "string", "Names of each container in the template.", 1),
            col("Images", "string", "Images referenced by each container in the template.", 1),
            col("Selector", "string", "Selector is a label query over pods that should match the replica count.", 1),
        ]
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        let spec = spec_of(obj);
        let status = obj.get("status").unwrap_or(&Value::Null);
        let (containers, images) = template_containers(spec);
        vec![
            row.name,
            json!(int_at(spec, "/replicas").unwrap_or(0)),
            json!(int_at(status, "/replicas").unwrap_or(0)),
            json!(int_at(status, "/readyReplicas").unwrap_or(0)),
            row.age,
            json!(containers),
            json!(images),
            json!(format_label_selector(spec.get("selector"))),
        ]
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }

    fn prepare_create(&self, obj: &mut Map<String, Value>) {
        drop_status(obj);
    }
}

fn default_replica_set(obj: &mut Value) {
    let Some(spec) = child_object(obj, "spec") else {
        return;
    };
    set_default(spec, "replicas", json!(1));
    default_template(spec);
}
