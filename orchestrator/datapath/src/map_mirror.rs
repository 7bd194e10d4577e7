//! In-memory mirror of the service maps and the diff that turns a desired
//! service into an ordered list of map operations.
//!
//! Ordering rules (Cilium's, so that live flows never see a half-written
//! service): new backends first, then slots `1..=N`, then the reverse-NAT
//! entry, then slot 0 with the new count (the publish point), then the slots
//! beyond `N`, and unreferenced backends last. Removal runs in reverse: slot 0
//! first.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::Ipv4Addr,
};

use bpfk_ebpf_common::{
    Backend, MaglevKey, RevNat, ServiceKey, ServiceValue, BACKEND_F_LOCAL, SVC_F_AFFINITY,
    SVC_F_MAGLEV, SVC_F_NODEPORT,
};

use crate::{
    maglev,
    model::{Endpoint, Ipv4Cidr, LbAlgorithm, Protocol, ServiceName, ServiceSpec},
    Error, Result,
};

/// A service frontend: what clients connect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub proto: Protocol,
}

/// A backend address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendAddr {
    pub addr: Ipv4Addr,
    pub port: u16,
    pub proto: Protocol,
}

/// What a frontend should look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredFrontend {
    pub backends: Vec<BackendAddr>,
    pub flags: u8,
    pub affinity_timeout_s: u32,
}

/// One map write or delete, in the order it must happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOp {
    PutBackend {
        id: u32,
        value: Backend,
    },
    PutSlot {
        key: ServiceKey,
        value: ServiceValue,
    },
    PutRevNat {
        index: u16,
        value: RevNat,
    },
    DelSlot {
        key: ServiceKey,
    },
    DelRevNat {
        index: u16,
    },
    DelBackend {
        id: u32,
    },
    PutMaglev {
        key: MaglevKey,
        backend_id: u32,
    },
    DelMaglev {
        key: MaglevKey,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct FrontendEntry {
    rev_nat_index: u16,
    flags: u8,
    affinity_timeout_s: u32,
    /// Published backend count (slot 0).
    count: u16,
    /// Backend id of slot `i + 1` (0 = hole left by an interrupted update).
    slots: Vec<u32>,
    /// The Maglev table as written (backend ids; 0 = unknown, after a restart).
    maglev: Vec<u32>,
}

#[derive(Clone, Debug)]
struct BackendEntry {
    addr: BackendAddr,
    refs: usize,
}

/// The mirror of the service, backend and reverse-NAT maps.
#[derive(Debug, Default)]
pub struct MapMirror {
    frontends: BTreeMap<Frontend, FrontendEntry>,
    backend_ids: HashMap<BackendAddr, u32>,
    backends: BTreeMap<u32, BackendEntry>,
    owners: HashMap<ServiceName, BTreeSet<Frontend>>,
    rev_nat_used: BTreeSet<u16>,
    local_pods: Option<Ipv4Cidr>,
    next_backend_id: u32,
    next_rev_nat: u16,
    /// Backends that left a UDP frontend (its reverse-NAT index) since the last
    /// [`MapMirror::take_gone_udp`]: their connected sockets are to be destroyed.
    gone_udp: Vec<(u16, BackendAddr)>,
    /// Entries of the Maglev tables written from now on (a prime).
    maglev_size: u32,
}

fn maglev_key(rev_nat_index: u16, index: usize) -> MaglevKey {
    MaglevKey {
        rev_nat_index,
        pad: 0,
        index: index as u32,
    }
}

/// Writes the entries of `new` that differ from `old` (the shrunk tail is deleted after the
/// master entry stops pointing into it).
fn table_ops(rev_nat_index: u16, old: &[u32], new: &[u32], ops: &mut Vec<MapOp>) {
    for (index, id) in new.iter().enumerate() {
        if old.get(index) != Some(id) {
            ops.push(MapOp::PutMaglev {
                key: maglev_key(rev_nat_index, index),
                backend_id: *id,
            });
        }
    }
}

pub(crate) fn addr_be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

pub(crate) fn addr_from_be(v: u32) -> Ipv4Addr {
    Ipv4Addr::from(v.to_ne_bytes())
}

pub(crate) fn port_be(p: u16) -> u16 {
    p.to_be()
}

fn proto_from(n: u8) -> Option<Protocol> {
    match n {
        bpfk_ebpf_common::PROTO_TCP => Some(Protocol::Tcp),
        bpfk_ebpf_common::PROTO_UDP => Some(Protocol::Udp),
        _ => None,
    }
}

impl Frontend {
    pub fn key(&self, slot: u16) -> ServiceKey {
        ServiceKey {
            addr: addr_be(self.addr),
            port: port_be(self.port),
            slot,
            proto: self.proto.number(),
            pad: [0; 3],
        }
    }
}

/// Computes the frontends of a service: one per ClusterIP port and one per
/// NodePort on `node_addr`.
pub fn desired_frontends(
    spec: &ServiceSpec,
    endpoints: &[Endpoint],
    node_addr: Option<Ipv4Addr>,
) -> Result<BTreeMap<Frontend, DesiredFrontend>> {
    let mut out = BTreeMap::new();
    let mut flags = 0;
    let mut timeout = 0;
    if let Some(t) = spec.affinity_timeout_s {
        if t == 0 {
            return Err(Error::invalid(
                format!(
                    "service {}: sessionAffinityConfig.clientIP.timeoutSeconds",
                    spec.name
                ),
                "must be positive",
            ));
        }
        flags |= SVC_F_AFFINITY;
        timeout = t;
    }
    for (i, p) in spec.ports.iter().enumerate() {
        if p.port == 0 {
            return Err(Error::invalid(
                format!("service {}: spec.ports[{i}].port", spec.name),
                "must be between 1 and 65535",
            ));
        }
        let mut backends: Vec<BackendAddr> = endpoints
            .iter()
            .filter_map(|ep| {
                ep.ports
                    .iter()
                    .find(|ep_port| {
                        ep_port.name == p.name
                            && ep_port.protocol == p.protocol
                            && ep_port.port != 0
                    })
                    .map(|ep_port| BackendAddr {
                        addr: ep.addr,
                        port: ep_port.port,
                        proto: p.protocol,
                    })
            })
            .collect();
        backends.sort();
        backends.dedup();
        if let Some(ip) = spec.cluster_ip.filter(|ip| !ip.is_unspecified()) {
            let maglev = if spec.lb_algorithm == LbAlgorithm::Maglev {
                SVC_F_MAGLEV
            } else {
                0
            };
            out.insert(
                Frontend {
                    addr: ip,
                    port: p.port,
                    proto: p.protocol,
                },
                DesiredFrontend {
                    backends: backends.clone(),
                    flags: flags | maglev,
                    affinity_timeout_s: timeout,
                },
            );
        }
        if let (Some(np), Some(node)) = (p.node_port, node_addr) {
            if np == 0 {
                return Err(Error::invalid(
                    format!("service {}: spec.ports[{i}].nodePort", spec.name),
                    "must be between 1 and 65535",
                ));
            }
            out.insert(
                Frontend {
                    addr: node,
                    port: np,
                    proto: p.protocol,
                },
                DesiredFrontend {
                    backends,
                    flags: flags | SVC_F_NODEPORT | SVC_F_MAGLEV,
                    affinity_timeout_s: timeout,
                },
            );
        }
    }
    Ok(out)
}

impl MapMirror {
    pub fn new(local_pods: Option<Ipv4Cidr>) -> Self {
        Self {
            local_pods,
            next_backend_id: 1,
            next_rev_nat: 1,
            maglev_size: maglev::DEFAULT_TABLE_SIZE,
            ..Default::default()
        }
    }

    /// Rebuilds the mirror from the contents of pinned maps (after a restart).
    /// Frontends found this way have no owner until a `sync` claims them.
    pub fn rebuild(
        local_pods: Option<Ipv4Cidr>,
        services: impl IntoIterator<Item = (ServiceKey, ServiceValue)>,
        backends: impl IntoIterator<Item = (u32, Backend)>,
    ) -> Self {
        let mut t = Self::new(local_pods);
        for (id, b) in backends {
            let Some(proto) = proto_from(b.proto) else {
                continue;
            };
            let addr = BackendAddr {
                addr: addr_from_be(b.addr),
                port: u16::from_be(b.port),
                proto,
            };
            t.backend_ids.insert(addr, id);
            t.backends.insert(id, BackendEntry { addr, refs: 0 });
        }
        let mut slots: BTreeMap<Frontend, BTreeMap<u16, u32>> = BTreeMap::new();
        for (k, v) in services {
            let Some(proto) = proto_from(k.proto) else {
                continue;
            };
            let fe = Frontend {
                addr: addr_from_be(k.addr),
                port: u16::from_be(k.port),
                proto,
            };
            if k.slot == 0 {
                t.rev_nat_used.insert(v.rev_nat_index);
                let e = t.frontends.entry(fe).or_default();
                e.rev_nat_index = v.rev_nat_index;
                e.flags = v.flags;
                e.affinity_timeout_s = v.affinity_timeout_s;
                e.count = v.count;
                if v.flags & SVC_F_MAGLEV != 0 {
                    // Entries unknown: the next sync rewrites them all, a delete removes them.
                    e.maglev = vec![0; v.backend_id as usize];
                }
            } else {
                slots.entry(fe).or_default().insert(k.slot, v.backend_id);
            }
        }
        for (fe, s) in slots {
            let Some(e) = t.frontends.get_mut(&fe) else {
                // Slots without a master entry: an interrupted delete. Keep
                // them tracked so `prune` removes them.
                let max = s.keys().max().copied().unwrap_or(0) as usize;
                let mut v = vec![0; max];
                for (slot, id) in s {
                    v[slot as usize - 1] = id;
                }
                t.frontends.insert(
                    fe,
                    FrontendEntry {
                        rev_nat_index: 0,
                        slots: v,
                        ..Default::default()
                    },
                );
                continue;
            };
            let max = s.keys().max().copied().unwrap_or(0) as usize;
            e.slots = vec![0; max];
            for (slot, id) in s {
                e.slots[slot as usize - 1] = id;
            }
        }
        t.next_backend_id = t
            .backends
            .keys()
            .max()
            .map(|m| m.wrapping_add(1).max(1))
            .unwrap_or(1);
        t.next_rev_nat = t
            .rev_nat_used
            .iter()
            .max()
            .map(|m| m.wrapping_add(1).max(1))
            .unwrap_or(1);
        let refs: Vec<u32> = t
            .frontends
            .values()
            .flat_map(|e| e.slots.iter().copied().collect::<BTreeSet<_>>())
            .collect();
        for id in refs {
            if let Some(b) = t.backends.get_mut(&id) {
                b.refs += 1;
            }
        }
        t
    }

    pub(crate) fn take_owners(&mut self) -> HashMap<ServiceName, BTreeSet<Frontend>> {
        std::mem::take(&mut self.owners)
    }

    pub(crate) fn set_owners(&mut self, owners: HashMap<ServiceName, BTreeSet<Frontend>>) {
        self.owners = owners;
    }

    /// Number of frontends currently programmed.
    pub fn frontend_count(&self) -> usize {
        self.frontends.len()
    }

    /// Number of backends currently programmed.
    pub fn backend_count(&self) -> usize {
        self.backends.len()
    }

    /// Addresses of every frontend.
    pub fn frontend_addrs(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.frontends.keys().map(|fe| fe.addr)
    }

    /// The frontends of service `name` with their reverse-NAT indexes.
    pub fn frontends_of(&self, name: &ServiceName) -> Vec<(u16, Frontend)> {
        self.owners
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|fe| self.frontends.get(fe).map(|e| (e.rev_nat_index, *fe)))
            .collect()
    }

    /// Services whose frontends this mirror knows an owner for.
    pub fn owned_services(&self) -> impl Iterator<Item = &ServiceName> {
        self.owners.keys()
    }

    fn backend_value(&self, b: &BackendAddr) -> Backend {
        let local = self.local_pods.map(|c| c.contains(b.addr)).unwrap_or(false);
        Backend {
            addr: addr_be(b.addr),
            port: port_be(b.port),
            proto: b.proto.number(),
            flags: if local { BACKEND_F_LOCAL } else { 0 },
        }
    }

    fn alloc_backend_id(&mut self) -> Result<u32> {
        for _ in 0..u32::MAX {
            let id = self.next_backend_id;
            self.next_backend_id = self.next_backend_id.checked_add(1).unwrap_or(1);
            if id != 0 && !self.backends.contains_key(&id) {
                return Ok(id);
            }
        }
        Err(Error::Exhausted("backend"))
    }

    fn alloc_rev_nat(&mut self) -> Result<u16> {
        for _ in 0..u16::MAX {
            let id = self.next_rev_nat;
            self.next_rev_nat = self.next_rev_nat.checked_add(1).unwrap_or(1);
            if id != 0 && !self.rev_nat_used.contains(&id) {
                self.rev_nat_used.insert(id);
                return Ok(id);
            }
        }
        Err(Error::Exhausted("reverse-NAT index"))
    }

    fn backend_id(&mut self, b: &BackendAddr, ops: &mut Vec<MapOp>) -> Result<u32> {
        if let Some(id) = self.backend_ids.get(b) {
            return Ok(*id);
        }
        let id = self.alloc_backend_id()?;
        self.backend_ids.insert(*b, id);
        self.backends.insert(id, BackendEntry { addr: *b, refs: 0 });
        ops.push(MapOp::PutBackend {
            id,
            value: self.backend_value(b),
        });
        Ok(id)
    }

    fn upsert(
        &mut self,
        fe: Frontend,
        d: &DesiredFrontend,
        new_backends: &mut Vec<MapOp>,
        ops: &mut Vec<MapOp>,
    ) -> Result<()> {
        let mut ids = Vec::with_capacity(d.backends.len());
        for b in &d.backends {
            ids.push(self.backend_id(b, new_backends)?);
        }
        let count = u16::try_from(ids.len()).map_err(|_| {
            Error::invalid(
                format!("frontend {}:{}", fe.addr, fe.port),
                format!("{} backends is over the limit of 65535", ids.len()),
            )
        })?;
        let is_new = !self.frontends.contains_key(&fe);
        let mut entry = self.frontends.remove(&fe).unwrap_or_default();
        let fresh_rev_nat = entry.rev_nat_index == 0;
        if fresh_rev_nat {
            entry.rev_nat_index = self.alloc_rev_nat()?;
        }
        let wanted: BTreeSet<u32> = ids.iter().copied().collect();
        let old_ids: BTreeSet<u32> = entry.slots.iter().copied().filter(|i| *i != 0).collect();
        // Keep surviving backends in their slots' order, append new ones.
        let mut slots: Vec<u32> = Vec::with_capacity(ids.len());
        for id in &entry.slots {
            if *id != 0 && wanted.contains(id) && !slots.contains(id) {
                slots.push(*id);
            }
        }
        for id in &ids {
            if !slots.contains(id) {
                slots.push(*id);
            }
        }
        for (i, id) in slots.iter().enumerate() {
            if entry.slots.get(i) != Some(id) {
                ops.push(MapOp::PutSlot {
                    key: fe.key(i as u16 + 1),
                    value: ServiceValue {
                        backend_id: *id,
                        rev_nat_index: entry.rev_nat_index,
                        ..Default::default()
                    },
                });
            }
        }
        if fresh_rev_nat {
            ops.push(MapOp::PutRevNat {
                index: entry.rev_nat_index,
                value: RevNat {
                    addr: addr_be(fe.addr),
                    port: port_be(fe.port),
                    pad: [0; 2],
                },
            });
        }
        let table = self.maglev_table(d, &ids);
        let old_table = std::mem::take(&mut entry.maglev);
        table_ops(entry.rev_nat_index, &old_table, &table, ops);
        if is_new
            || entry.count != count
            || entry.flags != d.flags
            || entry.affinity_timeout_s != d.affinity_timeout_s
            || old_table.len() != table.len()
        {
            ops.push(MapOp::PutSlot {
                key: fe.key(0),
                value: ServiceValue {
                    // The table size, for the programs' `hash % size`.
                    backend_id: table.len() as u32,
                    count,
                    rev_nat_index: entry.rev_nat_index,
                    flags: d.flags,
                    pad: [0; 3],
                    affinity_timeout_s: d.affinity_timeout_s,
                },
            });
        }
        for i in slots.len()..entry.slots.len() {
            ops.push(MapOp::DelSlot {
                key: fe.key(i as u16 + 1),
            });
        }
        for index in table.len()..old_table.len() {
            ops.push(MapOp::DelMaglev {
                key: maglev_key(entry.rev_nat_index, index),
            });
        }
        entry.maglev = table;
        for id in wanted.difference(&old_ids) {
            if let Some(b) = self.backends.get_mut(id) {
                b.refs += 1;
            }
        }
        for id in old_ids.difference(&wanted) {
            if let Some(b) = self.backends.get_mut(id) {
                b.refs = b.refs.saturating_sub(1);
            }
        }
        self.note_gone(&fe, entry.rev_nat_index, old_ids.difference(&wanted));
        entry.slots = slots;
        entry.count = count;
        entry.flags = d.flags;
        entry.affinity_timeout_s = d.affinity_timeout_s;
        self.frontends.insert(fe, entry);
        Ok(())
    }

    fn remove_frontend(&mut self, fe: &Frontend, ops: &mut Vec<MapOp>) {
        let Some(entry) = self.frontends.remove(fe) else {
            return;
        };
        ops.push(MapOp::DelSlot { key: fe.key(0) });
        for i in 0..entry.slots.len() {
            ops.push(MapOp::DelSlot {
                key: fe.key(i as u16 + 1),
            });
        }
        for index in 0..entry.maglev.len() {
            ops.push(MapOp::DelMaglev {
                key: maglev_key(entry.rev_nat_index, index),
            });
        }
        if entry.rev_nat_index != 0 {
            ops.push(MapOp::DelRevNat {
                index: entry.rev_nat_index,
            });
            self.rev_nat_used.remove(&entry.rev_nat_index);
        }
        let ids: BTreeSet<u32> = entry.slots.iter().copied().filter(|i| *i != 0).collect();
        for id in &ids {
            if let Some(b) = self.backends.get_mut(id) {
                b.refs = b.refs.saturating_sub(1);
            }
        }
        self.note_gone(fe, entry.rev_nat_index, ids.iter());
    }

    /// Sets the size of the Maglev tables written from now on (a prime, see
    /// [`maglev::validate_table_size`]); tables of another size are rewritten at their
    /// frontend's next sync.
    pub fn set_maglev_size(&mut self, size: u32) -> Result<()> {
        maglev::validate_table_size(size)?;
        self.maglev_size = size;
        Ok(())
    }

    /// The Maglev table (backend ids) a frontend wants: empty without `SVC_F_MAGLEV` or
    /// backends. `ids` are the ids of `d.backends`, in order.
    fn maglev_table(&self, d: &DesiredFrontend, ids: &[u32]) -> Vec<u32> {
        if d.flags & SVC_F_MAGLEV == 0 {
            return Vec::new();
        }
        maglev::table(&d.backends, self.maglev_size)
            .into_iter()
            .map(|i| ids[i])
            .collect()
    }

    /// Records the backends `ids` leaving the UDP frontend `fe`.
    fn note_gone<'a>(&mut self, fe: &Frontend, rev_nat: u16, ids: impl Iterator<Item = &'a u32>) {
        if fe.proto != Protocol::Udp || rev_nat == 0 {
            return;
        }
        for id in ids {
            if let Some(b) = self.backends.get(id) {
                self.gone_udp.push((rev_nat, b.addr));
            }
        }
    }

    /// The backends that left a UDP frontend since the last call, with the frontend's
    /// reverse-NAT index.
    pub fn take_gone_udp(&mut self) -> Vec<(u16, BackendAddr)> {
        std::mem::take(&mut self.gone_udp)
    }

    fn collect_unreferenced(&mut self, ops: &mut Vec<MapOp>) {
        let dead: Vec<u32> = self
            .backends
            .iter()
            .filter(|(_, b)| b.refs == 0)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            if let Some(b) = self.backends.remove(&id) {
                self.backend_ids.remove(&b.addr);
            }
            ops.push(MapOp::DelBackend { id });
        }
    }

    /// Brings the frontends of `name` to `desired`; returns the map
    /// operations in the order they must be applied.
    pub fn sync(
        &mut self,
        name: &ServiceName,
        desired: &BTreeMap<Frontend, DesiredFrontend>,
    ) -> Result<Vec<MapOp>> {
        let mut new_backends = Vec::new();
        let mut ops = Vec::new();
        for (fe, d) in desired {
            self.upsert(*fe, d, &mut new_backends, &mut ops)?;
        }
        let before = self.owners.remove(name).unwrap_or_default();
        for fe in before.iter().filter(|fe| !desired.contains_key(fe)) {
            self.remove_frontend(fe, &mut ops);
        }
        if !desired.is_empty() {
            self.owners
                .insert(name.clone(), desired.keys().copied().collect());
        }
        self.collect_unreferenced(&mut ops);
        new_backends.extend(ops);
        Ok(new_backends)
    }

    /// Removes every frontend of `name`.
    pub fn delete(&mut self, name: &ServiceName) -> Vec<MapOp> {
        let mut ops = Vec::new();
        for fe in self.owners.remove(name).unwrap_or_default() {
            self.remove_frontend(&fe, &mut ops);
        }
        self.collect_unreferenced(&mut ops);
        ops
    }

    /// Removes frontends no synced service owns (left in pinned maps by a
    /// previous agent for services deleted while it was down).
    pub fn prune_unowned(&mut self) -> Vec<MapOp> {
        let owned: BTreeSet<Frontend> = self.owners.values().flatten().copied().collect();
        let stale: Vec<Frontend> = self
            .frontends
            .keys()
            .filter(|fe| !owned.contains(fe))
            .copied()
            .collect();
        let mut ops = Vec::new();
        for fe in stale {
            self.remove_frontend(&fe, &mut ops);
        }
        self.collect_unreferenced(&mut ops);
        ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EndpointPort, ServicePort};

    fn svc(ip: [u8; 4], ports: &[(&str, Protocol, u16, Option<u16>)]) -> ServiceSpec {
        ServiceSpec {
            name: ServiceName::new("default", "web"),
            cluster_ip: Some(Ipv4Addr::from(ip)),
            ports: ports
                .iter()
                .map(|(n, p, port, np)| ServicePort {
                    name: n.to_string(),
                    protocol: *p,
                    port: *port,
                    node_port: *np,
                })
                .collect(),
            affinity_timeout_s: None,
            lb_algorithm: Default::default(),
        }
    }

    fn ep(last: u8, port: u16) -> Endpoint {
        Endpoint {
            addr: Ipv4Addr::new(10, 244, 1, last),
            ports: vec![EndpointPort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port,
            }],
        }
    }

    fn kinds(ops: &[MapOp]) -> Vec<String> {
        ops.iter()
            .map(|op| match op {
                MapOp::PutBackend { id, .. } => format!("B+{id}"),
                MapOp::PutSlot { key, value } => {
                    if key.slot == 0 {
                        format!("S0={}", value.count)
                    } else {
                        format!("S{}={}", key.slot, value.backend_id)
                    }
                }
                MapOp::PutRevNat { index, .. } => format!("R+{index}"),
                MapOp::DelSlot { key } => format!("S{}-", key.slot),
                MapOp::DelRevNat { index } => format!("R-{index}"),
                MapOp::DelBackend { id } => format!("B-{id}"),
                MapOp::PutMaglev { .. } => "M+".to_string(),
                MapOp::DelMaglev { .. } => "M-".to_string(),
            })
            .collect()
    }

    #[test]
    fn new_service_publishes_slot0_last() {
        let mut t = MapMirror::new(None);
        let spec = svc([10, 96, 0, 10], &[("http", Protocol::Tcp, 80, None)]);
        let d = desired_frontends(&spec, &[ep(1, 8080), ep(2, 8080)], None).unwrap();
        let ops = t.sync(&spec.name, &d).unwrap();
        assert_eq!(kinds(&ops), ["B+1", "B+2", "S1=1", "S2=2", "R+1", "S0=2"]);
        // Same input again: nothing to do.
        assert!(t.sync(&spec.name, &d).unwrap().is_empty());
    }

    #[test]
    fn removing_a_backend_keeps_the_others_in_place() {
        let mut t = MapMirror::new(None);
        let spec = svc([10, 96, 0, 10], &[("http", Protocol::Tcp, 80, None)]);
        let d = desired_frontends(&spec, &[ep(1, 80), ep(2, 80), ep(3, 80)], None).unwrap();
        t.sync(&spec.name, &d).unwrap();
        let d = desired_frontends(&spec, &[ep(1, 80), ep(3, 80)], None).unwrap();
        let ops = t.sync(&spec.name, &d).unwrap();
        // Slot 2 now points at backend 3, count shrinks, slot 3 goes, backend 2 last.
        assert_eq!(kinds(&ops), ["S2=3", "S0=2", "S3-", "B-2"]);
    }

    #[test]
    fn backends_leaving_udp_frontends_are_noted_for_socket_destruction() {
        let mut t = MapMirror::new(None);
        let udp_ep = |last: u8| Endpoint {
            addr: Ipv4Addr::new(10, 244, 1, last),
            ports: vec![
                EndpointPort {
                    name: "dns".into(),
                    protocol: Protocol::Udp,
                    port: 53,
                },
                EndpointPort {
                    name: "http".into(),
                    protocol: Protocol::Tcp,
                    port: 80,
                },
            ],
        };
        let spec = svc(
            [10, 96, 0, 10],
            &[
                ("dns", Protocol::Udp, 53, None),
                ("http", Protocol::Tcp, 80, None),
            ],
        );
        let d = desired_frontends(&spec, &[udp_ep(1), udp_ep(2)], None).unwrap();
        t.sync(&spec.name, &d).unwrap();
        assert!(t.take_gone_udp().is_empty(), "nothing left yet");
        let d = desired_frontends(&spec, &[udp_ep(2)], None).unwrap();
        t.sync(&spec.name, &d).unwrap();
        let gone = t.take_gone_udp();
        let udp_fe = t
            .frontends_of(&spec.name)
            .into_iter()
            .find(|(_, fe)| fe.proto == Protocol::Udp);
        let rev = udp_fe.unwrap().0;
        // Only the UDP frontend's backend: TCP flows drain on their own.
        assert_eq!(
            gone,
            [(
                rev,
                BackendAddr {
                    addr: Ipv4Addr::new(10, 244, 1, 1),
                    port: 53,
                    proto: Protocol::Udp
                }
            )]
        );
        t.delete(&spec.name);
        assert_eq!(gone.len(), 1);
        assert_eq!(
            t.take_gone_udp().len(),
            1,
            "the last backend goes with the service"
        );
    }

    #[test]
    fn adding_a_backend_writes_backend_then_slot_then_count() {
        let mut t = MapMirror::new(None);
        let spec = svc([10, 96, 0, 10], &[("http", Protocol::Tcp, 80, None)]);
        let d = desired_frontends(&spec, &[ep(1, 80)], None).unwrap();
        t.sync(&spec.name, &d).unwrap();
        let d = desired_frontends(&spec, &[ep(1, 80), ep(2, 80)], None).unwrap();
        assert_eq!(
            kinds(&t.sync(&spec.name, &d).unwrap()),
            ["B+2", "S2=2", "S0=2"]
        );
    }

    #[test]
    fn no_endpoints_publishes_count_zero() {
        let mut t = MapMirror::new(None);
        let spec = svc([10, 96, 0, 10], &[("http", Protocol::Tcp, 80, None)]);
        let d = desired_frontends(&spec, &[], None).unwrap();
        assert_eq!(kinds(&t.sync(&spec.name, &d).unwrap()), ["R+1", "S0=0"]);
    }

    #[test]
    fn delete_unpublishes_first_and_frees_backends() {
        let mut t = MapMirror::new(None);
        let spec = svc([10, 96, 0, 10], &[("http", Protocol::Tcp, 80, Some(30080))]);
        let d = desired_frontends(&spec, &[ep(1, 80)], Some(Ipv4Addr::new(10, 250, 0, 1))).unwrap();
        assert_eq!(d.len(), 2);
        t.sync(&spec.name, &d).unwrap();
        let ops = t.delete(&spec.name);
        let k = kinds(&ops);
        assert_eq!(k[0], "S0-");
        assert_eq!(k.last().unwrap(), "B-1");
        assert_eq!(t.frontend_count(), 0);
        assert_eq!(t.backend_count(), 0);
    }

    #[test]
    fn ports_match_endpoints_by_name_and_protocol() {
        let spec = svc(
            [10, 96, 0, 10],
            &[
                ("http", Protocol::Tcp, 80, None),
                ("dns", Protocol::Udp, 53, None),
            ],
        );
        let e = Endpoint {
            addr: Ipv4Addr::new(10, 244, 1, 1),
            ports: vec![
                EndpointPort {
                    name: "http".into(),
                    protocol: Protocol::Tcp,
                    port: 8080,
                },
                EndpointPort {
                    name: "dns".into(),
                    protocol: Protocol::Udp,
                    port: 5353,
                },
            ],
        };
        let d = desired_frontends(&spec, &[e], None).unwrap();
        let udp = d
            .iter()
            .find(|(fe, _)| fe.proto == Protocol::Udp)
            .unwrap()
            .1;
        assert_eq!(udp.backends[0].port, 5353);
    }

    #[test]
    fn rebuild_then_sync_is_a_no_op() {
        let mut t = MapMirror::new(None);
        let spec = svc([10, 96, 0, 10], &[("http", Protocol::Tcp, 80, None)]);
        let d = desired_frontends(&spec, &[ep(1, 80), ep(2, 80)], None).unwrap();
        let ops = t.sync(&spec.name, &d).unwrap();
        let mut svcs = Vec::new();
        let mut bes = Vec::new();
        for op in ops {
            match op {
                MapOp::PutSlot { key, value } => svcs.push((key, value)),
                MapOp::PutBackend { id, value } => bes.push((id, value)),
                _ => {}
            }
        }
        let mut t2 = MapMirror::rebuild(None, svcs, bes);
        assert!(t2.sync(&spec.name, &d).unwrap().is_empty());
        assert!(t2.prune_unowned().is_empty());
        // A frontend nobody claims after the restart is pruned.
        let mut t3 = MapMirror::rebuild(None, Vec::new(), Vec::new());
        assert!(t3.prune_unowned().is_empty());
    }

    #[test]
    fn bad_input_names_the_field() {
        let mut spec = svc([10, 96, 0, 10], &[("http", Protocol::Tcp, 0, None)]);
        let err = desired_frontends(&spec, &[], None).unwrap_err().to_string();
        assert!(err.contains("spec.ports[0].port"), "{err}");
        spec.ports[0].port = 80;
        spec.affinity_timeout_s = Some(0);
        let err = desired_frontends(&spec, &[], None).unwrap_err().to_string();
        assert!(err.contains("timeoutSeconds"), "{err}");
    }
}
