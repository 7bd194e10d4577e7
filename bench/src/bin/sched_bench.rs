//! Scheduling throughput benchmark with hollow nodes: 1,000 Node objects whose fake kubelets
//! renew their Leases every 10 s, and 10,000 pods. Each run on a fresh etcd + bpfk-server:
//!
//! 1. online (several runs): pods arrive at the target rate, 1,000 pods/s, and the scheduler
//!    built into bpfk-server (with the controllers running too, as in production) binds them
//!    as they arrive: does it keep up, and how long does a pod wait?
//! 2. saturation: the same server, pods created as fast as the server takes them: the
//!    throughput of creating and scheduling together;
//! 3. backlog: 10,000 pods are created while no scheduler runs, then a standalone
//!    `bpfk-scheduler` process starts and drains them: the scheduler's own throughput.
//!
//! Reports pods/s, p50/p99 creation→binding latency, peak RSS (VmHWM) of bpfk-server and the
//! CPU time each process spent per pod, written to `bench/results/scheduler.md`.
//! `SCHED_BENCH_ONLINE_ONLY=1` runs one online run and prints it (no results file).
//! Run: `cargo run --release -p bpfk-bench --bin sched_bench`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bpfk_bench::{cpu_time, ms, results_path, rss_kib, summarize};
use bpfk_lab::server::{target_dir, Cluster};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use tokio::sync::Semaphore;

const NODES: usize = 1_000;
const PODS: usize = 10_000;
const CONCURRENCY: usize = 64;
/// The online run's arrival rate: the target throughput.
const ONLINE_RATE: u32 = 1_000;
const MAX_IN_FLIGHT: usize = 512;
const LEASE_RENEW: Duration = Duration::from_secs(10);
/// Upper bound on one run (the load is bounded in count and time).
const RUN_DEADLINE: Duration = Duration::from_secs(600);
const NS: &str = "bench";

async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn node_name(i: usize) -> String {
    format!("hollow-{i:04}")
}

async fn create_hollow_nodes(client: &Client) -> Result<Duration> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let start = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(0..NODES)
        .map(|i| {
            let (nodes, leases) = (nodes.clone(), leases.clone());
            async move {
                let name = node_name(i);
                let now = Timestamp::now().to_string();
                let status = json!({
                    "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                    "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}]
                });
                let node: Node = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "zone": format!("z{}", i % 3)}},
                    "status": status
                }))?;
                nodes.create(&PostParams::default(), &node).await?;
                nodes
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
                    .await?;
                let lease: Lease = serde_json::from_value(json!({
                    "metadata": {"name": name, "namespace": "kube-node-lease"},
                    "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()}
                }))?;
                match leases.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(start.elapsed())
}

fn now_micro() -> String {
    Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Hollow kubelets: renew every node's lease once per [`LEASE_RENEW`], spread evenly over the
/// period (open loop: a slow answer does not slow the renewals down, up to 32 in flight).
fn renew_leases(client: Client, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        let renewed = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(Semaphore::new(32));
        let mut tick = tokio::time::interval(LEASE_RENEW / NODES as u32);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            tick.tick().await;
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let (leases, renewed) = (leases.clone(), renewed.clone());
            let name = node_name(i % NODES);
            tokio::spawn(async move {
                let patch = json!({"spec": {"renewTime": now_micro()}});
                if leases
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .is_ok()
                {
                    renewed.fetch_add(1, Ordering::SeqCst);
                }
                drop(permit);
            });
            i += 1;
        }
        let _ = in_flight.acquire_many(32).await;
        renewed.load(Ordering::SeqCst)
    })
}

/// Pod `i` as the JSON body of its POST (written directly: the load generator should spend
/// its CPU on requests, not on building typed objects).
fn pod_json(i: usize) -> Vec<u8> {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p{i:05}","labels":{{"app":"sched-bench"}}}},"spec":{{"containers":[{{"name":"c","image":"busybox:1.36","resources":{{"requests":{{"cpu":"100m","memory":"128Mi"}}}}}}]}}}}"#
    )
    .into_bytes()
}

/// The little of a Pod the binding watch needs: its name and node. The watch decodes every
/// event into this instead of a full `Pod`, so the benchmark client costs less of the CPU
/// the measured system shares.
#[derive(Clone, Debug, serde::Deserialize)]
struct BoundPod {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<BoundSpec>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
struct BoundSpec {
    #[serde(rename = "nodeName", default)]
    node_name: Option<String>,
}

impl kube::Resource for BoundPod {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

type Times = Arc<Mutex<HashMap<String, Instant>>>;

/// Watches the bench namespace and records when each pod is first seen at all (`seen`: how
/// late watch events arrive) and first seen bound (`bound`).
async fn bind_watcher(
    client: Client,
    seen: Times,
    bound: Times,
) -> Result<tokio::task::JoinHandle<()>> {
    let api: Api<BoundPod> = Api::namespaced(client, NS);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let handle = tokio::spawn(async move {
        let mut ready_tx = Some(ready_tx);
        let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
        while let Some(ev) = stream.next().await {
            let now = Instant::now();
            match ev {
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => {
                    let is_bound = p.spec.as_ref().is_some_and(|s| s.node_name.is_some());
                    if let Some(name) = p.metadata.name {
                        seen.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(name.clone())
                            .or_insert(now);
                        if is_bound {
                            bound
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .entry(name)
                                .or_insert(now);
                        }
                    }
                }
                _ => {}
            }
        }
    });
    ready_rx.await.context("pod watcher never synced")?;
    Ok(handle)
}

/// How pods are created.
#[derive(Clone, Copy)]
enum Arrivals {
    /// As fast as [`CONCURRENCY`] requests in flight allow.
    Closed,
    /// At a fixed rate (pods per second), whatever the answers' latency (up to
    /// [`MAX_IN_FLIGHT`] requests in flight).
    Paced(u32),
}

/// Creates the pods; `created` gets the moment each POST was answered (the pod is stored),
/// `rtts` each POST's round trip.
async fn create_pods(
    client: &Client,
    created: &Times,
    rtts: &Arc<Mutex<Vec<Duration>>>,
    arrivals: Arrivals,
) -> Result<Duration> {
    let url = kube::core::Request::new(format!("/api/v1/namespaces/{NS}/pods"));
    let start = Instant::now();
    let create = |i: usize| {
        let (client, created, rtts) = (client.clone(), created.clone(), rtts.clone());
        let request = url.create(&PostParams::default(), pod_json(i));
        async move {
            let name = format!("p{i:05}");
            let sent = Instant::now();
            // the answer is checked for an error status, not decoded
            client.request_text(request?).await?;
            let answered = Instant::now();
            rtts.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(answered - sent);
            created
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name, answered);
            anyhow::Ok(())
        }
    };
    match arrivals {
        Arrivals::Closed => {
            let results: Vec<Result<()>> = futures::stream::iter(0..PODS)
                .map(create)
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            results.into_iter().collect::<Result<Vec<()>>>()?;
        }
        Arrivals::Paced(rate) => {
            let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
            let mut tasks = Vec::with_capacity(PODS);
            for i in 0..PODS {
                tokio::time::sleep_until(
                    (start + Duration::from_secs_f64(i as f64 / rate as f64)).into(),
                )
                .await;
                let permit = in_flight.clone().acquire_owned().await?;
                let fut = create(i);
                tasks.push(tokio::spawn(async move {
                    let r = fut.await;
                    drop(permit);
                    r
                }));
            }
            for t in tasks {
                t.await??;
            }
        }
    }
    Ok(start.elapsed())
}

async fn wait_all_bound(bound: &Times) -> Result<()> {
    let deadline = Instant::now() + RUN_DEADLINE;
    loop {
        let n = bound.lock().unwrap_or_else(|e| e.into_inner()).len();
        if n >= PODS {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {n} of {PODS} pods bound within {RUN_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct RunResult {
    label: &'static str,
    create_secs: f64,
    /// First binding → last binding.
    binding_secs: f64,
    sched_secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    server_hwm_mib: f64,
    scheduler_hwm_mib: Option<f64>,
    renewals: usize,
    /// A pod's POST round trip.
    post_p50_ms: f64,
    post_p99_ms: f64,
    /// Pod stored → its first watch event at the benchmark client (watch delivery delay).
    seen_p50_ms: f64,
    seen_p99_ms: f64,
    /// CPU time bpfk-server and etcd used per pod, from the first create to the last binding.
    server_cpu_ms_per_pod: f64,
    etcd_cpu_ms_per_pod: f64,
    /// The same for this benchmark client (load generator and binding watch).
    bench_cpu_ms_per_pod: f64,
}

/// Kills the standalone scheduler when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn build_scheduler() -> Result<std::path::PathBuf> {
    let mut cmd = bpfk_lab::server::cargo_command();
    cmd.args(["build", "--quiet", "-p", "bpfk-scheduler"]);
    if target_dir().file_name().and_then(|n| n.to_str()) == Some("release") {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .context("running cargo build -p bpfk-scheduler")?;
    if !status.success() {
        bail!("building bpfk-scheduler failed");
    }
    Ok(target_dir().join("bpfk-scheduler"))
}

/// What a run measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Scheduler in bpfk-server, pods arriving at [`ONLINE_RATE`].
    Online,
    /// Scheduler in bpfk-server, pods created with [`CONCURRENCY`] requests in flight.
    Saturation,
    /// Pods created first, then a standalone scheduler drains them.
    Backlog,
}

async fn run(label: &'static str, mode: Mode) -> Result<RunResult> {
    let backlog = mode == Mode::Backlog;
    let flags: &[&str] = if backlog {
        &["--disable-scheduler", "--controllers=serviceaccount"]
    } else {
        // a cluster CIDR with a /24 for each of the 1,000 nodes (the default /16 has 256)
        &["--cluster-cidr", "10.0.0.0/14"]
    };
    // for investigations: extra bpfk-server flags, e.g. "--controllers=serviceaccount"
    let extra = std::env::var("SCHED_BENCH_SERVER_FLAGS").unwrap_or_default();
    let flags: Vec<String> = flags
        .iter()
        .map(|f| f.to_string())
        .chain(extra.split_whitespace().map(String::from))
        .collect();
    let cluster = tokio::task::spawn_blocking(move || {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Cluster::start_with(&flags)
    })
    .await?;
    let pid = cluster.server.pid().context("server pid")?;
    let client = cluster.client().await;
    create_namespace(&client, "kube-node-lease").await?;
    create_namespace(&client, NS).await?;
    let node_time = create_hollow_nodes(&client).await?;
    println!(
        "[{label}] {NODES} hollow nodes in {:.1} s",
        node_time.as_secs_f64()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let renewer = renew_leases(client.clone(), stop.clone());

    let created: Times = Arc::default();
    let seen: Times = Arc::default();
    let bound: Times = Arc::default();
    let watch = bind_watcher(client.clone(), seen.clone(), bound.clone()).await?;

    let arrivals = match mode {
        Mode::Online => Arrivals::Paced(ONLINE_RATE),
        Mode::Saturation | Mode::Backlog => Arrivals::Closed,
    };
    let etcd_pid = cluster.etcd.pid().context("etcd pid")?;
    let cpu = || -> Result<(Duration, Duration, Duration)> {
        Ok((
            cpu_time(pid).context("server cpu time")?,
            cpu_time(etcd_pid).context("etcd cpu time")?,
            cpu_time(std::process::id()).context("own cpu time")?,
        ))
    };
    let cpu_before = cpu()?;
    let rtts: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let create_time = create_pods(&client, &created, &rtts, arrivals).await?;
    println!(
        "[{label}] {PODS} pods created in {:.1} s",
        create_time.as_secs_f64()
    );
    let mut scheduler = None;
    let bin = if backlog {
        Some(build_scheduler()?)
    } else {
        None
    };
    let sched_start = Instant::now();
    if let Some(bin) = bin {
        let child = Command::new(bin)
            .arg("--kubeconfig")
            .arg(cluster.server.kubeconfig())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting bpfk-scheduler")?;
        scheduler = Some(ChildGuard(child));
    }
    wait_all_bound(&bound).await?;
    let cpu_after = cpu()?;
    let scheduler_hwm = scheduler
        .as_ref()
        .and_then(|c| rss_kib(c.0.id()))
        .map(|(_, hwm)| hwm as f64 / 1024.0);
    drop(scheduler);
    stop.store(true, Ordering::SeqCst);
    let renewals = renewer.await?;
    watch.abort();

    let created = created.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let bound = bound.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let first_create = created.values().min().copied().context("no pods")?;
    let last_bind = bound.values().max().copied().context("no bindings")?;
    let first_bind = bound.values().min().copied().context("no bindings")?;
    let binding_secs = (last_bind - first_bind).as_secs_f64();
    let (sched_secs, mut lat) = if backlog {
        // pure scheduling: from the scheduler's start to the last binding; latency from start
        let lat: Vec<Duration> = bound
            .values()
            .map(|t| t.saturating_duration_since(sched_start))
            .collect();
        ((last_bind - sched_start).as_secs_f64(), lat)
    } else {
        let lat: Vec<Duration> = bound
            .iter()
            .filter_map(|(n, t)| created.get(n).map(|c| t.saturating_duration_since(*c)))
            .collect();
        ((last_bind - first_create).as_secs_f64(), lat)
    };
    let s = summarize(&mut lat);
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut seen_lat: Vec<Duration> = seen
        .iter()
        .filter_map(|(n, t)| created.get(n).map(|c| t.saturating_duration_since(*c)))
        .collect();
    let seen_s = summarize(&mut seen_lat);
    let post_s = summarize(&mut rtts.lock().unwrap_or_else(|e| e.into_inner()));
    let (_, hwm) = rss_kib(pid).context("server rss")?;
    if let Some(dir) = std::env::var_os("SCHED_BENCH_SERVER_LOG_DIR") {
        // for investigations: keep the server's log (RUST_LOG is passed on to it)
        let path = std::path::Path::new(&dir).join(format!(
            "server-{}.log",
            match mode {
                Mode::Online => "online",
                Mode::Saturation => "saturation",
                Mode::Backlog => "backlog",
            }
        ));
        std::fs::write(&path, cluster.server.log())
            .with_context(|| format!("writing {}", path.display()))?;
        println!("[{label}] server log: {}", path.display());
    }
    Ok(RunResult {
        label,
        create_secs: create_time.as_secs_f64(),
        binding_secs,
        sched_secs,
        p50_ms: ms(s.p50),
        p99_ms: ms(s.p99),
        max_ms: ms(s.max),
        server_hwm_mib: hwm as f64 / 1024.0,
        scheduler_hwm_mib: scheduler_hwm,
        renewals,
        post_p50_ms: ms(post_s.p50),
        post_p99_ms: ms(post_s.p99),
        seen_p50_ms: ms(seen_s.p50),
        seen_p99_ms: ms(seen_s.p99),
        server_cpu_ms_per_pod: ms(cpu_after.0 - cpu_before.0) / PODS as f64,
        etcd_cpu_ms_per_pod: ms(cpu_after.1 - cpu_before.1) / PODS as f64,
        bench_cpu_ms_per_pod: ms(cpu_after.2 - cpu_before.2) / PODS as f64,
    })
}

const HELP: &str = "\
sched_bench: scheduling throughput with 1,000 hollow nodes and 10,000 pods, on a fresh etcd and
bpfk-server per run: online at 1,000 pods/s (3 runs), saturation, and a backlog drained by a
standalone bpfk-scheduler. Writes bench/results/scheduler.md. Takes no arguments.

environment:
  SCHED_BENCH_ONLINE_ONLY=1          one online run, printed (no results file)
  SCHED_BENCH_SERVER_FLAGS=\"...\"     extra bpfk-server flags
  SCHED_BENCH_SERVER_LOG_DIR=DIR     keep the servers' logs in DIR

usage: sched_bench [-h|--help]
  (from the repository: cargo run --release -p bpfk-bench --bin sched_bench)
";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bpfk_bench::no_arguments("sched_bench", HELP);
    bpfk_common::exit::report("sched_bench", bench().await)
}

async fn bench() -> Result<()> {
    if std::env::var_os("SCHED_BENCH_ONLINE_ONLY").is_some() {
        let online = run("online at 1,000 pods/s", Mode::Online).await?;
        println!(
            "online only: {:.0} pods/s, p50 {:.1} ms, p99 {:.1} ms, POST p50 {:.1} ms p99 {:.1} ms, watch delivery p50 {:.1} ms p99 {:.1} ms, CPU per pod: bpfk-server {:.3} ms, etcd {:.3} ms, bench client {:.3} ms (results file not written)",
            PODS as f64 / online.sched_secs,
            online.p50_ms,
            online.p99_ms,
            online.post_p50_ms,
            online.post_p99_ms,
            online.seen_p50_ms,
            online.seen_p99_ms,
            online.server_cpu_ms_per_pod,
            online.etcd_cpu_ms_per_pod,
            online.bench_cpu_ms_per_pod
        );
        return Ok(());
    }
    let mut runs = Vec::new();
    for label in [
        "online at 1,000 pods/s (1)",
        "online at 1,000 pods/s (2)",
        "online at 1,000 pods/s (3)",
    ] {
        runs.push(run(label, Mode::Online).await?);
    }
    runs.push(run("saturation, scheduler in bpfk-server", Mode::Saturation).await?);
    runs.push(run("backlog, standalone bpfk-scheduler", Mode::Backlog).await?);
    let mut out = String::new();
    out.push_str("# Scheduler benchmark\n\n");
    out.push_str(&format!(
        "{NODES} hollow nodes (Node objects, 32 CPU / 128 GiB / 110 pods each, leases renewed every {}s by \
         hollow kubelets, i.e. {} lease writes/s), {PODS} pods requesting 100m / 128Mi. \
         etcd 3.4 (data on the machine's disk) + bpfk-server (release build) on one 2-core machine, loopback; \
         the benchmark client shares the machine.\n\n",
        LEASE_RENEW.as_secs(),
        NODES as u64 / LEASE_RENEW.as_secs()
    ));
    out.push_str(&format!("- **online** (three runs): bpfk-server runs its scheduler and all controllers (`--cluster-cidr 10.0.0.0/14`, room for a /24 per node); pods arrive at {ONLINE_RATE} pods/s \
        (open loop, up to {MAX_IN_FLIGHT} creates in flight) and are bound while they arrive. \
        Latency = pod stored (POST answered) → binding seen on a watch. pods/s = pods / (first create → last binding), \
        which cannot exceed the arrival rate: the question is whether scheduling keeps up (latency stays low).\n"));
    out.push_str(&format!("- **saturation**: the same server; pods are created as fast as it answers ({CONCURRENCY} creates in flight) \
        and bound while they arrive: pods/s = pods / (first create → last binding) is the throughput of creating and scheduling together, \
        latency includes the queueing of a saturated machine.\n"));
    out.push_str(&format!("- **backlog**: bpfk-server without scheduler; all pods are created first ({CONCURRENCY} in flight), then a standalone \
        `bpfk-scheduler` process starts (initial list of nodes and pods included). pods/s = pods / (scheduler start → last binding); \
        latency = scheduler start → binding (a queue of {PODS} drains, so it grows with the position in the queue).\n\n"));
    out.push_str("| run | pod creation s | scheduling s | pods/s | first→last binding pods/s | p50 ms | p99 ms | max ms | bpfk-server peak RSS MiB | scheduler peak RSS MiB | lease renewals | bpfk-server CPU ms/pod | etcd CPU ms/pod | bench client CPU ms/pod |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in &runs {
        out.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {:.3} | {:.3} | {:.3} |\n",
            r.label,
            r.create_secs,
            r.sched_secs,
            PODS as f64 / r.sched_secs,
            PODS as f64 / r.binding_secs,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.server_hwm_mib,
            r.scheduler_hwm_mib
                .map_or("(in server)".to_string(), |m| format!("{m:.1}")),
            r.renewals,
            r.server_cpu_ms_per_pod,
            r.etcd_cpu_ms_per_pod,
            r.bench_cpu_ms_per_pod
        ));
    }
    let path = results_path("scheduler.md");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, &out)?;
    println!("{out}\nwritten to {}", path.display());
    Ok(())
}
