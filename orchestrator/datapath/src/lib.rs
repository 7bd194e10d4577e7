//! bpfk-datapath
