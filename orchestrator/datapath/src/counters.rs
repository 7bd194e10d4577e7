//! What a node's datapath has done: traffic per frontend and per backend, drops and failed
//! map writes by reason, program run counts and run time, and how full each map is. The
//! kernel keeps the counters per CPU (`bpfk_ebpf_common::TrafficCounters`); an [`Observer`]
//! sums them. It holds its own handles on the pinned maps, so it works beside the
//! [`crate::Datapath`] that drives them (another thread or task).

use std::{
    collections::HashMap as StdHashMap,
    path::Path,
    sync::{Arc, RwLock},
    time::Duration,
};

use aya::maps::{HashMap, Map, MapData, PerCpuArray, PerCpuHashMap};
use bpfk_ebpf_common::{
    AffinityKey, AffinityValue, Backend, CtKey, CtValue, ServiceKey, ServiceValue, SockRevKey,
    SockRevValue, TrafficCounters, AFFINITY_MAP, BACKEND_MAP, BACKEND_STATS_MAP, CT_MAP, DROPS_MAP,
    DROP_REASONS, SOCK_REVNAT_MAP, SVC_MAP, SVC_STATS_MAP,
};

use crate::{
    map_mirror::{addr_from_be, BackendAddr, Frontend},
    model::Protocol,
    Error, MapSizes, Result, ServiceName,
};

/// The frontend (and its service) of each reverse-NAT index, kept by the datapath.
#[derive(Debug, Default)]
pub struct FrontendNames {
    by_index: StdHashMap<u16, (ServiceName, Frontend)>,
    by_service: StdHashMap<ServiceName, Vec<u16>>,
}

impl FrontendNames {
    /// Replaces what is known of `service` with `frontends` (reverse-NAT index, frontend).
    pub(crate) fn set_service(&mut self, service: &ServiceName, frontends: Vec<(u16, Frontend)>) {
        for index in self.by_service.remove(service).unwrap_or_default() {
            self.by_index.remove(&index);
        }
        if frontends.is_empty() {
            return;
        }
        let indexes = frontends.iter().map(|(i, _)| *i).collect();
        for (index, fe) in frontends {
            self.by_index.insert(index, (service.clone(), fe));
        }
        self.by_service.insert(service.clone(), indexes);
    }
}

/// Traffic through one frontend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendTraffic {
    /// None for a frontend no synced service owns (yet).
    pub service: Option<ServiceName>,
    pub frontend: Option<Frontend>,
    pub rev_nat_index: u16,
    pub counters: TrafficCounters,
}

/// Traffic to one backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendTraffic {
    pub id: u32,
    /// None when the backend was removed between the two reads.
    pub backend: Option<BackendAddr>,
    pub counters: TrafficCounters,
}

/// Run statistics of one program (zero unless `kernel.bpf_stats_enabled` is on, see
/// [`enable_run_stats`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: &'static str,
    pub run_count: u64,
    pub run_time: Duration,
}

/// Entries of one map against its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapFill {
    pub name: &'static str,
    pub entries: usize,
    pub max_entries: u32,
}

/// One reading of everything an [`Observer`] sees.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub frontends: Vec<FrontendTraffic>,
    pub backends: Vec<BackendTraffic>,
    /// (`DROP_REASONS` label, count) for every reason.
    pub drops: Vec<(&'static str, u64)>,
    pub programs: Vec<ProgramStats>,
    pub maps: Vec<MapFill>,
}

/// Reads a datapath's counters from the pinned maps (see [`crate::Datapath::observer`]).
pub struct Observer {
    svc_stats: PerCpuHashMap<MapData, u32, TrafficCounters>,
    backend_stats: PerCpuHashMap<MapData, u32, TrafficCounters>,
    drops: PerCpuArray<MapData, u64>,
    backends: HashMap<MapData, u32, Backend>,
    pin_dir: std::path::PathBuf,
    sizes: MapSizes,
    programs: Vec<(&'static str, u32)>,
    names: Arc<RwLock<FrontendNames>>,
}

fn open_map(pin_dir: &Path, name: &str) -> Result<Map> {
    let path = pin_dir.join(name);
    let data = MapData::from_pin(&path).map_err(|e| map_err(name, e))?;
    Map::from_map_data(data).map_err(|e| map_err(name, e))
}

fn map_err(name: &str, source: aya::maps::MapError) -> Error {
    Error::Map {
        name: name.to_string(),
        source,
    }
}

/// Sums a per-CPU value.
fn sum(values: &aya::maps::PerCpuValues<TrafficCounters>) -> TrafficCounters {
    values
        .iter()
        .fold(TrafficCounters::default(), |a, c| TrafficCounters {
            packets: a.packets + c.packets,
            bytes: a.bytes + c.bytes,
            connections: a.connections + c.connections,
        })
}

/// Entries of the hash map pinned as `name` (one key walk).
fn count_entries<K: aya::Pod, V: aya::Pod>(pin_dir: &Path, name: &str) -> Result<usize> {
    let map: HashMap<MapData, K, V> =
        HashMap::try_from(open_map(pin_dir, name)?).map_err(|e| map_err(name, e))?;
    Ok(map.keys().filter(|k| k.is_ok()).count())
}

impl Observer {
    pub(crate) fn open(
        pin_dir: &Path,
        sizes: MapSizes,
        programs: Vec<(&'static str, u32)>,
        names: Arc<RwLock<FrontendNames>>,
    ) -> Result<Self> {
        let per_cpu =
            |name| PerCpuHashMap::try_from(open_map(pin_dir, name)?).map_err(|e| map_err(name, e));
        Ok(Self {
            svc_stats: per_cpu(SVC_STATS_MAP)?,
            backend_stats: per_cpu(BACKEND_STATS_MAP)?,
            drops: PerCpuArray::try_from(open_map(pin_dir, DROPS_MAP)?)
                .map_err(|e| map_err(DROPS_MAP, e))?,
            backends: HashMap::try_from(open_map(pin_dir, BACKEND_MAP)?)
                .map_err(|e| map_err(BACKEND_MAP, e))?,
            pin_dir: pin_dir.to_path_buf(),
            sizes,
            programs,
            names,
        })
    }

    /// Traffic of every frontend, summed over CPUs.
    pub fn frontends(&self) -> Result<Vec<FrontendTraffic>> {
        let names = self
            .names
            .read()
            .map_err(|_| Error::invalid("frontend names", "a writer panicked"))?;
        let mut out = Vec::new();
        for entry in self.svc_stats.iter() {
            let (index, values) = entry.map_err(|e| map_err(SVC_STATS_MAP, e))?;
            let Ok(index) = u16::try_from(index) else {
                continue;
            };
            let known = names.by_index.get(&index);
            out.push(FrontendTraffic {
                service: known.map(|(s, _)| s.clone()),
                frontend: known.map(|(_, f)| *f),
                rev_nat_index: index,
                counters: sum(&values),
            });
        }
        out.sort_by_key(|f| f.rev_nat_index);
        Ok(out)
    }

    /// Traffic of every backend, summed over CPUs.
    pub fn backends(&self) -> Result<Vec<BackendTraffic>> {
        let mut out = Vec::new();
        for entry in self.backend_stats.iter() {
            let (id, values) = entry.map_err(|e| map_err(BACKEND_STATS_MAP, e))?;
            let backend = self.backends.get(&id, 0).ok().and_then(backend_addr);
            out.push(BackendTraffic {
                id,
                backend,
                counters: sum(&values),
            });
        }
        out.sort_by_key(|b| b.id);
        Ok(out)
    }

    /// Every drop reason with its count, summed over CPUs.
    pub fn drops(&self) -> Result<Vec<(&'static str, u64)>> {
        let mut out = Vec::new();
        for (i, reason) in DROP_REASONS.iter().enumerate() {
            let values = self
                .drops
                .get(&(i as u32), 0)
                .map_err(|e| map_err(DROPS_MAP, e))?;
            out.push((*reason, values.iter().sum()));
        }
        Ok(out)
    }

    /// Run count and run time of every program of the datapath.
    pub fn programs(&self) -> Vec<ProgramStats> {
        let loaded: StdHashMap<u32, aya::programs::ProgramInfo> = aya::programs::loaded_programs()
            .filter_map(|p| p.ok())
            .map(|p| (p.id(), p))
            .collect();
        self.programs
            .iter()
            .map(|(name, id)| {
                let info = loaded.get(id);
                ProgramStats {
                    name,
                    run_count: info.map(|i| i.run_count()).unwrap_or(0),
                    run_time: info.map(|i| i.run_time()).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Entries against size of every sized map (walks each map's keys: the conntrack map
    /// can take a few tens of milliseconds when full).
    pub fn map_fill(&self) -> Result<Vec<MapFill>> {
        let d = &self.pin_dir;
        let s = &self.sizes;
        Ok(vec![
            fill(
                SVC_MAP,
                count_entries::<ServiceKey, ServiceValue>(d, SVC_MAP)?,
                s.services,
            ),
            fill(
                BACKEND_MAP,
                self.backends.keys().filter(|k| k.is_ok()).count(),
                s.backends,
            ),
            fill(
                CT_MAP,
                count_entries::<CtKey, CtValue>(d, CT_MAP)?,
                s.conntrack,
            ),
            fill(
                AFFINITY_MAP,
                count_entries::<AffinityKey, AffinityValue>(d, AFFINITY_MAP)?,
                s.affinity,
            ),
            fill(
                SOCK_REVNAT_MAP,
                count_entries::<SockRevKey, SockRevValue>(d, SOCK_REVNAT_MAP)?,
                s.sock_rev_nat,
            ),
        ])
    }

    /// Everything at once.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            frontends: self.frontends()?,
            backends: self.backends()?,
            drops: self.drops()?,
            programs: self.programs(),
            maps: self.map_fill()?,
        })
    }
}

fn fill(name: &'static str, entries: usize, max_entries: u32) -> MapFill {
    MapFill {
        name,
        entries,
        max_entries,
    }
}

fn backend_addr(b: Backend) -> Option<BackendAddr> {
    let proto = match b.proto {
        bpfk_ebpf_common::PROTO_TCP => Protocol::Tcp,
        bpfk_ebpf_common::PROTO_UDP => Protocol::Udp,
        _ => return None,
    };
    Some(BackendAddr {
        addr: addr_from_be(b.addr),
        port: u16::from_be(b.port),
        proto,
    })
}

/// Turns on the kernel's program run statistics (`kernel.bpf_stats_enabled`) for as long
/// as the returned descriptor is open. They cost two clock reads per program run.
pub fn enable_run_stats() -> Result<std::os::fd::OwnedFd> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| Error::Map {
        name: "bpf_stats".into(),
        source: aya::maps::MapError::SyscallError(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn fe(port: u16) -> Frontend {
        Frontend {
            addr: Ipv4Addr::new(10, 96, 0, 1),
            port,
            proto: Protocol::Tcp,
        }
    }

    #[test]
    fn names_follow_the_service_frontends() {
        let mut names = FrontendNames::default();
        let svc = ServiceName::new("default", "web");
        names.set_service(&svc, vec![(1, fe(80)), (2, fe(443))]);
        assert_eq!(names.by_index.len(), 2);
        names.set_service(&svc, vec![(2, fe(443))]);
        assert_eq!(names.by_index.len(), 1);
        assert_eq!(names.by_index[&2], (svc.clone(), fe(443)));
        names.set_service(&svc, Vec::new());
        assert!(names.by_index.is_empty() && names.by_service.is_empty());
    }

    #[test]
    fn per_cpu_counters_are_summed() {
        let c = |p, b, n| TrafficCounters {
            packets: p,
            bytes: b,
            connections: n,
        };
        let cpus = aya::util::nr_cpus().expect("possible CPUs") as u64;
        let values = aya::maps::PerCpuValues::try_from(vec![c(1, 100, 1); cpus as usize])
            .expect("one value per CPU");
        assert_eq!(sum(&values), c(cpus, 100 * cpus, cpus));
    }
}
