//! Container lifecycle hooks as the Kubernetes kubelet runs them: `postStart` right after a
//! container started (a failure kills the container, event `FailedPostStartHook`), and
//! `preStop` before a container is stopped, inside the grace period, so the kill order is
//! preStop → SIGTERM → SIGKILL at the end of the grace period (a failure is event
//! `FailedPreStopHook`, and the stop goes on). Handlers (exec, httpGet, sleep) run through
//! [`crate::prober::handler`].

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};

use crate::cri::CriClient;
use crate::prober::handler::{self, Action, Target};
use crate::prober::Outcome;

/// How long a postStart hook may run (Kubernetes bounds it only by the pod worker; bpfk
/// gives up after this).
pub const POST_START_TIMEOUT: Duration = Duration::from_secs(120);
/// The least a container gets between SIGTERM and SIGKILL after its preStop hook used up
/// the grace period (Kubernetes: 2 s).
pub const MIN_TERM_GRACE: Duration = Duration::from_secs(2);

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PostStart,
    PreStop,
}

impl Hook {
    fn of(self, c: &Container) -> Option<&LifecycleHandler> {
        let l = c.lifecycle.as_ref()?;
        match self {
            Hook::PostStart => l.post_start.as_ref(),
            Hook::PreStop => l.pre_stop.as_ref(),
        }
    }

    /// The Warning event's reason when it fails.
    pub fn failed_reason(self) -> &'static str {
        match self {
            Hook::PostStart => "FailedPostStartHook",
            Hook::PreStop => "FailedPreStopHook",
        }
    }
}

/// Runs `container`'s `hook` (if it has one) against attempt `container_id` within
/// `limit`; the failure message when it failed.
pub async fn run_hook(
    hook: Hook,
    container: &Container,
    cri: &CriClient,
    container_id: &str,
    pod_ip: Option<&str>,
    limit: Duration,
) -> Option<String> {
    let action = hook.of(container).and_then(Action::of_hook)?;
    let target = Target {
        cri: cri.clone(),
        container_id: container_id.into(),
        pod_ip: pod_ip.map(str::to_string),
        ports: container.ports.clone().unwrap_or_default(),
    };
    tracing::debug!(container = %container.name, ?hook, "running lifecycle hook");
    match handler::run(&action, &target, limit).await {
        Outcome::Success => None,
        Outcome::Failure(message) => Some(describe(&action, &message)),
    }
}

/// Kubernetes' wording of a failed hook.
fn describe(action: &Action, message: &str) -> String {
    match action {
        Action::Exec(e) => format!(
            "Exec lifecycle hook ({:?}) failed - error: {message}",
            e.command.clone().unwrap_or_default()
        ),
        Action::HttpGet(h) => format!(
            "HTTP lifecycle hook ({}) failed - error: {message}",
            h.path.as_deref().unwrap_or("/")
        ),
        _ => format!("lifecycle hook failed - error: {message}"),
    }
}

/// The grace left for SIGTERM → SIGKILL after a preStop hook that started at `started`
/// under a grace period of `grace` seconds (at least [`MIN_TERM_GRACE`]).
pub fn remaining_grace(grace: i64, started: Instant, now: Instant) -> i64 {
    let total = Duration::from_secs(grace.max(0) as u64);
    let left = total.saturating_sub(now.saturating_duration_since(started));
    left.max(MIN_TERM_GRACE).as_secs() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_keeps_two_seconds_after_a_long_pre_stop_hook() {
        let t0 = Instant::now();
        assert_eq!(remaining_grace(30, t0, t0 + Duration::from_secs(10)), 20);
        assert_eq!(remaining_grace(30, t0, t0 + Duration::from_secs(29)), 2);
        assert_eq!(remaining_grace(5, t0, t0 + Duration::from_secs(60)), 2);
    }

    #[test]
    fn hooks_are_found_and_described() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "app",
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo bye"]}},
                          "postStart": {"httpGet": {"path": "/started", "port": 80}}}
        }))
        .unwrap();
        let pre = Hook::PreStop.of(&c).and_then(Action::of_hook).unwrap();
        assert_eq!(
            describe(&pre, "exit 1"),
            "Exec lifecycle hook ([\"sh\", \"-c\", \"echo bye\"]) failed - error: exit 1"
        );
        let post = Hook::PostStart.of(&c).and_then(Action::of_hook).unwrap();
        assert!(describe(&post, "503").starts_with("HTTP lifecycle hook (/started) failed"));
        assert!(Hook::PreStop.of(&Container::default()).is_none());
    }
}
