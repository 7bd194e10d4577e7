//! `core/v1 Service`: its defaults, validation, columns, and what an update carries over
//! from the stored object (ClusterIP, NodePorts). The API server's allocator claims the
//! addresses ([`Allocates::ServiceAddresses`]).

use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "Service",
    plural: "services",
    singular: "service",
    namespaced: true,
    short_names: &["svc"],
    categories: &["all"],
    list_kind: "ServiceList",
    subresources: &[status_of("Service")],
    verbs: ALL_VERBS,
    strategy: &ServiceStrategy,
};

/// The strategy of `Service`.
pub struct ServiceStrategy;

impl KindStrategy for ServiceStrategy {
    fn default(&self, obj: &mut Value) {
        default_service(obj);
    }

    fn name_rule(&self) -> fn(&str) -> Vec<String> {
        names::dns1035_label
    }

    fn validate(&self, obj: &Value, errs: &mut Errors) {
        validate_service_spec(spec_of(obj), &Path::new("spec"), errs);
    }

    /// A Service update that leaves `spec.clusterIP` empty is not reported: as in Kubernetes,
    /// [`KindStrategy::prepare_update`] carries the allocated address over before storing.
    fn validate_update(&self, new: &Value, old: &Value, errs: &mut Errors) {
        let old_ip = cluster_ip(old);
        let new_ip = cluster_ip(new);
        if !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip {
            errs.push(FieldError::invalid(
                &Path::new("spec.clusterIP"),
                Value::String(new_ip.into()),
                "field is immutable",
            ));
        }
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::core::v1::Service>(res, obj)
    }

    fn list_strategy(&self, path: &str) -> Option<ListStrategy> {
        (path == "spec.ports").then_some(ListStrategy::MergeByKey("port"))
    }

    fn table_columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Type", "string", "type determines how the Service is exposed.", 0),
            col("Cluster-IP", "string", "clusterIP is the IP address of the service.", 0),
            col("External-IP", "string", "List of IP addresses at which the service is available.", 0),
            col("Port(s)", "string", "The list of ports that are exposed by this service.", 0),
            AGE,
            col("Selector", "string", "Route service traffic to pods with label keys and values matching this selector.", 1),
        ]
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        service_cells(obj, row.name, row.age)
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }

    fn prepare_create(&self, obj: &mut Map<String, Value>) {
        obj.remove("status");
    }

    fn prepare_update(&self, old: &Value, new: &mut Value) {
        if new.get("spec").is_some_and(Value::is_object) {
            keep_cluster_ip(old, new);
            keep_node_ports(old, new);
        }
    }

    fn allocation(&self) -> Allocates {
        Allocates::ServiceAddresses
    }
}

/// `spec.type`, `ClusterIP` when unset.
pub fn service_type(svc: &Value) -> &str {
    svc.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

/// Whether a Service of this type has a ClusterIP (all but `ExternalName`).
pub fn needs_cluster_ip(svc: &Value) -> bool {
    service_type(svc) != "ExternalName"
}

/// Whether a Service of this type has NodePorts (`NodePort`, `LoadBalancer`).
pub fn wants_node_ports(svc: &Value) -> bool {
    matches!(service_type(svc), "NodePort" | "LoadBalancer")
}

/// `spec.clusterIP`, `""` when unset.
pub fn cluster_ip(svc: &Value) -> &str {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The NodePorts the Service's ports hold (0 = none, left out).
pub fn node_ports(svc: &Value) -> Vec<u64> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .filter(|p| *p != 0)
        .collect()
}

fn default_service(obj: &mut Value) {
    let Some(spec) = child_object(obj, "spec") else {
        return;
    };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    each_item(spec, "ports", |p| {
        set_default(p, "protocol", json!("TCP"));
        // a zero targetPort (0 or "", what a Go client sends when unset) defaults too
        if p
            .get("targetPort")
            .is_some_and(|t| t.as_i64() == Some(0) || t.as_str() == Some(""))
        {
            p.remove("targetPort");
        }
        if let Some(port) = p.get("port").cloned() {
            set_default(p, "targetPort", port);
        }
    });
    // Kubernetes keeps clusterIPs[0] == clusterIP; the allocated address is mirrored here.
    if let Some(ip) = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty())
    {
        let ip = ip.to_string();
        set_default(spec, "clusterIPs", json!([ip]));
    }
    if ty != "ExternalName" {
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if let Some(status) = child_object(obj, "status") {
        set_default(status, "loadBalancer", json!({}));
    }
}

fn validate_service_spec(spec: &Value, path: &Path, errs: &mut Errors) {
    if !spec.is_object() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let ty = s(spec, "type").unwrap_or("ClusterIP");
    check_enum(
        errs,
        path,
        spec,
        "type",
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
    );
    check_enum(errs, path, spec, "sessionAffinity", &["ClientIP", "None"]);
    let cluster_ip = s(spec, "clusterIP").unwrap_or("");
    let headless = cluster_ip == "None";
    if !cluster_ip.is_empty() && !headless && cluster_ip.parse::<std::net::IpAddr>().is_err() {
        errs.push(FieldError::invalid(
            &path.child("clusterIP"),
            Value::String(cluster_ip.into()),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    if let Some(first) = arr(spec, "clusterIPs").first().and_then(Value::as_str) {
        if !cluster_ip.is_empty() && first != cluster_ip {
            errs.push(FieldError::invalid(
                &path.child("clusterIPs").index(0),
                Value::String(first.into()),
                "must match `clusterIP` when both are specified",
            ));
        }
    }
    if ty == "ExternalName" {
        match s(spec, "externalName").filter(|n| !n.is_empty()) {
            None => errs.push(FieldError::required(&path.child("externalName"), "")),
            Some(n) => push_msgs(
                errs,
                &path.child("externalName"),
                n,
                names::dns1123_subdomain(n.trim_end_matches('.')),
            ),
        }
    }
    let ports = arr(spec, "ports");
    if ports.is_empty() && ty != "ExternalName" && !headless {
        errs.push(FieldError::required(&path.child("ports"), ""));
    }
    let mut seen = SeenPorts::default();
    for (i, p) in ports.iter().enumerate() {
        let pp = path.child("ports").index(i);
        validate_port_name(p, &pp, ports.len() > 1, &mut seen, errs);
        validate_port(p, &pp, &mut seen, errs);
        validate_target_port(p, &pp, errs);
        validate_node_port(p, &pp, ty, errs);
    }
    validate_labels(spec.get("selector"), &path.child("selector"), errs);
}

/// The names and (port, protocol) pairs of a Service's ports so far (each must be unique).
#[derive(Default)]
struct SeenPorts {
    names: BTreeSet<String>,
    ports: BTreeSet<(i64, String)>,
}

/// `name` of a Service port: required when there are several, a unique DNS-1123 label.
fn validate_port_name(p: &Value, pp: &Path, several: bool, seen: &mut SeenPorts, errs: &mut Errors) {
    match s(p, "name").filter(|n| !n.is_empty()) {
        None if several => errs.push(FieldError::required(&pp.child("name"), "")),
        None => {}
        Some(name) => {
            push_msgs(errs, &pp.child("name"), name, names::dns1123_label(name));
            if !seen.names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(
                    &pp.child("name"),
                    Value::String(name.into()),
                ));
            }
        }
    }
}

/// `port` and `protocol` of a Service port: a valid port number, a known protocol, the pair
/// unique.
fn validate_port(p: &Value, pp: &Path, seen: &mut SeenPorts, errs: &mut Errors) {
    match p.get("port") {
        Some(v) if v.is_i64() => validate_port_number(errs, pp, p, "port", true),
        Some(v) if !v.is_null() => errs.push(FieldError::invalid(
            &pp.child("port"),
            v.clone(),
            "must be an integer",
        )),
        _ => errs.push(FieldError::invalid(
            &pp.child("port"),
            0.into(),
            "must be between 1 and 65535, inclusive",
        )),
    }
    check_enum(errs, pp, p, "protocol", PROTOCOLS);
    let key = (
        int(p, "port").unwrap_or(0),
        s(p, "protocol").unwrap_or("TCP").to_string(),
    );
    if !seen.ports.insert(key.clone()) {
        errs.push(FieldError::duplicate(
            pp,
            serde_json::json!({"port": key.0, "protocol": key.1}),
        ));
    }
}

/// `targetPort`: a port number or an IANA service name.
fn validate_target_port(p: &Value, pp: &Path, errs: &mut Errors) {
    match p.get("targetPort").filter(|v| !v.is_null()) {
        Some(Value::Number(n)) => {
            for m in names::port_number(n.as_i64().unwrap_or(0)) {
                errs.push(FieldError::invalid(
                    &pp.child("targetPort"),
                    Value::Number(n.clone()),
                    m,
                ));
            }
        }
        Some(Value::String(name)) => push_msgs(
            errs,
            &pp.child("targetPort"),
            name,
            names::iana_svc_name(name),
        ),
        Some(other) => errs.push(FieldError::invalid(
            &pp.child("targetPort"),
            other.clone(),
            "must be an integer or a string",
        )),
        None => {}
    }
}

/// `nodePort`: only for NodePort/LoadBalancer Services, in 30000-32767.
fn validate_node_port(p: &Value, pp: &Path, ty: &str, errs: &mut Errors) {
    let Some(np) = int(p, "nodePort").filter(|n| *n != 0) else {
        return;
    };
    let np_path = pp.child("nodePort");
    if ty == "ClusterIP" || ty == "ExternalName" {
        errs.push(FieldError::forbidden(
            &np_path,
            format!("may not be used when `type` is '{ty}'"),
        ));
    } else if !(30000..=32767).contains(&np) {
        errs.push(FieldError::invalid(
            &np_path,
            np.into(),
            "provided port is not in the valid range. The range of valid ports is 30000-32767",
        ));
    }
}

fn service_cells(svc: &Value, name: Value, age: Value) -> Vec<Value> {
    let spec = svc.get("spec").unwrap_or(&Value::Null);
    let ty = match str_at(spec, "/type") {
        "" => "ClusterIP",
        t => t,
    };
    let external_ips: Vec<&str> = list_at(spec, "/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match ty {
        "ClusterIP" | "NodePort" => or_none(&external_ips.join(",")),
        "LoadBalancer" => {
            let mut ips: Vec<String> = list_at(svc, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| {
                    let ip = str_at(i, "/ip");
                    if ip.is_empty() {
                        str_at(i, "/hostname").to_string()
                    } else {
                        ip.to_string()
                    }
                })
                .filter(|s| !s.is_empty())
                .collect();
            ips.extend(external_ips.iter().map(|s| s.to_string()));
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => str_at(spec, "/externalName").to_string(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = list_at(spec, "/ports")
        .iter()
        .map(|p| {
            let port = int_at(p, "/port").unwrap_or(0);
            let proto = match str_at(p, "/protocol") {
                "" => "TCP",
                p => p,
            };
            match int_at(p, "/nodePort").filter(|n| *n != 0) {
                Some(np) => format!("{port}:{np}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    vec![
        name,
        json!(ty),
        json!(or_none(str_at(spec, "/clusterIP"))),
        json!(external),
        json!(or_none(&ports.join(","))),
        age,
        json!(format_labels(spec.get("selector"))),
    ]
}

/// A PUT without `spec.clusterIP`/`clusterIPs` (`kubectl replace -f` of the original
/// manifest) keeps the allocated ones, as Kubernetes does; a change to ExternalName drops the
/// old ClusterIP.
fn keep_cluster_ip(old: &Value, new: &mut Value) {
    let old_ip = cluster_ip(old).to_string();
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        if cluster_ip(new).is_empty() && !old_ip.is_empty() {
            new["spec"]["clusterIP"] = json!(old_ip);
        }
        let ips_missing = new
            .pointer("/spec/clusterIPs")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
        if ips_missing {
            if let Some(ips) = old.pointer("/spec/clusterIPs").filter(|v| v.is_array()) {
                new["spec"]["clusterIPs"] = ips.clone();
            }
        }
    } else if needs_cluster_ip(old) && !needs_cluster_ip(new) && cluster_ip(new) == old_ip {
        if let Some(spec) = new["spec"].as_object_mut() {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
    }
}

/// A port without `nodePort` keeps the NodePort of the old port with the same name; a type
/// change to ClusterIP drops the old NodePorts (the server releases them once the update is
/// stored).
fn keep_node_ports(old: &Value, new: &mut Value) {
    match (wants_node_ports(old), wants_node_ports(new)) {
        (true, true) => keep_node_ports_by_name(old, new),
        (true, false) => {
            let old_ports = node_ports(old);
            for p in ports_mut(new) {
                let held = p
                    .get("nodePort")
                    .and_then(Value::as_u64)
                    .is_some_and(|n| old_ports.contains(&n));
                if held {
                    if let Some(m) = p.as_object_mut() {
                        m.remove("nodePort");
                    }
                }
            }
        }
        _ => {}
    }
}

fn ports_mut(svc: &mut Value) -> impl Iterator<Item = &mut Value> {
    svc.pointer_mut("/spec/ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

fn keep_node_ports_by_name(old: &Value, new: &mut Value) {
    let new_ports = node_ports(new);
    let by_name: std::collections::HashMap<&str, u64> = old
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let port = p.get("nodePort").and_then(Value::as_u64)?;
            Some((p.get("name").and_then(Value::as_str).unwrap_or(""), port))
        })
        .collect();
    for p in ports_mut(new) {
        let unset = p
            .get("nodePort")
            .is_none_or(|v| v.is_null() || v.as_u64() == Some(0));
        if !unset {
            continue;
        }
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if let Some(&port) = by_name.get(name) {
            // not when another port of the new object already uses it
            if !new_ports.contains(&port) {
                p["nodePort"] = json!(port);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::kinds::test_support::*;
    use serde_json::{json, Value};

    #[test]
    fn a_zero_target_port_defaults_to_the_port() {
        let res = crate::registry::by_kind("Service").unwrap();
        for zero in [json!(0), json!("")] {
            let mut svc = json!({"spec": {"ports": [{"port": 80, "targetPort": zero}]}});
            crate::defaults::apply_defaults(res, &mut svc);
            assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80, "{zero}");
        }
    }

    #[test]
    fn service_rules() {
        let svc = |spec: Value| json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec});
        assert_eq!(
            check("Service", svc(json!({}))),
            ["spec.ports: Required value"]
        );
        assert!(check("Service", svc(json!({"clusterIP": "None"}))).is_empty());
        assert_eq!(
            fields(
                "Service",
                svc(
                    json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.11"], "ports": [{"port": 80}]})
                )
            ),
            [("spec.clusterIPs[0]".to_string(), "FieldValueInvalid")]
        );
        assert!(check(
            "Service",
            svc(json!({"type": "ExternalName", "externalName": "db.example.com"}))
        )
        .is_empty());
        assert_eq!(
            fields("Service", svc(json!({"type": "ExternalName"}))),
            [("spec.externalName".to_string(), "FieldValueRequired")]
        );
        assert_eq!(
            check("Service", svc(json!({"type": "Magic", "sessionAffinity": "Sticky", "clusterIP": "10.96.0.300",
                "ports": [{"port": 80}, {"name": "http", "port": 0, "protocol": "HTTP", "targetPort": 70000},
                          {"name": "http", "port": 443, "targetPort": "Bad_Name"},
                          {"name": "dns", "port": 443, "nodePort": 80}]}))),
            [
                "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
                "spec.clusterIP: Invalid value: \"10.96.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "spec.ports[0].name: Required value",
                "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.ports[2].name: Duplicate value: \"http\"",
                "spec.ports[2].targetPort: Invalid value: \"Bad_Name\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "spec.ports[3]: Duplicate value: {\"port\":443,\"protocol\":\"TCP\"}",
                "spec.ports[3].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
            ]
        );
        assert_eq!(
            fields(
                "Service",
                svc(json!({"ports": [{"port": 80, "nodePort": 30080}]}))
            ),
            [("spec.ports[0].nodePort".to_string(), "FieldValueForbidden")]
        );
        assert!(check(
            "Service",
            svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}))
        )
        .is_empty());
    }
}
