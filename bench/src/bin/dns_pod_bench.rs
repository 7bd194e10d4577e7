//! Cluster DNS as a pod sees it, in the one-node lab cluster (real etcd, bpfk-server,
//! containerd, `bpfk-agent --kubelet` with its DNS server and eBPF datapath): A queries
//! for `svc-<i>.bench.svc.cluster.local` from a client process inside a running pod (its
//! netns and container cgroup, as `kubectl exec` would put it), with 1,000 and then 10,000
//! Services in the cluster. Two paths, interleaved round by round: through `kube-dns`
//! (10.96.0.10:53, the socket load balancer steering it to the node's server: what pods
//! use) and straight to the node's server address (the baseline: the same server and
//! veth, no Service translation). Latency: one query at a time (p50/p99); throughput:
//! 16 sockets, one query in flight each. Bounded in count and time. Needs root; writes
//! `bench/results/dns_pod.md`.
//! Run: `cargo build --release -p bpfk-server -p bpfk-agent && cargo run --release -p
//! bpfk-bench --bin dns_pod_bench`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bpfk_bench::dns_query::{exchange, query, query_for, socket_to};
use bpfk_bench::{build_profile, median_range, ms, results_path, summarize};
use bpfk_lab::cluster::{Binaries, Lab, LabOptions};
use bpfk_lab::netns::output_in;
use bpfk_lab::server::target_dir;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{Api, PostParams};
use serde_json::json;

const SIZES: [usize; 2] = [1_000, 10_000];
const LATENCY_QUERIES: usize = 3_000;
const CLIENTS: usize = 16;
const QUERIES_PER_CLIENT: usize = 500;
const ROUNDS: usize = 5;
/// No client run goes on longer than this, whatever its count.
const TIME_BOUND: Duration = Duration::from_secs(10);
/// Services created at once.
const CREATE_CONCURRENCY: usize = 16;
const KUBE_DNS: &str = "10.96.0.10:53";

/// The client side, run inside the pod: prints `p50_ns p99_ns latency_queries qps
/// throughput_queries`.
async fn client(server: SocketAddr, services: usize) -> Result<()> {
    let socket = socket_to("0.0.0.0:0", server).await?;
    let mut buf = vec![0u8; 1500];
    let mut samples = Vec::with_capacity(LATENCY_QUERIES);
    let deadline = Instant::now() + TIME_BOUND;
    for i in 0..LATENCY_QUERIES {
        if Instant::now() > deadline {
            break;
        }
        samples.push(exchange(&socket, &query(i, services, i as u16)?, &mut buf).await?);
    }
    let lat = summarize(&mut samples);
    let started = Instant::now();
    let deadline = started + TIME_BOUND;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let socket = socket_to("0.0.0.0:0", server).await?;
            let mut buf = vec![0u8; 1500];
            let mut done = 0usize;
            for i in 0..QUERIES_PER_CLIENT {
                if Instant::now() > deadline {
                    break;
                }
                let q = query(c * QUERIES_PER_CLIENT + i, services, i as u16)?;
                exchange(&socket, &q, &mut buf).await?;
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let qps = total as f64 / started.elapsed().as_secs_f64();
    println!(
        "{} {} {} {qps:.0} {total}",
        lat.p50.as_nanos(),
        lat.p99.as_nanos(),
        lat.count
    );
    Ok(())
}

/// Whether the last Service's name already resolves (one query, the client's check).
async fn resolves(server: SocketAddr, services: usize) -> Result<()> {
    let socket = socket_to("0.0.0.0:0", server).await?;
    exchange(&socket, &query_for(services - 1, 1)?, &mut [0u8; 1500]).await?;
    Ok(())
}

/// Where the client runs: the pod's netns and one of its containers' cgroups.
struct PodPlace {
    netns: String,
    cgroup: PathBuf,
}

/// A leaf cgroup under `dir` with a process in it.
fn leaf_with_process(dir: &Path) -> Option<(PathBuf, u32)> {
    let entries = std::fs::read_dir(dir).ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let procs = std::fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
        if let Some(pid) = procs.lines().next().and_then(|l| l.trim().parse().ok()) {
            return Some((path, pid));
        }
    }
    None
}

/// The directory named `name` at most three levels under `root`.
fn find_dir(root: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    for entry in std::fs::read_dir(root).ok()?.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if entry.file_name() == name {
            return Some(path);
        }
        if depth > 0 {
            if let Some(found) = find_dir(&path, name, depth - 1) {
                return Some(found);
            }
        }
    }
    None
}

fn pod_place(node_cgroup: &Path, uid: &str) -> Result<PodPlace> {
    let pod_dir = find_dir(node_cgroup, &format!("pod{uid}"), 3)
        .with_context(|| format!("no cgroup pod{uid} under {}", node_cgroup.display()))?;
    let (cgroup, pid) = leaf_with_process(&pod_dir)
        .with_context(|| format!("no process in {}", pod_dir.display()))?;
    Ok(PodPlace {
        netns: format!("/proc/{pid}/ns/net"),
        cgroup,
    })
}

/// Runs this binary's client mode inside the pod.
fn run_client(place: &PodPlace, mode: &str, server: &str, services: usize) -> Result<String> {
    let exe = std::env::current_exe()?;
    let exe = exe.to_string_lossy();
    let n = services.to_string();
    let args = [exe.as_ref(), mode, server, &n];
    let out = output_in(&args, Some(&place.netns), Some(&place.cgroup));
    if !out.status.success() {
        bail!(
            "client {mode} to {server}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Per-round figures of one path at one size.
#[derive(Default)]
struct Rounds {
    p50_ms: Vec<f64>,
    p99_ms: Vec<f64>,
    qps: Vec<f64>,
    latency_queries: usize,
    throughput_queries: usize,
}

impl Rounds {
    fn add(&mut self, line: &str) -> Result<()> {
        let f: Vec<f64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("client output {line:?}"))?;
        let [p50, p99, lat_n, qps, thr_n] = f[..] else {
            bail!("client output {line:?}: want five figures");
        };
        self.p50_ms.push(ms(Duration::from_nanos(p50 as u64)));
        self.p99_ms.push(ms(Duration::from_nanos(p99 as u64)));
        self.qps.push(qps);
        self.latency_queries += lat_n as usize;
        self.throughput_queries += thr_n as usize;
        Ok(())
    }

    fn median_p50(&self) -> f64 {
        median(&self.p50_ms)
    }
}

fn median(v: &[f64]) -> f64 {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn row(services: usize, path: &str, r: &Rounds, baseline: &Rounds) -> String {
    format!(
        "| {services} | {path} | {} | {} | {} | {} | {} | {:.2} |\n",
        r.latency_queries,
        median_range(&r.p50_ms, 3),
        median_range(&r.p99_ms, 3),
        r.throughput_queries,
        median_range(&r.qps, 0),
        r.median_p50() / baseline.median_p50(),
    )
}

async fn create_services(services: &Api<Service>, from: usize, to: usize) -> Result<()> {
    futures::stream::iter(from..to)
        .map(|i| async move {
            let svc: Service = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
                "spec": {"ports": [{"name": "http", "port": 80}]}
            }))?;
            services.create(&PostParams::default(), &svc).await?;
            anyhow::Ok(())
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

fn client_pod(node: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "dns-client", "namespace": "bench"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}
    }))?)
}

async fn wait_running(pods: &Api<Pod>) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let p = pods.get("dns-client").await?;
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if let (true, Some(uid)) = (running, p.metadata.uid) {
            return Ok(uid);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    bail!("the client pod is not Running after 120 s")
}

async fn wait_resolves(place: &PodPlace, services: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match run_client(place, "resolves", KUBE_DNS, services) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

async fn measure(lab: &Lab) -> Result<String> {
    let client = lab.client();
    let node = &lab.nodes()[0];
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "bench"}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");
    pods.create(&PostParams::default(), &client_pod(node.name())?)
        .await?;
    let uid = wait_running(&pods).await?;
    let place = pod_place(node.cgroup(), &uid)?;
    let direct = format!("{}:53", node.ip());
    let services: Api<Service> = Api::namespaced(client, "bench");
    let mut rows = String::new();
    let mut created = 0;
    for size in SIZES {
        create_services(&services, created, size).await?;
        created = size;
        wait_resolves(&place, size).await?;
        let (mut via_vip, mut straight) = (Rounds::default(), Rounds::default());
        // Rounds interleave the two paths, so load on the shared cores falls on both alike.
        for round in 0..ROUNDS {
            via_vip.add(&run_client(&place, "client", KUBE_DNS, size)?)?;
            straight.add(&run_client(&place, "client", &direct, size)?)?;
            eprintln!("{size} services, round {round} done");
        }
        rows += &row(size, "kube-dns 10.96.0.10", &via_vip, &straight);
        rows += &row(size, "node server address", &straight, &straight);
    }
    Ok(rows)
}

fn report(rows: &str) -> String {
    format!(
        "# Cluster DNS from a pod\n\n\
         `dns_pod_bench` (root): a one-node lab cluster; the client is a process in a \
         running pod's netns and container cgroup; queries are A for \
         `svc-<i>.bench.svc.cluster.local` spread over all Services, answered by the agent's \
         DNS server on the node across the pod's veth. Paths: through kube-dns \
         (10.96.0.10:53, steered by the socket load balancer) and, as the baseline, straight \
         to the node server's address. Latency: one query at a time; throughput: {CLIENTS} \
         sockets, one query in flight each. {ROUNDS} rounds per size, the paths interleaved; \
         figures are the median of the rounds with [min–max]; the ratio is the p50 against \
         the baseline's p50 in the same run. Binaries from {}; client, server, etcd, \
         bpfk-server and containerd share this machine's 2 cores.\n\n\
         | services | path | latency queries | p50 ms | p99 ms | throughput queries | \
         queries/s | p50 / baseline |\n|---|---|---|---|---|---|---|---|\n{rows}\n\
         CoreDNS's published figures (its scaling guide, see `dns.md`): 33,669 queries/s at \
         2.608 ms average for internal A names, one CoreDNS on 2 dedicated vCPUs, dnsperf \
         across the pod network.\n",
        build_profile()
    )
}

fn lab_binaries() -> Result<Binaries> {
    let binaries = Binaries {
        server: target_dir().join("bpfk-server"),
        agent: target_dir().join("bpfk-agent"),
    };
    for b in [&binaries.server, &binaries.agent] {
        if !b.exists() {
            bail!(
                "{} not built: cargo build --release -p bpfk-server -p bpfk-agent",
                b.display()
            );
        }
    }
    Ok(binaries)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [mode @ ("client" | "resolves"), server, services] => {
            let server: SocketAddr = server.parse().context("server address")?;
            let services: usize = services.parse().context("service count")?;
            if mode == "client" {
                client(server, services).await
            } else {
                resolves(server, services).await
            }
        }
        [] => {
            let lab = Lab::start(LabOptions {
                id: format!("dpb{}", std::process::id()),
                nodes: 1,
                node_prefix: None,
                binaries: lab_binaries()?,
                log_level: "warn".into(),
                server_args: Vec::new(),
            });
            let rows = measure(&lab).await?;
            let path = results_path("dns_pod.md");
            std::fs::write(&path, report(&rows))
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
            drop(lab);
            Ok(())
        }
        _ => bail!(
            "dns_pod_bench takes no arguments (it runs itself with `client|resolves SERVER \
             SERVICES` inside the pod)"
        ),
    }
}
