//! bpfk-scheduler
