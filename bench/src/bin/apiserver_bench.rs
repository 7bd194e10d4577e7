//! API server benchmark: create / update / list / watch fan-out throughput and latency against
//! a real etcd, and bpfk-server's memory with 10,000 pods stored. Writes
//! `bench/results/apiserver.md`. Run: `cargo run --release -p bpfk-bench --bin apiserver_bench`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bpfk_bench::{ms, results_path, rss_kib, summarize, Summary};
use bpfk_lab::server::Cluster;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

const PODS: usize = 10_000;
const UPDATES: usize = 2_000;
const CONCURRENCY: usize = 64;
const LISTS: usize = 10;
const WATCHERS: usize = 1_000;
const FANOUT_EVENTS: usize = 50;

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    }))
    .expect("pod literal")
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

/// The 1-minute load average, so a reader can tell whether other work shared the machine.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "unknown".into())
}

fn row(name: &str, n: usize, wall: Duration, s: Summary) -> String {
    format!(
        "| {name} | {n} | {:.0} | {:.2} | {:.2} | {:.2} |",
        n as f64 / wall.as_secs_f64(),
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    )
}

const HELP: &str = "\
apiserver_bench: create / update / list / watch fan-out throughput and latency of bpfk-server
against a real etcd, and its memory with 10,000 pods stored. Writes bench/results/apiserver.md.
Takes no arguments.

usage: apiserver_bench [-h|--help]
  (from the repository: cargo run --release -p bpfk-bench --bin apiserver_bench)
";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bpfk_bench::no_arguments("apiserver_bench", HELP);
    bpfk_common::exit::report("apiserver_bench", bench().await)
}

async fn bench() -> Result<()> {
    // the API server alone: no scheduler or controllers writing pod status behind the load
    let load_before = load_average();
    let cluster = Cluster::start_with(&["--disable-scheduler", "--controllers=serviceaccount"]);
    let pid = cluster.server.pid().context("server pid")?;
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut rows = Vec::new();

    let (rss_empty, _) = rss_kib(pid).context("rss")?;

    // creates
    let (wall, mut lat) = drive(PODS, |i| {
        let pods = pods.clone();
        async move {
            pods.create(&PostParams::default(), &pod(&format!("p{i:05}")))
                .await?;
            Ok(())
        }
    })
    .await?;
    rows.push(row("create pod", PODS, wall, summarize(&mut lat)));

    // updates (merge patch of a label)
    let (wall, mut lat) = drive(UPDATES, |i| {
        let pods = pods.clone();
        async move {
            let patch = Patch::Merge(json!({"metadata": {"labels": {"round": format!("r{i}")}}}));
            pods.patch(
                &format!("p{:05}", i % PODS),
                &PatchParams::default(),
                &patch,
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    rows.push(row("patch pod", UPDATES, wall, summarize(&mut lat)));

    // lists of all 10,000 pods: from the watch cache (resourceVersion=0) and from etcd
    for (name, params) in [
        (
            "list 10k pods (cache, rv=0)",
            ListParams::default().match_any(),
        ),
        ("list 10k pods (etcd, consistent)", ListParams::default()),
    ] {
        let mut lat = Vec::new();
        let start = Instant::now();
        for _ in 0..LISTS {
            let t = Instant::now();
            let l = pods.list(&params).await?;
            anyhow::ensure!(
                l.items.len() == PODS,
                "list returned {} pods",
                l.items.len()
            );
            lat.push(t.elapsed());
        }
        rows.push(row(name, LISTS, start.elapsed(), summarize(&mut lat)));
    }
    let (rss_10k, hwm_10k) = rss_kib(pid).context("rss")?;

    // watch fan-out: WATCHERS watches, FANOUT_EVENTS creates; time until every watcher saw each
    let rv = pods
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .context("rv")?;
    let created_at = Arc::new(tokio::sync::Mutex::new(std::collections::HashMap::<
        String,
        Instant,
    >::new()));
    let mut tasks = Vec::new();
    for _ in 0..WATCHERS {
        let mut stream = pods
            .watch(
                &WatchParams::default().labels("app=fanout").timeout(120),
                &rv,
            )
            .await?
            .boxed();
        let created_at = created_at.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while lat.len() < FANOUT_EVENTS {
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
        }));
    }
    let start = Instant::now();
    for i in 0..FANOUT_EVENTS {
        let name = format!("fan{i:03}");
        let mut p = pod(&name);
        p.metadata.labels = Some([("app".to_string(), "fanout".to_string())].into());
        created_at.lock().await.insert(name, Instant::now());
        pods.create(&PostParams::default(), &p).await?;
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let wall = start.elapsed();
    let delivered = lat.len();
    let s = summarize(&mut lat);
    let (_, hwm_final) = rss_kib(pid).context("rss")?;

    let mut out = String::new();
    out.push_str("# API server benchmark\n\n");
    out.push_str(&format!(
        "bpfk-server (release build, scheduler and controllers off) + etcd 3.4 on one 2-core machine, loopback; {CONCURRENCY} requests in flight; kube-rs client. Load average before the run: {load_before}.\n\n"
    ));
    out.push_str(
        "| operation | count | ops/s | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        out.push_str(r);
        out.push('\n');
    }
    out.push_str(&format!(
        "\nWatch fan-out: {WATCHERS} watches, {FANOUT_EVENTS} creates → {delivered} deliveries of {} expected in {:.2} s ({:.0} events/s delivered); create→delivery p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms.\n",
        WATCHERS * FANOUT_EVENTS,
        wall.as_secs_f64(),
        delivered as f64 / wall.as_secs_f64(),
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    ));
    out.push_str(&format!(
        "\nMemory of bpfk-server: {:.1} MiB RSS empty; {:.1} MiB RSS (peak {:.1} MiB) with {PODS} pods stored; peak {:.1} MiB after the fan-out.\n",
        rss_empty as f64 / 1024.0,
        rss_10k as f64 / 1024.0,
        hwm_10k as f64 / 1024.0,
        hwm_final as f64 / 1024.0
    ));
    let path = results_path("apiserver.md");
    std::fs::write(&path, &out)?;
    println!("{out}\nwritten to {}", path.display());
    Ok(())
}
