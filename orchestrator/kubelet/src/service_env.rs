//! The Service environment variables Kubernetes gives every container: for each Service of
//! the pod's namespace (unless `enableServiceLinks: false`) and always for the API server's
//! `kubernetes` Service in `default`, `{NAME}_SERVICE_HOST` / `_SERVICE_PORT[_{PORT}]` and
//! the Docker-link style `{NAME}_PORT[_{N}_{PROTO}[_PROTO|_PORT|_ADDR]]` — what in-cluster
//! clients (client-go, kube-rs, kubectl) read to find the API server. Headless and
//! IP-less Services give none. A container's own variables win over these.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

/// The namespace and name of the API server's Service (always in every pod's environment).
pub const MASTER_SERVICE: (&str, &str) = ("default", "kubernetes");

/// `my-svc` → `MY_SVC`.
fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

/// The variables of one Service with a cluster IP.
fn variables(svc: &Service, out: &mut Vec<(String, String)>) {
    let Some(spec) = &svc.spec else { return };
    let ip = spec.cluster_ip.as_deref().unwrap_or_default();
    if ip.is_empty() || ip == "None" {
        return;
    }
    let prefix = env_name(svc.metadata.name.as_deref().unwrap_or_default());
    let ports = spec.ports.as_deref().unwrap_or_default();
    let Some(first) = ports.first() else { return };
    out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
    out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
    for p in ports
        .iter()
        .filter(|p| p.name.as_deref().is_some_and(|n| !n.is_empty()))
    {
        let name = env_name(p.name.as_deref().unwrap_or_default());
        out.push((format!("{prefix}_SERVICE_PORT_{name}"), p.port.to_string()));
    }
    let protocol = |p: &k8s_openapi::api::core::v1::ServicePort| {
        p.protocol.clone().unwrap_or_else(|| "TCP".into())
    };
    let url = |p| format!("{}://{ip}:{}", protocol(p).to_ascii_lowercase(), p.port);
    out.push((format!("{prefix}_PORT"), url(first)));
    for p in ports {
        let proto = protocol(p);
        let base = format!("{prefix}_PORT_{}_{}", p.port, proto.to_ascii_uppercase());
        out.push((base.clone(), url(p)));
        out.push((format!("{base}_PROTO"), proto.to_ascii_lowercase()));
        out.push((format!("{base}_PORT"), p.port.to_string()));
        out.push((format!("{base}_ADDR"), ip.to_string()));
    }
}

/// The Service variables of a pod in `namespace` among `services` (any order); sorted by
/// Service name, as each Service's variables in Kubernetes' order.
pub fn service_env<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    namespace: &str,
    enable_links: bool,
) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for svc in services {
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let name = svc.metadata.name.as_deref().unwrap_or_default();
        let master = (ns, name) == MASTER_SERVICE;
        if (master && !chosen.contains_key(name)) || (enable_links && ns == namespace) {
            chosen.insert(name.to_string(), svc);
        }
    }
    let mut out = Vec::new();
    for svc in chosen.values() {
        variables(svc, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports}
        }))
        .unwrap()
    }

    fn lookup<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_api_server_and_the_namespace_services_as_kubernetes_names_them() {
        let services = [
            svc(
                "default",
                "kubernetes",
                "10.96.0.1",
                serde_json::json!([{"name": "https", "port": 443}]),
            ),
            svc(
                "shop",
                "web-front",
                "10.96.0.20",
                serde_json::json!([
                {"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]),
            ),
            svc(
                "shop",
                "headless",
                "None",
                serde_json::json!([{"port": 80}]),
            ),
            svc(
                "other",
                "elsewhere",
                "10.96.0.30",
                serde_json::json!([{"port": 80}]),
            ),
        ];
        let env = service_env(&services, "shop", true);
        assert_eq!(lookup(&env, "KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
        assert_eq!(lookup(&env, "KUBERNETES_SERVICE_PORT"), Some("443"));
        assert_eq!(lookup(&env, "KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
        assert_eq!(lookup(&env, "KUBERNETES_PORT"), Some("tcp://10.96.0.1:443"));
        assert_eq!(
            lookup(&env, "KUBERNETES_PORT_443_TCP_ADDR"),
            Some("10.96.0.1")
        );
        assert_eq!(lookup(&env, "WEB_FRONT_SERVICE_PORT_DNS"), Some("53"));
        assert_eq!(
            lookup(&env, "WEB_FRONT_PORT_53_UDP"),
            Some("udp://10.96.0.20:53")
        );
        assert_eq!(lookup(&env, "WEB_FRONT_PORT_53_UDP_PROTO"), Some("udp"));
        assert_eq!(lookup(&env, "WEB_FRONT_PORT"), Some("tcp://10.96.0.20:80"));
        assert!(lookup(&env, "HEADLESS_SERVICE_HOST").is_none());
        assert!(lookup(&env, "ELSEWHERE_SERVICE_HOST").is_none());
        // without service links only the API server's remain
        let env = service_env(&services, "shop", false);
        assert!(lookup(&env, "WEB_FRONT_SERVICE_HOST").is_none());
        assert_eq!(lookup(&env, "KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
    }
}
