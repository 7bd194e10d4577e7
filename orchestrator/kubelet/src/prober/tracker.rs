//! A probe's timing and thresholds, and the pure state that turns single outcomes into the
//! probe's result (as the Kubernetes prober worker: a result changes only after
//! `successThreshold` successes or `failureThreshold` failures in a row; a failed liveness
//! or startup probe holds until the container is replaced).

use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;

use super::Kind;

/// When and how often a probe runs and how many outcomes in a row change its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// `v` seconds, or `default` when unset or not positive (Kubernetes' defaults).
fn secs(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(v.filter(|s| *s > 0).map_or(default, |s| s as u64))
}

fn count(v: Option<i32>, default: u32) -> u32 {
    v.filter(|n| *n > 0).map_or(default, |n| n as u32)
}

impl Timing {
    /// The probe's settings with Kubernetes' defaults (delay 0 s, period 10 s, timeout 1 s,
    /// success 1, failure 3); liveness and startup probes succeed after one success.
    pub fn of(probe: &Probe, kind: Kind) -> Timing {
        let success_threshold = match kind {
            Kind::Readiness => count(probe.success_threshold, 1),
            Kind::Liveness | Kind::Startup => 1,
        };
        Timing {
            initial_delay: Duration::from_secs(
                probe.initial_delay_seconds.unwrap_or(0).max(0) as u64
            ),
            period: secs(probe.period_seconds, 10),
            timeout: secs(probe.timeout_seconds, 1),
            success_threshold,
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// A probe's result as the kubelet reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not probed enough yet (startup's initial value).
    Unknown,
    Success,
    Failure,
}

/// The outcome history of one probe of one container attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    kind: Kind,
    timing: Timing,
    verdict: Verdict,
    last: Option<bool>,
    run: u32,
    on_hold: bool,
}

impl Tracker {
    /// Before the first probe: readiness is failing, liveness succeeding, startup unknown.
    pub fn new(kind: Kind, timing: Timing) -> Tracker {
        let verdict = match kind {
            Kind::Readiness => Verdict::Failure,
            Kind::Liveness => Verdict::Success,
            Kind::Startup => Verdict::Unknown,
        };
        Tracker {
            kind,
            timing,
            verdict,
            last: None,
            run: 0,
            on_hold: false,
        }
    }

    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Whether probing stops: a liveness or startup failure (the container gets killed and
    /// a new attempt gets a new tracker), or a startup success (it never probes again).
    pub fn done(&self) -> bool {
        self.on_hold || (self.kind == Kind::Startup && self.verdict == Verdict::Success)
    }

    /// Takes one outcome; returns the new verdict when it changed.
    pub fn observe(&mut self, success: bool) -> Option<Verdict> {
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold = if success {
            self.timing.success_threshold
        } else {
            self.timing.failure_threshold
        };
        if self.run < threshold {
            return None;
        }
        let verdict = if success {
            Verdict::Success
        } else {
            Verdict::Failure
        };
        if !success && self.kind != Kind::Readiness {
            self.on_hold = true;
            self.run = 0;
        }
        let changed = self.verdict != verdict;
        self.verdict = verdict;
        changed.then_some(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(json: serde_json::Value) -> Probe {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn defaults_and_settings() {
        let t = Timing::of(&probe(serde_json::json!({})), Kind::Readiness);
        assert_eq!(
            t,
            Timing {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
        let p = probe(
            serde_json::json!({"initialDelaySeconds": 5, "periodSeconds": 2,
            "timeoutSeconds": 3, "successThreshold": 2, "failureThreshold": 4}),
        );
        let r = Timing::of(&p, Kind::Readiness);
        assert_eq!(
            (r.initial_delay, r.period, r.timeout),
            (
                Duration::from_secs(5),
                Duration::from_secs(2),
                Duration::from_secs(3)
            )
        );
        assert_eq!((r.success_threshold, r.failure_threshold), (2, 4));
        // liveness and startup need one success whatever the spec says
        assert_eq!(Timing::of(&p, Kind::Liveness).success_threshold, 1);
        assert_eq!(Timing::of(&p, Kind::Startup).success_threshold, 1);
    }

    fn timing(success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn readiness_changes_after_thresholds_in_a_row() {
        let mut t = Tracker::new(Kind::Readiness, timing(2, 3));
        assert_eq!(t.verdict(), Verdict::Failure);
        assert_eq!(t.observe(true), None);
        // a failure breaks the run of successes
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(Verdict::Success));
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(Verdict::Failure));
        assert!(!t.done(), "readiness keeps probing while failing");
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(Verdict::Success));
    }

    #[test]
    fn liveness_failure_holds_until_replaced() {
        let mut t = Tracker::new(Kind::Liveness, timing(1, 2));
        assert_eq!(t.verdict(), Verdict::Success);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None);
        assert!(!t.done());
        assert_eq!(t.observe(false), Some(Verdict::Failure));
        assert!(t.done());
    }

    #[test]
    fn startup_is_unknown_until_it_succeeds_once() {
        let mut t = Tracker::new(Kind::Startup, timing(1, 3));
        assert_eq!(t.verdict(), Verdict::Unknown);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), Some(Verdict::Success));
        assert!(
            t.done(),
            "a started container is not probed for startup again"
        );
        let mut failing = Tracker::new(Kind::Startup, timing(1, 2));
        failing.observe(false);
        assert_eq!(failing.observe(false), Some(Verdict::Failure));
        assert!(failing.done());
    }
}
