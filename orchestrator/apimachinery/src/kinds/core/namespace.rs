//! `core/v1 Namespace`.

use crate::kinds::prelude::*;

/// `namespaces/finalize`: the namespace controller's way to drop `spec.finalizers`.
const NAMESPACE_FINALIZE: Subresource = Subresource {
    name: "finalize",
    group: None,
    version: None,
    kind: "Namespace",
    verbs: &["update"],
};

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "Namespace",
    plural: "namespaces",
    singular: "namespace",
    namespaced: false,
    short_names: &["ns"],
    categories: &[],
    list_kind: "NamespaceList",
    subresources: &[status_of("Namespace"), NAMESPACE_FINALIZE],
    verbs: NAMESPACE_VERBS,
    strategy: &NamespaceStrategy,
};

/// The strategy of `Namespace`.
pub struct NamespaceStrategy;

/// Namespaces that always exist and can never be deleted.
pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

impl KindStrategy for NamespaceStrategy {
    fn default(&self, obj: &mut Value) {
        default_namespace(obj);
    }

    fn name_rule(&self) -> fn(&str) -> Vec<String> {
        names::dns1123_label
    }

    fn validate_status(&self, status: &Value, errs: &mut Errors) {
        check_enum(errs, &Path::new("status"), status, "phase", &["Active", "Terminating"]);
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::core::v1::Namespace>(res, obj)
    }

    fn table_columns(&self) -> Vec<Column> {
        vec![NAME, col("Status", "string", "The status of the namespace", 0), AGE]
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        vec![row.name, json!(str_at(obj, "/status/phase")), row.age]
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    fn prepare_create(&self, obj: &mut Map<String, Value>) {
        obj.insert("status".into(), json!({"phase": "Active"}));
        let spec = obj.entry("spec").or_insert_with(|| json!({}));
        if spec.get("finalizers").is_none() {
            spec["finalizers"] = json!(["kubernetes"]);
        }
    }

    fn finalization_done(&self, obj: &Value) -> bool {
        obj.get("spec")
            .and_then(|s| s.get("finalizers"))
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty())
    }

    fn begin_deletion(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Terminating"});
    }

    fn undeletable(&self, name: &str) -> Option<&'static str> {
        SYSTEM_NAMESPACES
            .contains(&name)
            .then_some("this namespace may not be deleted")
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
