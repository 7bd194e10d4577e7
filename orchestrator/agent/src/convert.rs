//! Kubernetes Services, EndpointSlices and Nodes → datapath types.

use std::net::Ipv4Addr;

use bpfk_datapath::{
    Endpoint, EndpointPort, Ipv4Cidr, LbAlgorithm, PeerNode, Protocol, ServiceName, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::{
    core::v1::{Node, Service},
    discovery::v1::EndpointSlice,
};

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT_S: u32 = 10800;

/// A conversion error naming the offending field.
#[derive(Debug, thiserror::Error)]
#[error("{object}: {field}: {reason}")]
pub struct Error {
    pub object: String,
    pub field: String,
    pub reason: String,
}

fn err(object: &str, field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error {
        object: object.to_string(),
        field: field.into(),
        reason: reason.into(),
    }
}

/// The `namespace/name` of a Service object.
pub fn service_name(svc: &Service) -> Option<ServiceName> {
    Some(ServiceName::new(
        svc.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        svc.metadata.name.clone()?,
    ))
}

/// The Service an EndpointSlice belongs to.
pub fn slice_service(slice: &EndpointSlice) -> Option<ServiceName> {
    let svc = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(ServiceName::new(
        slice
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        svc.clone(),
    ))
}

fn protocol(p: Option<&str>, object: &str, field: String) -> Result<Protocol, Error> {
    match p.unwrap_or("TCP") {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        other => Err(err(
            object,
            field,
            format!("protocol {other:?} is not supported (TCP or UDP)"),
        )),
    }
}

/// Converts a Service. `Ok(None)`: nothing to balance (ExternalName).
pub fn service_spec(svc: &Service) -> Result<Option<ServiceSpec>, Error> {
    let name = service_name(svc).ok_or_else(|| err("service", "metadata.name", "missing"))?;
    let object = format!("service {name}");
    let Some(spec) = &svc.spec else {
        return Ok(None);
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Ok(None);
    }
    let cluster_ip = match spec.cluster_ip.as_deref() {
        None | Some("") | Some("None") => None,
        Some(ip) => Some(ip.parse::<Ipv4Addr>().map_err(|e| {
            err(
                &object,
                "spec.clusterIP",
                format!("{ip:?} is not an IPv4 address: {e}"),
            )
        })?),
    };
    let node_ports = matches!(
        spec.type_.as_deref(),
        Some("NodePort") | Some("LoadBalancer")
    );
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let port = u16::try_from(p.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| err(&object, format!("spec.ports[{i}].port"), "must be 1-65535"))?;
        let node_port = match (node_ports, p.node_port) {
            (true, Some(np)) => {
                Some(u16::try_from(np).ok().filter(|p| *p != 0).ok_or_else(|| {
                    err(
                        &object,
                        format!("spec.ports[{i}].nodePort"),
                        "must be 1-65535",
                    )
                })?)
            }
            _ => None,
        };
        ports.push(ServicePort {
            name: p.name.clone().unwrap_or_default(),
            protocol: protocol(
                p.protocol.as_deref(),
                &object,
                format!("spec.ports[{i}].protocol"),
            )?,
            port,
            node_port,
        });
    }
    let affinity_timeout_s = if spec.session_affinity.as_deref() == Some("ClientIP") {
        let t = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_S as i32);
        Some(u32::try_from(t).ok().filter(|t| *t > 0).ok_or_else(|| {
            err(
                &object,
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                "must be positive",
            )
        })?)
    } else {
        None
    };
    let lb_algorithm = lb_algorithm(svc, &object)?;
    Ok(Some(ServiceSpec {
        name,
        cluster_ip,
        ports,
        affinity_timeout_s,
        lb_algorithm,
    }))
}

/// Annotation choosing how a Service's ClusterIP picks backends: `random` (the default) or
/// `maglev` (consistent hashing). NodePorts always use Maglev.
pub const LB_ALGORITHM_ANNOTATION: &str = "bpfk.io/lb-algorithm";

fn lb_algorithm(svc: &Service, object: &str) -> Result<LbAlgorithm, Error> {
    let value = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LB_ALGORITHM_ANNOTATION));
    let Some(value) = value else {
        return Ok(LbAlgorithm::Random);
    };
    let field = format!("metadata.annotations[{LB_ALGORITHM_ANNOTATION}]");
    LbAlgorithm::from_annotation(value, &field).map_err(|_| {
        err(
            object,
            field,
            format!("{value:?} is not a load-balancing algorithm (random or maglev)"),
        )
    })
}

/// Ready IPv4 endpoints of a set of slices (other address types are skipped).
pub fn endpoints<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Result<Vec<Endpoint>, Error> {
    let (mut ready, mut terminating) = (Vec::new(), Vec::new());
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let object = format!(
            "endpointslice {}/{}",
            slice.metadata.namespace.as_deref().unwrap_or("default"),
            slice.metadata.name.as_deref().unwrap_or("")
        );
        let mut ports = Vec::new();
        for (i, p) in slice.ports.iter().flatten().enumerate() {
            let Some(port) = p.port else { continue };
            let port = u16::try_from(port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| err(&object, format!("ports[{i}].port"), "must be 1-65535"))?;
            ports.push(EndpointPort {
                name: p.name.clone().unwrap_or_default(),
                protocol: protocol(
                    p.protocol.as_deref(),
                    &object,
                    format!("ports[{i}].protocol"),
                )?,
                port,
            });
        }
        for (i, ep) in slice.endpoints.iter().enumerate() {
            let Some(class) = usable(ep) else { continue };
            for (j, a) in ep.addresses.iter().enumerate() {
                let addr: Ipv4Addr = a.parse().map_err(|e| {
                    err(
                        &object,
                        format!("endpoints[{i}].addresses[{j}]"),
                        format!("{a:?} is not an IPv4 address: {e}"),
                    )
                })?;
                let endpoint = Endpoint {
                    addr,
                    ports: ports.clone(),
                };
                match class {
                    Usable::Ready => ready.push(endpoint),
                    Usable::ServingTerminating => terminating.push(endpoint),
                }
            }
        }
    }
    // as kube-proxy: new connections go to ready endpoints; only when there is none, to
    // terminating ones that still serve (a graceful drain keeps the service answering)
    Ok(if ready.is_empty() { terminating } else { ready })
}

/// Which new connections an endpoint may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Usable {
    /// Ready (so not terminating): any.
    Ready,
    /// Terminating but still serving: only when no endpoint is ready.
    ServingTerminating,
}

/// How an endpoint's conditions let it be used (`None`: not at all). A nil `ready` means
/// ready, a nil `serving` serving and a nil `terminating` not terminating (as kube-proxy reads them).
fn usable(ep: &k8s_openapi::api::discovery::v1::Endpoint) -> Option<Usable> {
    let c = ep.conditions.clone().unwrap_or_default();
    let ready = c.ready.unwrap_or(true);
    let serving = c.serving.unwrap_or(true);
    let terminating = c.terminating.unwrap_or(false);
    match (ready, serving && terminating) {
        (true, _) => Some(Usable::Ready),
        (false, true) => Some(Usable::ServingTerminating),
        (false, false) => None,
    }
}

/// Another node as a route target: its pod CIDR via its InternalIP.
pub fn peer(node: &Node) -> Option<PeerNode> {
    let spec = node.spec.as_ref()?;
    let cidr = spec
        .pod_cidrs
        .iter()
        .flatten()
        .chain(spec.pod_cidr.iter())
        .find_map(|c| c.parse::<Ipv4Cidr>().ok())?;
    let addr = node
        .status
        .as_ref()?
        .addresses
        .iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse::<Ipv4Addr>().ok())?;
    Some(PeerNode {
        pod_cidr: cidr,
        node_addr: addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::{
        api::{
            core::v1::{ServicePort as K8sPort, ServiceSpec as K8sSpec},
            discovery::v1::{
                Endpoint as K8sEndpoint, EndpointConditions, EndpointPort as K8sEpPort,
            },
        },
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    fn svc(type_: &str, proto: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("prod".into()),
                ..Default::default()
            },
            spec: Some(K8sSpec {
                type_: Some(type_.into()),
                cluster_ip: Some("10.96.0.10".into()),
                ports: Some(vec![K8sPort {
                    name: Some("http".into()),
                    port: 80,
                    node_port: Some(30080),
                    protocol: Some(proto.into()),
                    ..Default::default()
                }]),
                session_affinity: Some("ClientIP".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn service_converts_with_nodeport_and_affinity_default() {
        let s = service_spec(&svc("NodePort", "TCP")).unwrap().unwrap();
        assert_eq!(s.name.to_string(), "prod/web");
        assert_eq!(s.cluster_ip, Some(Ipv4Addr::new(10, 96, 0, 10)));
        assert_eq!(s.ports[0].node_port, Some(30080));
        assert_eq!(s.affinity_timeout_s, Some(DEFAULT_AFFINITY_TIMEOUT_S));
        // ClusterIP services get no NodePort even if one is set.
        let s = service_spec(&svc("ClusterIP", "UDP")).unwrap().unwrap();
        assert_eq!(s.ports[0].node_port, None);
        assert_eq!(s.ports[0].protocol, Protocol::Udp);
    }

    #[test]
    fn lb_algorithm_annotation_selects_maglev_and_rejects_others() {
        let mut service = svc("ClusterIP", "TCP");
        let s = service_spec(&service).unwrap().unwrap();
        assert_eq!(s.lb_algorithm, LbAlgorithm::Random);
        let annotate = |service: &mut Service, v: &str| {
            service.metadata.annotations =
                Some([(LB_ALGORITHM_ANNOTATION.to_string(), v.to_string())].into());
        };
        annotate(&mut service, "maglev");
        let s = service_spec(&service).unwrap().unwrap();
        assert_eq!(s.lb_algorithm, LbAlgorithm::Maglev);
        annotate(&mut service, "round-robin");
        let e = service_spec(&service).unwrap_err().to_string();
        assert!(
            e.contains("bpfk.io/lb-algorithm") && e.contains("round-robin"),
            "{e}"
        );
    }

    #[test]
    fn unsupported_protocol_names_the_field() {
        let e = service_spec(&svc("ClusterIP", "SCTP"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("service prod/web: spec.ports[0].protocol"),
            "{e}"
        );
    }

    #[test]
    fn headless_and_external_name() {
        let mut s = svc("ClusterIP", "TCP");
        s.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        assert_eq!(service_spec(&s).unwrap().unwrap().cluster_ip, None);
        let s = svc("ExternalName", "TCP");
        assert!(service_spec(&s).unwrap().is_none());
    }

    #[test]
    fn slices_give_ready_ipv4_endpoints() {
        let slice = EndpointSlice {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("prod".into()),
                labels: Some([(SERVICE_NAME_LABEL.to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: vec![
                K8sEndpoint {
                    addresses: vec!["10.244.1.5".into()],
                    conditions: None,
                    ..Default::default()
                },
                K8sEndpoint {
                    addresses: vec!["10.244.1.6".into()],
                    conditions: Some(EndpointConditions {
                        ready: Some(false),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
            ports: Some(vec![K8sEpPort {
                name: Some("http".into()),
                port: Some(8080),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
        };
        assert_eq!(slice_service(&slice).unwrap().to_string(), "prod/web");
        let eps = endpoints([&slice]).unwrap();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].addr, Ipv4Addr::new(10, 244, 1, 5));
        assert_eq!(eps[0].ports[0].port, 8080);
        let mut bad = slice.clone();
        bad.endpoints[0].addresses[0] = "nope".into();
        let e = endpoints([&bad]).unwrap_err().to_string();
        assert!(e.contains("endpoints[0].addresses[0]"), "{e}");
    }

    #[test]
    fn serving_terminating_endpoints_only_when_none_is_ready() {
        let ep = |ip: &str, ready: bool, serving: bool, terminating: bool| K8sEndpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            ..Default::default()
        };
        let slice = |endpoints: Vec<K8sEndpoint>| EndpointSlice {
            address_type: "IPv4".into(),
            endpoints,
            ports: Some(vec![K8sEpPort {
                port: Some(80),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let addrs = |s: &EndpointSlice| -> Vec<String> {
            let eps = endpoints([s]).unwrap();
            eps.iter().map(|e| e.addr.to_string()).collect()
        };
        let draining = ep("10.244.1.7", false, true, true);
        let gone = ep("10.244.1.8", false, false, true);
        let mixed = slice(vec![
            ep("10.244.1.5", true, true, false),
            draining.clone(),
            gone.clone(),
        ]);
        assert_eq!(addrs(&mixed), ["10.244.1.5"]);
        assert_eq!(addrs(&slice(vec![draining, gone])), ["10.244.1.7"]);
    }
}
