//! The queue of pods waiting to be scheduled: active pods, pods in flight (being bound),
//! pods backing off after an error and unschedulable pods waiting for the cluster to change.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

/// Where a pod stands in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting in the active queue.
    Active,
    /// A binding was decided and is being written.
    InFlight,
    /// Waiting for its backoff to expire.
    Backoff,
    /// Fits nowhere; waits for a cluster change (then backoff) or the periodic flush.
    Unschedulable,
}

/// One queued pod.
#[derive(Debug)]
pub struct Entry {
    /// The newest version of the pod seen.
    pub pod: Arc<Pod>,
    /// Its state.
    pub state: State,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it was last tried.
    pub last_attempt: Option<Instant>,
    /// The last unschedulable message reported for it.
    pub last_message: Option<String>,
}

/// Timing of retries.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// First backoff.
    pub initial_backoff: Duration,
    /// Backoff cap.
    pub max_backoff: Duration,
    /// An unschedulable pod is retried at least this often.
    pub unschedulable_flush: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            unschedulable_flush: Duration::from_secs(30),
        }
    }
}

impl Timing {
    /// Backoff after `attempts` failed attempts: doubling from the initial value, capped.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(16);
        self.initial_backoff
            .saturating_mul(1u32 << shift)
            .min(self.max_backoff)
    }
}

/// The scheduling queue, keyed by pod uid.
#[derive(Debug, Default)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    active: VecDeque<String>,
    timing: Timing,
}

fn same_spec(a: &Pod, b: &Pod) -> bool {
    a.spec == b.spec && a.metadata.labels == b.metadata.labels
}

impl Queue {
    /// A queue with the given retry timing.
    pub fn new(timing: Timing) -> Self {
        Queue {
            timing,
            ..Default::default()
        }
    }

    /// Adds a new pending pod or records a newer version of a queued one. An unschedulable
    /// pod whose spec changed becomes active again.
    pub fn upsert(&mut self, uid: &str, pod: Arc<Pod>) {
        match self.entries.get_mut(uid) {
            Some(e) => {
                let changed = !same_spec(&e.pod, &pod);
                e.pod = pod;
                if changed && matches!(e.state, State::Unschedulable | State::Backoff) {
                    e.state = State::Active;
                    self.active.push_back(uid.to_string());
                }
            }
            None => {
                self.entries.insert(
                    uid.to_string(),
                    Entry {
                        pod,
                        state: State::Active,
                        attempts: 0,
                        last_attempt: None,
                        last_message: None,
                    },
                );
                self.active.push_back(uid.to_string());
            }
        }
    }

    /// Forgets a pod (bound, deleted or no longer ours).
    pub fn remove(&mut self, uid: &str) -> Option<Entry> {
        self.entries.remove(uid)
    }

    /// Takes the next active pod and marks it in flight.
    pub fn pop(&mut self) -> Option<(String, Arc<Pod>)> {
        while let Some(uid) = self.active.pop_front() {
            if let Some(e) = self.entries.get_mut(&uid) {
                if e.state == State::Active {
                    e.state = State::InFlight;
                    e.last_attempt = Some(Instant::now());
                    return Some((uid, e.pod.clone()));
                }
            }
        }
        None
    }

    /// Whether an active pod is waiting.
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// How many pods wait in the active queue.
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// How many pods wait in each of `Active`, `Backoff` and `Unschedulable` (the
    /// `scheduler_pending_pods` queues `active`, `backoff` and `unschedulable`).
    pub fn pending(&self) -> [(&'static str, usize); 3] {
        let count = |state: State| self.entries.values().filter(|e| e.state == state).count();
        [
            ("active", count(State::Active)),
            ("backoff", count(State::Backoff)),
            ("unschedulable", count(State::Unschedulable)),
        ]
    }

    /// A queued pod's entry.
    pub fn get_mut(&mut self, uid: &str) -> Option<&mut Entry> {
        self.entries.get_mut(uid)
    }

    /// The attempt failed for a transient reason: retry after a backoff.
    pub fn backoff(&mut self, uid: &str) {
        if let Some(e) = self.entries.get_mut(uid) {
            e.attempts += 1;
            e.state = State::Backoff;
        }
    }

    /// The pod fits nowhere. Returns whether `message` differs from the last one reported.
    pub fn unschedulable(&mut self, uid: &str, message: &str) -> bool {
        let Some(e) = self.entries.get_mut(uid) else {
            return false;
        };
        e.attempts += 1;
        e.state = State::Unschedulable;
        if e.last_message.as_deref() == Some(message) {
            return false;
        }
        e.last_message = Some(message.to_string());
        true
    }

    /// Something changed in the cluster that may make unschedulable pods fit: they retry once
    /// their backoff has passed.
    pub fn cluster_changed(&mut self) {
        for e in self.entries.values_mut() {
            if e.state == State::Unschedulable {
                e.state = State::Backoff;
            }
        }
    }

    /// Moves pods whose backoff passed, and unschedulable pods not tried for the flush
    /// interval, to the active queue.
    pub fn flush(&mut self, now: Instant) {
        for (uid, e) in self.entries.iter_mut() {
            let since = e
                .last_attempt
                .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
            let due = match e.state {
                State::Backoff => since >= self.timing.backoff(e.attempts),
                State::Unschedulable => since >= self.timing.unschedulable_flush,
                _ => false,
            };
            if due {
                e.state = State::Active;
                self.active.push_back(uid.clone());
            }
        }
    }

    /// Keeps only the entries whose uid satisfies `keep` (used after a relist).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.entries.retain(|uid, _| keep(uid));
    }

    /// Number of queued pods.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(sel: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u"},
                "spec": {"containers": [], "nodeSelector": {"disk": sel}}}))
            .unwrap(),
        )
    }

    #[test]
    fn lifecycle() {
        let timing = Timing {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(4),
            unschedulable_flush: Duration::from_secs(30),
        };
        let mut q = Queue::new(timing);
        q.upsert("u", pod("ssd"));
        let (uid, _) = q.pop().unwrap();
        assert!(q.pop().is_none(), "in flight pods are not handed out twice");
        assert!(q.unschedulable(&uid, "0/1 nodes"));
        assert!(
            !q.unschedulable(&uid, "0/1 nodes"),
            "same message is not reported again"
        );
        // a status-only update does not reactivate it
        q.upsert("u", pod("ssd"));
        assert!(!q.has_active());
        let t0 = q.get_mut("u").unwrap().last_attempt.unwrap();
        q.flush(t0 + Duration::from_secs(10));
        assert!(
            !q.has_active(),
            "not flushed before the unschedulable interval"
        );
        q.cluster_changed();
        q.flush(t0 + Duration::from_millis(100));
        assert!(!q.has_active(), "backoff not yet expired");
        q.flush(t0 + Duration::from_secs(3));
        assert!(q.pop().is_some());
        q.unschedulable("u", "other");
        // a spec change reactivates at once
        q.upsert("u", pod("hdd"));
        assert!(q.pop().is_some());
        q.remove("u");
        assert!(q.is_empty());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let t = Timing::default();
        assert_eq!(t.backoff(1), Duration::from_millis(500));
        assert_eq!(t.backoff(2), Duration::from_secs(1));
        assert_eq!(t.backoff(3), Duration::from_secs(2));
        assert_eq!(t.backoff(30), Duration::from_secs(10));
    }
}
