//! Harness for tests that cross a process boundary: real helper processes started on
//! free loopback ports and removed when the guard is dropped.

pub mod cli_edges;
pub mod containerd;
pub mod etcd;
pub mod lab;
pub mod server;
