//! Kubernetes Services and EndpointSlices → [`ServiceRecord`]s.

use std::net::IpAddr;

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};

use crate::model::{EndpointRecord, PortRecord, ServiceKind, ServiceRecord};

/// The Service as DNS serves it, with the ready endpoints of its `slices`; None for an object
/// without name or spec. Addresses that do not parse are skipped (the proxy reports them).
pub fn service_record<'a>(
    svc: &Service,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Option<ServiceRecord> {
    let name = svc.metadata.name.clone()?;
    let namespace = svc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let spec = svc.spec.as_ref()?;
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        ServiceKind::ExternalName(spec.external_name.clone().unwrap_or_default())
    } else {
        let ips: Vec<IpAddr> = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .filter_map(|ip| ip.parse().ok())
            .fold(Vec::new(), |mut v, ip| {
                if !v.contains(&ip) {
                    v.push(ip);
                }
                v
            });
        if ips.is_empty() {
            ServiceKind::Headless
        } else {
            ServiceKind::ClusterIp(ips)
        }
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| port(p.name.as_deref(), p.protocol.as_deref(), Some(p.port)))
        .collect();
    Some(ServiceRecord {
        namespace,
        name,
        kind,
        ports,
        endpoints: slices.into_iter().flat_map(ready_endpoints).collect(),
    })
}

fn port(name: Option<&str>, protocol: Option<&str>, port: Option<i32>) -> Option<PortRecord> {
    Some(PortRecord {
        name: name.unwrap_or_default().to_ascii_lowercase(),
        protocol: protocol.unwrap_or("TCP").to_ascii_lowercase(),
        port: u16::try_from(port?).ok().filter(|p| *p != 0)?,
    })
}

/// The ready endpoints of one slice (a nil `ready` means ready, as the API says).
fn ready_endpoints(slice: &EndpointSlice) -> Vec<EndpointRecord> {
    let ports: Vec<PortRecord> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| port(p.name.as_deref(), p.protocol.as_deref(), p.port))
        .collect();
    slice
        .endpoints
        .iter()
        .filter(|ep| ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .flat_map(|ep| {
            let ports = ports.clone();
            ep.addresses.iter().filter_map(move |a| {
                Some(EndpointRecord {
                    addr: a.parse().ok()?,
                    hostname: ep.hostname.clone(),
                    ports: ports.clone(),
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::{
        api::{
            core::v1::{ServicePort, ServiceSpec},
            discovery::v1::{Endpoint, EndpointConditions, EndpointPort},
        },
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    #[test]
    fn headless_service_keeps_ready_endpoints_with_hostnames() {
        let svc = Service {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("prod".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                cluster_ips: Some(vec!["None".into()]),
                ports: Some(vec![ServicePort {
                    name: Some("SQL".into()),
                    port: 5432,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let endpoint = |addr: &str, host: Option<&str>, ready| Endpoint {
            addresses: vec![addr.into()],
            hostname: host.map(Into::into),
            conditions: Some(EndpointConditions {
                ready,
                ..Default::default()
            }),
            ..Default::default()
        };
        let slice = EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: vec![
                endpoint("10.244.1.5", Some("db-0"), Some(true)),
                endpoint("10.244.1.6", None, None),
                endpoint("10.244.1.7", None, Some(false)),
                endpoint("not-an-ip", None, Some(true)),
            ],
            metadata: ObjectMeta::default(),
            ports: Some(vec![EndpointPort {
                name: Some("sql".into()),
                port: Some(5432),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        };
        let rec = service_record(&svc, [&slice]).unwrap();
        assert_eq!(rec.kind, ServiceKind::Headless);
        assert_eq!(rec.ports[0].name, "sql");
        assert_eq!(rec.ports[0].protocol, "tcp");
        let addrs: Vec<String> = rec.endpoints.iter().map(|e| e.addr.to_string()).collect();
        assert_eq!(addrs, ["10.244.1.5", "10.244.1.6"]);
        assert_eq!(rec.endpoints[0].label(), "db-0");
        assert_eq!(rec.endpoints[1].label(), "10-244-1-6");
    }
}
