//! API server benchmark: create / patch / list / watch fan-out throughput and latency against
//! a real etcd, as bpfk-server serves them (TLS, authentication, RBAC + Node authorization)
//! and as a plain baseline of the same API server code without them, with the per-request
//! cost of the three as secure/plain ratios. Writes `bench/results/apiserver.md`.
//!
//! Three cases, each on its own fresh etcd (client TLS, as the lab always runs it) and its own
//! fresh server process. Each round starts all three, then runs each operation against each
//! in turn, the order rotating from one operation and one round to the next (plain, admin,
//! RBAC user; then admin, RBAC user, plain; …), so the three figures of one operation are
//! seconds apart and drift of the shared 2-core machine favours no case:
//!
//! * **plain**: `apiserver_plain` (this crate's binary: the `bpfk_apiserver` library served
//!   over plain HTTP, every request as a fixed user in `system:masters`);
//! * **secure, admin**: the real `bpfk-server` over HTTPS with the admin's client certificate
//!   (`system:masters`, which authorization lets through first);
//! * **secure, RBAC user**: the same server with a user's client certificate whose rights
//!   come from a RoleBinding of a ClusterRole on pods, so every request goes through RBAC.
//!
//! Each figure is the median of the rounds with their [min–max]; each ratio is the median of
//! the rounds' secure/plain ratios. The target: TLS, authentication and authorization together
//! cost under 10% per request, i.e. a throughput ratio ≥ 0.90 and a latency ratio ≤ 1.10.
//! `APISERVER_BENCH_QUICK=1` runs one small round and prints it (no results file).
//! Run: `cargo run --release -p bpfk-bench --bin apiserver_bench`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bpfk_bench::{build_profile, cpu_time, median_range, ms, results_path, rss_kib, summarize};
use bpfk_lab::api_client::ApiCredentials;
use bpfk_lab::etcd::{EtcdOptions, EtcdProcess};
use bpfk_lab::server::{free_port, http_get, target_dir, Cluster};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde::de::DeserializeOwned;
use serde_json::json;

const CONCURRENCY: usize = 64;
/// The user of the RBAC case (a RoleBinding in `default` grants it pods).
const RBAC_USER: &str = "bench-user";
const START_DEADLINE: Duration = Duration::from_secs(60);

/// How much one run does.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    rounds: usize,
    pods: usize,
    updates: usize,
    lists: usize,
    watchers: usize,
    fanout_events: usize,
}

const FULL: Sizes = Sizes {
    rounds: 7,
    pods: 5_000,
    updates: 2_000,
    lists: 10,
    watchers: 1_000,
    fanout_events: 50,
};

const QUICK: Sizes = Sizes {
    rounds: 1,
    pods: 300,
    updates: 200,
    lists: 3,
    watchers: 50,
    fanout_events: 10,
};

/// What is measured: who serves and as whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Case {
    Plain,
    SecureAdmin,
    SecureRbac,
}

impl Case {
    const ALL: [Case; 3] = [Case::Plain, Case::SecureAdmin, Case::SecureRbac];

    fn label(self) -> &'static str {
        match self {
            Case::Plain => "plain",
            Case::SecureAdmin => "secure, admin",
            Case::SecureRbac => "secure, RBAC user",
        }
    }

    /// The cases of round `r`: all three, starting one further each round.
    fn order(round: usize) -> [Case; 3] {
        let mut cases = Case::ALL;
        cases.rotate_left(round % Case::ALL.len());
        cases
    }
}

/// The figures of one kind of request in one round.
#[derive(Debug, Clone, Copy)]
struct Op {
    ops_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU time of the server process per request.
    server_cpu_ms: f64,
}

/// The operations, in the order they run and are reported.
const OPS: [&str; 5] = [
    "create pod",
    "patch pod",
    "list all pods (cache, rv=0)",
    "list all pods (etcd, consistent)",
    "watch fan-out delivery",
];

/// One round of one case.
#[derive(Debug, Clone)]
struct Round {
    /// By [`OPS`]; for the fan-out, ops are deliveries.
    ops: Vec<Op>,
    delivered: usize,
    rss_empty_mib: f64,
    rss_loaded_mib: f64,
    peak_mib: f64,
}

impl Round {
    /// A round whose server was just started with `rss_kib` resident.
    fn started(rss_kib: u64) -> Round {
        Round {
            ops: Vec::with_capacity(OPS.len()),
            delivered: 0,
            rss_empty_mib: mib(rss_kib),
            rss_loaded_mib: 0.0,
            peak_mib: 0.0,
        }
    }
}

const HELP: &str = "\
apiserver_bench: create / patch / list / watch fan-out throughput and latency of bpfk-server
against a real etcd, served as in production (TLS, authentication, RBAC + Node authorization;
as the admin and as an RBAC-bound user) beside a plain baseline of the same API server code
(apiserver_plain: no TLS, a fixed admin identity, every request allowed), in interleaved
rounds; the secure/plain ratios against the target of < 10% per-request cost, and the
server's memory. Writes bench/results/apiserver.md. Takes no arguments.

usage: apiserver_bench [-h|--help]
  (from the repository: cargo run --release -p bpfk-bench --bin apiserver_bench)

environment:
  APISERVER_BENCH_QUICK=1  one small round, printed only (no results file)
  APISERVER_BENCH_CASES=plain,admin,rbac
                           only these cases (e.g. to profile one server with perf), printed
                           only (no results file)
";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bpfk_bench::no_arguments("apiserver_bench", HELP);
    bpfk_common::exit::report("apiserver_bench", bench().await)
}

async fn bench() -> Result<()> {
    let quick = std::env::var("APISERVER_BENCH_QUICK").is_ok_and(|v| v == "1");
    let sizes = if quick { QUICK } else { FULL };
    let only = selected_cases()?;
    let plain_bin = build_plain()?;
    // bpfk-server is built (when stale) on its first use: before the clock starts
    bpfk_lab::server::binary("bpfk-server");
    let decision = rbac_decision_ns()?;
    let load_before = load_average();
    let started = Instant::now();
    let mut rounds: HashMap<Case, Vec<Round>> = HashMap::new();
    for r in 0..sizes.rounds {
        let cases: Vec<Case> = Case::order(r)
            .into_iter()
            .filter(|c| only.contains(c))
            .collect();
        let done = run_round(r, &cases, sizes, &plain_bin)
            .await
            .with_context(|| format!("round {}", r + 1))?;
        eprintln!(
            "round {}/{} done ({:.0} s so far)",
            r + 1,
            sizes.rounds,
            started.elapsed().as_secs_f64()
        );
        for (case, round) in done {
            rounds.entry(case).or_default().push(round);
        }
    }
    let out = report(&rounds, sizes, decision, &load_before, started.elapsed());
    if quick || only.len() < Case::ALL.len() {
        println!("{out}");
        return Ok(());
    }
    let path = results_path("apiserver.md");
    std::fs::write(&path, &out)?;
    println!("{out}\nwritten to {}", path.display());
    Ok(())
}

/// The cases `APISERVER_BENCH_CASES` names (all when unset).
fn selected_cases() -> Result<Vec<Case>> {
    let Ok(names) = std::env::var("APISERVER_BENCH_CASES") else {
        return Ok(Case::ALL.to_vec());
    };
    names
        .split(',')
        .map(|name| match name.trim() {
            "plain" => Ok(Case::Plain),
            "admin" => Ok(Case::SecureAdmin),
            "rbac" => Ok(Case::SecureRbac),
            other => bail!("APISERVER_BENCH_CASES: unknown case {other:?} (plain, admin, rbac)"),
        })
        .collect()
}

/// Build `apiserver_plain` (as this binary is built) so it is never stale; its path.
fn build_plain() -> Result<PathBuf> {
    let mut cmd = bpfk_lab::server::cargo_command();
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "bpfk-bench",
        "--bin",
        "apiserver_plain",
    ]);
    if target_dir().file_name().and_then(|n| n.to_str()) == Some("release") {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .context("running cargo build of apiserver_plain")?;
    if !status.success() {
        bail!("building apiserver_plain failed");
    }
    Ok(target_dir().join("apiserver_plain"))
}

/// The 1-minute load average, so a reader can tell whether other work shared the machine.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "unknown".into())
}

/// A server under test with the client the load runs as; dropping it kills its processes.
struct Target {
    _processes: Processes,
    pid: u32,
    client: kube::Client,
}

enum Processes {
    Secure {
        _cluster: Box<Cluster>,
    },
    // the server first: it is killed before its etcd
    Plain {
        _server: PlainServer,
        _etcd: Box<EtcdProcess>,
    },
}

/// One round: a fresh server (and etcd) for each of `cases`, all started first; then each
/// operation runs against each server in turn, the order rotating from one operation to the
/// next, so the cases' figures of one operation are seconds apart and drift of the shared
/// machine reaches them alike.
async fn run_round(
    r: usize,
    cases: &[Case],
    sizes: Sizes,
    plain_bin: &std::path::Path,
) -> Result<Vec<(Case, Round)>> {
    let mut targets = Vec::new();
    for &case in cases {
        let target = match case {
            Case::Plain => start_plain(plain_bin).await?,
            Case::SecureAdmin => start_secure(false).await?,
            Case::SecureRbac => start_secure(true).await?,
        };
        targets.push(target);
    }
    let mut rounds = Vec::new();
    for target in &targets {
        rounds.push(Round::started(rss_kib(target.pid).context("rss")?.0));
    }
    for (phase, op_name) in OPS.iter().enumerate() {
        for k in 0..targets.len() {
            let i = (k + r + phase) % targets.len();
            run_phase(phase, &targets[i], sizes, &mut rounds[i])
                .await
                .with_context(|| format!("{op_name} on {}", cases[i].label()))?;
        }
    }
    Ok(cases.iter().copied().zip(rounds).collect())
}

async fn start_plain(bin: &std::path::Path) -> Result<Target> {
    let etcd = EtcdProcess::start_with(EtcdOptions {
        tls: true,
        ..Default::default()
    });
    let server = PlainServer::start(bin, &etcd)?;
    let config = kube::Config::new(format!("http://127.0.0.1:{}", server.port).parse()?);
    let client = kube::Client::try_from(config)?;
    ensure_default_service_account(&client).await?;
    Ok(Target {
        pid: server.child.id(),
        _processes: Processes::Plain {
            _server: server,
            _etcd: Box::new(etcd),
        },
        client,
    })
}

/// bpfk-server alone: no scheduler or controllers writing behind the load (the `default`
/// ServiceAccount pods need is made by the benchmark, as for the plain server).
async fn start_secure(rbac: bool) -> Result<Target> {
    let cluster = Cluster::start_with(&["--disable-scheduler", "--disable-controllers"]);
    let pid = cluster.server.pid().context("server pid")?;
    let admin = cluster.client().await;
    ensure_default_service_account(&admin).await?;
    let client = match rbac {
        true => rbac_client(&cluster, &admin).await?,
        false => admin,
    };
    Ok(Target {
        _processes: Processes::Secure {
            _cluster: Box::new(cluster),
        },
        pid,
        client,
    })
}

/// The `default` ServiceAccount of `default`, which every pod created runs as.
async fn ensure_default_service_account(client: &kube::Client) -> Result<()> {
    let sa: ServiceAccount = literal(json!({"metadata": {"name": "default"}}))?;
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e).context("creating the default ServiceAccount"),
    }
}

/// A client as [`RBAC_USER`], whom a RoleBinding in `default` grants a ClusterRole on pods,
/// once the authorizer has seen the binding.
async fn rbac_client(cluster: &Cluster, admin: &kube::Client) -> Result<kube::Client> {
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &bench_role()?)
        .await
        .context("creating the ClusterRole")?;
    Api::<RoleBinding>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &bench_binding()?)
        .await
        .context("creating the RoleBinding")?;
    let kubeconfig = cluster.server.user_kubeconfig(RBAC_USER, &[]);
    let client = ApiCredentials::read(&kubeconfig)
        .context("the RBAC user's kubeconfig")?
        .kube_client();
    wait_authorized(&client).await?;
    Ok(client)
}

/// The ClusterRole on pods the RBAC user is granted.
fn bench_role() -> Result<ClusterRole> {
    literal(json!({
        "metadata": {"name": "bench-pods"},
        "rules": [{"apiGroups": [""], "resources": ["pods"],
                   "verbs": ["create", "get", "list", "watch", "patch", "update", "delete"]}]
    }))
}

/// The RoleBinding in `default` granting [`bench_role`] to [`RBAC_USER`].
fn bench_binding() -> Result<RoleBinding> {
    literal(json!({
        "metadata": {"name": "bench-pods", "namespace": "default"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "bench-pods"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": RBAC_USER}]
    }))
}

/// What one RBAC decision costs in process: the RBAC user's pod create checked against the
/// bootstrap policy plus the benchmark's role and binding (what the server holds in the RBAC
/// case), timed over batches; the median ns per decision and the bindings walked.
fn rbac_decision_ns() -> Result<(f64, usize)> {
    use bpfk_auth::authz::{Attributes, ResourceAttributes};
    use bpfk_auth::rbac::{bootstrap, RbacPolicy};
    let mut roles = bootstrap::cluster_roles();
    roles.push(bench_role()?);
    let cluster_bindings = bootstrap::cluster_role_bindings();
    let bindings = cluster_bindings.len() + 1;
    let policy = RbacPolicy::new(roles, vec![], cluster_bindings, vec![bench_binding()?]);
    let user = bpfk_auth::user::authenticated(RBAC_USER.into(), String::new(), vec![]);
    let pods = ResourceAttributes {
        namespace: "default".into(),
        resource: "pods".into(),
        ..Default::default()
    };
    let attrs = Attributes {
        user: &user,
        verb: "create",
        resource: Some(&pods),
        path: "/api/v1/namespaces/default/pods",
    };
    if !policy.authorize(&attrs).allowed() {
        bail!("the RBAC user's pod create is not allowed by the policy the benchmark builds");
    }
    const DECISIONS: u32 = 20_000;
    let batches: Vec<f64> = (0..9)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..DECISIONS {
                std::hint::black_box(policy.authorize(std::hint::black_box(&attrs)));
            }
            start.elapsed().as_nanos() as f64 / f64::from(DECISIONS)
        })
        .collect();
    Ok((median(&batches), bindings))
}

async fn wait_authorized(client: &kube::Client) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match pods.list(&ListParams::default().limit(1)).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e).context("the RBAC user is still not allowed to list pods")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn literal<T: DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    Ok(serde_json::from_value(value)?)
}

/// `apiserver_plain` on a free loopback port against `etcd`; killed when dropped.
struct PlainServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl PlainServer {
    fn start(bin: &std::path::Path, etcd: &EtcdProcess) -> Result<PlainServer> {
        let dir = tempfile::Builder::new().prefix("bpfk-plain-").tempdir()?;
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let child = Command::new(bin)
            .arg("--etcd-servers")
            .arg(etcd.endpoint())
            .args(etcd.tls().map(|t| t.server_flags()).unwrap_or_default())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = PlainServer { child, port, dir };
        server.wait_ready()?;
        Ok(server)
    }

    /// Until `/readyz` answers 200 (the bootstrap is done), as for bpfk-server.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("apiserver_plain exited with {status}; log:\n{}", self.log());
            }
            if let Ok((200, _)) = http_get(self.port, "/readyz") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "apiserver_plain is not ready after {START_DEADLINE:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PlainServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pod(name: &str, app: &str) -> Result<Pod> {
    literal(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    }))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Operation `phase` of [`OPS`] on one server, its figures put in `round`; the server's
/// memory is read after the lists (all pods loaded) and after the fan-out.
async fn run_phase(phase: usize, target: &Target, sizes: Sizes, round: &mut Round) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(target.client.clone(), "default");
    let pid = target.pid;
    let op = match phase {
        0 => creates(&pods, pid, sizes.pods).await?,
        1 => patches(&pods, pid, sizes).await?,
        2 => lists(&pods, pid, &ListParams::default().match_any(), sizes).await?,
        3 => {
            let op = lists(&pods, pid, &ListParams::default(), sizes).await?;
            round.rss_loaded_mib = mib(rss_kib(pid).context("rss")?.0);
            op
        }
        _ => {
            let (op, delivered) = fanout(&pods, pid, sizes).await?;
            round.delivered = delivered;
            round.peak_mib = mib(rss_kib(pid).context("rss")?.1);
            op
        }
    };
    round.ops.push(op);
    Ok(())
}

/// Server CPU time since `before`.
fn cpu_since(pid: u32, before: Duration) -> Result<Duration> {
    Ok(cpu_time(pid)
        .context("server cpu time")?
        .saturating_sub(before))
}

/// The figures of `n` requests that took `wall` with `lat` each and `cpu` of the server.
fn op(n: usize, wall: Duration, mut lat: Vec<Duration>, cpu: Duration) -> Op {
    let s = summarize(&mut lat);
    Op {
        ops_per_s: n as f64 / wall.as_secs_f64(),
        p50_ms: ms(s.p50),
        p99_ms: ms(s.p99),
        server_cpu_ms: ms(cpu) / n.max(1) as f64,
    }
}

/// Run `total` operations with `CONCURRENCY` in flight; returns (wall time, per-op latencies).
async fn drive<F, Fut>(total: usize, op: F) -> Result<(Duration, Vec<Duration>)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let start = Instant::now();
    let lat: Vec<Result<Duration>> = futures::stream::iter(0..total)
        .map(|i| {
            let fut = op(i);
            async move {
                let t = Instant::now();
                fut.await?;
                Ok(t.elapsed())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let lat = lat.into_iter().collect::<Result<Vec<_>>>()?;
    Ok((start.elapsed(), lat))
}

async fn creates(pods: &Api<Pod>, pid: u32, n: usize) -> Result<Op> {
    let cpu = cpu_since(pid, Duration::ZERO)?;
    let (wall, lat) = drive(n, |i| {
        let pods = pods.clone();
        async move {
            pods.create(&PostParams::default(), &pod(&format!("p{i:05}"), "bench")?)
                .await?;
            Ok(())
        }
    })
    .await?;
    Ok(op(n, wall, lat, cpu_since(pid, cpu)?))
}

/// Merge patches of a label.
async fn patches(pods: &Api<Pod>, pid: u32, sizes: Sizes) -> Result<Op> {
    let cpu = cpu_since(pid, Duration::ZERO)?;
    let (wall, lat) = drive(sizes.updates, |i| {
        let pods = pods.clone();
        async move {
            let patch = Patch::Merge(json!({"metadata": {"labels": {"round": format!("r{i}")}}}));
            let name = format!("p{:05}", i % sizes.pods);
            pods.patch(&name, &PatchParams::default(), &patch).await?;
            Ok(())
        }
    })
    .await?;
    Ok(op(sizes.updates, wall, lat, cpu_since(pid, cpu)?))
}

/// Lists of every pod, one at a time.
async fn lists(pods: &Api<Pod>, pid: u32, params: &ListParams, sizes: Sizes) -> Result<Op> {
    let cpu = cpu_since(pid, Duration::ZERO)?;
    let mut lat = Vec::new();
    let start = Instant::now();
    for _ in 0..sizes.lists {
        let t = Instant::now();
        let l = pods.list(params).await?;
        anyhow::ensure!(
            l.items.len() == sizes.pods,
            "list returned {} pods",
            l.items.len()
        );
        lat.push(t.elapsed());
    }
    Ok(op(sizes.lists, start.elapsed(), lat, cpu_since(pid, cpu)?))
}

type CreatedAt = Arc<tokio::sync::Mutex<HashMap<String, Instant>>>;

/// `watchers` watches, then `fanout_events` creates: the time until every watcher saw each.
/// The figures are per delivery; also the number delivered.
async fn fanout(pods: &Api<Pod>, pid: u32, sizes: Sizes) -> Result<(Op, usize)> {
    let rv = pods
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .context("rv")?;
    let created_at: CreatedAt = Default::default();
    let mut tasks = Vec::new();
    for _ in 0..sizes.watchers {
        let params = WatchParams::default().labels("app=fanout").timeout(120);
        let stream = pods.watch(&params, &rv).await?.boxed();
        tasks.push(tokio::spawn(watcher(stream, created_at.clone(), sizes)));
    }
    let cpu = cpu_since(pid, Duration::ZERO)?;
    let start = Instant::now();
    for i in 0..sizes.fanout_events {
        let name = format!("fan{i:03}");
        let p = pod(&name, "fanout")?;
        created_at.lock().await.insert(name, Instant::now());
        pods.create(&PostParams::default(), &p).await?;
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let delivered = lat.len();
    Ok((
        op(delivered, start.elapsed(), lat, cpu_since(pid, cpu)?),
        delivered,
    ))
}

/// One watcher: the create→delivery latency of each fan-out pod it sees.
async fn watcher(
    mut stream: futures::stream::BoxStream<'static, kube::Result<WatchEvent<Pod>>>,
    created_at: CreatedAt,
    sizes: Sizes,
) -> Vec<Duration> {
    let mut lat = Vec::new();
    while lat.len() < sizes.fanout_events {
        match tokio::time::timeout(Duration::from_secs(60), stream.try_next()).await {
            Ok(Ok(Some(WatchEvent::Added(p)))) => {
                let name = p.metadata.name.unwrap_or_default();
                if let Some(t) = created_at.lock().await.get(&name) {
                    lat.push(t.elapsed());
                }
            }
            Ok(Ok(Some(_))) => {}
            _ => break,
        }
    }
    lat
}

/// The target: secure/plain throughput ≥ this, latency and CPU ≤ its inverse…
const THROUGHPUT_TARGET: f64 = 0.90;
/// …and latency (and server CPU per request) at most this.
const LATENCY_TARGET: f64 = 1.10;

/// Per-round values of `f` for `case`.
fn values(rounds: &HashMap<Case, Vec<Round>>, case: Case, f: impl Fn(&Round) -> f64) -> Vec<f64> {
    rounds
        .get(&case)
        .map_or_else(Vec::new, |rs| rs.iter().map(f).collect())
}

/// The secure/plain ratio of `f` in each round (rounds pair up in the order they ran).
fn ratios(rounds: &HashMap<Case, Vec<Round>>, case: Case, f: impl Fn(&Round) -> f64) -> Vec<f64> {
    let secure = values(rounds, case, &f);
    let plain = values(rounds, Case::Plain, &f);
    secure.iter().zip(&plain).map(|(s, p)| s / p).collect()
}

fn median(v: &[f64]) -> f64 {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn report(
    rounds: &HashMap<Case, Vec<Round>>,
    sizes: Sizes,
    decision: (f64, usize),
    load_before: &str,
    took: Duration,
) -> String {
    let mut out = String::from("# API server benchmark\n\n");
    out.push_str(&intro(sizes, load_before, took));
    out.push_str(&figures_table(rounds));
    out.push_str(&ratio_table(rounds));
    out.push_str(&rbac_decision(rounds, decision));
    out.push_str(&fanout_and_memory(rounds, sizes));
    out
}

/// The in-process cost of one RBAC decision beside the server's CPU per create.
fn rbac_decision(rounds: &HashMap<Case, Vec<Round>>, (ns, bindings): (f64, usize)) -> String {
    let create_cpu_ns = median(&values(rounds, Case::SecureRbac, |r| {
        r.ops[0].server_cpu_ms
    })) * 1e6;
    let share = ns / create_cpu_ns;
    let reading = if share < 0.01 {
        "under 1%: a difference between the admin's and the RBAC user's figures above larger \
         than that is the machine's noise, not authorization, and a per-identity decision \
         cache would save less than it"
    } else {
        "1% or more: authorization is a visible part of a request's cost here"
    };
    format!(
        "## One RBAC decision\n\nThe RBAC user's pod create decided in process against the \
         policy the server holds in the RBAC case (the bootstrap roles and {bindings} \
         bindings, the benchmark's RoleBinding last): {ns:.0} ns per decision (median of 9 \
         batches of 20,000), {:.2}% of the server's CPU per create in the RBAC case, \
         {reading}.\n\n",
        100.0 * share
    )
}

fn intro(sizes: Sizes, load_before: &str, took: Duration) -> String {
    format!(
        "bpfk-server's API server ({}; no scheduler, no controllers) + etcd 3.4 (client TLS) on \
         one 2-core machine, loopback; kube-rs client in the same machine, HTTP/1.1, \
         {CONCURRENCY} requests in flight for creates and patches, lists one at a time. \
         Per round and case, on a fresh etcd and a fresh server: {} pod creates, {} merge \
         patches, {} lists of all {} pods from the watch cache and {} from etcd, then {} watches \
         and {} creates they all see.\n\n\
         Cases: **plain** = `apiserver_plain`, the same `bpfk_apiserver` library code served over \
         plain HTTP with every request as a fixed user in `system:masters` (no TLS, no \
         credentials read, authorization allows at its first check); **secure, admin** = \
         `bpfk-server` over HTTPS with the admin's client certificate (`system:masters`: \
         authorization allows at its first check too, so this is TLS + authentication); \
         **secure, RBAC user** = the same server with a client certificate of `{RBAC_USER}`, \
         whose rights come from a RoleBinding of a ClusterRole on pods (TLS + authentication \
         + Node and RBAC authorization on every request).\n\n\
         {} rounds; a round starts the three servers, then runs each operation on each in \
         turn, the order of the cases rotating from one operation and round to the next \
         (plain, admin, RBAC; admin, RBAC, plain; …), so the three figures of an operation are \
         seconds apart. Figures: median [min–max] over the rounds. Ratios: median [min–max] \
         of each round's secure/plain ratio. Server CPU: CPU time of the server process per \
         request (the client's TLS work is not in it, but is in the throughput and latency). \
         Load average before the run: {load_before}; the run took {:.0} s.\n\n",
        build_profile(),
        sizes.pods,
        sizes.updates,
        sizes.lists,
        sizes.pods,
        sizes.lists,
        sizes.watchers,
        sizes.fanout_events,
        sizes.rounds,
        took.as_secs_f64()
    )
}

fn figures_table(rounds: &HashMap<Case, Vec<Round>>) -> String {
    let mut out = String::from(
        "## Figures\n\n| operation | case | ops/s | p50 ms | p99 ms | server CPU ms/op |\n|---|---|---|---|---|---|\n",
    );
    for (i, name) in OPS.iter().enumerate() {
        for case in Case::ALL {
            let v = |f: fn(&Op) -> f64| values(rounds, case, |r| f(&r.ops[i]));
            out.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {} |\n",
                case.label(),
                median_range(&v(|o| o.ops_per_s), 0),
                median_range(&v(|o| o.p50_ms), 2),
                median_range(&v(|o| o.p99_ms), 2),
                median_range(&v(|o| o.server_cpu_ms), 3),
            ));
        }
    }
    out.push_str("\nFor the fan-out, ops/s are deliveries per second from the first create until every watcher saw every create, and the latencies are create→delivery.\n\n");
    out
}

fn ratio_table(rounds: &HashMap<Case, Vec<Round>>) -> String {
    let mut out = format!(
        "## Secure / plain\n\nTarget: TLS, authentication and authorization together cost under \
         10% per request: throughput ratio ≥ {THROUGHPUT_TARGET:.2}, p50 latency ratio ≤ \
         {LATENCY_TARGET:.2}. The server-CPU ratio is shown beside them (not part of the target: \
         it leaves out the client's TLS work).\n\n\
         | operation | identity | throughput | p50 latency | server CPU/op | target |\n|---|---|---|---|---|---|\n"
    );
    for (i, name) in OPS.iter().enumerate() {
        for case in [Case::SecureAdmin, Case::SecureRbac] {
            let r = |f: fn(&Op) -> f64| ratios(rounds, case, |r| f(&r.ops[i]));
            let (tput, p50) = (r(|o| o.ops_per_s), r(|o| o.p50_ms));
            out.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {} |\n",
                case.label(),
                median_range(&tput, 2),
                median_range(&p50, 2),
                median_range(&r(|o| o.server_cpu_ms), 2),
                verdict(median(&tput), median(&p50)),
            ));
        }
    }
    out.push('\n');
    out
}

/// Whether the median ratios meet the target, and which misses.
fn verdict(throughput: f64, latency: f64) -> &'static str {
    match (throughput >= THROUGHPUT_TARGET, latency <= LATENCY_TARGET) {
        (true, true) => "meets",
        (false, true) => "**misses** (throughput)",
        (true, false) => "**misses** (latency)",
        (false, false) => "**misses** (both)",
    }
}

fn fanout_and_memory(rounds: &HashMap<Case, Vec<Round>>, sizes: Sizes) -> String {
    let mut out = format!(
        "## Delivery and memory\n\n| case | fan-out deliveries (of {}) | server RSS empty MiB | RSS with {} pods MiB | peak after the fan-out MiB |\n|---|---|---|---|---|\n",
        sizes.watchers * sizes.fanout_events,
        sizes.pods
    );
    for case in Case::ALL {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            case.label(),
            median_range(&values(rounds, case, |r| r.delivered as f64), 0),
            median_range(&values(rounds, case, |r| r.rss_empty_mib), 1),
            median_range(&values(rounds, case, |r| r.rss_loaded_mib), 1),
            median_range(&values(rounds, case, |r| r.peak_mib), 1),
        ));
    }
    out
}
