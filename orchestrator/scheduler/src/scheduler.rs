//! The scheduling loop: one task owns the cache and the queue; watch events, binding results
//! and a retry tick are handled in turn; bindings are written by spawned tasks, bounded by a
//! semaphore.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, Semaphore};

use crate::binder::{bind, pod_reference, report_scheduled, report_unschedulable, BindResult};
use crate::cache::{Cache, PodFacts};
use crate::config::SchedulerConfig;
use crate::error::{Error, Result};
use crate::filter_score::{select_node, Weights};
use crate::metrics::{metrics, AttemptResult};
use crate::queue::{Queue, Timing};

/// Pods scheduled before the loop looks at events again.
const BATCH: usize = 128;

struct Outcome {
    uid: String,
    result: BindResult,
    /// From the decision to the binding's answer (semaphore wait included).
    took: Duration,
    /// The whole attempt: deciding, then binding.
    attempt: Duration,
}

/// What the loop did since the last report (logged at debug level every [`STATS_PERIOD`]).
#[derive(Default)]
struct Stats {
    pod_events: u64,
    node_events: u64,
    batches: u64,
    scheduled: u64,
    unschedulable: u64,
    deciding: Duration,
    bound: u64,
    bind_total: Duration,
    bind_max: Duration,
    in_flight: u64,
}

const STATS_PERIOD: Duration = Duration::from_secs(5);

impl Stats {
    fn report(&mut self, queue: &Queue) {
        if self.pod_events + self.node_events + self.scheduled + self.bound == 0 {
            return;
        }
        let per = |d: Duration, n: u64| d.as_secs_f64() * 1e3 / n.max(1) as f64;
        tracing::debug!(
            pod_events = self.pod_events,
            node_events = self.node_events,
            batches = self.batches,
            scheduled = self.scheduled,
            unschedulable = self.unschedulable,
            decide_ms_avg = format!(
                "{:.3}",
                per(self.deciding, self.scheduled + self.unschedulable)
            ),
            bound = self.bound,
            bind_ms_avg = format!("{:.1}", per(self.bind_total, self.bound)),
            bind_ms_max = format!("{:.1}", self.bind_max.as_secs_f64() * 1e3),
            in_flight = self.in_flight,
            active = queue.active_len(),
            "scheduler loop stats"
        );
        *self = Stats {
            in_flight: self.in_flight,
            ..Default::default()
        };
    }
}

struct Loop {
    client: Client,
    /// Records `Scheduled` and `FailedScheduling`.
    recorder: bpfk_common::events::Recorder,
    config: SchedulerConfig,
    cache: Cache,
    queue: Queue,
    weights: Weights,
    start: usize,
    rng: StdRng,
    binds: Arc<Semaphore>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    pods_seen: Option<HashSet<String>>,
    nodes_seen: Option<HashSet<String>>,
    pods_synced: bool,
    nodes_synced: bool,
    stats: Stats,
}

fn pod_uid(pod: &Pod) -> Option<String> {
    pod.metadata.uid.clone()
}

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

impl Loop {
    fn responsible(&self, pod: &Pod) -> bool {
        let name = pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref());
        match name {
            None | Some("") => self.config.scheduler_name == "default-scheduler",
            Some(n) => n == self.config.scheduler_name,
        }
    }

    fn on_pod(&mut self, pod: Arc<Pod>) {
        let Some(uid) = pod_uid(&pod) else {
            return;
        };
        if let Some(seen) = self.pods_seen.as_mut() {
            seen.insert(uid.clone());
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        if pod.metadata.deletion_timestamp.is_some() || finished(&pod) {
            self.queue.remove(&uid);
            if self.cache.remove_pod(&uid) {
                self.queue.cluster_changed();
            }
            return;
        }
        match node {
            Some(node) => {
                self.queue.remove(&uid);
                self.cache.add_bound_pod(&uid, &node, &pod);
            }
            None => {
                if self.responsible(&pod) && !self.cache.is_placed(&uid) {
                    self.queue.upsert(&uid, pod);
                }
            }
        }
    }

    fn on_pod_deleted(&mut self, pod: &Pod) {
        let Some(uid) = pod_uid(pod) else {
            return;
        };
        self.queue.remove(&uid);
        if self.cache.remove_pod(&uid) {
            self.queue.cluster_changed();
        }
    }

    fn on_node(&mut self, node: Node) {
        let Some(name) = node.metadata.name.clone() else {
            return;
        };
        if let Some(seen) = self.nodes_seen.as_mut() {
            seen.insert(name);
        }
        if self.cache.upsert_node(Arc::new(node)) {
            self.queue.cluster_changed();
        }
    }

    fn pod_event(&mut self, ev: watcher::Event<Arc<Pod>>) {
        match ev {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => self.on_pod(p),
            watcher::Event::Delete(p) => self.on_pod_deleted(&p),
            watcher::Event::Init => self.pods_seen = Some(HashSet::new()),
            watcher::Event::InitDone => {
                if let Some(seen) = self.pods_seen.take() {
                    for uid in self.cache.bound_uids() {
                        if !seen.contains(&uid) {
                            self.cache.remove_pod(&uid);
                        }
                    }
                    self.queue.retain(|uid| seen.contains(uid));
                }
                self.pods_synced = true;
                self.queue.cluster_changed();
            }
        }
    }

    fn node_event(&mut self, ev: watcher::Event<Node>) {
        match ev {
            watcher::Event::Apply(n) | watcher::Event::InitApply(n) => self.on_node(n),
            watcher::Event::Delete(n) => {
                if let Some(name) = n.metadata.name.as_deref() {
                    self.cache.remove_node(name);
                }
            }
            watcher::Event::Init => self.nodes_seen = Some(HashSet::new()),
            watcher::Event::InitDone => {
                if let Some(seen) = self.nodes_seen.take() {
                    let gone: Vec<String> = self
                        .cache
                        .node_names()
                        .filter(|n| !seen.contains(*n))
                        .cloned()
                        .collect();
                    for n in gone {
                        self.cache.remove_node(&n);
                    }
                }
                self.nodes_synced = true;
                self.queue.cluster_changed();
            }
        }
    }

    fn on_outcome(&mut self, o: Outcome) {
        let result = match o.result {
            BindResult::Bound => AttemptResult::Scheduled,
            BindResult::Gone | BindResult::Failed(_) => AttemptResult::Error,
        };
        metrics().attempt(&self.config.scheduler_name, result, o.attempt);
        self.stats.in_flight = self.stats.in_flight.saturating_sub(1);
        self.stats.bound += 1;
        self.stats.bind_total += o.took;
        self.stats.bind_max = self.stats.bind_max.max(o.took);
        match o.result {
            BindResult::Bound => {
                self.queue.remove(&o.uid);
            }
            BindResult::Gone => {
                self.cache.forget_assumed(&o.uid);
                self.queue.backoff(&o.uid);
            }
            BindResult::Failed(e) => {
                tracing::warn!(uid = %o.uid, error = %e, "binding failed, will retry");
                self.cache.forget_assumed(&o.uid);
                self.queue.backoff(&o.uid);
            }
        }
    }

    /// Schedules up to [`BATCH`] active pods.
    fn schedule_batch(&mut self) {
        if !(self.pods_synced && self.nodes_synced) {
            return;
        }
        self.stats.batches += 1;
        for _ in 0..BATCH {
            let Some((uid, pod)) = self.queue.pop() else {
                return;
            };
            let facts = PodFacts::of(&pod);
            let deciding = Instant::now();
            let choice = select_node(
                &self.cache,
                &pod,
                &facts,
                &mut self.start,
                self.config.percentage_of_nodes_to_score,
                &self.weights,
                &mut self.rng,
            );
            self.stats.deciding += deciding.elapsed();
            let ns = pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let name = pod.metadata.name.clone().unwrap_or_default();
            match choice {
                Ok(node) => {
                    tracing::debug!(pod = %format!("{ns}/{name}"), %node, "scheduled");
                    self.cache.assume(&uid, &node, facts);
                    self.stats.scheduled += 1;
                    self.stats.in_flight += 1;
                    let client = self.client.clone();
                    let sem = self.binds.clone();
                    let tx = self.outcomes.clone();
                    let decided = Instant::now();
                    let (recorder, regarding) = (self.recorder.clone(), pod_reference(&pod));
                    tokio::spawn(async move {
                        let permit = sem.acquire_owned().await;
                        let result = bind(client, &ns, &name, &uid, &node).await;
                        let (took, attempt) = (decided.elapsed(), deciding.elapsed());
                        let bound = matches!(result, BindResult::Bound);
                        let _ = tx.send(Outcome {
                            uid,
                            result,
                            took,
                            attempt,
                        });
                        drop(permit);
                        if bound {
                            report_scheduled(&recorder, &regarding, &node).await;
                        }
                    });
                }
                Err(fit) => {
                    let profile = &self.config.scheduler_name;
                    let result = AttemptResult::Unschedulable;
                    metrics().attempt(profile, result, deciding.elapsed());
                    self.stats.unschedulable += 1;
                    let message = fit.to_string();
                    tracing::debug!(pod = %format!("{ns}/{name}"), %message, "unschedulable");
                    if self.queue.unschedulable(&uid, &message) {
                        let client = self.client.clone();
                        let recorder = self.recorder.clone();
                        tokio::spawn(async move {
                            report_unschedulable(client, &recorder, &pod, &message).await;
                        });
                    }
                }
            }
        }
    }
}

fn boxed<K: Send + 'static>(
    s: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
) -> std::pin::Pin<Box<dyn Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send>> {
    Box::pin(s)
}

/// Pod watch events as the scheduling loop takes them: objects shared, not copied, so a
/// process whose controllers already watch pods can hand the scheduler the same ones.
pub type PodEvents = std::pin::Pin<
    Box<dyn Stream<Item = std::result::Result<watcher::Event<Arc<Pod>>, watcher::Error>> + Send>,
>;

/// Runs the scheduler with its own pod and node watches until they end (they retry with
/// backoff on errors).
pub async fn run(client: Client, config: SchedulerConfig) -> Result<()> {
    let pods: Api<Pod> = Api::all(client.clone());
    let pod_events = watcher(pods, watcher::Config::default())
        .default_backoff()
        .map(|ev| ev.map(shared));
    run_with_pods(client, config, Box::pin(pod_events)).await
}

/// A watch event with its object behind an `Arc`.
fn shared(ev: watcher::Event<Pod>) -> watcher::Event<Arc<Pod>> {
    match ev {
        watcher::Event::Apply(p) => watcher::Event::Apply(Arc::new(p)),
        watcher::Event::Delete(p) => watcher::Event::Delete(Arc::new(p)),
        watcher::Event::InitApply(p) => watcher::Event::InitApply(Arc::new(p)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// Runs the scheduler on `pod_events` (watch events of all pods, with the watcher's
/// Init/InitApply/InitDone relist semantics) and its own node watch.
pub async fn run_with_pods(
    client: Client,
    config: SchedulerConfig,
    mut pod_events: PodEvents,
) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node_events = boxed(watcher(nodes, watcher::Config::default()).default_backoff());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let timing = Timing {
        initial_backoff: Duration::from_millis(500).min(config.max_backoff),
        max_backoff: config.max_backoff,
        unschedulable_flush: config.unschedulable_retry,
    };
    let recorder = bpfk_common::events::recorder(client.clone(), &config.scheduler_name);
    let mut l = Loop {
        recorder,
        client,
        binds: Arc::new(Semaphore::new(config.bind_concurrency.max(1))),
        config,
        cache: Cache::default(),
        queue: Queue::new(timing),
        weights: Weights::default(),
        start: 0,
        rng: StdRng::from_entropy(),
        outcomes: tx,
        pods_seen: None,
        nodes_seen: None,
        pods_synced: false,
        nodes_synced: false,
        stats: Stats::default(),
    };
    let mut report = tokio::time::interval(STATS_PERIOD);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(scheduler = %l.config.scheduler_name, "scheduler started");
    loop {
        let ready = l.pods_synced && l.nodes_synced && l.queue.has_active();
        tokio::select! {
            biased;
            ev = node_events.next() => match ev {
                Some(Ok(ev)) => {
                    l.stats.node_events += 1;
                    l.node_event(ev)
                }
                Some(Err(e)) => tracing::warn!(error = %e, "node watch error"),
                None => return Err(Error::WatchEnded("nodes")),
            },
            ev = pod_events.next() => match ev {
                Some(Ok(ev)) => {
                    l.stats.pod_events += 1;
                    l.pod_event(ev)
                }
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch error"),
                None => return Err(Error::WatchEnded("pods")),
            },
            Some(o) = rx.recv() => l.on_outcome(o),
            _ = tick.tick() => {
                l.queue.flush(Instant::now());
                metrics().set_pending(&l.queue.pending());
            }
            _ = report.tick() => l.stats.report(&l.queue),
            _ = std::future::ready(()), if ready => l.schedule_batch(),
        }
    }
}
