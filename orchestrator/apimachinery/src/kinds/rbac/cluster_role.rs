//! `rbac.authorization.k8s.io/v1 ClusterRole`.

use super::policy_rules::*;
use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: GROUP,
    version: "v1",
    kind: "ClusterRole",
    plural: "clusterroles",
    singular: "clusterrole",
    namespaced: false,
    short_names: &[],
    categories: &[],
    list_kind: "ClusterRoleList",
    subresources: &[],
    verbs: ALL_VERBS,
    strategy: &ClusterRoleStrategy,
};

/// The strategy of `ClusterRole`.
pub struct ClusterRoleStrategy;

impl KindStrategy for ClusterRoleStrategy {
    fn name_rule(&self) -> fn(&str) -> Vec<String> {
        names::path_segment
    }

    fn validate(&self, obj: &Value, errs: &mut Errors) {
        validate_rules(obj, false, errs);
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::rbac::v1::ClusterRole>(res, obj)
    }

    fn table_columns(&self) -> Vec<Column> {
        created_at_columns()
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        created_at_cells(obj, row)
    }
}
