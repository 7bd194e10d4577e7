//! Pod start latency with cached and pulled images: a one-node lab cluster
//! (`bpfk_lab::cluster`: etcd, bpfk-server, containerd, `bpfk-agent --kubelet`, the lab
//! registry). Each run creates 50 pods at once (`sleep` in busybox) and measures, per pod,
//! create (POST answered) → the pod seen Running (polled every 100 ms):
//!
//! 1. cached: `busybox:1.36`, imported on the node, IfNotPresent (no registry traffic);
//! 2. pulled: `registry.bpfk.lab:5000/library/busybox:1.36` with imagePullPolicy Always,
//!    so every container start asks containerd to pull it from the lab registry (CRI
//!    PullImage: manifest resolution over HTTP; the layer is fetched by the first pull);
//!
//! with the kubelet's defaults (serialized pulls). Pods are deleted between runs. Writes
//! `bench/results/pod_start.md`.
//! Run: `cargo run --release -p bpfk-bench --bin pod_start_bench` (root).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bpfk_bench::{build_profile, median_range, ms, no_arguments, results_path, summarize, Summary};
use bpfk_lab::cluster::{Binaries, Lab, LabOptions};
use bpfk_lab::server::target_dir;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

const PODS: usize = 50;
const ROUNDS: usize = 3;
/// Upper bound on one run.
const RUN_DEADLINE: Duration = Duration::from_secs(300);

const HELP: &str =
    "pod_start_bench: pod create -> Running p50/p99 for 50 pods, image cached vs pulled
from the lab registry, on a one-node lab cluster; writes bench/results/pod_start.md. Needs root.
Takes no arguments.
";

fn pod(name: &str, image: &str, policy: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "pod-start"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": image, "imagePullPolicy": policy,
                            "command": ["sleep", "3600"]}]
        }
    }))?)
}

fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// Creates the pods, then polls until all run; each pod's create → Running time.
async fn run_once(
    pods: &Api<Pod>,
    prefix: &str,
    image: &str,
    policy: &str,
) -> Result<Vec<Duration>> {
    let mut created: HashMap<String, Instant> = HashMap::new();
    for i in 0..PODS {
        let name = format!("{prefix}-{i:02}");
        pods.create(&PostParams::default(), &pod(&name, image, policy)?)
            .await?;
        created.insert(name, Instant::now());
    }
    let deadline = Instant::now() + RUN_DEADLINE;
    let mut done: HashMap<String, Duration> = HashMap::new();
    while done.len() < PODS {
        if Instant::now() > deadline {
            bail!(
                "{prefix}: only {} of {PODS} pods Running within {RUN_DEADLINE:?}",
                done.len()
            );
        }
        let list = pods
            .list(&ListParams::default().labels("bench=pod-start"))
            .await?;
        let now = Instant::now();
        for p in list.items.iter().filter(|p| running(p)) {
            let Some(name) = p.metadata.name.clone() else {
                continue;
            };
            if let (Some(at), false) = (created.get(&name), done.contains_key(&name)) {
                done.insert(name, now - *at);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(done.into_values().collect())
}

async fn delete_all(pods: &Api<Pod>) -> Result<()> {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    pods.delete_collection(&params, &ListParams::default().labels("bench=pod-start"))
        .await?;
    let deadline = Instant::now() + RUN_DEADLINE;
    while !pods
        .list(&ListParams::default().labels("bench=pod-start"))
        .await?
        .items
        .is_empty()
    {
        if Instant::now() > deadline {
            bail!("bench pods not gone within {RUN_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// One run's figures, per round.
#[derive(Default)]
struct Rounds {
    p50_ms: Vec<f64>,
    p99_ms: Vec<f64>,
    all: Vec<Duration>,
}

fn row(name: &str, r: &mut Rounds) -> String {
    let pooled: Summary = summarize(&mut r.all);
    format!(
        "| {name} | {} | {} | {} | {:.0} | {:.0} |",
        pooled.count,
        median_range(&r.p50_ms, 0),
        median_range(&r.p99_ms, 0),
        ms(pooled.p99),
        ms(pooled.max)
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    no_arguments("pod_start_bench", HELP);
    let bin = |n: &str| target_dir().join(n);
    let binaries = Binaries {
        server: bin("bpfk-server"),
        agent: bin("bpfk-agent"),
    };
    for b in [&binaries.server, &binaries.agent] {
        if !b.exists() {
            bail!(
                "{} not built: cargo build --release -p bpfk-server -p bpfk-agent",
                b.display()
            );
        }
    }
    let lab = Lab::start(LabOptions {
        id: format!("psb{}", std::process::id()),
        nodes: 1,
        node_prefix: None,
        binaries,
        log_level: "warn".into(),
        server_args: Vec::new(),
    });
    let pods: Api<Pod> = Api::namespaced(lab.client(), "default");
    let pulled_image = format!("{}/library/busybox:1.36", lab.registry());
    let runs = [
        (
            "cached (busybox:1.36 imported, IfNotPresent)",
            "cached",
            "busybox:1.36",
            "IfNotPresent",
        ),
        (
            "pulled (lab registry, Always: a PullImage per pod)",
            "pulled",
            pulled_image.as_str(),
            "Always",
        ),
    ];
    let mut rounds: Vec<Rounds> = runs.iter().map(|_| Rounds::default()).collect();
    // Rounds interleave the runs, so that load from other builds on the shared cores falls
    // on both alike.
    for round in 0..ROUNDS {
        for ((title, prefix, image, policy), into) in runs.iter().zip(rounds.iter_mut()) {
            let prefix = format!("{prefix}-{round}");
            let mut samples = run_once(&pods, &prefix, image, policy)
                .await
                .context(*title)?;
            let s = summarize(&mut samples);
            eprintln!(
                "round {round} {title}: p50 {:.0} ms, p99 {:.0} ms",
                ms(s.p50),
                ms(s.p99)
            );
            into.p50_ms.push(ms(s.p50));
            into.p99_ms.push(ms(s.p99));
            into.all.extend(samples);
            delete_all(&pods).await?;
        }
    }
    let rows: Vec<String> = runs
        .iter()
        .zip(rounds.iter_mut())
        .map(|((title, ..), r)| row(title, r))
        .collect();
    let text = format!(
        "# Pod start benchmark\n\nOne-node lab cluster (`bpfk_lab::cluster`), {PODS} pods created at once, each `sleep 3600` in the busybox stand-in image; latency = POST answered → pod seen Running (list polled every 100 ms, so figures are rounded up to ~100 ms). Kubelet defaults: serialized pulls, pod sync period 1 s. {ROUNDS} rounds, the two runs interleaved round by round; p50 and p99 are the median of the rounds' figures with [min–max], then p99 and max over all rounds' pods together. The machine's 2 cores were shared with other builds and tests while this ran (which is why rounds interleave and ranges are given). Run with `cargo run --release -p bpfk-bench --bin pod_start_bench` (root); these figures: bpfk-server and bpfk-agent from {}.\n\n| run | pods | p50 ms | p99 ms | p99 ms (all rounds) | max ms |\n|---|---|---|---|---|---|\n{}\n",
        build_profile(),
        rows.join("\n")
    );
    std::fs::write(results_path("pod_start.md"), text)?;
    drop(lab);
    Ok(())
}
