//! Errors of the datapath library.

use std::{io, path::PathBuf};

/// Everything that can go wrong while loading or driving the datapath.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program {name}: {source}")]
    Program {
        name: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("kernel BTF (/sys/kernel/btf/vmlinux, needed by the UDP socket iterator): {0}")]
    Btf(#[from] aya::BtfError),
    #[error("eBPF program {0} is missing from the object")]
    MissingProgram(String),
    #[error("eBPF map {0} is missing from the object")]
    MissingMap(String),
    #[error("eBPF map {name}: {source}")]
    Map {
        name: String,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("map {name} is full ({max_entries} entries); raise its size in the datapath config")]
    MapFull { name: String, max_entries: u32 },
    #[error("pinning {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("link {path}: {source}")]
    Link {
        path: PathBuf,
        #[source]
        source: aya::programs::links::LinkError,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no cgroup2 mount found in /proc/self/mountinfo")]
    NoCgroup2,
    #[error("interface {name}: {reason}")]
    Interface { name: String, reason: String },
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("{0} ids are exhausted")]
    Exhausted(&'static str),
}

/// Result with the datapath [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
