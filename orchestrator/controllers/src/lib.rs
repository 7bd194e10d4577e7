//! bpfk-controllers
