//! What a pod worker does in one sync, decided from what the runtime shows, like the Kubernetes
//! kubelet's `computePodActions`: keep, adopt or (re)create the sandbox (killing a broken one),
//! and per container start, keep, retry a start, restart (after back-off) or leave it
//! terminated. Pure: [`crate::pod_worker`] observes through CRI and carries the actions out.

use std::time::Duration;

use k8s_openapi::api::core::v1::PodSpec;

use crate::status::should_restart;

/// A sandbox of the pod as the runtime lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSeen {
    pub id: String,
    pub ready: bool,
    pub attempt: u32,
}

/// The sandbox the worker ran the pod in, as the runtime shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurrentSandbox {
    /// The worker has none (it just started, or the kubelet restarted).
    None,
    /// The runtime no longer knows it.
    Lost,
    /// The runtime shows it.
    Seen(SandboxSeen),
}

/// What to do about the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxAction {
    /// The current sandbox is ready.
    Keep,
    /// Take over this ready sandbox (left by an earlier kubelet).
    Adopt { id: String, attempt: u32 },
    /// Create a sandbox with `attempt`, after stopping `kill` (a sandbox no longer ready).
    Create { kill: Option<String>, attempt: u32 },
}

/// The sandbox step: `listed` are the pod's sandboxes newest first (looked at only when the
/// worker has none).
pub fn sandbox_action(current: &CurrentSandbox, listed: &[SandboxSeen]) -> SandboxAction {
    match current {
        CurrentSandbox::Seen(s) if s.ready => SandboxAction::Keep,
        CurrentSandbox::Seen(s) => SandboxAction::Create {
            kill: Some(s.id.clone()),
            attempt: s.attempt + 1,
        },
        CurrentSandbox::Lost => SandboxAction::Create {
            kill: None,
            attempt: 1,
        },
        CurrentSandbox::None => match listed.iter().find(|s| s.ready) {
            Some(s) => SandboxAction::Adopt {
                id: s.id.clone(),
                attempt: s.attempt,
            },
            None => SandboxAction::Create {
                kill: None,
                attempt: listed.iter().map(|s| s.attempt + 1).max().unwrap_or(0),
            },
        },
    }
}

/// The runtime state of a container's latest attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeState {
    Running,
    /// Created, but its start failed.
    Created,
    /// Exited (or in a state the runtime cannot tell).
    Exited,
}

/// A container's latest attempt as the runtime shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerSeen {
    pub state: RuntimeState,
    pub attempt: u32,
    pub exit_code: i32,
    /// Unix nanoseconds.
    pub finished_at: i64,
}

/// What to do about one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerAction {
    /// None exists yet: create and start attempt 0.
    Start,
    /// Running: nothing to do.
    Keep,
    /// Created by an earlier sync whose start failed: start it again.
    RetryStart,
    /// Exited and the restart policy keeps it so.
    Leave,
    /// Exited: create and start `attempt`.
    Restart { attempt: u32 },
    /// Exited: restart once `delay` after its exit has passed.
    BackOff { delay: Duration },
}

/// Crash back-off: the first restart is immediate, then `base` doubling up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackOff {
    pub base: Duration,
    pub max: Duration,
}

impl BackOff {
    /// The wait before starting attempt `next_attempt` of a crashed container.
    pub fn delay(&self, next_attempt: u32) -> Duration {
        if next_attempt <= 1 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (next_attempt - 2).min(16);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// The container step under `policy` (`Always`, `OnFailure` or `Never`) at `now_nanos`.
pub fn container_action(
    latest: Option<&ContainerSeen>,
    policy: &str,
    backoff: BackOff,
    now_nanos: i64,
) -> ContainerAction {
    let Some(c) = latest else {
        return ContainerAction::Start;
    };
    match c.state {
        RuntimeState::Running => ContainerAction::Keep,
        RuntimeState::Created => ContainerAction::RetryStart,
        RuntimeState::Exited if !should_restart(policy, c.exit_code) => ContainerAction::Leave,
        RuntimeState::Exited => {
            let delay = backoff.delay(c.attempt + 1);
            let due = c.finished_at.saturating_add(delay.as_nanos() as i64);
            if now_nanos >= due {
                ContainerAction::Restart {
                    attempt: c.attempt + 1,
                }
            } else {
                ContainerAction::BackOff { delay }
            }
        }
    }
}

/// The pod's restart policy (default `Always`).
pub fn restart_policy(spec: &PodSpec) -> &str {
    spec.restart_policy.as_deref().unwrap_or("Always")
}

/// The policy init containers run under: each must succeed, so `Always` restarts them only on
/// failure.
pub fn init_policy(policy: &str) -> &str {
    if policy == "Always" {
        "OnFailure"
    } else {
        policy
    }
}

/// The container actions of one sync, in spec order; `None` for a container that waits for
/// the init containers before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodActions {
    pub init_containers: Vec<(String, Option<ContainerAction>)>,
    pub containers: Vec<(String, Option<ContainerAction>)>,
}

/// The container steps: init containers one after the other, each to success, then the
/// containers; `seen` gives a container's latest attempt by name.
pub fn compute_pod_actions<'a>(
    spec: &PodSpec,
    seen: impl Fn(&str) -> Option<&'a ContainerSeen>,
    backoff: BackOff,
    now_nanos: i64,
) -> PodActions {
    let policy = restart_policy(spec);
    let mut initialized = true;
    let mut init_containers = Vec::new();
    for c in spec.init_containers.iter().flatten() {
        let action = initialized
            .then(|| container_action(seen(&c.name), init_policy(policy), backoff, now_nanos));
        let succeeded = seen(&c.name).is_some_and(|s| s.exit_code == 0);
        initialized = action == Some(ContainerAction::Leave) && succeeded;
        init_containers.push((c.name.clone(), action));
    }
    let containers = spec
        .containers
        .iter()
        .map(|c| {
            let action =
                initialized.then(|| container_action(seen(&c.name), policy, backoff, now_nanos));
            (c.name.clone(), action)
        })
        .collect();
    PodActions {
        init_containers,
        containers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SEC: i64 = 1_000_000_000;
    const BACKOFF: BackOff = BackOff {
        base: Duration::from_secs(10),
        max: Duration::from_secs(300),
    };

    fn sandbox(id: &str, ready: bool, attempt: u32) -> SandboxSeen {
        SandboxSeen {
            id: id.into(),
            ready,
            attempt,
        }
    }

    fn exited(attempt: u32, exit_code: i32, finished_s: i64) -> ContainerSeen {
        ContainerSeen {
            state: RuntimeState::Exited,
            attempt,
            exit_code,
            finished_at: finished_s * SEC,
        }
    }

    #[test]
    fn restart_delays_double_up_to_the_cap() {
        let d: Vec<u64> = (1..=8).map(|a| BACKOFF.delay(a).as_secs()).collect();
        assert_eq!(d, [0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(BACKOFF.delay(1000), BACKOFF.max);
    }

    #[test]
    fn sandbox_kept_adopted_or_recreated() {
        let ready = CurrentSandbox::Seen(sandbox("a", true, 0));
        assert_eq!(sandbox_action(&ready, &[]), SandboxAction::Keep);
        let broken = CurrentSandbox::Seen(sandbox("a", false, 2));
        let kill = Some("a".to_string());
        assert_eq!(
            sandbox_action(&broken, &[]),
            SandboxAction::Create { kill, attempt: 3 }
        );
        let lost = sandbox_action(&CurrentSandbox::Lost, &[sandbox("x", true, 0)]);
        assert_eq!(
            lost,
            SandboxAction::Create {
                kill: None,
                attempt: 1
            }
        );
        let listed = [sandbox("old", false, 4), sandbox("live", true, 1)];
        let adopt = sandbox_action(&CurrentSandbox::None, &listed);
        let live = SandboxAction::Adopt {
            id: "live".into(),
            attempt: 1,
        };
        assert_eq!(adopt, live);
        let dead = [sandbox("b", false, 1), sandbox("c", false, 4)];
        let after_dead = sandbox_action(&CurrentSandbox::None, &dead);
        assert_eq!(
            after_dead,
            SandboxAction::Create {
                kill: None,
                attempt: 5
            }
        );
        let first = sandbox_action(&CurrentSandbox::None, &[]);
        assert_eq!(
            first,
            SandboxAction::Create {
                kill: None,
                attempt: 0
            }
        );
    }

    #[test]
    fn containers_follow_state_policy_and_back_off() {
        let act = |c: Option<&ContainerSeen>, policy, now_s| {
            container_action(c, policy, BACKOFF, now_s * SEC)
        };
        assert_eq!(act(None, "Always", 0), ContainerAction::Start);
        let running = ContainerSeen {
            state: RuntimeState::Running,
            ..exited(0, 0, 0)
        };
        assert_eq!(act(Some(&running), "Always", 0), ContainerAction::Keep);
        let created = ContainerSeen {
            state: RuntimeState::Created,
            ..exited(0, 0, 0)
        };
        assert_eq!(act(Some(&created), "Never", 0), ContainerAction::RetryStart);
        // the first restart is immediate
        assert_eq!(
            act(Some(&exited(0, 1, 100)), "Always", 100),
            ContainerAction::Restart { attempt: 1 }
        );
        // the second waits 10s after the exit
        let backoff = ContainerAction::BackOff {
            delay: Duration::from_secs(10),
        };
        assert_eq!(act(Some(&exited(1, 1, 100)), "Always", 105), backoff);
        assert_eq!(
            act(Some(&exited(1, 1, 100)), "Always", 110),
            ContainerAction::Restart { attempt: 2 }
        );
        assert_eq!(
            act(Some(&exited(0, 0, 100)), "OnFailure", 200),
            ContainerAction::Leave
        );
        assert_eq!(
            act(Some(&exited(0, 1, 100)), "OnFailure", 200),
            ContainerAction::Restart { attempt: 1 }
        );
        assert_eq!(
            act(Some(&exited(0, 1, 100)), "Never", 200),
            ContainerAction::Leave
        );
    }

    fn spec(init: &[&str], containers: &[&str], policy: &str) -> PodSpec {
        let list = |names: &[&str]| -> serde_json::Value {
            names
                .iter()
                .map(|n| serde_json::json!({"name": n}))
                .collect()
        };
        serde_json::from_value(serde_json::json!({
            "initContainers": list(init), "containers": list(containers), "restartPolicy": policy
        }))
        .unwrap()
    }

    fn names_and_actions(
        v: &[(String, Option<ContainerAction>)],
    ) -> Vec<(&str, Option<ContainerAction>)> {
        v.iter().map(|(n, a)| (n.as_str(), *a)).collect()
    }

    #[test]
    fn init_containers_run_one_after_the_other_before_the_containers() {
        let spec = spec(&["setup", "migrate"], &["app"], "Always");
        let mut seen: HashMap<&str, ContainerSeen> = HashMap::new();
        let compute = |seen: &HashMap<&str, ContainerSeen>| {
            compute_pod_actions(&spec, |n| seen.get(n), BACKOFF, 1000 * SEC)
        };
        let a = compute(&seen);
        assert_eq!(
            names_and_actions(&a.init_containers),
            [("setup", Some(ContainerAction::Start)), ("migrate", None)]
        );
        assert_eq!(names_and_actions(&a.containers), [("app", None)]);
        // setup failed: restarted (Always means OnFailure for init containers), migrate waits
        seen.insert("setup", exited(0, 1, 999));
        let a = compute(&seen);
        assert_eq!(
            a.init_containers[0].1,
            Some(ContainerAction::Restart { attempt: 1 })
        );
        assert_eq!(a.init_containers[1].1, None);
        // setup succeeded: left alone, migrate starts
        seen.insert("setup", exited(1, 0, 999));
        let a = compute(&seen);
        assert_eq!(a.init_containers[0].1, Some(ContainerAction::Leave));
        assert_eq!(a.init_containers[1].1, Some(ContainerAction::Start));
        assert_eq!(a.containers[0].1, None);
        seen.insert("migrate", exited(0, 0, 999));
        let a = compute(&seen);
        assert_eq!(
            names_and_actions(&a.containers),
            [("app", Some(ContainerAction::Start))]
        );
    }

    #[test]
    fn a_failed_init_container_under_never_blocks_the_pod() {
        let spec = spec(&["setup"], &["app"], "Never");
        let failed = exited(0, 2, 0);
        let a = compute_pod_actions(&spec, |n| (n == "setup").then_some(&failed), BACKOFF, 0);
        assert_eq!(a.init_containers[0].1, Some(ContainerAction::Leave));
        assert_eq!(a.containers[0].1, None);
    }
}
