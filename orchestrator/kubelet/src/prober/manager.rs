//! The probes of one pod: a worker task per (container, probe) of each running container
//! attempt, the readiness and startup they report, and the containers whose liveness or
//! startup probe failed (for the pod worker to kill). Probe failures become `Unhealthy`
//! events, written by a task of their own so probing never waits for the API server.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::mpsc;

use bpfk_common::events::{EventType, Recorder};

use super::handler::{Action, Target};
use super::tracker::{Timing, Verdict};
use super::worker::{self, HandlerCheck, ProbeFailure, ProbeWorker, Results};
use super::Kind;
use crate::cri::CriClient;
use crate::events;
use crate::status::ProbeView;

/// A running container attempt the probes look at.
#[derive(Debug, Clone)]
pub struct ProbeTarget<'a> {
    pub container: &'a Container,
    pub container_id: &'a str,
    /// When it started, nanoseconds since the epoch (0: unknown, taken as now).
    pub started_at: i64,
}

/// A worker task, aborted when dropped.
struct Running {
    container_id: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A container whose liveness or startup probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy {
    pub container: String,
    pub container_id: String,
    pub kind: Kind,
}

/// The probes of one pod.
pub struct PodProber {
    cri: CriClient,
    results: Arc<Results>,
    workers: HashMap<(String, Kind), Running>,
    failures: mpsc::UnboundedSender<ProbeFailure>,
    /// Attempts already reported unhealthy (so each is killed once).
    reported: HashSet<String>,
    events_task: tokio::task::JoinHandle<()>,
}

impl Drop for PodProber {
    fn drop(&mut self) {
        self.events_task.abort();
    }
}

/// Records each probe failure as Kubernetes does: Warning `Unhealthy`.
async fn record_failures(
    recorder: Recorder,
    pod: Pod,
    mut rx: mpsc::UnboundedReceiver<ProbeFailure>,
) {
    while let Some(f) = rx.recv().await {
        let message = format!("{} probe failed: {}", f.kind.title(), f.message);
        tracing::info!(pod = ?pod.metadata.name, container = %f.container, %message, "probe failed");
        events::record(&recorder, &pod, EventType::Warning, "Unhealthy", &message).await;
    }
}

/// What is left at `now` of `delay` counted from `started_at` (ns since the epoch).
fn remaining_delay(delay: Duration, started_at: i64, now: SystemTime) -> Duration {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let started = Duration::from_nanos(started_at.max(0) as u64);
    let running_for = if started_at <= 0 {
        Duration::ZERO
    } else {
        now.saturating_sub(started)
    };
    delay.saturating_sub(running_for)
}

impl PodProber {
    /// The prober of `pod`, recording its events with `recorder`.
    pub fn new(cri: CriClient, recorder: Recorder, pod: &Pod) -> PodProber {
        let (failures, rx) = mpsc::unbounded_channel();
        PodProber {
            cri,
            results: Arc::default(),
            workers: HashMap::new(),
            failures,
            reported: HashSet::new(),
            events_task: tokio::spawn(record_failures(recorder, pod.clone(), rx)),
        }
    }

    /// Resolves when a probe result changed (the pod worker then syncs again).
    pub async fn changed(&self) {
        self.results.changed().await
    }

    /// Probe workers for exactly the `running` attempts: new attempts get new workers (their
    /// results start over), containers that are not running lose theirs.
    pub fn sync(&mut self, pod_ip: Option<&str>, running: &[ProbeTarget<'_>]) {
        let mut wanted = HashSet::new();
        for t in running {
            for kind in Kind::ALL {
                let Some(probe) = kind.of(t.container) else {
                    continue;
                };
                let key = (t.container.name.clone(), kind);
                wanted.insert(key.clone());
                if self
                    .workers
                    .get(&key)
                    .is_some_and(|w| w.container_id == t.container_id)
                {
                    continue;
                }
                let Some(action) = Action::of_probe(probe) else {
                    continue;
                };
                let timing = Timing::of(probe, kind);
                let w = ProbeWorker {
                    container: t.container.name.clone(),
                    container_id: t.container_id.to_string(),
                    kind,
                    timing,
                    delay: remaining_delay(timing.initial_delay, t.started_at, SystemTime::now()),
                    gated_by_startup: t.container.startup_probe.is_some(),
                };
                let check = HandlerCheck {
                    action,
                    target: Target {
                        cri: self.cri.clone(),
                        container_id: t.container_id.to_string(),
                        pod_ip: pod_ip.map(str::to_string),
                        ports: t.container.ports.clone().unwrap_or_default(),
                    },
                    timeout: timing.timeout,
                };
                let task = tokio::spawn(worker::run(
                    w,
                    Arc::new(check),
                    self.results.clone(),
                    self.failures.clone(),
                ));
                let running = Running {
                    container_id: t.container_id.to_string(),
                    task,
                };
                self.workers.insert(key, running);
            }
        }
        let gone: Vec<(String, Kind)> = self
            .workers
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.workers.remove(&key);
            self.results.remove(&key.0, key.1);
        }
        let workers = &self.workers;
        self.reported
            .retain(|id| workers.values().any(|w| &w.container_id == id));
    }

    /// Started (startup probe passed or none) and ready (readiness probe passing or none)
    /// for attempt `container_id` of `container`.
    pub fn view(&self, container: &Container, container_id: &str) -> ProbeView {
        let verdict = |kind| self.results.get(&container.name, kind, container_id);
        let started =
            container.startup_probe.is_none() || verdict(Kind::Startup) == Some(Verdict::Success);
        let ready = container.readiness_probe.is_none()
            || verdict(Kind::Readiness) == Some(Verdict::Success);
        ProbeView {
            started,
            ready: started && ready,
        }
    }

    /// Attempts whose liveness or startup probe failed, each reported once.
    pub fn take_unhealthy(&mut self) -> Vec<Unhealthy> {
        let mut out = Vec::new();
        for ((container, kind), w) in &self.workers {
            if *kind == Kind::Readiness || self.reported.contains(&w.container_id) {
                continue;
            }
            if self.results.get(container, *kind, &w.container_id) == Some(Verdict::Failure) {
                out.push(Unhealthy {
                    container: container.clone(),
                    container_id: w.container_id.clone(),
                    kind: *kind,
                });
            }
        }
        for u in &out {
            self.reported.insert(u.container_id.clone());
        }
        out
    }

    /// Stops every worker (the pod is going away).
    pub fn stop(&mut self) {
        self.workers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_delay_counts_from_the_container_start() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let started = |s: u64| Duration::from_secs(s).as_nanos() as i64;
        let delay = Duration::from_secs(10);
        assert_eq!(
            remaining_delay(delay, started(996), now),
            Duration::from_secs(6)
        );
        assert_eq!(remaining_delay(delay, started(900), now), Duration::ZERO);
        assert_eq!(
            remaining_delay(delay, 0, now),
            delay,
            "unknown start: the whole delay"
        );
    }
}
