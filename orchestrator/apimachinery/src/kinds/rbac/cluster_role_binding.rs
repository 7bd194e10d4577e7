//! `rbac.authorization.k8s.io/v1 ClusterRoleBinding`.

use super::policy_rules::*;
use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: GROUP,
    version: "v1",
    kind: "ClusterRoleBinding",
    plural: "clusterrolebindings",
    singular: "clusterrolebinding",
    namespaced: false,
    short_names: &[],
    categories: &[],
    list_kind: "ClusterRoleBindingList",
    subresources: &[],
    verbs: ALL_VERBS,
    strategy: &ClusterRoleBindingStrategy,
};

/// The strategy of `ClusterRoleBinding`.
pub struct ClusterRoleBindingStrategy;

impl KindStrategy for ClusterRoleBindingStrategy {
    fn name_rule(&self) -> fn(&str) -> Vec<String> {
        names::path_segment
    }

    fn default(&self, obj: &mut Value) {
        default_subjects(obj);
    }

    fn validate(&self, obj: &Value, errs: &mut Errors) {
        validate_binding(obj, &["ClusterRole"], false, errs);
    }

    fn validate_update(&self, new: &Value, old: &Value, errs: &mut Errors) {
        validate_role_ref_unchanged(new, old, errs);
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(res, obj)
    }

    fn table_columns(&self) -> Vec<Column> {
        binding_columns()
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        binding_cells(obj, row)
    }
}
