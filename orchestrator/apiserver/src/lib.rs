//! bpfk-apiserver
