//! Harness pieces shared by the cross-component tests and the benchmarks' own tests (the lab
//! itself, with its processes, is the `bpfk-lab` crate).

pub mod cli_edges;
