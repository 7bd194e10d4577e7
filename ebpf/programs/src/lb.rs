//! Backend selection shared by the socket-level and per-packet paths.

use aya_ebpf::helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns};
use bpfk_ebpf_common::{
    AffinityKey, AffinityValue, Backend, MaglevKey, ServiceKey, ServiceValue,
    DROP_AFFINITY_INSERT, DROP_BACKEND_MISSING, SVC_F_AFFINITY, SVC_F_MAGLEV,
};

use crate::maps::{count_drop, AFFINITY, BACKENDS, MAGLEV, SVC};

/// Result of a service lookup.
pub enum Lookup {
    /// Not a service frontend: leave the traffic alone.
    NotService,
    /// A frontend without backends: refuse.
    NoBackends,
    /// Chosen backend.
    Backend {
        id: u32,
        backend: Backend,
        master: ServiceValue,
    },
}

#[inline(always)]
pub fn master(addr: u32, port: u16, proto: u8) -> Option<ServiceValue> {
    let key = ServiceKey {
        addr,
        port,
        slot: 0,
        proto,
        pad: [0; 3],
    };
    // SAFETY: values are plain integers copied out immediately.
    unsafe { SVC.get(&key) }.copied()
}

#[inline(always)]
pub fn backend(id: u32) -> Option<Backend> {
    // SAFETY: as above.
    unsafe { BACKENDS.get(&id) }.copied()
}

/// Looks the frontend up and picks a backend: the affine one when the
/// service has `sessionAffinity: ClientIP` and the entry is fresh, otherwise the Maglev
/// table's entry for `flow()` (frontends with `SVC_F_MAGLEV`) or a random slot.
#[inline(always)]
pub fn select(
    addr: u32,
    port: u16,
    proto: u8,
    client: impl FnOnce() -> u64,
    client_kind: u8,
    flow: impl FnOnce() -> u32,
) -> Lookup {
    let Some(master) = master(addr, port, proto) else {
        return Lookup::NotService;
    };
    if master.count == 0 {
        return Lookup::NoBackends;
    }
    let affinity = master.flags & SVC_F_AFFINITY != 0;
    if !affinity {
        return pick(addr, port, proto, master, flow);
    }
    // SAFETY: helper without side effects.
    let now = unsafe { bpf_ktime_get_ns() };
    let akey = AffinityKey {
        client: client(),
        rev_nat_index: master.rev_nat_index,
        kind: client_kind,
        pad: [0; 5],
    };
    {
        // SAFETY: as above.
        if let Some(a) = unsafe { AFFINITY.get(&akey) } {
            let timeout_ns = (master.affinity_timeout_s as u64) * 1_000_000_000;
            if now.wrapping_sub(a.last_used_ns) < timeout_ns {
                let id = a.backend_id;
                if let Some(backend) = backend(id) {
                    let v = AffinityValue {
                        backend_id: id,
                        pad: 0,
                        last_used_ns: now,
                    };
                    remember_affinity(&akey, &v);
                    return Lookup::Backend {
                        id,
                        backend,
                        master,
                    };
                }
            }
        }
    }
    let chosen = pick(addr, port, proto, master, flow);
    if let Lookup::Backend { id, .. } = chosen {
        let v = AffinityValue {
            backend_id: id,
            pad: 0,
            last_used_ns: now,
        };
        remember_affinity(&akey, &v);
    }
    chosen
}

/// The Maglev table's backend for `hash`, when the frontend has a table and the entry is
/// there (a table update may be in flight).
#[inline(always)]
fn maglev(master: &ServiceValue, hash: u32) -> Option<(u32, Backend)> {
    let size = master.backend_id;
    if size == 0 {
        return None;
    }
    let key = MaglevKey {
        rev_nat_index: master.rev_nat_index,
        pad: 0,
        index: hash % size,
    };
    // SAFETY: value copied out immediately.
    let id = unsafe { MAGLEV.get(&key) }.copied()?;
    backend(id).map(|b| (id, b))
}

/// The frontend's backend for the flow: by its Maglev table, or a random slot.
#[inline(always)]
fn pick(
    addr: u32,
    port: u16,
    proto: u8,
    master: ServiceValue,
    flow: impl FnOnce() -> u32,
) -> Lookup {
    if master.flags & SVC_F_MAGLEV != 0 {
        if let Some((id, backend)) = maglev(&master, flow()) {
            return Lookup::Backend {
                id,
                backend,
                master,
            };
        }
        count_drop(DROP_BACKEND_MISSING);
    }
    // SAFETY: helper without side effects.
    let rnd = unsafe { bpf_get_prandom_u32() };
    let slot = (rnd % (master.count as u32)) as u16 + 1;
    let key = ServiceKey {
        addr,
        port,
        slot,
        proto,
        pad: [0; 3],
    };
    // SAFETY: as above.
    let Some(sv) = (unsafe { SVC.get(&key) }).copied() else {
        count_drop(DROP_BACKEND_MISSING);
        return Lookup::NoBackends;
    };
    let Some(backend) = backend(sv.backend_id) else {
        count_drop(DROP_BACKEND_MISSING);
        return Lookup::NoBackends;
    };
    Lookup::Backend {
        id: sv.backend_id,
        backend,
        master,
    }
}

#[inline(always)]
fn remember_affinity(key: &AffinityKey, value: &AffinityValue) {
    if AFFINITY.insert(key, value, 0).is_err() {
        count_drop(DROP_AFFINITY_INSERT);
    }
}
