//! bpfk-datapath: the eBPF kube-proxy replacement of a node.
//!
//! [`Datapath::load`] loads the programs built by `cargo xtask build-ebpf`,
//! pins maps and links under `/sys/fs/bpf/bpfk/<node>/` and attaches
//! socket-level load balancing to the node cgroup and per-packet load
//! balancing to the underlay (and, via [`Datapath::attach_interface`], to pod
//! veths). [`Datapath::sync_service`] / [`Datapath::delete_service`] diff and
//! update the service maps in place. [`PeerRoutes`] keeps the routes to other
//! nodes' pods over one rtnetlink connection.

pub mod counters;
mod datapath;
mod error;
pub mod maglev;
pub mod map_mirror;
pub mod model;
mod routes;
pub mod sys;
mod udp_destroy;

pub use counters::{enable_run_stats, Observer, Snapshot};
pub use datapath::{teardown_pins, Datapath, DatapathConfig, MapSizes, Stats, DEFAULT_PIN_ROOT};
pub use error::{Error, Result};
pub use model::{
    Endpoint, EndpointPort, Ipv4Cidr, LbAlgorithm, PeerNode, Protocol, ServiceName, ServicePort,
    ServiceSpec,
};
pub use routes::PeerRoutes;
