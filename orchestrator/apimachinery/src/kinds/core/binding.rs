//! `core/v1 Binding` (create only: binds a pod to a node).

use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "Binding",
    plural: "bindings",
    singular: "binding",
    namespaced: true,
    short_names: &[],
    categories: &[],
    list_kind: "BindingList",
    subresources: &[],
    verbs: CREATE_ONLY,
    strategy: &BindingStrategy,
};

/// The strategy of `Binding`.
pub struct BindingStrategy;

impl KindStrategy for BindingStrategy {
    fn validate(&self, obj: &Value, errs: &mut Errors) {
        validate_binding(obj, errs);
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::core::v1::Binding>(res, obj)
    }
}

fn validate_binding(obj: &Value, errs: &mut Errors) {
    let target = Path::new("target");
    if s(obj.get("target").unwrap_or(&Value::Null), "name").is_none_or(str::is_empty) {
        errs.push(FieldError::required(&target.child("name"), ""));
    }
    if let Some(kind) = obj.pointer("/target/kind").and_then(Value::as_str) {
        if !kind.is_empty() && kind != "Node" {
            errs.push(FieldError::not_supported(
                &target.child("kind"),
                Value::String(kind.into()),
                &["Node"],
            ));
        }
    }
}
