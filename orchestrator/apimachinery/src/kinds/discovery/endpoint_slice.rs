//! `discovery.k8s.io/v1 EndpointSlice`.

use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "discovery.k8s.io",
    version: "v1",
    kind: "EndpointSlice",
    plural: "endpointslices",
    singular: "endpointslice",
    namespaced: true,
    short_names: &[],
    categories: &[],
    list_kind: "EndpointSliceList",
    subresources: &[],
    verbs: ALL_VERBS,
    strategy: &EndpointSliceStrategy,
};

/// The strategy of `EndpointSlice`.
pub struct EndpointSliceStrategy;

impl KindStrategy for EndpointSliceStrategy {
    fn default(&self, obj: &mut Value) {
        default_endpoint_slice(obj);
    }

    fn validate(&self, obj: &Value, errs: &mut Errors) {
        validate_endpoint_slice(obj, errs);
    }

    fn validate_update(&self, new: &Value, old: &Value, errs: &mut Errors) {
        check_immutable("addressType", new.get("addressType"), old.get("addressType"), errs);
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::discovery::v1::EndpointSlice>(res, obj)
    }

    fn table_columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("AddressType", "string", "The IP protocol for this slice", 0),
            col("Ports", "string", "The ports of this slice", 0),
            col("Endpoints", "string", "Endpoints in this slice", 0),
            AGE,
        ]
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        vec![
            row.name,
            json!(str_at(obj, "/addressType")),
            json!(format_slice_ports(obj)),
            json!(format_slice_endpoints(obj)),
            row.age,
        ]
    }
}

fn default_endpoint_slice(obj: &mut Value) {
    if let Some(map) = obj.as_object_mut() {
        each_item(map, "ports", |p| {
            set_default(p, "protocol", json!("TCP"));
            set_default(p, "name", json!(""));
        });
    }
}

fn validate_endpoint_slice(obj: &Value, errs: &mut Errors) {
    let at = Path::new("addressType");
    match obj.get("addressType").filter(|v| !v.is_null()) {
        None => errs.push(FieldError::required(&at, "")),
        Some(_) => check_enum(
            errs,
            &Path::new(""),
            obj,
            "addressType",
            &["FQDN", "IPv4", "IPv6"],
        ),
    }
    for (i, e) in arr(obj, "endpoints").iter().enumerate() {
        let ep = Path::new("endpoints").index(i).child("addresses");
        let addrs = arr(e, "addresses");
        if addrs.is_empty() {
            errs.push(FieldError::required(&ep, "must contain at least 1 address"));
        } else if addrs.len() > 100 {
            errs.push(FieldError::too_long(&ep, 100));
        }
    }
    for (i, p) in arr(obj, "ports").iter().enumerate() {
        let pp = Path::new("ports").index(i);
        if present(p, "port") {
            validate_port_number(errs, &pp, p, "port", false);
        }
        check_enum(errs, &pp, p, "protocol", PROTOCOLS);
    }
}

fn format_slice_ports(es: &Value) -> String {
    let ports: Vec<String> = list_at(es, "/ports")
        .iter()
        .map(|p| match int_at(p, "/port") {
            Some(n) => n.to_string(),
            None => "<unset>".into(),
        })
        .collect();
    if ports.is_empty() {
        "<unset>".into()
    } else {
        ports.join(",")
    }
}

fn format_slice_endpoints(es: &Value) -> String {
    let addrs: Vec<String> = list_at(es, "/endpoints")
        .iter()
        .flat_map(|e| {
            list_at(e, "/addresses")
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    first_three(addrs, "<unset>")
}
