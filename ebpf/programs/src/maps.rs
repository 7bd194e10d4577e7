//! Map definitions. Names must match the constants in `bpfk-ebpf-common` (the `#[map]`
//! macro takes a literal; `bpfk-datapath`'s unit tests check the built object against
//! `bpfk_ebpf_common::MAPS`); sizes are its `*_ENTRIES` constants. Every map is pinned by
//! name so a restarted agent reuses it.

use aya_ebpf::{
    bindings::{BPF_F_NO_COMMON_LRU, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap},
};
use bpfk_ebpf_common::{
    AffinityKey, AffinityValue, Backend, CtKey, CtValue, GoneBackendKey, MaglevKey, NodeConfig, RevNat, ServiceKey,
    ServiceValue, SockRevKey, SockRevValue, TrafficCounters, AFFINITY_MAP_ENTRIES,
    BACKEND_MAP_ENTRIES, BACKEND_STATS_MAP_ENTRIES, CONFIG_MAP_ENTRIES, CT_MAP_ENTRIES,
    DROPS_MAP_ENTRIES, GONE_BACKENDS_MAP_ENTRIES, MAGLEV_MAP_ENTRIES, REVNAT_MAP_ENTRIES, SOCK_REVNAT_MAP_ENTRIES, SVC_MAP_ENTRIES,
    SVC_STATS_MAP_ENTRIES,
};

/// The maps written on every new connection keep one LRU list per CPU: inserts on
/// different CPUs never take the same lock.
const PER_CPU_LRU: u32 = BPF_F_NO_COMMON_LRU;

#[map(name = "BPFK_SVC_V1")]
pub static SVC: HashMap<ServiceKey, ServiceValue> = HashMap::pinned(SVC_MAP_ENTRIES, 0);

#[map(name = "BPFK_BACKEND_V1")]
pub static BACKENDS: HashMap<u32, Backend> = HashMap::pinned(BACKEND_MAP_ENTRIES, 0);

#[map(name = "BPFK_REVNAT_V1")]
pub static REVNAT: HashMap<u16, RevNat> = HashMap::pinned(REVNAT_MAP_ENTRIES, 0);

#[map(name = "BPFK_CT_V1")]
pub static CT: LruHashMap<CtKey, CtValue> = LruHashMap::pinned(CT_MAP_ENTRIES, PER_CPU_LRU);

#[map(name = "BPFK_AFFINITY_V1")]
pub static AFFINITY: LruHashMap<AffinityKey, AffinityValue> =
    LruHashMap::pinned(AFFINITY_MAP_ENTRIES, 0);

#[map(name = "BPFK_SOCK_REVNAT_V1")]
pub static SOCK_REVNAT: LruHashMap<SockRevKey, SockRevValue> =
    LruHashMap::pinned(SOCK_REVNAT_MAP_ENTRIES, PER_CPU_LRU);

#[map(name = "BPFK_CONFIG_V2")]
pub static CONFIG: Array<NodeConfig> = Array::pinned(CONFIG_MAP_ENTRIES, 0);

#[map(name = "BPFK_SVC_STATS_V1")]
pub static SVC_STATS: PerCpuHashMap<u32, TrafficCounters> =
    PerCpuHashMap::pinned(SVC_STATS_MAP_ENTRIES, 0);

#[map(name = "BPFK_BACKEND_STATS_V1")]
pub static BACKEND_STATS: PerCpuHashMap<u32, TrafficCounters> =
    PerCpuHashMap::pinned(BACKEND_STATS_MAP_ENTRIES, 0);

#[map(name = "BPFK_DROPS_V1")]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::pinned(DROPS_MAP_ENTRIES, 0);

#[map(name = "BPFK_GONE_BACKENDS_V1")]
pub static GONE_BACKENDS: HashMap<GoneBackendKey, u8> =
    HashMap::pinned(GONE_BACKENDS_MAP_ENTRIES, 0);

/// Written by user space only, and only as Maglev frontends need it: not preallocated.
#[map(name = "BPFK_MAGLEV_V1")]
pub static MAGLEV: HashMap<MaglevKey, u32> =
    HashMap::pinned(MAGLEV_MAP_ENTRIES, BPF_F_NO_PREALLOC);

/// Adds one to the drop counter `reason` (`DROP_*`).
#[inline(always)]
pub fn count_drop(reason: u32) {
    if let Some(c) = DROPS.get_ptr_mut(reason) {
        // SAFETY: a per-CPU slot; programs do not migrate CPUs while they run.
        unsafe { *c += 1 };
    }
}

/// Adds a flow's traffic to its frontend's and backend's counters (entries user space
/// created; a missing one is not counted).
#[inline(always)]
pub fn count_traffic(rev_nat_index: u16, backend_id: u32, packets: u64, bytes: u64, conns: u64) {
    let add = |c: *mut TrafficCounters| {
        // SAFETY: a per-CPU value; programs do not migrate CPUs while they run.
        unsafe {
            (*c).packets += packets;
            (*c).bytes += bytes;
            (*c).connections += conns;
        }
    };
    if let Some(c) = SVC_STATS.get_ptr_mut(u32::from(rev_nat_index)) {
        add(c);
    }
    if let Some(c) = BACKEND_STATS.get_ptr_mut(backend_id) {
        add(c);
    }
}
