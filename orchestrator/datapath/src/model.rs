//! Plain service/endpoint types the datapath is driven with. The agent
//! converts Kubernetes Services and EndpointSlices into these.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// L4 protocol of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => bpfk_ebpf_common::PROTO_TCP,
            Protocol::Udp => bpfk_ebpf_common::PROTO_UDP,
        }
    }

    /// Parses a Kubernetes protocol name (`TCP`, `UDP`).
    pub fn from_k8s(s: &str, field: &str) -> Result<Self> {
        match s {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            other => Err(Error::invalid(
                field,
                format!("protocol {other:?} is not supported (TCP or UDP)"),
            )),
        }
    }
}

/// `namespace/name` of a service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
}

impl ServiceName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One port of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    /// Port name; matched against [`EndpointPort::name`].
    pub name: String,
    pub protocol: Protocol,
    /// Port on the ClusterIP.
    pub port: u16,
    /// NodePort (30000–32767 by default) on the node address.
    pub node_port: Option<u16>,
}

/// What the datapath needs of a Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: ServiceName,
    /// `None` for headless services (nothing to balance).
    pub cluster_ip: Option<Ipv4Addr>,
    pub ports: Vec<ServicePort>,
    /// `sessionAffinity: ClientIP` timeout in seconds.
    pub affinity_timeout_s: Option<u32>,
    /// How the ClusterIP frontends pick a backend for a new flow (NodePorts always use
    /// Maglev).
    #[serde(default)]
    pub lb_algorithm: LbAlgorithm,
}

/// Backend selection of a frontend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LbAlgorithm {
    /// A random backend per connection (socket level) or flow (per packet).
    #[default]
    Random,
    /// Maglev consistent hashing: a backend change moves about 1/N of the flows.
    Maglev,
}

impl LbAlgorithm {
    /// Parses the `bpfk.io/lb-algorithm` annotation's value.
    pub fn from_annotation(s: &str, field: &str) -> Result<Self> {
        match s {
            "random" => Ok(Self::Random),
            "maglev" => Ok(Self::Maglev),
            other => Err(Error::invalid(
                field,
                format!("{other:?} is not a load-balancing algorithm (random or maglev)"),
            )),
        }
    }
}

/// A port of an endpoint, named like the service port it serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

/// A ready endpoint (pod address with its ports).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub addr: Ipv4Addr,
    pub ports: Vec<EndpointPort>,
}

/// An IPv4 prefix such as `10.244.1.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self> {
        if prefix_len > 32 {
            return Err(Error::invalid(
                "cidr",
                format!("prefix length {prefix_len} is over 32"),
            ));
        }
        Ok(Self { addr, prefix_len })
    }

    fn mask(self) -> u32 {
        if self.prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix_len)
        }
    }

    /// Whether `ip` lies inside the prefix.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// The netmask as an address (`255.255.255.0` for a /24).
    pub fn mask_addr(self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    /// The prefix with host bits cleared.
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The longest prefix holding both this prefix and `ip`.
    pub fn widen_to(self, ip: Ipv4Addr) -> Self {
        let common = (u32::from(self.network()) ^ u32::from(ip)).leading_zeros() as u8;
        let prefix_len = self.prefix_len.min(common);
        let cidr = Self {
            addr: self.addr,
            prefix_len,
        };
        Self {
            addr: cidr.network(),
            prefix_len,
        }
    }
}

impl FromStr for Ipv4Cidr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| Error::invalid("cidr", format!("{s:?} has no /prefix-length")))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|e| Error::invalid("cidr", format!("{s:?}: address: {e}")))?;
        let len: u8 = len
            .parse()
            .map_err(|e| Error::invalid("cidr", format!("{s:?}: prefix length: {e}")))?;
        Self::new(addr, len)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Another node's pod range and how to reach it over the underlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerNode {
    pub pod_cidr: Ipv4Cidr,
    pub node_addr: Ipv4Addr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_keeps_the_longest_common_prefix() {
        let c = |s: &str| s.parse::<Ipv4Cidr>().unwrap();
        let one = Ipv4Cidr::new(Ipv4Addr::new(10, 96, 0, 10), 32).unwrap();
        assert_eq!(one.widen_to(Ipv4Addr::new(10, 96, 0, 10)), one);
        assert_eq!(
            one.widen_to(Ipv4Addr::new(10, 96, 0, 11)),
            c("10.96.0.10/31")
        );
        assert_eq!(
            one.widen_to(Ipv4Addr::new(10, 96, 4, 250)),
            c("10.96.0.0/21")
        );
        assert_eq!(
            c("10.96.0.0/12").widen_to(Ipv4Addr::new(10, 100, 0, 1)),
            c("10.96.0.0/12")
        );
        assert_eq!(
            c("10.96.0.0/12").widen_to(Ipv4Addr::new(10, 250, 0, 1)),
            c("10.0.0.0/8")
        );
        assert_eq!(
            c("10.0.0.0/8").widen_to(Ipv4Addr::new(192, 168, 0, 1)),
            c("0.0.0.0/0")
        );
    }

    #[test]
    fn cidr_parses_and_contains() {
        let c: Ipv4Cidr = "10.244.1.0/24".parse().unwrap();
        assert!(c.contains(Ipv4Addr::new(10, 244, 1, 7)));
        assert!(!c.contains(Ipv4Addr::new(10, 244, 2, 7)));
        assert_eq!(c.network(), Ipv4Addr::new(10, 244, 1, 0));
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
    }

    #[test]
    fn cidr_rejects_bad_input_with_reason() {
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "10.0.0.0/x"] {
            let err = bad.parse::<Ipv4Cidr>().unwrap_err().to_string();
            assert!(err.contains("cidr"), "{bad}: {err}");
        }
    }

    #[test]
    fn protocol_from_k8s() {
        assert_eq!(Protocol::from_k8s("UDP", "p").unwrap(), Protocol::Udp);
        let err = Protocol::from_k8s("SCTP", "spec.ports[0].protocol").unwrap_err();
        assert!(err.to_string().contains("spec.ports[0].protocol"));
    }
}
