//! One probe of one container attempt, in its own task (as Kubernetes' prober workers), so
//! a slow probe never delays another: waits out `initialDelaySeconds`, then every
//! `periodSeconds` runs the check, reports each failure as an event and each change of the
//! result into the pod's [`Results`]. Liveness and readiness wait for a startup probe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, Notify};

use super::handler::{self, Action, Target};
use super::tracker::{Timing, Tracker, Verdict};
use super::{Kind, Outcome};

/// Something a probe worker can run once.
pub trait Check: Send + Sync + 'static {
    fn check(&self) -> BoxFuture<'_, Outcome>;
}

/// A probe's handler against its container, bounded by the probe's timeout.
pub struct HandlerCheck {
    pub action: Action,
    pub target: Target,
    pub timeout: Duration,
}

impl Check for HandlerCheck {
    fn check(&self) -> BoxFuture<'_, Outcome> {
        Box::pin(handler::run(&self.action, &self.target, self.timeout))
    }
}

/// The current result of every probe of a pod, by (container, kind), for the container
/// attempt (id) it was found for.
#[derive(Debug, Default)]
pub struct Results {
    verdicts: Mutex<HashMap<(String, Kind), (String, Verdict)>>,
    changed: Notify,
}

impl Results {
    pub fn set(&self, container: &str, kind: Kind, container_id: &str, verdict: Verdict) {
        if let Ok(mut v) = self.verdicts.lock() {
            v.insert((container.into(), kind), (container_id.into(), verdict));
        }
        self.changed.notify_one();
    }

    /// The result of `kind` for attempt `container_id` (None: not probed for it).
    pub fn get(&self, container: &str, kind: Kind, container_id: &str) -> Option<Verdict> {
        let v = self.verdicts.lock().ok()?;
        v.get(&(container.to_string(), kind))
            .filter(|(id, _)| id == container_id)
            .map(|(_, verdict)| *verdict)
    }

    pub fn remove(&self, container: &str, kind: Kind) {
        if let Ok(mut v) = self.verdicts.lock() {
            v.remove(&(container.to_string(), kind));
        }
    }

    /// Resolves once a result changed since the last call.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

/// A failed probe, for the pod's event stream (`Unhealthy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailure {
    pub container: String,
    pub kind: Kind,
    pub message: String,
}

/// What one worker probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeWorker {
    pub container: String,
    pub container_id: String,
    pub kind: Kind,
    pub timing: Timing,
    /// What is left of the initial delay (it counts from the container's start).
    pub delay: Duration,
    /// The container has a startup probe: liveness and readiness wait for its success.
    pub gated_by_startup: bool,
}

impl ProbeWorker {
    fn started(&self, results: &Results) -> bool {
        !self.gated_by_startup
            || self.kind == Kind::Startup
            || results.get(&self.container, Kind::Startup, &self.container_id)
                == Some(Verdict::Success)
    }
}

/// Runs `w` until its result is final (liveness/startup failed, startup succeeded) or the
/// task is aborted (the container attempt ended).
pub async fn run(
    w: ProbeWorker,
    check: Arc<dyn Check>,
    results: Arc<Results>,
    failures: mpsc::UnboundedSender<ProbeFailure>,
) {
    let mut tracker = Tracker::new(w.kind, w.timing);
    results.set(&w.container, w.kind, &w.container_id, tracker.verdict());
    tokio::time::sleep(w.delay).await;
    let mut ticks = tokio::time::interval(w.timing.period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !w.started(&results) {
            continue;
        }
        let outcome = check.check().await;
        if let Outcome::Failure(message) = &outcome {
            // the receiver goes with the pod; nothing to report to then
            let _ = failures.send(ProbeFailure {
                container: w.container.clone(),
                kind: w.kind,
                message: message.clone(),
            });
        }
        if let Some(verdict) = tracker.observe(outcome.is_success()) {
            tracing::debug!(container = %w.container, kind = ?w.kind, ?verdict, "probe result changed");
            results.set(&w.container, w.kind, &w.container_id, verdict);
        }
        if tracker.done() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// Answers from a script (the last answer repeats), each after `latency`, and notes
    /// when it was called.
    struct Scripted {
        answers: Vec<bool>,
        latency: Duration,
        calls: Mutex<Vec<Instant>>,
    }

    impl Scripted {
        fn new(answers: &[bool], latency: Duration) -> Arc<Scripted> {
            Arc::new(Scripted {
                answers: answers.to_vec(),
                latency,
                calls: Mutex::new(Vec::new()),
            })
        }

        fn calls(&self) -> Vec<Instant> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Check for Scripted {
        fn check(&self) -> BoxFuture<'_, Outcome> {
            Box::pin(async move {
                let n = {
                    let mut calls = self.calls.lock().unwrap();
                    calls.push(Instant::now());
                    calls.len() - 1
                };
                tokio::time::sleep(self.latency).await;
                let ok = *self.answers.get(n).or(self.answers.last()).unwrap_or(&true);
                if ok {
                    Outcome::Success
                } else {
                    Outcome::Failure(format!("answer {n}"))
                }
            })
        }
    }

    fn worker(kind: Kind, delay_s: u64, success: u32, failure: u32) -> ProbeWorker {
        ProbeWorker {
            container: "app".into(),
            container_id: "c1".into(),
            kind,
            timing: Timing {
                initial_delay: Duration::from_secs(delay_s),
                period: Duration::from_secs(2),
                timeout: Duration::from_secs(1),
                success_threshold: success,
                failure_threshold: failure,
            },
            delay: Duration::from_secs(delay_s),
            gated_by_startup: false,
        }
    }

    type Spawned = (
        Arc<Results>,
        mpsc::UnboundedReceiver<ProbeFailure>,
        tokio::task::JoinHandle<()>,
    );

    fn spawn(w: ProbeWorker, check: Arc<Scripted>, results: Option<Arc<Results>>) -> Spawned {
        let results = results.unwrap_or_default();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(w, check, results.clone(), tx));
        (results, rx, task)
    }

    async fn at(secs: f64) {
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_follows_the_thresholds_on_the_period_after_the_initial_delay() {
        let start = Instant::now();
        let check = Scripted::new(&[false, true, true, false, false], Duration::ZERO);
        let (results, mut failures, _task) =
            spawn(worker(Kind::Readiness, 3, 2, 2), check.clone(), None);
        let verdict = |r: &Results| r.get("app", Kind::Readiness, "c1");
        at(0.1).await;
        assert_eq!(
            verdict(&results),
            Some(Verdict::Failure),
            "not ready before probing"
        );
        assert!(check.calls().is_empty(), "probed during the initial delay");
        // probes at 3, 5, 7, 9, 11 s
        at(3.0).await;
        assert_eq!(failures.recv().await.unwrap().message, "answer 0");
        at(2.0).await;
        assert_eq!(
            verdict(&results),
            Some(Verdict::Failure),
            "one success of two"
        );
        at(2.0).await;
        assert_eq!(verdict(&results), Some(Verdict::Success));
        at(2.0).await;
        assert_eq!(
            verdict(&results),
            Some(Verdict::Success),
            "one failure of two"
        );
        at(2.0).await;
        assert_eq!(verdict(&results), Some(Verdict::Failure));
        let offsets: Vec<u64> = check
            .calls()
            .iter()
            .map(|t| (*t - start).as_secs())
            .collect();
        assert_eq!(offsets, [3, 5, 7, 9, 11]);
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_stops_after_its_failure() {
        let check = Scripted::new(&[true, false, false], Duration::ZERO);
        let (results, _failures, task) =
            spawn(worker(Kind::Liveness, 0, 1, 2), check.clone(), None);
        at(0.1).await;
        assert_eq!(
            results.get("app", Kind::Liveness, "c1"),
            Some(Verdict::Success)
        );
        at(4.0).await;
        assert_eq!(
            results.get("app", Kind::Liveness, "c1"),
            Some(Verdict::Failure)
        );
        task.await.unwrap();
        assert_eq!(check.calls().len(), 3);
        assert_eq!(results.get("app", Kind::Liveness, "other-attempt"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn startup_holds_liveness_and_readiness_off() {
        let startup = Scripted::new(&[false, false, true], Duration::ZERO);
        let ready = Scripted::new(&[true], Duration::ZERO);
        let (results, _f1, startup_task) =
            spawn(worker(Kind::Startup, 0, 1, 5), startup.clone(), None);
        let gated = ProbeWorker {
            gated_by_startup: true,
            ..worker(Kind::Readiness, 0, 1, 3)
        };
        let (_, _f2, _ready_task) = spawn(gated, ready.clone(), Some(results.clone()));
        at(3.0).await;
        assert!(
            ready.calls().is_empty(),
            "readiness probed before the startup probe succeeded"
        );
        assert_eq!(
            results.get("app", Kind::Startup, "c1"),
            Some(Verdict::Unknown)
        );
        at(2.0).await;
        startup_task.await.unwrap();
        assert_eq!(
            results.get("app", Kind::Startup, "c1"),
            Some(Verdict::Success)
        );
        at(2.1).await;
        assert!(!ready.calls().is_empty());
        assert_eq!(
            results.get("app", Kind::Readiness, "c1"),
            Some(Verdict::Success)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_probe_does_not_delay_another() {
        let slow = Scripted::new(&[true], Duration::from_secs(600));
        let fast = Scripted::new(&[true], Duration::ZERO);
        let (_, _f1, _slow_task) = spawn(worker(Kind::Readiness, 0, 1, 3), slow.clone(), None);
        let other = ProbeWorker {
            container: "sidecar".into(),
            ..worker(Kind::Readiness, 0, 1, 3)
        };
        let (results, _f2, _fast_task) = spawn(other, fast.clone(), None);
        at(5.0).await;
        assert_eq!(slow.calls().len(), 1);
        assert_eq!(fast.calls().len(), 3, "probes at 0, 2 and 4 s");
        assert_eq!(
            results.get("sidecar", Kind::Readiness, "c1"),
            Some(Verdict::Success)
        );
    }
}
