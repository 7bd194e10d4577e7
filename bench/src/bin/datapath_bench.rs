//! Service datapath benchmark at scale: bpfk's eBPF datapath (per-packet TC and socket-level
//! load balancing) against direct pod-to-pod traffic and kube-proxy's iptables and nftables
//! rule layouts, at 1, 1,000, 10,000 and 30,000 services, on two-node network-namespace labs
//! (`bpfk_lab::netlab`), one lab per layout so that every layout is loaded at once and the
//! rounds interleave (A B C D E, A B C D E, …). Run as root:
//! `cargo run --release -p bpfk-bench --bin datapath_bench`.
//! Writes `bench/results/datapath.md`.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use bpfk_bench::results_path;
use bpfk_datapath::{
    Datapath, Endpoint, EndpointPort, MapSizes, Protocol, ServiceName, ServicePort, ServiceSpec,
};
use bpfk_lab::netlab::{
    check_aborted, install_signal_guard, run_in, sh, sh_in, Lab, NetlabOptions, Proc,
};
use bpfk_lab::netns::in_netns;

/// ClusterIP whose only backend is the server pod on the client's node.
const VIP_LOCAL: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// ClusterIP whose only backend is the server pod on the other node.
const VIP_REMOTE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);
const IPERF_PORT: u16 = 5201;
/// Services of each scale (the two measured ones included; the smallest holds only them).
const SCALES: [usize; 4] = [1, 1_000, 10_000, 30_000];
const DUMMY_ENDPOINTS: usize = 2;
const POD_CIDR: &str = "10.244.0.0/16";
/// Port of the bench's own connect/1-byte-echo/close server.
const RR_PORT: u16 = 7000;
const RR_SVC_PORT: u16 = 70;
const RR_CONNECTIONS: u32 = 16;
const RR_SECONDS: u32 = 2;
const IPERF_SECONDS: u32 = 2;
/// Rounds per scale; each round measures every layout once, in turn.
const ROUNDS: usize = 3;
/// A layout whose programming time, scaled linearly from the previous scale, would pass this
/// is skipped at the next scale (iptables-restore grows faster than linearly).
const PROGRAMMING_BUDGET: Duration = Duration::from_secs(60);

/// One service port as every implementation sees it.
struct Svc {
    name: String,
    vip: Ipv4Addr,
    /// (port name, service port, endpoint port)
    ports: Vec<(&'static str, u16, u16)>,
    endpoints: Vec<Ipv4Addr>,
}

/// `total` services: dummies (never hit, 2 endpoints each) first, the two measured last
/// (the worst place for iptables' linear walk).
fn services(total: usize, local: Ipv4Addr, remote: Ipv4Addr) -> Vec<Svc> {
    let first = u32::from(Ipv4Addr::new(10, 96, 1, 1));
    let mut all: Vec<Svc> = (0..total.saturating_sub(2))
        .map(|i| Svc {
            name: format!("dummy-{i:05}"),
            vip: Ipv4Addr::from(first + i as u32),
            ports: vec![("http", 80, 8080)],
            endpoints: (0..DUMMY_ENDPOINTS)
                .map(|e| Ipv4Addr::new(10, 244, 1 + e as u8, 100 + (i % 100) as u8))
                .collect(),
        })
        .collect();
    let measured = |name: &str, vip, ep| Svc {
        name: name.to_string(),
        vip,
        ports: vec![
            ("iperf", IPERF_PORT, IPERF_PORT),
            ("rr", RR_SVC_PORT, RR_PORT),
        ],
        endpoints: vec![ep],
    };
    all.push(measured("bench-local", VIP_LOCAL, local));
    all.push(measured("bench-remote", VIP_REMOTE, remote));
    all
}

/// 16 upper-case hex digits of FNV-1a: stands in for kube-proxy's chain hash.
fn chain_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016X}")
}

/// kube-proxy's iptables-mode layout (`iptables-restore` input).
fn iptables_rules(svcs: &[Svc]) -> String {
    let mut chains = String::new();
    let mut rules = String::new();
    let mut svc_rules = String::new();
    for s in svcs {
        for (pname, port, target) in &s.ports {
            let id = format!("default/{}:{pname}", s.name);
            let svc_chain = format!("KUBE-SVC-{}", chain_hash(&format!("{id}/tcp")));
            let _ = writeln!(chains, ":{svc_chain} - [0:0]");
            let _ = writeln!(
                svc_rules,
                "-A KUBE-SERVICES -m comment --comment \"{id} cluster IP\" -d {}/32 -p tcp -m tcp --dport {port} -j {svc_chain}",
                s.vip
            );
            let _ = writeln!(
                rules,
                "-A {svc_chain} -m comment --comment \"{id} cluster IP\" ! -s {POD_CIDR} -d {}/32 -p tcp -m tcp --dport {port} -j KUBE-MARK-MASQ",
                s.vip
            );
            let n = s.endpoints.len();
            for (k, ep) in s.endpoints.iter().enumerate() {
                let sep = format!(
                    "KUBE-SEP-{}",
                    chain_hash(&format!("{id}/tcp/{ep}:{target}"))
                );
                let _ = writeln!(chains, ":{sep} - [0:0]");
                if k + 1 < n {
                    let p = 1.0 / (n - k) as f64;
                    let _ = writeln!(
                        rules,
                        "-A {svc_chain} -m comment --comment \"{id} -> {ep}:{target}\" -m statistic --mode random --probability {p:.10} -j {sep}"
                    );
                } else {
                    let _ = writeln!(
                        rules,
                        "-A {svc_chain} -m comment --comment \"{id} -> {ep}:{target}\" -j {sep}"
                    );
                }
                let _ = writeln!(
                    rules,
                    "-A {sep} -m comment --comment \"{id}\" -s {ep}/32 -j KUBE-MARK-MASQ"
                );
                let _ = writeln!(
                    rules,
                    "-A {sep} -m comment --comment \"{id}\" -p tcp -m tcp -j DNAT --to-destination {ep}:{target}"
                );
            }
        }
    }
    format!(
        "*filter\n\
         :INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :KUBE-FORWARD - [0:0]\n\
         -A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         COMMIT\n\
         *nat\n\
         :PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         :KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n\
         {chains}\
         -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n\
         {svc_rules}\
         -A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n\
         {rules}\
         COMMIT\n"
    )
}

/// kube-proxy's nftables-mode layout (`nft -f` input).
fn nft_rules(svcs: &[Svc]) -> String {
    let mut endpoint_chains = String::new();
    let mut service_chains = String::new();
    let mut elements = Vec::new();
    for s in svcs {
        for (pname, port, target) in &s.ports {
            let id = format!("default/{}/tcp/{pname}", s.name);
            let svc_chain = format!("service-{}", chain_hash(&id));
            let mut vmap = Vec::new();
            for (k, ep) in s.endpoints.iter().enumerate() {
                let chain = format!("endpoint-{}", chain_hash(&format!("{id}__{ep}/{target}")));
                let _ = writeln!(
                    endpoint_chains,
                    "\tchain {chain} {{\n\
                     \t\tip saddr {ep} jump mark-for-masquerade\n\
                     \t\tmeta l4proto tcp dnat to {ep}:{target}\n\t}}"
                );
                vmap.push(format!("{k} : goto {chain}"));
            }
            let _ = writeln!(
                service_chains,
                "\tchain {svc_chain} {{\n\
                 \t\tip daddr {} tcp dport {port} ip saddr != {POD_CIDR} jump mark-for-masquerade\n\
                 \t\tnumgen random mod {} vmap {{ {} }}\n\t}}",
                s.vip,
                s.endpoints.len(),
                vmap.join(", ")
            );
            elements.push(format!("{} . tcp . {port} : goto {svc_chain}", s.vip));
        }
    }
    format!(
        "table ip kube-proxy {{\n\
         \tchain mark-for-masquerade {{\n\t\tmeta mark set meta mark | 0x4000\n\t}}\n\
         \tchain masquerading {{\n\
         \t\tmeta mark & 0x4000 == 0 return\n\
         \t\tmeta mark set meta mark ^ 0x4000\n\
         \t\tmasquerade fully-random\n\t}}\n\
         {endpoint_chains}\
         {service_chains}\
         \tmap service-ips {{\n\
         \t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\
         \t\telements = {{ {} }}\n\t}}\n\
         \tchain services {{\n\
         \t\tip daddr . meta l4proto . th dport vmap @service-ips\n\t}}\n\
         \tchain nat-prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat-output {{\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat-postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tjump masquerading\n\t}}\n\
         \tchain filter-forward {{\n\t\ttype filter hook forward priority -110; policy accept;\n\
         \t\tct state related,established accept\n\t}}\n\
         }}\n",
        elements.join(",\n\t\t\t")
    )
}

fn bpfk_services(svcs: &[Svc]) -> Vec<(ServiceSpec, Vec<Endpoint>)> {
    svcs.iter()
        .map(|s| {
            let spec = ServiceSpec {
                name: ServiceName::new("default", s.name.clone()),
                cluster_ip: Some(s.vip),
                ports: s
                    .ports
                    .iter()
                    .map(|(n, p, _)| ServicePort {
                        name: n.to_string(),
                        protocol: Protocol::Tcp,
                        port: *p,
                        node_port: None,
                    })
                    .collect(),
                affinity_timeout_s: None,
                lb_algorithm: Default::default(),
            };
            let eps = s
                .endpoints
                .iter()
                .map(|a| Endpoint {
                    addr: *a,
                    ports: s
                        .ports
                        .iter()
                        .map(|(n, _, t)| EndpointPort {
                            name: n.to_string(),
                            protocol: Protocol::Tcp,
                            port: *t,
                        })
                        .collect(),
                })
                .collect();
            (spec, eps)
        })
        .collect()
}

/// The datapaths of a lab's two nodes, torn down on drop.
struct DatapathGuard(Vec<Datapath>);

impl DatapathGuard {
    /// Loads both nodes' datapaths (maps sized for `total` services) with TC on every pod
    /// veth, and programs `specs`; returns the time node 1 took to program them from scratch.
    fn load(
        lab: &Lab,
        total: usize,
        specs: &[(ServiceSpec, Vec<Endpoint>)],
    ) -> Result<(Self, Duration)> {
        let mut guard = Self(Vec::new());
        let mut took = Duration::ZERO;
        for i in 0..2 {
            let n = lab.nodes[i].clone();
            let mut cfg = lab.config(i);
            let defaults = MapSizes::default();
            // A master entry and 2 slots per service.
            let slots = u32::try_from(total * 4).unwrap_or(u32::MAX);
            cfg.map_sizes.services = defaults.services.max(slots);
            let dp = in_netns(&n.ns, move || -> Result<Datapath> {
                let mut dp = Datapath::load(&n.name, cfg)
                    .with_context(|| format!("loading the datapath of {}", n.name))?;
                for p in &n.pods {
                    dp.attach_interface(&p.host_if)
                        .with_context(|| format!("attaching TC to {}", p.host_if))?;
                }
                Ok(dp)
            })?;
            guard.0.push(dp);
            let start = Instant::now();
            for (spec, eps) in specs {
                check_aborted()?;
                guard.0[i]
                    .sync_service(spec, eps)
                    .with_context(|| format!("syncing {}", spec.name))?;
            }
            if i == 0 {
                took = start.elapsed();
            }
        }
        Ok((guard, took))
    }

    fn teardown(mut self) -> Result<()> {
        for dp in self.0.drain(..) {
            dp.teardown().context("datapath teardown")?;
        }
        Ok(())
    }
}

impl Drop for DatapathGuard {
    fn drop(&mut self) {
        for dp in self.0.drain(..) {
            if let Err(e) = dp.teardown() {
                eprintln!("datapath teardown: {e}");
            }
        }
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How service traffic is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Layout {
    Direct,
    Iptables,
    Nftables,
    Tc,
    SocketLb,
}

const LAYOUTS: [Layout; 5] = [
    Layout::Direct,
    Layout::Iptables,
    Layout::Nftables,
    Layout::Tc,
    Layout::SocketLb,
];

impl Layout {
    fn title(self) -> &'static str {
        match self {
            Layout::Direct => "direct pod → pod (no service)",
            Layout::Iptables => "kube-proxy iptables layout (iptables-nft)",
            Layout::Nftables => "kube-proxy nftables layout",
            Layout::Tc => "bpfk eBPF, per-packet TC on the pod veth",
            Layout::SocketLb => "bpfk eBPF, socket LB (client in the node cgroup)",
        }
    }

    /// Which lab of [`Beds`] it runs in.
    fn bed(self) -> usize {
        match self {
            Layout::Direct => 0,
            Layout::Iptables => 1,
            Layout::Nftables => 2,
            Layout::Tc | Layout::SocketLb => 3,
        }
    }
}

/// A lab with `iperf3 -s` and the rr server in both server pods.
struct Bed {
    lab: Lab,
    _servers: Vec<Proc>,
}

fn bed() -> Result<Bed> {
    let lab = Lab::new(NetlabOptions {
        pods: [2, 1],
        owner: "bench",
        static_peer_routes: true,
    })?;
    let exe = std::env::current_exe().context("locating this binary")?;
    let exe = exe.to_string_lossy().into_owned();
    let mut servers = Vec::new();
    for pod in [&lab.nodes[0].pods[1], &lab.nodes[1].pods[0]] {
        // No TIME_WAIT on the servers: the client's TCP timestamp offset depends on the
        // address it dialled (pod or ClusterIP), so a TIME_WAIT left by one case would
        // stall SYNs of the next.
        sh_in(&pod.ns, &["sysctl", "-qw", "net.ipv4.tcp_max_tw_buckets=0"])?;
        let iperf = ["iperf3", "-s", "-p", &IPERF_PORT.to_string()];
        servers.push(Proc::spawn(&pod.ns, None, &iperf)?);
        let rr = [exe.as_str(), "rr-server", &RR_PORT.to_string()];
        servers.push(Proc::spawn(&pod.ns, None, &rr)?);
    }
    Ok(Bed {
        lab,
        _servers: servers,
    })
}

/// Samples of one layout and backend at one scale.
#[derive(Default)]
struct Samples {
    gbps: Vec<f64>,
    conns: Vec<f64>,
    notes: Vec<String>,
}

/// One scale's figures.
struct ScaleResult {
    services: usize,
    /// Programming time from scratch (node 1), or why the layout was skipped.
    programming: BTreeMap<Layout, Result<Duration, String>>,
    samples: BTreeMap<(Layout, usize), Samples>,
}

fn iperf(ns: &str, cgroup: Option<&Path>, addr: Ipv4Addr, s: &mut Samples) -> Result<()> {
    let args = [
        "iperf3",
        "-c",
        &addr.to_string(),
        "-p",
        &IPERF_PORT.to_string(),
        "-t",
        &IPERF_SECONDS.to_string(),
        "-O",
        "1",
        "-J",
    ];
    let limit = Duration::from_secs(u64::from(IPERF_SECONDS) + 20);
    let (out, _) = run_in(ns, cgroup, &args, limit)?;
    let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => {
            s.notes.push(format!("iperf3: no JSON ({e})"));
            return Ok(());
        }
    };
    if let Some(err) = v["error"].as_str() {
        s.notes.push(format!("iperf3: {err}"));
    } else if let Some(b) = v["end"]["sum_received"]["bits_per_second"].as_f64() {
        s.gbps.push(b / 1e9);
    } else {
        s.notes.push("iperf3: no received rate".into());
    }
    Ok(())
}

fn rr(ns: &str, cgroup: Option<&Path>, addr: Ipv4Addr, port: u16, s: &mut Samples) -> Result<()> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let exe = exe.to_string_lossy().into_owned();
    let args = [
        exe.as_str(),
        "rr-client",
        &format!("{addr}:{port}"),
        &RR_SECONDS.to_string(),
        &RR_CONNECTIONS.to_string(),
    ];
    let limit = Duration::from_secs(u64::from(RR_SECONDS) + 20);
    let (out, _) = run_in(ns, cgroup, &args, limit)?;
    let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => {
            let err = String::from_utf8_lossy(&out.stderr);
            s.notes
                .push(format!("rr-client: no JSON ({e}): {}", err.trim()));
            return Ok(());
        }
    };
    let done = v["done"].as_u64().unwrap_or(0);
    let secs = v["seconds"].as_f64().unwrap_or(0.0);
    if secs > 0.0 {
        s.conns.push(done as f64 / secs);
    }
    let errors = v["errors"].as_u64().unwrap_or(0);
    if errors > 0 {
        s.notes.push(format!("rr: {errors} failed connections"));
    }
    Ok(())
}

/// One round of `layout` to one backend (0 = same node, 1 = other node).
fn measure(beds: &[Bed], layout: Layout, backend: usize, s: &mut Samples) -> Result<()> {
    check_aborted()?;
    let lab = &beds[layout.bed()].lab;
    let client = &lab.nodes[0].pods[0].ns;
    let cgroup = (layout == Layout::SocketLb).then_some(lab.nodes[0].cgroup.as_path());
    let (addr, rr_port) = match (layout, backend) {
        (Layout::Direct, 0) => (lab.nodes[0].pods[1].addr, RR_PORT),
        (Layout::Direct, _) => (lab.nodes[1].pods[0].addr, RR_PORT),
        (_, 0) => (VIP_LOCAL, RR_SVC_PORT),
        _ => (VIP_REMOTE, RR_SVC_PORT),
    };
    iperf(client, cgroup, addr, s)?;
    rr(client, cgroup, addr, rr_port, s)
}

/// Programs `layout` with `svcs` from scratch in its lab (removing what an earlier scale
/// loaded) and returns the time node 1 took.
fn program(
    beds: &[Bed],
    layout: Layout,
    svcs: &[Svc],
    work: &Path,
    datapaths: &mut Option<DatapathGuard>,
) -> Result<Duration> {
    let lab = &beds[layout.bed()].lab;
    match layout {
        Layout::Direct | Layout::SocketLb => Ok(Duration::ZERO),
        Layout::Iptables => {
            flush_iptables(lab, "iptables")?;
            let rules = iptables_rules(svcs);
            load_rules(lab, work, "iptables.rules", &rules, &["iptables-restore"])
        }
        Layout::Nftables => {
            for n in &lab.nodes {
                sh_in(&n.ns, &["nft", "flush", "ruleset"])?;
            }
            let rules = nft_rules(svcs);
            load_rules(lab, work, "kube-proxy.nft", &rules, &["nft", "-f"])
        }
        Layout::Tc => {
            if let Some(old) = datapaths.take() {
                old.teardown()?;
            }
            let (guard, took) = DatapathGuard::load(lab, svcs.len(), &bpfk_services(svcs))?;
            *datapaths = Some(guard);
            Ok(took)
        }
    }
}

/// Whether `layout`, which took `took` at `prev` services, fits the budget at `next`.
fn within_budget(took: Duration, prev: usize, next: usize) -> Result<(), String> {
    let projected = took.mul_f64(next as f64 / prev.max(1) as f64);
    if projected > PROGRAMMING_BUDGET {
        Err(format!(
            "skipped: programming projected at {:.0} s ({:.1} s at {prev})",
            projected.as_secs_f64(),
            took.as_secs_f64()
        ))
    } else {
        Ok(())
    }
}

/// Programs every layout for `total` services, then measures them in interleaved rounds.
fn run_scale(
    beds: &[Bed],
    total: usize,
    work: &Path,
    datapaths: &mut Option<DatapathGuard>,
    previous: Option<&ScaleResult>,
) -> Result<ScaleResult> {
    let local = beds[0].lab.nodes[0].pods[1].addr;
    let remote = beds[0].lab.nodes[1].pods[0].addr;
    let svcs = services(total, local, remote);
    let mut programming = BTreeMap::new();
    for layout in LAYOUTS {
        let budget = previous
            .and_then(|p| p.programming.get(&layout).map(|r| (p.services, r.clone())))
            .map(|(prev, r)| r.and_then(|took| within_budget(took, prev, svcs.len())))
            .unwrap_or(Ok(()));
        let r = match budget {
            Ok(()) => Ok(program(beds, layout, &svcs, work, datapaths)?),
            Err(why) => Err(why),
        };
        eprintln!("{total} services: {layout:?} programmed: {r:?}");
        programming.insert(layout, r);
    }
    let mut samples: BTreeMap<(Layout, usize), Samples> = BTreeMap::new();
    for round in 0..ROUNDS {
        for layout in LAYOUTS {
            if programming.get(&layout).is_some_and(|r| r.is_err()) {
                continue;
            }
            for backend in 0..2 {
                let s = samples.entry((layout, backend)).or_default();
                measure(beds, layout, backend, s)?;
            }
        }
        eprintln!("{total} services: round {} of {ROUNDS} done", round + 1);
    }
    Ok(ScaleResult {
        services: svcs.len(),
        programming,
        samples,
    })
}

/// `median [min–max]` of `v`.
fn summary(v: &[f64], digits: usize) -> String {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match (v.first(), v.get(v.len() / 2), v.last()) {
        (Some(lo), Some(m), Some(hi)) => format!("{m:.digits$} [{lo:.digits$}–{hi:.digits$}]"),
        _ => "—".into(),
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// `rr-server <port>`: accepts, answers the 1-byte request with 1 byte and
/// closes, on a few threads. Runs until killed (by PID, or with its parent).
fn rr_server(port: &str) -> Result<()> {
    use std::io::{Read, Write};
    let port: u16 = port.parse().context("rr-server port")?;
    let listener = std::net::TcpListener::bind(("0.0.0.0", port))
        .with_context(|| format!("binding port {port}"))?;
    let mut threads = Vec::new();
    for _ in 0..4 {
        let l = listener.try_clone().context("cloning the listener")?;
        threads.push(std::thread::spawn(move || loop {
            if let Ok((mut c, _)) = l.accept() {
                let mut b = [0u8; 1];
                if c.read_exact(&mut b).is_ok() {
                    let _ = c.write_all(&b);
                }
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// `rr-client <addr:port> <seconds> <connections>`: that many threads each
/// connect, send 1 byte, read the answer and the close, in a loop for the
/// given time. Prints `{"done":N,"errors":E,"seconds":S}`.
fn rr_client(addr: &str, seconds: &str, conns: &str) -> Result<()> {
    use std::{
        io::{Read, Write},
        sync::atomic::{AtomicU64, Ordering},
        time::Instant,
    };
    let addr: std::net::SocketAddr = addr.parse().context("rr-client address")?;
    let seconds: u64 = seconds.parse().context("rr-client seconds")?;
    let conns: u32 = conns.parse().context("rr-client connections")?;
    if seconds == 0 || seconds > 60 || conns == 0 || conns > 256 {
        bail!("rr-client: seconds must be 1..=60 and connections 1..=256");
    }
    let done = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    std::thread::scope(|s| {
        for _ in 0..conns {
            s.spawn(|| {
                while Instant::now() < deadline {
                    let ok = (|| -> std::io::Result<()> {
                        let mut c =
                            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
                        c.set_read_timeout(Some(Duration::from_secs(1)))?;
                        c.write_all(b"x")?;
                        let mut b = [0u8; 2];
                        c.read_exact(&mut b[..1])?;
                        // then the server's close
                        let _ = c.read(&mut b)?;
                        Ok(())
                    })();
                    match ok {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
    });
    println!(
        "{}",
        serde_json::json!({
            "done": done.load(Ordering::Relaxed),
            "errors": errors.load(Ordering::Relaxed),
            "seconds": start.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

/// Writes `text` to a file and feeds it to `cmd` in both node namespaces.
/// Returns the time node 1 took.
fn load_rules(lab: &Lab, dir: &Path, file: &str, text: &str, cmd: &[&str]) -> Result<Duration> {
    let path = dir.join(file);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let path = path.to_string_lossy().into_owned();
    let mut first = None;
    for n in &lab.nodes {
        let mut args = cmd.to_vec();
        args.push(&path);
        let start = Instant::now();
        sh_in(&n.ns, &args)?;
        first.get_or_insert(start.elapsed());
    }
    Ok(first.unwrap_or_default())
}

fn flush_iptables(lab: &Lab, tool: &str) -> Result<()> {
    for n in &lab.nodes {
        for table in ["nat", "filter"] {
            sh_in(&n.ns, &[tool, "-t", table, "-F"])?;
            sh_in(&n.ns, &[tool, "-t", table, "-X"])?;
        }
    }
    Ok(())
}

struct Facts {
    date: String,
    kernel: String,
    nproc: String,
    load_before: String,
    load_after: String,
    elapsed: Duration,
}

fn report(results: &[ScaleResult], f: &Facts) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Service datapath throughput at scale\n\n\
         Written by `cargo run --release -p bpfk-bench --bin datapath_bench` (as root) on {}: \
         {}-core VM, kernel {}; the whole run took {:.0} s. Load average before: `{}`, after: `{}`. \
         **The machine was shared with other builds and tests during this run** (2 cores, ~5 \
         parallel sessions), so absolute figures are noisy and the ranges wide; compare layouts \
         within one scale, whose rounds were interleaved.\n",
        f.date,
        f.nproc,
        f.kernel,
        f.elapsed.as_secs_f64(),
        f.load_before,
        f.load_after,
    );
    let _ = writeln!(
        s,
        "## Topology and method\n\n\
         Four labs built by the benchmark (`lab/src/netlab.rs`), one per layout, each the same: \
         two node namespaces joined by veths to a bridge in an underlay namespace (10.250.0.1 and \
         10.250.0.2/24), each routing the other's pod range (10.244.N.0/24) over the underlay; pods \
         are namespaces with a /32 and a veth to their node. Node 1 holds the client pod \
         (10.244.1.11) and a server pod (10.244.1.12, *same node*); node 2 a server pod \
         (10.244.2.11, *other node*). Servers: `iperf3 -s` and the benchmark's own rr server. \
         Nothing routes out of the labs; all is removed at exit (also on error and signals). \
         Separate labs let every layout stay loaded while the rounds interleave (direct, iptables, \
         nftables, TC, socket LB, then again), so drift of the shared machine favours none; \
         conntrack and netfilter rules of one layout never touch another's packets.\n\n\
         - Services: at each scale N, N−2 dummy services (10.96.1.1 upwards, port 80, \
         {DUMMY_ENDPOINTS} endpoints each, never hit) and the two measured ones last: {VIP_LOCAL} → the \
         same-node server, {VIP_REMOTE} → the other-node server (ports {IPERF_PORT} and \
         {RR_SVC_PORT}→{RR_PORT}). The smallest scale holds only the two measured services.\n\
         - **iptables layout**: kube-proxy's iptables mode written out for this benchmark (nat \
         `KUBE-SERVICES` matched linearly → `KUBE-SVC-*` with `statistic` → `KUBE-SEP-*` DNAT, \
         masquerade marks, `KUBE-FORWARD` conntrack accept), loaded with `iptables-restore` \
         (nf_tables backend). **nftables layout**: kube-proxy's nftables mode (`service-ips` verdict \
         map → per-service `numgen` vmap → per-endpoint `dnat`), loaded with `nft -f`. **bpfk**: \
         `bpfk-datapath` on both nodes, TC on the underlay and pod veths; *TC* = client outside the \
         node cgroup (every packet translated on its veth), *socket LB* = client inside it \
         (`connect4` picks the backend once).\n\
         - **Programming**: time to load all N services from scratch on node 1 \
         (`iptables-restore` / `nft -f` of the whole layout; bpfk: `sync_service` of each service \
         into fresh maps). A layout whose time, scaled linearly from the previous scale, would pass \
         {} s is skipped at the next scale (named in the table).\n\
         - **Gbit/s**: `iperf3 -t {IPERF_SECONDS} -O 1`, one TCP stream, received rate. **new conn/s**: \
         the benchmark's rr client ({RR_CONNECTIONS} threads for {RR_SECONDS} s: connect, 1 byte each \
         way, close). Each figure is the median of {ROUNDS} rounds with [min–max].\n\
         - No figure is asserted anywhere; this is a measurement, not a test.\n",
        PROGRAMMING_BUDGET.as_secs(),
    );
    for r in results {
        scale_section(&mut s, r);
    }
    s
}

fn scale_section(s: &mut String, r: &ScaleResult) {
    let _ = writeln!(
        s,
        "## {} services\n\n\
         | Layout | Programming (node 1) | Backend | Gbit/s | new conn/s | conn/s ÷ direct | Notes |\n\
         |---|---:|---|---:|---:|---:|---|",
        r.services
    );
    for layout in LAYOUTS {
        let prog = match r.programming.get(&layout) {
            Some(Ok(d)) if *d > Duration::ZERO => format!("{:.3} s", d.as_secs_f64()),
            Some(Ok(_)) => "—".into(),
            Some(Err(why)) => {
                let _ = writeln!(s, "| {} | {why} | | | | | |", layout.title());
                continue;
            }
            None => continue,
        };
        for (backend, name) in ["same node", "other node"].iter().enumerate() {
            let Some(v) = r.samples.get(&(layout, backend)) else {
                continue;
            };
            let direct = r
                .samples
                .get(&(Layout::Direct, backend))
                .and_then(|d| median(&d.conns));
            let ratio = match (median(&v.conns), direct) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "—".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {prog} | {name} | {} | {} | {ratio} | {} |",
                layout.title(),
                summary(&v.gbps, 2),
                summary(&v.conns, 0),
                v.notes.join("; ")
            );
        }
    }
    let _ = writeln!(s);
}

fn require_root_and_tools() -> Result<()> {
    // SAFETY: plain getter.
    if unsafe { libc::geteuid() } != 0 {
        bail!("datapath_bench needs root (network namespaces, eBPF, cgroups, netfilter)");
    }
    for tool in [
        &["ip", "-V"][..],
        &["iperf3", "--version"],
        &["iptables-restore", "--version"],
        &["nft", "--version"],
    ] {
        let ok = std::process::Command::new(tool[0])
            .args(&tool[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok();
        if !ok {
            bail!("datapath_bench needs `{}` on PATH", tool[0]);
        }
    }
    Ok(())
}

fn run(scales: &[usize]) -> Result<()> {
    install_signal_guard()?;
    require_root_and_tools()?;
    let started = Instant::now();
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let work = TempDir(std::env::temp_dir().join(format!("bpfk-bench-{}", std::process::id())));
    std::fs::create_dir_all(&work.0).context("creating the work directory")?;
    let beds = (0..4).map(|_| bed()).collect::<Result<Vec<_>>>()?;
    std::thread::sleep(Duration::from_secs(1));
    let mut datapaths = None;
    let mut results: Vec<ScaleResult> = Vec::new();
    for &total in scales {
        let r = run_scale(&beds, total, &work.0, &mut datapaths, results.last())?;
        results.push(r);
    }
    if let Some(dp) = datapaths.take() {
        dp.teardown()?;
    }
    drop(beds);
    let facts = Facts {
        date: sh(&["date", "-u", "+%Y-%m-%d %H:%M UTC"])?
            .trim()
            .to_string(),
        kernel: sh(&["uname", "-r"])?.trim().to_string(),
        nproc: sh(&["nproc"])?.trim().to_string(),
        load_before: load_before.trim().to_string(),
        load_after: std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_string(),
        elapsed: started.elapsed(),
    };
    let path = results_path("datapath.md");
    std::fs::write(&path, report(&results, &facts))
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

const HELP: &str = "\
datapath_bench: service throughput (iperf3 Gbit/s, new connections per second) at 1, 1,000,
10,000 and 30,000 services through bpfk's eBPF datapath (TC and socket LB) against direct pod
traffic and kube-proxy's iptables and nftables layouts, in interleaved rounds on 2-node netns
labs it builds and removes. Needs root. Writes bench/results/datapath.md.

usage: datapath_bench [--scales N,N,...]   (default 1,1000,10000,30000)
  (from the repository: cargo run --release -p bpfk-bench --bin datapath_bench)
  rr-server and rr-client are its own helpers, run inside the labs.
";

fn parse_scales(arg: &str) -> Result<Vec<usize>> {
    let scales: Vec<usize> = arg
        .split(',')
        .map(|v| v.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .context("--scales: comma-separated numbers")?;
    if scales.is_empty() || scales.iter().any(|n| *n == 0 || *n > 60_000) {
        bail!("--scales: each between 1 and 60000");
    }
    Ok(scales)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("rr-server") if args.len() == 3 => rr_server(&args[2]),
        Some("rr-client") if args.len() == 5 => rr_client(&args[2], &args[3], &args[4]),
        Some("--scales") if args.len() == 3 => parse_scales(&args[2]).and_then(|s| run(&s)),
        _ => {
            bpfk_bench::no_arguments("datapath_bench", HELP);
            run(&SCALES)
        }
    };
    bpfk_common::exit::report("datapath_bench", result)
}
