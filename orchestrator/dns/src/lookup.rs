//! Answers to one question from the [`Cluster`], as CoreDNS's kubernetes plugin gives them
//! (the Kubernetes DNS-Based Service Discovery specification):
//!
//! * `<svc>.<ns>.svc.<zone>`: A/AAAA of the ClusterIP, or of every ready endpoint for a
//!   headless Service; a CNAME for an ExternalName Service;
//! * `<endpoint>.<svc>.<ns>.svc.<zone>`: the endpoint (its hostname, else its dashed address);
//! * `_<port>._<proto>.<svc>.<ns>.svc.<zone>`: SRV for a named port;
//! * `<a-b-c-d>.<ns>.pod.<zone>`: the address in the name, if the namespace exists
//!   (CoreDNS's `pods insecure`);
//! * `<d.c.b.a>.in-addr.arpa`: PTR for ClusterIPs and endpoint addresses; other addresses are
//!   not ours (CoreDNS's `fallthrough in-addr.arpa`).
//!
//! A name that does not exist is NXDOMAIN; a name that exists without records of the asked
//! type is NOERROR with no answer (NODATA); both carry the zone's SOA. Too many labels
//! (search-path expansions such as `nginx.default.svc.cluster.local.default.svc.cluster.local`)
//! is NXDOMAIN.

use std::{collections::HashSet, net::IpAddr};

use hickory_proto::{
    op::ResponseCode,
    rr::{
        rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT},
        Name, RData, Record, RecordType,
    },
};

use crate::model::{Cluster, ServiceKind, ServiceRecord};

/// CoreDNS's default TTL for cluster records.
pub const DEFAULT_TTL: u32 = 5;
/// The schema version `dns-version.<zone>` answers (Kubernetes DNS specification).
pub const SCHEMA_VERSION: &str = "1.1.0";

/// Bad zone settings.
#[derive(Debug, thiserror::Error)]
#[error("cluster domain {domain:?}: {reason}")]
pub struct ZoneError {
    pub domain: String,
    pub reason: String,
}

/// The cluster zone: its domain, the TTL of its records and the cluster DNS address.
#[derive(Clone, Debug)]
pub struct Zone {
    /// Lower case, no trailing dot: `cluster.local`.
    domain: String,
    origin: Name,
    pub ttl: u32,
    /// What `ns.dns.<zone>` resolves to.
    pub dns_ip: Option<IpAddr>,
}

impl Zone {
    /// The zone `domain` (e.g. `cluster.local`).
    pub fn new(domain: &str, ttl: u32, dns_ip: Option<IpAddr>) -> Result<Self, ZoneError> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let err = |reason: String| ZoneError {
            domain: domain.clone(),
            reason,
        };
        if domain.is_empty() || domain.split('.').any(str::is_empty) {
            return Err(err("must be a domain name such as cluster.local".into()));
        }
        let origin = Name::from_ascii(format!("{domain}.")).map_err(|e| err(e.to_string()))?;
        Ok(Self {
            domain,
            origin,
            ttl,
            dns_ip,
        })
    }

    /// The zone's domain, lower case without the trailing dot.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// `<labels>.<zone>.`
    fn name(&self, labels: &str) -> Option<Name> {
        Name::from_ascii(format!("{labels}.{}.", self.domain)).ok()
    }
}

/// An authoritative answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    /// The SOA of a negative answer (NXDOMAIN, NODATA).
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// The result of a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The name is in the cluster zone (or a cluster address's reverse name).
    Answer(Answer),
    /// Not the cluster's: forward it or refuse it.
    Outside,
}

/// What a question resolved to before rendering by type.
enum Found {
    /// The name does not exist.
    NxDomain,
    /// The name exists; these records (of any type) answer it.
    Records(Vec<Record>, Vec<Record>),
}

impl Found {
    fn nodata() -> Self {
        Found::Records(Vec::new(), Vec::new())
    }
}

/// Answers `qname`/`qtype` from `cluster`.
pub fn lookup(cluster: &Cluster, zone: &Zone, qname: &Name, qtype: RecordType) -> Lookup {
    let lower = qname.to_lowercase().to_ascii();
    let name = lower.trim_end_matches('.');
    if let Some(reversed) = name.strip_suffix(".in-addr.arpa") {
        return reverse(cluster, zone, qname, qtype, reversed);
    }
    let labels = if name == zone.domain {
        ""
    } else {
        match name.strip_suffix(zone.domain.as_str()) {
            Some(rest) if rest.ends_with('.') => rest.trim_end_matches('.'),
            _ => return Lookup::Outside,
        }
    };
    let segs: Vec<&str> = if labels.is_empty() {
        Vec::new()
    } else {
        labels.split('.').collect()
    };
    let found = in_zone(cluster, zone, qname, qtype, &segs);
    Lookup::Answer(render(cluster, zone, &zone.origin, found))
}

/// A name under the zone, `segs` its labels left of the zone.
fn in_zone(
    cluster: &Cluster,
    zone: &Zone,
    qname: &Name,
    qtype: RecordType,
    segs: &[&str],
) -> Found {
    let rec = |rdata: RData| Record::from_rdata(qname.clone(), zone.ttl, rdata);
    match segs {
        [] => apex(cluster, zone, qname, qtype),
        ["dns-version"] if qtype == RecordType::TXT => Found::Records(
            vec![rec(RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()])))],
            Vec::new(),
        ),
        ["dns-version"] => Found::nodata(),
        ["ns", "dns"] => Found::Records(
            zone.dns_ip
                .map(|ip| address(qname, zone.ttl, ip))
                .into_iter()
                .filter(|r| r.record_type() == qtype)
                .collect(),
            Vec::new(),
        ),
        [rest @ .., "svc"] => services(cluster, zone, qname, qtype, rest),
        [rest @ .., "pod"] => pods(cluster, zone, qname, qtype, rest),
        _ => Found::NxDomain,
    }
}

/// The zone apex: its SOA and NS.
fn apex(cluster: &Cluster, zone: &Zone, qname: &Name, qtype: RecordType) -> Found {
    match qtype {
        RecordType::SOA => Found::Records(vec![soa(cluster, zone, &zone.origin)], Vec::new()),
        RecordType::NS => {
            let Some(ns) = zone.name("ns.dns") else {
                return Found::nodata();
            };
            let glue = zone.dns_ip.map(|ip| address(&ns, zone.ttl, ip));
            Found::Records(
                vec![Record::from_rdata(
                    qname.clone(),
                    zone.ttl,
                    RData::NS(NS(ns)),
                )],
                glue.into_iter().collect(),
            )
        }
        _ => Found::nodata(),
    }
}

/// The part of a `svc` question left of the namespace.
enum SvcQuery<'a> {
    /// `<svc>.<ns>.svc`
    Service,
    /// `<endpoint>.<svc>.<ns>.svc`
    Endpoint(&'a str),
    /// `_<port>._<proto>.<svc>.<ns>.svc` (the underscores are optional, as in CoreDNS)
    Port(&'a str, &'a str),
}

/// `rest`: the labels left of `svc`.
fn services(
    cluster: &Cluster,
    zone: &Zone,
    qname: &Name,
    qtype: RecordType,
    rest: &[&str],
) -> Found {
    let Some((namespace, rest)) = rest.split_last() else {
        return Found::nodata(); // svc.<zone>
    };
    if !cluster.namespace_exists(namespace) {
        return Found::NxDomain;
    }
    let Some((service, rest)) = rest.split_last() else {
        return Found::nodata(); // <ns>.svc.<zone>
    };
    let query = match rest {
        [] => SvcQuery::Service,
        [endpoint] => SvcQuery::Endpoint(endpoint),
        [port, proto] => SvcQuery::Port(strip_underscore(port), strip_underscore(proto)),
        _ => return Found::NxDomain,
    };
    let Some(svc) = cluster.service(namespace, service) else {
        return Found::NxDomain;
    };
    let hits = hits(svc, &query);
    if hits.is_empty() {
        return Found::NxDomain;
    }
    render_hits(zone, qname, qtype, svc, &hits)
}

fn strip_underscore(label: &str) -> &str {
    label.strip_prefix('_').unwrap_or(label)
}

/// One record source CoreDNS would list for a question: an address (with the port it was
/// found with) or a canonical name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Hit {
    /// A ClusterIP with one of the Service's ports.
    Vip(IpAddr, u16),
    /// An endpoint (its label under the Service) with one of its ports; None: a slice without
    /// ports (A records only).
    Endpoint(IpAddr, String, Option<u16>),
    /// An ExternalName.
    Alias(String),
}

fn hits(svc: &ServiceRecord, query: &SvcQuery) -> Vec<Hit> {
    let (want_port, want_proto) = match query {
        SvcQuery::Port(port, proto) => (*port, *proto),
        _ => ("", ""),
    };
    let port_matches =
        |name: &str, proto: &str| matches(want_port, name) && matches(want_proto, proto);
    let endpoint = match query {
        SvcQuery::Endpoint(e) => Some(*e),
        _ => None,
    };
    match &svc.kind {
        ServiceKind::ExternalName(target) if endpoint.is_none() => {
            vec![Hit::Alias(target.clone())]
        }
        ServiceKind::ExternalName(_) => Vec::new(),
        ServiceKind::ClusterIp(ips) if endpoint.is_none() => svc
            .ports
            .iter()
            .filter(|p| port_matches(&p.name, &p.protocol))
            .flat_map(|p| ips.iter().map(|ip| Hit::Vip(*ip, p.port)))
            .collect(),
        _ => endpoint_hits(svc, endpoint, &port_matches),
    }
}

/// A headless Service's endpoints, or the one an endpoint question names.
fn endpoint_hits(
    svc: &ServiceRecord,
    endpoint: Option<&str>,
    port_matches: &dyn Fn(&str, &str) -> bool,
) -> Vec<Hit> {
    let mut out = Vec::new();
    for ep in &svc.endpoints {
        let label = ep.label();
        if endpoint.is_some_and(|e| e != label) {
            continue;
        }
        if ep.ports.is_empty() {
            // A slice without ports: an unnamed, protocol-less port (only a plain name matches).
            if port_matches("", "") {
                out.push(Hit::Endpoint(ep.addr, label.clone(), None));
            }
            continue;
        }
        for p in ep
            .ports
            .iter()
            .filter(|p| port_matches(&p.name, &p.protocol))
        {
            out.push(Hit::Endpoint(ep.addr, label.clone(), Some(p.port)));
        }
    }
    out
}

/// A question label matches a port name or protocol: equal, or the question leaves it open.
fn matches(wanted: &str, have: &str) -> bool {
    wanted.is_empty() || wanted.eq_ignore_ascii_case(have)
}

/// The records of `hits` for `qtype`.
fn render_hits(
    zone: &Zone,
    qname: &Name,
    qtype: RecordType,
    svc: &ServiceRecord,
    hits: &[Hit],
) -> Found {
    let mut seen = HashSet::new();
    let hits: Vec<&Hit> = hits.iter().filter(|h| seen.insert(*h)).collect();
    if let Some(Hit::Alias(target)) = hits.first() {
        return match Name::from_ascii(format!("{}.", target.trim_end_matches('.'))) {
            Ok(target) => Found::Records(
                vec![Record::from_rdata(
                    qname.clone(),
                    zone.ttl,
                    RData::CNAME(CNAME(target)),
                )],
                Vec::new(),
            ),
            // An ExternalName that is no domain name has nothing to point at.
            Err(_) => Found::nodata(),
        };
    }
    match qtype {
        RecordType::A | RecordType::AAAA => {
            let mut addrs = HashSet::new();
            let answers = hits
                .iter()
                .filter_map(|h| match h {
                    Hit::Vip(ip, _) | Hit::Endpoint(ip, _, _) => Some(*ip),
                    Hit::Alias(_) => None,
                })
                .filter(|ip| addrs.insert(*ip))
                .map(|ip| address(qname, zone.ttl, ip))
                .filter(|r| r.record_type() == qtype)
                .collect();
            Found::Records(answers, Vec::new())
        }
        RecordType::SRV => srv(zone, qname, svc, &hits),
        _ => Found::nodata(),
    }
}

/// SRV records of the hits that have a port, each target's address in the additional section.
fn srv(zone: &Zone, qname: &Name, svc: &ServiceRecord, hits: &[&Hit]) -> Found {
    let base = format!("{}.{}.svc", svc.name, svc.namespace);
    let targets: Vec<(String, IpAddr, u16)> = hits
        .iter()
        .filter_map(|h| match h {
            Hit::Vip(ip, port) => Some((base.clone(), *ip, *port)),
            Hit::Endpoint(ip, label, Some(port)) => Some((format!("{label}.{base}"), *ip, *port)),
            _ => None,
        })
        .collect();
    let weight = u16::try_from(100 / targets.len().max(1)).unwrap_or(0);
    let (mut answers, mut extra) = (Vec::new(), Vec::new());
    let mut glued = HashSet::new();
    for (labels, ip, port) in targets {
        let Some(target) = zone.name(&labels) else {
            continue;
        };
        let rdata = RData::SRV(SRV::new(0, weight, port, target.clone()));
        answers.push(Record::from_rdata(qname.clone(), zone.ttl, rdata));
        if glued.insert((labels, ip)) {
            extra.push(address(&target, zone.ttl, ip));
        }
    }
    Found::Records(answers, extra)
}

/// `rest`: the labels left of `pod`.
fn pods(cluster: &Cluster, zone: &Zone, qname: &Name, qtype: RecordType, rest: &[&str]) -> Found {
    let Some((namespace, rest)) = rest.split_last() else {
        return Found::nodata(); // pod.<zone>
    };
    if !cluster.namespace_exists(namespace) {
        return Found::NxDomain;
    }
    let Some((pod, rest)) = rest.split_last() else {
        return Found::nodata(); // <ns>.pod.<zone>
    };
    if rest.len() > 2 {
        return Found::NxDomain;
    }
    let text = if pod.matches('-').count() == 3 && !pod.contains("--") {
        pod.replace('-', ".")
    } else {
        pod.replace('-', ":")
    };
    let Ok(ip) = text.parse::<IpAddr>() else {
        return Found::NxDomain;
    };
    let record = address(qname, zone.ttl, ip);
    Found::Records(
        Some(record)
            .filter(|r| r.record_type() == qtype)
            .into_iter()
            .collect(),
        Vec::new(),
    )
}

/// `reversed`: the labels left of `in-addr.arpa`.
fn reverse(
    cluster: &Cluster,
    zone: &Zone,
    qname: &Name,
    qtype: RecordType,
    reversed: &str,
) -> Lookup {
    let octets: Vec<u8> = reversed.split('.').filter_map(|o| o.parse().ok()).collect();
    let [d, c, b, a] = octets[..] else {
        return Lookup::Outside;
    };
    if reversed.split('.').count() != 4 {
        return Lookup::Outside;
    }
    let ip = IpAddr::from([a, b, c, d]);
    let targets: Vec<Name> = cluster
        .reverse(ip)
        .filter_map(|t| {
            let base = format!("{}.{}.svc", t.service, t.namespace);
            match &t.endpoint {
                Some(label) => zone.name(&format!("{label}.{base}")),
                None => zone.name(&base),
            }
        })
        .collect();
    if targets.is_empty() {
        return Lookup::Outside;
    }
    let answers = if qtype == RecordType::PTR {
        targets
            .into_iter()
            .map(|t| Record::from_rdata(qname.clone(), zone.ttl, RData::PTR(PTR(t))))
            .collect()
    } else {
        Vec::new()
    };
    let reverse_zone = Name::from_ascii("in-addr.arpa.").unwrap_or_else(|_| Name::root());
    Lookup::Answer(render(
        cluster,
        zone,
        &reverse_zone,
        Found::Records(answers, Vec::new()),
    ))
}

/// The response for `found`; negative ones carry the SOA of `origin`.
fn render(cluster: &Cluster, zone: &Zone, origin: &Name, found: Found) -> Answer {
    match found {
        Found::NxDomain => Answer {
            rcode: ResponseCode::NXDomain,
            authority: vec![soa(cluster, zone, origin)],
            ..Default::default()
        },
        Found::Records(answers, _) if answers.is_empty() => Answer {
            rcode: ResponseCode::NoError,
            authority: vec![soa(cluster, zone, origin)],
            ..Default::default()
        },
        Found::Records(answers, additionals) => Answer {
            rcode: ResponseCode::NoError,
            answers,
            additionals,
            ..Default::default()
        },
    }
}

/// The SOA of `origin` (CoreDNS's timers; the minimum, the negative-answer TTL, is the TTL).
fn soa(cluster: &Cluster, zone: &Zone, origin: &Name) -> Record {
    let at = |label: &str| {
        Name::from_ascii(label)
            .and_then(|n| n.append_domain(origin))
            .unwrap_or_else(|_| origin.clone())
    };
    let rdata = SOA::new(
        at("ns.dns"),
        at("hostmaster"),
        cluster.serial(),
        7200,
        1800,
        86400,
        zone.ttl,
    );
    Record::from_rdata(origin.clone(), zone.ttl, RData::SOA(rdata))
}

/// An A or AAAA record.
fn address(name: &Name, ttl: u32, ip: IpAddr) -> Record {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name.clone(), ttl, rdata)
}
