//! bpfk CLI
