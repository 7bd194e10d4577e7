//! bpfk-dns: the node-local cluster DNS of the bpfk agent. It answers the cluster zone
//! (`cluster.local`) from the agent's own watches of Services and EndpointSlices, with the
//! records and response codes of CoreDNS's kubernetes plugin ([`lookup`]), on hickory's
//! server over UDP and TCP ([`server`]); other names go to the node's own resolvers or are
//! refused ([`server::Forwarding`]).

pub mod kube;
pub mod lookup;
#[cfg(test)]
mod lookup_tests;
pub mod model;
pub mod server;
#[cfg(test)]
mod server_tests;

pub use lookup::{lookup, Answer, Lookup, Zone, ZoneError, DEFAULT_TTL};
pub use model::{Cluster, EndpointRecord, PortRecord, ServiceKind, ServiceRecord};
pub use server::{Bound, ClusterDns, Forwarding, SharedCluster};
