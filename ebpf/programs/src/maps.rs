//! Map definitions. Names must match the constants in `bpfk-ebpf-common`;
//! every map is pinned by name so a restarted agent reuses it.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap},
};
use bpfk_ebpf_common::{
    AffinityKey, AffinityValue, Backend, CtKey, CtValue, NodeConfig, RevNat, ServiceKey,
    ServiceValue, SockRevKey, SockRevValue,
};

#[map(name = "BPFK_SVC_V1")]
pub static SVC: HashMap<ServiceKey, ServiceValue> = HashMap::pinned(65536, 0);

#[map(name = "BPFK_BACKEND_V1")]
pub static BACKENDS: HashMap<u32, Backend> = HashMap::pinned(65536, 0);

#[map(name = "BPFK_REVNAT_V1")]
pub static REVNAT: HashMap<u16, RevNat> = HashMap::pinned(65536, 0);

#[map(name = "BPFK_CT_V1")]
pub static CT: LruHashMap<CtKey, CtValue> = LruHashMap::pinned(131072, 0);

#[map(name = "BPFK_AFFINITY_V1")]
pub static AFFINITY: LruHashMap<AffinityKey, AffinityValue> = LruHashMap::pinned(65536, 0);

#[map(name = "BPFK_SOCK_REVNAT_V1")]
pub static SOCK_REVNAT: LruHashMap<SockRevKey, SockRevValue> = LruHashMap::pinned(131072, 0);

#[map(name = "BPFK_CONFIG_V1")]
pub static CONFIG: Array<NodeConfig> = Array::pinned(1, 0);
