//! Loading, attaching and driving the eBPF datapath of one node.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    net::Ipv4Addr,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, RwLock,
    },
    thread::JoinHandle,
};

use aya::{
    maps::{Array, HashMap, MapData, MapError, PerCpuHashMap, PerCpuValues},
    programs::{
        links::{FdLink, PinnedLink},
        CgroupAttachMode, CgroupSock, CgroupSockAddr, Iter, SchedClassifier, TcAttachType,
    },
    Ebpf, EbpfLoader,
};
use bpfk_ebpf_common::{
    Backend, GoneBackendKey, MaglevKey, NodeConfig, RevNat, ServiceKey, ServiceValue,
    TrafficCounters, AFFINITY_MAP, AFFINITY_MAP_ENTRIES, BACKEND_MAP, BACKEND_MAP_ENTRIES,
    BACKEND_STATS_MAP, CONFIG_MAP, CT_MAP, CT_MAP_ENTRIES, GONE_BACKENDS_MAP,
    GONE_BACKENDS_MAP_ENTRIES, MAGLEV_MAP, MAGLEV_MAP_ENTRIES, REVNAT_MAP, REVNAT_MAP_ENTRIES,
    SOCK_REVNAT_MAP, SOCK_REVNAT_MAP_ENTRIES, SVC_MAP, SVC_MAP_ENTRIES, SVC_STATS_MAP,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::{
    counters::{FrontendNames, Observer},
    map_mirror::{addr_be, desired_frontends, port_be, BackendAddr, MapMirror, MapOp},
    model::{Endpoint, Ipv4Cidr, PeerNode, ServiceName, ServiceSpec},
    routes::BlockingPeerRoutes,
    sys, udp_destroy, Error, Result,
};

/// The eBPF object built by `cargo xtask build-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("BPFK_EBPF_OBJECT_PATH"));

/// Default root of the pinned objects; each node gets `<root>/<node>/`.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/bpfk";

const CGROUP_PROGRAMS: &[(&str, &str)] = &[
    ("bpfk_connect4", "link_cgroup_connect4"),
    ("bpfk_sendmsg4", "link_cgroup_sendmsg4"),
    ("bpfk_recvmsg4", "link_cgroup_recvmsg4"),
    ("bpfk_getpeername4", "link_cgroup_getpeername4"),
];
/// Forgets the reverse-NAT entry of a closing socket.
const SOCK_RELEASE_PROGRAM: (&str, &str) = ("bpfk_sock_release", "link_cgroup_sock_release");
const TC_PROGRAM: &str = "bpfk_tc_ingress";
/// Reports UDP sockets connected to a gone backend (run per network namespace, not attached).
const ITER_UDP_PROGRAM: &str = "bpfk_iter_udp";
const TC_LINK_PREFIX: &str = "link_tc_";

/// Map sizes (entries). A full map makes updates fail with [`Error::MapFull`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MapSizes {
    pub services: u32,
    pub backends: u32,
    pub rev_nat: u32,
    pub conntrack: u32,
    pub affinity: u32,
    pub sock_rev_nat: u32,
    /// Maglev table entries of all frontends together (allocated as used).
    #[serde(default = "default_maglev_entries")]
    pub maglev: u32,
}

fn default_maglev_entries() -> u32 {
    MAGLEV_MAP_ENTRIES
}

impl Default for MapSizes {
    /// The sizes compiled into the eBPF object.
    fn default() -> Self {
        Self {
            services: SVC_MAP_ENTRIES,
            backends: BACKEND_MAP_ENTRIES,
            rev_nat: REVNAT_MAP_ENTRIES,
            conntrack: CT_MAP_ENTRIES,
            affinity: AFFINITY_MAP_ENTRIES,
            sock_rev_nat: SOCK_REVNAT_MAP_ENTRIES,
            maglev: MAGLEV_MAP_ENTRIES,
        }
    }
}

impl MapSizes {
    /// Each sized map's name with its size (the config map has a fixed single entry, the
    /// drop counters one per reason).
    fn by_map(&self) -> [(&'static str, u32); 7] {
        [
            (SVC_MAP, self.services),
            (BACKEND_MAP, self.backends),
            (REVNAT_MAP, self.rev_nat),
            (CT_MAP, self.conntrack),
            (AFFINITY_MAP, self.affinity),
            (SOCK_REVNAT_MAP, self.sock_rev_nat),
            (MAGLEV_MAP, self.maglev),
        ]
    }

    /// The counter maps: one entry per reverse-NAT index and per backend.
    fn counter_maps(&self) -> [(&'static str, u32); 2] {
        [
            (SVC_STATS_MAP, self.rev_nat),
            (BACKEND_STATS_MAP, self.backends),
        ]
    }

    /// Rejects sizes the kernel would refuse or the ids cannot address.
    fn validate(&self) -> Result<()> {
        for (name, entries) in self.by_map() {
            if entries == 0 {
                return Err(Error::invalid(
                    format!("map size of {name}"),
                    "must be at least 1",
                ));
            }
        }
        // Reverse-NAT indexes are 16-bit (0 unused).
        if self.rev_nat > u32::from(u16::MAX) + 1 {
            return Err(Error::invalid(
                "map size of reverse-NAT entries",
                format!(
                    "{} is over 65536 (16-bit reverse-NAT indexes)",
                    self.rev_nat
                ),
            ));
        }
        Ok(())
    }
}

/// How the datapath of a node is set up.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DatapathConfig {
    /// Root of the pinned maps and links (default [`DEFAULT_PIN_ROOT`]).
    pub pin_root: Option<PathBuf>,
    /// cgroup v2 directory whose sockets get socket-level load balancing
    /// (default: the root of the cgroup2 mount found in /proc/self/mountinfo).
    pub cgroup: Option<PathBuf>,
    /// Underlay device: NodePort traffic arrives here, peer routes leave here.
    pub underlay_iface: Option<String>,
    /// This node's address on the underlay (NodePort frontends, SNAT).
    pub node_addr: Option<Ipv4Addr>,
    /// This node's pod range (backends inside it are local).
    pub pod_cidr: Option<Ipv4Cidr>,
    /// The cluster's service (ClusterIP) range. Packets to addresses outside the range
    /// the programs are told (this one, widened to hold every programmed frontend; the
    /// node address aside) skip the per-packet service lookups. None: the range is the
    /// smallest prefix holding the programmed frontends.
    #[serde(default)]
    pub service_cidr: Option<Ipv4Cidr>,
    #[serde(default)]
    pub map_sizes: MapSizes,
    /// Entries of each Maglev table (a prime; default
    /// [`crate::maglev::DEFAULT_TABLE_SIZE`]).
    #[serde(default)]
    pub maglev_table_size: Option<u32>,
}

/// Counts of what the maps hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    pub frontends: usize,
    pub backends: usize,
}

struct LogDrain {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for LogDrain {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The loaded datapath of one node. Dropping it leaves everything attached
/// and pinned (a restarted agent picks it up); [`Datapath::teardown`] removes
/// it all.
pub struct Datapath {
    node: String,
    pin_dir: PathBuf,
    config: DatapathConfig,
    sizes: MapSizes,
    svc: HashMap<MapData, ServiceKey, ServiceValue>,
    backends: HashMap<MapData, u32, Backend>,
    rev_nat: HashMap<MapData, u16, RevNat>,
    svc_stats: PerCpuHashMap<MapData, u32, TrafficCounters>,
    backend_stats: PerCpuHashMap<MapData, u32, TrafficCounters>,
    gone_backends: HashMap<MapData, GoneBackendKey, u8>,
    maglev: HashMap<MapData, MaglevKey, u32>,
    mirror: MapMirror,
    /// Frontend of each reverse-NAT index with its service, shared with [`Observer`]s.
    names: Arc<RwLock<FrontendNames>>,
    /// What the programs were told ([`CONFIG_MAP`]), service range included.
    node_config: NodeConfig,
    /// The service range in `node_config`: None = no frontend yet (nothing matches).
    service_range: Option<Ipv4Cidr>,
    links: BTreeMap<String, PinnedLink>,
    /// Connected on the first [`Datapath::sync_peers`].
    peer_routes: Option<BlockingPeerRoutes>,
    // Declared last: programs must outlive nothing above, the logger must
    // stay alive as long as the object.
    _log: Option<LogDrain>,
    ebpf: Ebpf,
}

/// Node names become a directory name under the pin root.
fn validate_node_name(node: &str) -> Result<()> {
    let ok = !node.is_empty()
        && node.len() <= 253
        && node
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && node != "."
        && node != "..";
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "node name",
            format!("{node:?} must be a DNS subdomain (lowercase letters, digits, '-' and '.')"),
        ))
    }
}

fn map_err(name: &str, e: MapError) -> Error {
    Error::Map {
        name: name.to_string(),
        source: e,
    }
}

fn is_full(e: &MapError) -> bool {
    match e {
        MapError::SyscallError(s) => {
            matches!(
                s.io_error.raw_os_error(),
                Some(libc::E2BIG) | Some(libc::ENOSPC)
            )
        }
        _ => false,
    }
}

fn spawn_log_drain(ebpf: &mut Ebpf) -> Option<LogDrain> {
    let mut logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(l) => l,
        Err(e) => {
            warn!("eBPF logging disabled: {e}");
            return None;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("bpfk-ebpf-log".into())
        .spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd: logger.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, 200) };
                logger.flush();
            }
        })
        .ok()?;
    Some(LogDrain {
        stop,
        thread: Some(thread),
    })
}

impl Datapath {
    /// Loads the programs and maps of `node`, reusing maps pinned by an earlier
    /// run, and attaches the socket-level programs to the node cgroup and the
    /// TC program to the underlay device. Existing attachments are replaced
    /// make-before-break, so traffic never stops across a restart.
    pub fn load(node: &str, config: DatapathConfig) -> Result<Self> {
        validate_node_name(node)?;
        let pin_root = config
            .pin_root
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_ROOT));
        let pin_dir = pin_root.join(node);
        sys::ensure_bpffs(&pin_dir)?;
        let sizes = config.map_sizes.clone();
        sizes.validate()?;

        let mut loader = EbpfLoader::new();
        loader.default_map_pin_directory(&pin_dir);
        for (name, entries) in sizes.by_map().into_iter().chain(sizes.counter_maps()) {
            loader.map_max_entries(name, entries);
        }
        let mut ebpf = loader.load(OBJECT)?;
        let log = spawn_log_drain(&mut ebpf);

        for (name, _) in CGROUP_PROGRAMS {
            let prog: &mut CgroupSockAddr = program(&mut ebpf, name)?;
            prog.load().map_err(|e| prog_err(name, e))?;
        }
        {
            let (name, _) = SOCK_RELEASE_PROGRAM;
            let prog: &mut CgroupSock = program(&mut ebpf, name)?;
            prog.load().map_err(|e| prog_err(name, e))?;
            let prog: &mut SchedClassifier = program(&mut ebpf, TC_PROGRAM)?;
            prog.load().map_err(|e| prog_err(TC_PROGRAM, e))?;
            let btf = aya::Btf::from_sys_fs()?;
            let prog: &mut Iter = program(&mut ebpf, ITER_UDP_PROGRAM)?;
            prog.load("udp", &btf)
                .map_err(|e| prog_err(ITER_UDP_PROGRAM, e))?;
        }

        let svc: HashMap<MapData, ServiceKey, ServiceValue> =
            HashMap::try_from(take_map(&mut ebpf, SVC_MAP)?).map_err(|e| map_err(SVC_MAP, e))?;
        let backends: HashMap<MapData, u32, Backend> =
            HashMap::try_from(take_map(&mut ebpf, BACKEND_MAP)?)
                .map_err(|e| map_err(BACKEND_MAP, e))?;
        let rev_nat: HashMap<MapData, u16, RevNat> =
            HashMap::try_from(take_map(&mut ebpf, REVNAT_MAP)?)
                .map_err(|e| map_err(REVNAT_MAP, e))?;
        let svc_stats = PerCpuHashMap::try_from(take_map(&mut ebpf, SVC_STATS_MAP)?)
            .map_err(|e| map_err(SVC_STATS_MAP, e))?;
        let backend_stats = PerCpuHashMap::try_from(take_map(&mut ebpf, BACKEND_STATS_MAP)?)
            .map_err(|e| map_err(BACKEND_STATS_MAP, e))?;
        let gone_backends = HashMap::try_from(take_map(&mut ebpf, GONE_BACKENDS_MAP)?)
            .map_err(|e| map_err(GONE_BACKENDS_MAP, e))?;
        let maglev = HashMap::try_from(take_map(&mut ebpf, MAGLEV_MAP)?)
            .map_err(|e| map_err(MAGLEV_MAP, e))?;
        let node_config = node_config(&config)?;

        let services: Vec<(ServiceKey, ServiceValue)> = svc.iter().filter_map(|r| r.ok()).collect();
        let backend_entries: Vec<(u32, Backend)> = backends.iter().filter_map(|r| r.ok()).collect();
        let mut mirror = MapMirror::rebuild(config.pod_cidr, services, backend_entries);
        if let Some(size) = config.maglev_table_size {
            mirror.set_maglev_size(size)?;
        }
        if mirror.frontend_count() > 0 {
            info!(
                node,
                frontends = mirror.frontend_count(),
                backends = mirror.backend_count(),
                "reusing pinned service maps"
            );
        }

        let reused: Vec<Ipv4Addr> = mirror.frontend_addrs().collect();
        let service_cidr = config.service_cidr;
        let mut dp = Self {
            node: node.to_string(),
            pin_dir,
            config,
            sizes,
            svc,
            backends,
            rev_nat,
            svc_stats,
            backend_stats,
            gone_backends,
            maglev,
            mirror,
            names: Arc::default(),
            node_config,
            service_range: service_cidr,
            links: BTreeMap::new(),
            peer_routes: None,
            _log: log,
            ebpf,
        };
        dp.cover_frontends(reused.into_iter(), true)?;
        dp.attach_cgroup()?;
        if let Some(ul) = dp.config.underlay_iface.clone() {
            dp.attach_interface(&ul)?;
        }
        dp.reattach_pinned_interfaces()?;
        info!(node = %dp.node, pins = %dp.pin_dir.display(), "datapath loaded");
        Ok(dp)
    }

    /// The node this datapath serves.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Directory holding this node's pinned maps and links.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// A reader of this datapath's counters, program statistics and map fill that works
    /// beside it (another thread or task), from its own handles on the pinned maps.
    pub fn observer(&self) -> Result<Observer> {
        let mut programs = Vec::new();
        let names = CGROUP_PROGRAMS
            .iter()
            .map(|(name, _)| *name)
            .chain([SOCK_RELEASE_PROGRAM.0, TC_PROGRAM]);
        for name in names {
            let prog = self
                .ebpf
                .program(name)
                .ok_or_else(|| Error::MissingProgram(name.to_string()))?;
            let info = prog.info().map_err(|e| prog_err(name, e))?;
            programs.push((name, info.id()));
        }
        Observer::open(
            &self.pin_dir,
            self.sizes.clone(),
            programs,
            self.names.clone(),
        )
    }

    fn attach_cgroup(&mut self) -> Result<()> {
        let cgroup = match &self.config.cgroup {
            Some(c) => c.clone(),
            None => sys::cgroup2_mount()?,
        };
        let file = File::open(&cgroup).map_err(|e| Error::io("opening cgroup", &cgroup, e))?;
        for (prog_name, link_name) in CGROUP_PROGRAMS {
            let prog: &mut CgroupSockAddr = program(&mut self.ebpf, prog_name)?;
            let id = prog
                // bpf_link-based cgroup attachments always coexist with
                // others (flags must be 0), which make-before-break relies on.
                .attach(&file, CgroupAttachMode::Single)
                .map_err(|e| prog_err(prog_name, e))?;
            let link = prog.take_link(id).map_err(|e| prog_err(prog_name, e))?;
            let fd: FdLink = link.try_into().map_err(|e| Error::Link {
                path: self.pin_dir.join(link_name),
                source: e,
            })?;
            self.install_link(link_name, fd)?;
        }
        let (prog_name, link_name) = SOCK_RELEASE_PROGRAM;
        let prog: &mut CgroupSock = program(&mut self.ebpf, prog_name)?;
        let id = prog
            .attach(&file, CgroupAttachMode::Single)
            .map_err(|e| prog_err(prog_name, e))?;
        let link = prog.take_link(id).map_err(|e| prog_err(prog_name, e))?;
        let fd: FdLink = link.try_into().map_err(|e| Error::Link {
            path: self.pin_dir.join(link_name),
            source: e,
        })?;
        self.install_link(link_name, fd)?;
        debug!(cgroup = %cgroup.display(), "socket load balancing attached");
        Ok(())
    }

    /// Pins `fd` as `name`, replacing (after the new link is live) whatever
    /// link was pinned there before.
    fn install_link(&mut self, name: &str, fd: FdLink) -> Result<()> {
        let path = self.pin_dir.join(name);
        if let Some(old) = self.links.remove(name) {
            drop_pinned(old, &path);
        } else if path.exists() {
            match PinnedLink::from_pin(&path) {
                Ok(old) => drop_pinned(old, &path),
                Err(e) => {
                    warn!(path = %path.display(), "unreadable pinned link, removing: {e}");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let pinned = fd.pin(&path).map_err(|e| Error::Pin {
            path: path.clone(),
            source: e,
        })?;
        self.links.insert(name.to_string(), pinned);
        Ok(())
    }

    /// Attaches per-packet load balancing (TC ingress) to `ifname`: the host
    /// side of a pod veth, or the underlay device for NodePort.
    /// Idempotent: an interface this process already attached is left as is.
    pub fn attach_interface(&mut self, ifname: &str) -> Result<()> {
        sys::ifindex(ifname)?;
        if self
            .links
            .contains_key(&format!("{TC_LINK_PREFIX}{ifname}"))
        {
            return Ok(());
        }
        let prog: &mut SchedClassifier = program(&mut self.ebpf, TC_PROGRAM)?;
        let id = prog
            .attach(ifname, TcAttachType::Ingress)
            .map_err(|e| prog_err(TC_PROGRAM, e))?;
        let link = prog.take_link(id).map_err(|e| prog_err(TC_PROGRAM, e))?;
        let name = format!("{TC_LINK_PREFIX}{ifname}");
        let fd: FdLink = link.try_into().map_err(|e| Error::Link {
            path: self.pin_dir.join(&name),
            source: e,
        })?;
        self.install_link(&name, fd)?;
        debug!(ifname, "per-packet load balancing attached");
        Ok(())
    }

    /// Removes per-packet load balancing from `ifname` (a pod going away).
    pub fn detach_interface(&mut self, ifname: &str) -> Result<()> {
        let name = format!("{TC_LINK_PREFIX}{ifname}");
        let path = self.pin_dir.join(&name);
        if let Some(old) = self.links.remove(&name) {
            drop_pinned(old, &path);
        } else if path.exists() {
            fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
        }
        Ok(())
    }

    /// After a restart: move interface links pinned by the previous run to
    /// the newly loaded program; forget those whose interface is gone.
    fn reattach_pinned_interfaces(&mut self) -> Result<()> {
        let entries = fs::read_dir(&self.pin_dir)
            .map_err(|e| Error::io("reading pin directory", &self.pin_dir, e))?;
        let mut names = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(ifname) = name.strip_prefix(TC_LINK_PREFIX) {
                if !self.links.contains_key(&name) {
                    names.push(ifname.to_string());
                }
            }
        }
        for ifname in names {
            if sys::ifindex(&ifname).is_ok() {
                self.attach_interface(&ifname)?;
            } else {
                info!(ifname, "interface is gone, dropping its pinned link");
                self.detach_interface(&ifname)?;
            }
        }
        Ok(())
    }

    /// Brings the maps to `spec` served by `endpoints`, touching only what
    /// changed. Returns the number of map operations applied.
    pub fn sync_service(&mut self, spec: &ServiceSpec, endpoints: &[Endpoint]) -> Result<usize> {
        let desired = desired_frontends(spec, endpoints, self.config.node_addr)?;
        let ops = self.mirror.sync(&spec.name, &desired)?;
        // Before any slot is published: the programs must look new frontends up.
        self.cover_frontends(desired.keys().map(|fe| fe.addr), false)?;
        let applied = self.apply(&ops);
        self.update_names(&spec.name);
        applied?;
        self.destroy_gone_udp_sockets();
        Ok(ops.len())
    }

    /// Removes every frontend of the service `name`.
    pub fn delete_service(&mut self, name: &ServiceName) -> Result<usize> {
        let ops = self.mirror.delete(name);
        let applied = self.apply(&ops);
        self.update_names(name);
        applied?;
        self.destroy_gone_udp_sockets();
        Ok(ops.len())
    }

    /// Destroys the UDP sockets the socket load balancer connected to backends that just
    /// left a frontend, in every network namespace of the socket-balanced cgroup (see
    /// `udp_destroy`). Failures are logged: the maps are right either way.
    fn destroy_gone_udp_sockets(&mut self) {
        let gone = self.mirror.take_gone_udp();
        if gone.is_empty() {
            return;
        }
        let cgroup = match &self.config.cgroup {
            Some(c) => c.clone(),
            None => match sys::cgroup2_mount() {
                Ok(c) => c,
                Err(e) => return warn!("destroying UDP sockets of gone backends: {e}"),
            },
        };
        let namespaces = udp_destroy::netns_of_cgroup(&cgroup);
        for batch in gone.chunks(GONE_BACKENDS_MAP_ENTRIES as usize) {
            match self.destroy_batch(batch, &namespaces) {
                Ok(0) => {}
                Ok(n) => info!(
                    sockets = n,
                    "destroyed UDP sockets connected to gone backends"
                ),
                Err(e) => warn!("destroying UDP sockets of gone backends: {e}"),
            }
        }
    }

    fn destroy_batch(
        &mut self,
        batch: &[(u16, BackendAddr)],
        namespaces: &[PathBuf],
    ) -> Result<usize> {
        let keys: Vec<GoneBackendKey> = batch
            .iter()
            .map(|(rev_nat_index, b)| GoneBackendKey {
                addr: addr_be(b.addr),
                port: port_be(b.port),
                rev_nat_index: *rev_nat_index,
            })
            .collect();
        for key in &keys {
            self.gone_backends
                .insert(key, 1, 0)
                .map_err(|e| map_err(GONE_BACKENDS_MAP, e))?;
        }
        let mut destroyed = 0;
        for ns in namespaces {
            let prog: &mut Iter = program(&mut self.ebpf, ITER_UDP_PROGRAM)?;
            let id = prog.attach().map_err(|e| prog_err(ITER_UDP_PROGRAM, e))?;
            let link = prog
                .take_link(id)
                .map_err(|e| prog_err(ITER_UDP_PROGRAM, e))?;
            match udp_destroy::destroy_in(ns, link) {
                Ok(n) => destroyed += n,
                // The namespace's last process may have exited meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    debug!(netns = %ns.display(), "UDP socket iterator: {e}")
                }
                Err(e) => warn!(netns = %ns.display(), "UDP socket iterator: {e}"),
            }
        }
        for key in &keys {
            let _ = self.gone_backends.remove(key);
        }
        Ok(destroyed)
    }

    /// Widens the service range the programs check to hold `addrs` (the node address aside,
    /// it has its own check) and writes it when it changed or `always`. Never narrows.
    fn cover_frontends(
        &mut self,
        addrs: impl Iterator<Item = Ipv4Addr>,
        always: bool,
    ) -> Result<()> {
        let before = self.service_range;
        for addr in addrs.filter(|a| Some(*a) != self.config.node_addr) {
            self.service_range = Some(match self.service_range {
                Some(range) => range.widen_to(addr),
                None => Ipv4Cidr::new(addr, 32)?,
            });
        }
        if before == self.service_range && !always {
            return Ok(());
        }
        (self.node_config.svc_net, self.node_config.svc_mask) = match self.service_range {
            Some(r) => (addr_be(r.network()), addr_be(r.mask_addr())),
            // Matches no real destination (0.0.0.0/32).
            None => (0, u32::MAX),
        };
        write_node_config(&mut self.ebpf, &self.node_config)?;
        if before != self.service_range {
            debug!(range = ?self.service_range, "service range of the per-packet path");
        }
        Ok(())
    }

    /// Brings the shared frontend names of service `name` in line with the mirror.
    fn update_names(&self, name: &ServiceName) {
        let frontends = self.mirror.frontends_of(name);
        if let Ok(mut names) = self.names.write() {
            names.set_service(name, frontends);
        }
    }

    /// Removes frontends that no service synced since load owns: call once
    /// the agent has synced every service it knows after a restart.
    pub fn prune_unowned(&mut self) -> Result<usize> {
        let ops = self.mirror.prune_unowned();
        self.apply(&ops)?;
        Ok(ops.len())
    }

    /// Counts of programmed frontends and backends.
    pub fn stats(&self) -> Stats {
        Stats {
            frontends: self.mirror.frontend_count(),
            backends: self.mirror.backend_count(),
        }
    }

    fn apply(&mut self, ops: &[MapOp]) -> Result<()> {
        for op in ops {
            let r = match op {
                MapOp::PutBackend { id, value } => self
                    .backends
                    .insert(id, value, 0)
                    .map_err(|e| (BACKEND_MAP, self.sizes.backends, e)),
                MapOp::PutSlot { key, value } => self
                    .svc
                    .insert(key, value, 0)
                    .map_err(|e| (SVC_MAP, self.sizes.services, e)),
                MapOp::PutRevNat { index, value } => self
                    .rev_nat
                    .insert(index, value, 0)
                    .map_err(|e| (REVNAT_MAP, self.sizes.rev_nat, e)),
                MapOp::DelSlot { key } => ignore_missing(self.svc.remove(key))
                    .map_err(|e| (SVC_MAP, self.sizes.services, e)),
                MapOp::DelRevNat { index } => ignore_missing(self.rev_nat.remove(index))
                    .map_err(|e| (REVNAT_MAP, self.sizes.rev_nat, e)),
                MapOp::DelBackend { id } => ignore_missing(self.backends.remove(id))
                    .map_err(|e| (BACKEND_MAP, self.sizes.backends, e)),
                MapOp::PutMaglev { key, backend_id } => self
                    .maglev
                    .insert(key, backend_id, 0)
                    .map_err(|e| (MAGLEV_MAP, self.sizes.maglev, e)),
                MapOp::DelMaglev { key } => ignore_missing(self.maglev.remove(key))
                    .map_err(|e| (MAGLEV_MAP, self.sizes.maglev, e)),
            };
            let r = r.and_then(|()| self.apply_counters(op));
            if let Err((name, max, e)) = r {
                // Bring the mirror back in line with what the maps hold.
                self.resync_mirror();
                return Err(if is_full(&e) {
                    Error::MapFull {
                        name: name.to_string(),
                        max_entries: max,
                    }
                } else {
                    map_err(name, e)
                });
            }
        }
        Ok(())
    }

    /// Creates the (zeroed) counters of a new frontend or backend, removes those of a
    /// removed one. An existing entry keeps its counts (a restart, a re-put).
    fn apply_counters(&mut self, op: &MapOp) -> Result<(), (&'static str, u32, MapError)> {
        let (map, name, max, key, put) = match op {
            MapOp::PutRevNat { index, .. } => (
                &mut self.svc_stats,
                SVC_STATS_MAP,
                self.sizes.rev_nat,
                u32::from(*index),
                true,
            ),
            MapOp::DelRevNat { index } => (
                &mut self.svc_stats,
                SVC_STATS_MAP,
                self.sizes.rev_nat,
                u32::from(*index),
                false,
            ),
            MapOp::PutBackend { id, .. } => (
                &mut self.backend_stats,
                BACKEND_STATS_MAP,
                self.sizes.backends,
                *id,
                true,
            ),
            MapOp::DelBackend { id } => (
                &mut self.backend_stats,
                BACKEND_STATS_MAP,
                self.sizes.backends,
                *id,
                false,
            ),
            _ => return Ok(()),
        };
        let r = if put {
            zeroed_counters().and_then(|zero| ignore_exists(map.insert(key, zero, BPF_NOEXIST)))
        } else {
            ignore_missing(map.remove(&key))
        };
        r.map_err(|e| (name, max, e))
    }

    fn resync_mirror(&mut self) {
        let services: Vec<_> = self.svc.iter().filter_map(|r| r.ok()).collect();
        let backends: Vec<_> = self.backends.iter().filter_map(|r| r.ok()).collect();
        let owners = self.mirror.take_owners();
        self.mirror = MapMirror::rebuild(self.config.pod_cidr, services, backends);
        self.mirror.set_owners(owners);
        if let Some(size) = self.config.maglev_table_size {
            // Validated at load.
            let _ = self.mirror.set_maglev_size(size);
        }
    }

    /// Routes every peer's pod range via its node address over the underlay
    /// (cross-node pod traffic), removing routes of peers no longer listed.
    /// Blocks, so not for async code: the agent keeps a [`crate::PeerRoutes`] on its
    /// runtime instead. The first call opens the rtnetlink connection (in the
    /// calling thread's network namespace) that every later one reuses.
    pub fn sync_peers(&mut self, peers: &[PeerNode]) -> Result<()> {
        let Some(underlay) = self.config.underlay_iface.as_deref() else {
            return Err(Error::invalid(
                "underlay_iface",
                "peer routes need the underlay device in the datapath config",
            ));
        };
        let routes = match self.peer_routes.take() {
            Some(routes) => routes,
            None => BlockingPeerRoutes::connect(underlay)?,
        };
        self.peer_routes.insert(routes).sync(peers)
    }

    /// Detaches every program, removes every pin and the routes this datapath
    /// added.
    pub fn teardown(mut self) -> Result<()> {
        if let Some(mut routes) = self.peer_routes.take() {
            if let Err(e) = routes.remove_all() {
                warn!("teardown: {e}");
            }
        }
        let links = std::mem::take(&mut self.links);
        for (name, link) in links {
            drop_pinned(link, &self.pin_dir.join(name));
        }
        let pin_dir = self.pin_dir.clone();
        let node = self.node.clone();
        drop(self);
        remove_pins(&pin_dir)?;
        info!(node, "datapath torn down");
        Ok(())
    }
}

/// Removes every pinned object of a node's datapath (for cleaning up after a
/// process that is gone). Pinned links detach when their pin goes and no
/// process holds them.
pub fn teardown_pins(pin_root: &Path, node: &str) -> Result<()> {
    validate_node_name(node)?;
    remove_pins(&pin_root.join(node))
}

fn remove_pins(dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("reading pin directory", dir, e)),
    };
    for entry in entries.flatten() {
        let p = entry.path();
        fs::remove_file(&p).map_err(|e| Error::io("removing pin", &p, e))?;
    }
    fs::remove_dir(dir).map_err(|e| Error::io("removing pin directory", dir, e))
}

fn drop_pinned(link: PinnedLink, path: &Path) {
    match link.unpin() {
        Ok(fd) => drop(fd),
        Err(e) => {
            warn!(path = %path.display(), "unpinning link: {e}");
            let _ = fs::remove_file(path);
        }
    }
}

/// `BPF_NOEXIST`: create only.
const BPF_NOEXIST: u64 = 1;

/// One zeroed [`TrafficCounters`] per possible CPU.
fn zeroed_counters() -> Result<PerCpuValues<TrafficCounters>, MapError> {
    let cpus = aya::util::nr_cpus().map_err(|(_, io_error)| {
        MapError::SyscallError(aya::sys::SyscallError {
            call: "nr_cpus",
            io_error,
        })
    })?;
    PerCpuValues::try_from(vec![TrafficCounters::default(); cpus]).map_err(|io_error| {
        MapError::SyscallError(aya::sys::SyscallError {
            call: "per-cpu values",
            io_error,
        })
    })
}

fn ignore_exists(r: Result<(), MapError>) -> Result<(), MapError> {
    match r {
        Err(MapError::SyscallError(ref s)) if s.io_error.raw_os_error() == Some(libc::EEXIST) => {
            Ok(())
        }
        other => other,
    }
}

/// The node's addresses, underlay ifindex and pod range for the programs (the service
/// range is set by [`Datapath::cover_frontends`]).
fn node_config(config: &DatapathConfig) -> Result<NodeConfig> {
    let underlay_ifindex = match &config.underlay_iface {
        Some(i) => sys::ifindex(i)?,
        None => 0,
    };
    Ok(NodeConfig {
        node_addr: config.node_addr.map(addr_be).unwrap_or(0),
        underlay_ifindex,
        pod_net: config.pod_cidr.map(|c| addr_be(c.network())).unwrap_or(0),
        pod_mask: config.pod_cidr.map(|c| addr_be(c.mask_addr())).unwrap_or(0),
        svc_net: 0,
        svc_mask: u32::MAX,
    })
}

fn write_node_config(ebpf: &mut Ebpf, value: &NodeConfig) -> Result<()> {
    let mut cfg: Array<&mut MapData, NodeConfig> = Array::try_from(
        ebpf.map_mut(CONFIG_MAP)
            .ok_or_else(|| Error::MissingMap(CONFIG_MAP.into()))?,
    )
    .map_err(|e| map_err(CONFIG_MAP, e))?;
    cfg.set(0, value, 0).map_err(|e| map_err(CONFIG_MAP, e))
}

fn ignore_missing(r: Result<(), MapError>) -> Result<(), MapError> {
    match r {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(ref s)) if s.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(())
        }
        other => other,
    }
}

fn prog_err(name: &str, e: aya::programs::ProgramError) -> Error {
    Error::Program {
        name: name.to_string(),
        source: e,
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| Error::MissingProgram(name.to_string()))?;
    p.try_into().map_err(|e| prog_err(name, e))
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map> {
    ebpf.take_map(name)
        .ok_or_else(|| Error::MissingMap(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_checked() {
        assert!(validate_node_name("node-a.example").is_ok());
        for bad in ["", "..", "a/b", "Node", "a b"] {
            let err = validate_node_name(bad).unwrap_err().to_string();
            assert!(err.contains("node name"), "{bad}: {err}");
        }
    }

    /// The `#[map]` definitions in `ebpf/programs` spell names and sizes out; they must be
    /// the constants of `bpfk-ebpf-common`.
    #[test]
    fn object_maps_are_the_common_names_and_sizes() {
        let object = aya_obj::Object::parse(OBJECT).expect("parsing the embedded eBPF object");
        let mut in_object: Vec<(&str, u32)> = object
            .maps
            .iter()
            .filter(|(name, _)| name.starts_with("BPFK_"))
            .map(|(name, map)| (name.as_str(), map.max_entries()))
            .collect();
        in_object.sort();
        let mut common = bpfk_ebpf_common::MAPS.to_vec();
        common.sort();
        assert_eq!(in_object, common);
    }

    #[test]
    fn default_sizes_are_the_object_sizes_of_the_named_maps() {
        let sizes = MapSizes::default();
        let defaults: Vec<_> = sizes
            .by_map()
            .into_iter()
            .chain(sizes.counter_maps())
            .collect();
        let common = &bpfk_ebpf_common::MAPS;
        assert_eq!(
            defaults.len() + 3,
            common.len(),
            "every map but the config map, the drop counters and the gone backends"
        );
        for (name, entries) in defaults {
            assert!(common.contains(&(name, entries)), "{name}: {entries}");
        }
    }
}
