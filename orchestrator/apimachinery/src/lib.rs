//! bpfk-apimachinery
