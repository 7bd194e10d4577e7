//! `coordination.k8s.io/v1 Lease`.

use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "coordination.k8s.io",
    version: "v1",
    kind: "Lease",
    plural: "leases",
    singular: "lease",
    namespaced: true,
    short_names: &[],
    categories: &[],
    list_kind: "LeaseList",
    subresources: &[],
    verbs: ALL_VERBS,
    strategy: &LeaseStrategy,
};

/// The strategy of `Lease`.
pub struct LeaseStrategy;

impl KindStrategy for LeaseStrategy {
    fn validate(&self, obj: &Value, errs: &mut Errors) {
        validate_lease_spec(spec_of(obj), &Path::new("spec"), errs);
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::coordination::v1::Lease>(res, obj)
    }

    fn table_columns(&self) -> Vec<Column> {
        vec![NAME, col("Holder", "string", "The holder of the lease", 0), AGE]
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        vec![row.name, json!(str_at(obj, "/spec/holderIdentity")), row.age]
    }
}

fn validate_lease_spec(spec: &Value, path: &Path, errs: &mut Errors) {
    if let Some(n) = int(spec, "leaseDurationSeconds").filter(|n| *n <= 0) {
        errs.push(FieldError::invalid(
            &path.child("leaseDurationSeconds"),
            n.into(),
            "must be greater than 0",
        ));
    }
    if let Some(n) = int(spec, "leaseTransitions").filter(|n| *n < 0) {
        errs.push(FieldError::invalid(
            &path.child("leaseTransitions"),
            n.into(),
            "must be greater than or equal to 0",
        ));
    }
}
