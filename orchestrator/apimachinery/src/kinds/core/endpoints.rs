//! `core/v1 Endpoints`.

use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "Endpoints",
    plural: "endpoints",
    singular: "endpoints",
    namespaced: true,
    short_names: &["ep"],
    categories: &[],
    list_kind: "EndpointsList",
    subresources: &[],
    verbs: ALL_VERBS,
    strategy: &EndpointsStrategy,
};

/// The strategy of `Endpoints`.
pub struct EndpointsStrategy;

impl KindStrategy for EndpointsStrategy {
    fn default(&self, obj: &mut Value) {
        default_endpoints(obj);
    }

    fn validate(&self, obj: &Value, errs: &mut Errors) {
        validate_endpoints(obj, errs);
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::core::v1::Endpoints>(res, obj)
    }

    fn table_columns(&self) -> Vec<Column> {
        vec![NAME, col("Endpoints", "string", "Endpoints of the service", 0), AGE]
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        vec![row.name, json!(format_endpoints(obj)), row.age]
    }

    /// Endpoints may be created by a PUT, as in Kubernetes.
    fn allow_create_on_update(&self) -> bool {
        true
    }
}

fn default_endpoints(obj: &mut Value) {
    if let Some(Value::Array(subsets)) = obj.get_mut("subsets") {
        for subset in subsets.iter_mut().filter_map(Value::as_object_mut) {
            each_item(subset, "ports", |p| {
                set_default(p, "protocol", json!("TCP"))
            });
        }
    }
}

fn validate_endpoints(obj: &Value, errs: &mut Errors) {
    for (i, subset) in arr(obj, "subsets").iter().enumerate() {
        let sp = Path::new("subsets").index(i);
        for list in ["addresses", "notReadyAddresses"] {
            for (j, a) in arr(subset, list).iter().enumerate() {
                let ip_path = sp.child(list).index(j).child("ip");
                match s(a, "ip") {
                    None | Some("") => errs.push(FieldError::required(&ip_path, "")),
                    Some(ip) if ip.parse::<std::net::IpAddr>().is_err() => {
                        errs.push(FieldError::invalid(
                            &ip_path,
                            Value::String(ip.into()),
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        for (j, p) in arr(subset, "ports").iter().enumerate() {
            let pp = sp.child("ports").index(j);
            validate_port_number(errs, &pp, p, "port", true);
            check_enum(errs, &pp, p, "protocol", PROTOCOLS);
        }
    }
}

fn format_endpoints(ep: &Value) -> String {
    let mut items = Vec::new();
    for subset in list_at(ep, "/subsets") {
        let ports = list_at(subset, "/ports");
        let addrs = list_at(subset, "/addresses");
        if ports.is_empty() {
            items.extend(addrs.iter().map(|a| str_at(a, "/ip").to_string()));
        }
        for p in ports {
            let port = int_at(p, "/port").unwrap_or(0);
            items.extend(addrs.iter().map(|a| format!("{}:{port}", str_at(a, "/ip"))));
        }
    }
    first_three(items, "<none>")
}
