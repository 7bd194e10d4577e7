//! The answers of [`crate::lookup`], case by case as CoreDNS's kubernetes plugin gives them.

use std::net::IpAddr;

use hickory_proto::{
    op::ResponseCode,
    rr::{Name, RData, RecordType},
};

use crate::{
    lookup, Answer, Cluster, EndpointRecord, Lookup, PortRecord, ServiceKind, ServiceRecord, Zone,
};

fn port(name: &str, protocol: &str, port: u16) -> PortRecord {
    PortRecord {
        name: name.into(),
        protocol: protocol.into(),
        port,
    }
}

fn endpoint(addr: &str, hostname: Option<&str>) -> EndpointRecord {
    EndpointRecord {
        addr: addr.parse().unwrap(),
        hostname: hostname.map(Into::into),
        ports: vec![port("http", "tcp", 8080)],
    }
}

fn cluster() -> Cluster {
    let mut c = Cluster::default();
    c.set_namespace("default", true);
    c.set_namespace("empty", true);
    c.upsert(ServiceRecord {
        namespace: "default".into(),
        name: "nginx".into(),
        kind: ServiceKind::ClusterIp(vec!["10.96.0.20".parse().unwrap()]),
        ports: vec![port("http", "tcp", 80), port("dns", "udp", 53)],
        endpoints: vec![endpoint("10.244.1.5", None), endpoint("10.244.2.7", None)],
    });
    c.upsert(ServiceRecord {
        namespace: "default".into(),
        name: "db".into(),
        kind: ServiceKind::Headless,
        ports: vec![port("http", "tcp", 80)],
        endpoints: vec![
            endpoint("10.244.1.8", Some("db-0")),
            endpoint("10.244.2.9", None),
        ],
    });
    c.upsert(ServiceRecord {
        namespace: "default".into(),
        name: "ext".into(),
        kind: ServiceKind::ExternalName("example.org".into()),
        ports: Vec::new(),
        endpoints: Vec::new(),
    });
    c.upsert(ServiceRecord {
        namespace: "default".into(),
        name: "lonely".into(),
        kind: ServiceKind::Headless,
        ports: Vec::new(),
        endpoints: Vec::new(),
    });
    c
}

fn zone() -> Zone {
    Zone::new("cluster.local", 5, Some("10.96.0.10".parse().unwrap())).unwrap()
}

fn ask(c: &Cluster, name: &str, qtype: RecordType) -> Lookup {
    lookup(c, &zone(), &Name::from_ascii(name).unwrap(), qtype)
}

fn answer(c: &Cluster, name: &str, qtype: RecordType) -> Answer {
    match ask(c, name, qtype) {
        Lookup::Answer(a) => a,
        Lookup::Outside => panic!("{name} {qtype}: not answered from the cluster zone"),
    }
}

/// The rdata of the answers, as text, sorted.
fn data(a: &Answer) -> Vec<String> {
    let mut v: Vec<String> = a.answers.iter().map(|r| r.data.to_string()).collect();
    v.sort();
    v
}

fn assert_nxdomain(c: &Cluster, name: &str, qtype: RecordType) {
    let a = answer(c, name, qtype);
    assert_eq!(a.rcode, ResponseCode::NXDomain, "{name} {qtype}: {a:?}");
    assert!(a.answers.is_empty());
    assert_eq!(a.authority[0].record_type(), RecordType::SOA, "{name}");
}

fn assert_nodata(c: &Cluster, name: &str, qtype: RecordType) {
    let a = answer(c, name, qtype);
    assert_eq!(a.rcode, ResponseCode::NoError, "{name} {qtype}: {a:?}");
    assert!(a.answers.is_empty(), "{name} {qtype}: {a:?}");
    assert_eq!(a.authority[0].record_type(), RecordType::SOA, "{name}");
}

#[test]
fn cluster_ip_service_has_its_a_record_with_the_ttl() {
    let c = cluster();
    let a = answer(&c, "nginx.default.svc.cluster.local.", RecordType::A);
    assert_eq!(a.rcode, ResponseCode::NoError);
    assert_eq!(data(&a), ["10.96.0.20"]);
    assert_eq!(a.answers[0].ttl, 5);
    assert_eq!(
        a.answers[0].name.to_ascii(),
        "nginx.default.svc.cluster.local."
    );
    // Names are case-insensitive.
    let a = answer(&c, "NGINX.Default.SVC.cluster.LOCAL.", RecordType::A);
    assert_eq!(data(&a), ["10.96.0.20"]);
}

#[test]
fn aaaa_and_other_types_for_an_ipv4_service_are_nodata() {
    let c = cluster();
    for qtype in [
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::MX,
        RecordType::PTR,
    ] {
        assert_nodata(&c, "nginx.default.svc.cluster.local.", qtype);
    }
}

#[test]
fn missing_names_and_search_path_expansions_are_nxdomain() {
    let c = cluster();
    for name in [
        "nope.default.svc.cluster.local.",
        "nginx.nons.svc.cluster.local.",
        "nginx.default.svc.cluster.local.default.svc.cluster.local.",
        "nginx.default.svc.cluster.local.svc.cluster.local.",
        "nginx.default.svc.cluster.local.cluster.local.",
        "nginx.default.cluster.local.",
        "nginx.cluster.local.",
        "nope.nginx.default.svc.cluster.local.",
        "_nope._tcp.nginx.default.svc.cluster.local.",
        "_http._udp.nginx.default.svc.cluster.local.",
        "x.y.z.nginx.default.svc.cluster.local.",
        "nons.svc.cluster.local.",
        "lonely.default.svc.cluster.local.",
    ] {
        assert_nxdomain(&c, name, RecordType::A);
    }
}

#[test]
fn zone_levels_and_existing_namespaces_are_nodata() {
    let c = cluster();
    for name in [
        "cluster.local.",
        "svc.cluster.local.",
        "default.svc.cluster.local.",
        "empty.svc.cluster.local.",
        "pod.cluster.local.",
        "default.pod.cluster.local.",
    ] {
        assert_nodata(&c, name, RecordType::A);
    }
    let soa = answer(&c, "cluster.local.", RecordType::SOA);
    assert_eq!(soa.answers[0].record_type(), RecordType::SOA);
    let ns = answer(&c, "cluster.local.", RecordType::NS);
    assert_eq!(data(&ns), ["ns.dns.cluster.local."]);
    assert_eq!(ns.additionals[0].data.to_string(), "10.96.0.10");
    let v = answer(&c, "dns-version.cluster.local.", RecordType::TXT);
    assert_eq!(data(&v), ["1.1.0"]);
}

#[test]
fn headless_service_lists_every_ready_endpoint() {
    let c = cluster();
    let a = answer(&c, "db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&a), ["10.244.1.8", "10.244.2.9"]);
    // An endpoint by hostname, and one without by its dashed address.
    let a = answer(&c, "db-0.db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&a), ["10.244.1.8"]);
    let a = answer(
        &c,
        "10-244-2-9.db.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(data(&a), ["10.244.2.9"]);
    assert_nxdomain(&c, "db-1.db.default.svc.cluster.local.", RecordType::A);
    // An endpoint of a ClusterIP service has its own name too.
    let a = answer(
        &c,
        "10-244-1-5.nginx.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(data(&a), ["10.244.1.5"]);
}

#[test]
fn srv_for_named_ports_points_at_the_service_or_its_endpoints() {
    let c = cluster();
    let a = answer(
        &c,
        "_http._tcp.nginx.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(data(&a), ["0 100 80 nginx.default.svc.cluster.local."]);
    assert_eq!(a.additionals[0].data.to_string(), "10.96.0.20");
    let a = answer(
        &c,
        "_dns._udp.nginx.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(data(&a), ["0 100 53 nginx.default.svc.cluster.local."]);
    // The service name alone: one SRV per port.
    let a = answer(&c, "nginx.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(a.answers.len(), 2);
    let a = answer(
        &c,
        "_http._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        data(&a),
        [
            "0 50 8080 10-244-2-9.db.default.svc.cluster.local.",
            "0 50 8080 db-0.db.default.svc.cluster.local."
        ]
    );
    let mut glue: Vec<String> = a.additionals.iter().map(|r| r.to_string()).collect();
    glue.sort();
    assert!(
        glue[1].starts_with("db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.8"),
        "{glue:?}"
    );
}

#[test]
fn external_name_is_a_cname_for_any_type() {
    let c = cluster();
    for qtype in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
        let a = answer(&c, "ext.default.svc.cluster.local.", qtype);
        assert_eq!(a.answers[0].record_type(), RecordType::CNAME);
        assert_eq!(data(&a), ["example.org."]);
    }
    assert_nxdomain(&c, "x.ext.default.svc.cluster.local.", RecordType::A);
}

#[test]
fn pod_records_are_the_dashed_address_in_an_existing_namespace() {
    let c = cluster();
    let a = answer(&c, "10-244-1-5.default.pod.cluster.local.", RecordType::A);
    assert_eq!(data(&a), ["10.244.1.5"]);
    assert_nodata(
        &c,
        "10-244-1-5.default.pod.cluster.local.",
        RecordType::AAAA,
    );
    let a = answer(&c, "fd00--5.default.pod.cluster.local.", RecordType::AAAA);
    assert_eq!(data(&a), ["fd00::5"]);
    assert_nxdomain(&c, "10-244-1-5.nons.pod.cluster.local.", RecordType::A);
    assert_nxdomain(&c, "not-an-ip.default.pod.cluster.local.", RecordType::A);
    assert_nxdomain(&c, "10-244-1-300.default.pod.cluster.local.", RecordType::A);
}

#[test]
fn ptr_for_cluster_ips_and_endpoints_others_are_not_ours() {
    let c = cluster();
    let a = answer(&c, "20.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&a), ["nginx.default.svc.cluster.local."]);
    let a = answer(&c, "8.1.244.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&a), ["db-0.db.default.svc.cluster.local."]);
    let a = answer(&c, "5.1.244.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&a), ["10-244-1-5.nginx.default.svc.cluster.local."]);
    assert_nodata(&c, "20.0.96.10.in-addr.arpa.", RecordType::A);
    assert_eq!(
        ask(&c, "99.0.96.10.in-addr.arpa.", RecordType::PTR),
        Lookup::Outside
    );
    assert_eq!(ask(&c, "in-addr.arpa.", RecordType::PTR), Lookup::Outside);
}

#[test]
fn names_outside_the_zone_are_not_answered() {
    let c = cluster();
    for name in ["example.org.", "local.", "xcluster.local.", "."] {
        assert_eq!(ask(&c, name, RecordType::A), Lookup::Outside, "{name}");
    }
}

#[test]
fn a_deleted_service_is_nxdomain_at_once() {
    let mut c = cluster();
    let serial = c.serial();
    assert!(c.remove("default", "nginx"));
    assert!(c.serial() != serial);
    assert_nxdomain(&c, "nginx.default.svc.cluster.local.", RecordType::A);
    assert_eq!(
        ask(&c, "20.0.96.10.in-addr.arpa.", RecordType::PTR),
        Lookup::Outside
    );
    // The SOA's minimum (negative TTL) is the zone TTL.
    let a = answer(&c, "nginx.default.svc.cluster.local.", RecordType::A);
    match &a.authority[0].data {
        RData::SOA(soa) => assert_eq!(soa.minimum, 5),
        other => panic!("not an SOA: {other:?}"),
    }
}

#[test]
fn bad_cluster_domains_are_refused_with_the_reason() {
    for bad in ["", ".", "a..b"] {
        let e = Zone::new(bad, 5, None::<IpAddr>).unwrap_err().to_string();
        assert!(e.starts_with("cluster domain"), "{e}");
    }
    assert_eq!(
        Zone::new("Cluster.Local.", 5, None).unwrap().domain(),
        "cluster.local"
    );
}
