//! `core/v1 ServiceAccount`: an identity for processes in pods (`secrets`,
//! `imagePullSecrets`, `automountServiceAccountToken`).

use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "ServiceAccount",
    plural: "serviceaccounts",
    singular: "serviceaccount",
    namespaced: true,
    short_names: &["sa"],
    categories: &[],
    list_kind: "ServiceAccountList",
    subresources: &[Subresource {
        name: "token",
        group: Some("authentication.k8s.io"),
        version: Some("v1"),
        kind: "TokenRequest",
        verbs: CREATE_ONLY,
    }],
    verbs: ALL_VERBS,
    strategy: &ServiceAccountStrategy,
};

/// The strategy of `ServiceAccount`.
pub struct ServiceAccountStrategy;

impl KindStrategy for ServiceAccountStrategy {
    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::core::v1::ServiceAccount>(res, obj)
    }

    fn table_columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.", 0),
            AGE,
        ]
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        let secrets = list_at(obj, "/secrets").len();
        vec![row.name, json!(secrets), row.age]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_as_sa_with_a_secrets_column() {
        assert_eq!(crate::registry::resolve("sa").map(|r| r.plural), Some("serviceaccounts"));
        let obj = json!({"metadata": {"name": "default"}, "secrets": [{"name": "t"}]});
        let row = RowContext { name: json!("default"), age: json!("2d"), now: Utc::now() };
        let cells = ServiceAccountStrategy.table_cells(&obj, row);
        assert_eq!(cells, [json!("default"), json!(1), json!("2d")]);
    }
}
