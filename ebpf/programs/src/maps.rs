//! Map definitions. Names must match the constants in `bpfk-ebpf-common` (the `#[map]`
//! macro takes a literal; `bpfk-datapath`'s unit tests check the built object against
//! `bpfk_ebpf_common::MAPS`); sizes are its `*_ENTRIES` constants. Every map is pinned by
//! name so a restarted agent reuses it.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap},
};
use bpfk_ebpf_common::{
    AffinityKey, AffinityValue, Backend, CtKey, CtValue, NodeConfig, RevNat, ServiceKey,
    ServiceValue, SockRevKey, SockRevValue, AFFINITY_MAP_ENTRIES, BACKEND_MAP_ENTRIES,
    CONFIG_MAP_ENTRIES, CT_MAP_ENTRIES, REVNAT_MAP_ENTRIES, SOCK_REVNAT_MAP_ENTRIES,
    SVC_MAP_ENTRIES,
};

#[map(name = "BPFK_SVC_V1")]
pub static SVC: HashMap<ServiceKey, ServiceValue> = HashMap::pinned(SVC_MAP_ENTRIES, 0);

#[map(name = "BPFK_BACKEND_V1")]
pub static BACKENDS: HashMap<u32, Backend> = HashMap::pinned(BACKEND_MAP_ENTRIES, 0);

#[map(name = "BPFK_REVNAT_V1")]
pub static REVNAT: HashMap<u16, RevNat> = HashMap::pinned(REVNAT_MAP_ENTRIES, 0);

#[map(name = "BPFK_CT_V1")]
pub static CT: LruHashMap<CtKey, CtValue> = LruHashMap::pinned(CT_MAP_ENTRIES, 0);

#[map(name = "BPFK_AFFINITY_V1")]
pub static AFFINITY: LruHashMap<AffinityKey, AffinityValue> =
    LruHashMap::pinned(AFFINITY_MAP_ENTRIES, 0);

#[map(name = "BPFK_SOCK_REVNAT_V1")]
pub static SOCK_REVNAT: LruHashMap<SockRevKey, SockRevValue> =
    LruHashMap::pinned(SOCK_REVNAT_MAP_ENTRIES, 0);

#[map(name = "BPFK_CONFIG_V1")]
pub static CONFIG: Array<NodeConfig> = Array::pinned(CONFIG_MAP_ENTRIES, 0);
