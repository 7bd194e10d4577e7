//! bpfk's lab: what the demo (`cargo xtask demo` runs the `bpfk-lab` binary), the tests and the
//! benchmarks build on one machine, and no product crate depends on.
//!
//! - [`cluster`]: the multi-node cluster in network namespaces (underlay bridge, per node a
//!   containerd and a `bpfk-agent --kubelet`, etcd and bpfk-server on the host), sealed so no
//!   lab packet takes the host's default route;
//! - [`etcd`], [`containerd`], [`server`]: those processes, started on free ports or sockets
//!   and removed (by PID, with their mounts and cgroups) when their guard is dropped;
//! - [`netlab`]: the two-node network-namespace lab of the datapath's tests and benchmark;
//! - [`netns`]: network namespaces and processes or threads inside them;
//! - [`images`]: the stand-in OCI images built from the host's busybox-static;
//! - [`registry`]: the lab's OCI registries (docker-registry, one open, one behind basic
//!   auth) the stand-in images are pushed to with skopeo, known to nodes by name;
//! - [`store_faults`]: a real store whose watch streams lag or get cut on command.
//!
//! The `bpfk-datapath-lab` binary holds the small servers and clients the datapath's lab tests
//! (`lab/tests/datapath_*.rs`) run inside their namespaces.

pub mod api_client;
pub mod cgroups;
pub mod cluster;
pub mod containerd;
pub mod etcd;
pub mod host;
pub mod images;
pub mod netlab;
pub mod netns;
pub mod registry;
pub mod server;
pub mod store_faults;
