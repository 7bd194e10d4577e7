//! Pod status computation from what the runtime reports: pure functions, no I/O.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Prefix of container IDs in pod status.
pub const CONTAINER_ID_PREFIX: &str = "containerd://";

/// A container that ran and exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminated {
    pub container_id: String,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// Nanoseconds since the epoch (0 = unknown).
    pub started_at: i64,
    pub finished_at: i64,
}

/// What the kubelet knows about one container of the pod spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// No container yet: why (`ContainerCreating`, `ErrImageNeverPull`, …) and details.
    Waiting { reason: String, message: String },
    /// Created, not started yet.
    Created { container_id: String },
    /// Running since `started_at` (ns).
    Running {
        container_id: String,
        started_at: i64,
    },
    /// Exited and not going to run again.
    Terminated(Terminated),
    /// Exited and will be restarted after a back-off.
    BackOff { last: Terminated, message: String },
}

/// What a running container's probes say (Kubernetes: `started` once its startup probe
/// passed, `ready` while its readiness probe passes). Without probes both are true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeView {
    pub started: bool,
    pub ready: bool,
}

impl Default for ProbeView {
    fn default() -> Self {
        ProbeView {
            started: true,
            ready: true,
        }
    }
}

/// One container's status inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerObservation {
    pub name: String,
    /// The image as the pod spec names it.
    pub image: String,
    /// The runtime's digested reference (empty when unknown).
    pub image_id: String,
    pub restart_count: i32,
    pub observed: Observed,
    /// The previous attempt's end, when there was one.
    pub last_terminated: Option<Terminated>,
    /// Started and ready, when running.
    pub probes: ProbeView,
}

/// Everything the status depends on besides the pod itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObservation {
    pub pod_ip: Option<String>,
    pub host_ip: Option<String>,
    pub start_time: Option<Time>,
    pub containers: Vec<ContainerObservation>,
    /// Init containers, in spec order.
    pub init_containers: Vec<ContainerObservation>,
}

/// `Time` from nanoseconds since the epoch.
pub fn time_from_nanos(nanos: i64) -> Option<Time> {
    if nanos <= 0 {
        return None;
    }
    Timestamp::from_nanosecond(nanos as i128).ok().map(Time)
}

fn terminated_state(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        container_id: Some(format!("{CONTAINER_ID_PREFIX}{}", t.container_id)),
        exit_code: t.exit_code,
        reason: Some(if t.reason.is_empty() {
            if t.exit_code == 0 {
                "Completed".to_string()
            } else {
                "Error".to_string()
            }
        } else {
            t.reason.clone()
        }),
        message: (!t.message.is_empty()).then(|| t.message.clone()),
        started_at: time_from_nanos(t.started_at),
        finished_at: time_from_nanos(t.finished_at),
        signal: None,
    }
}

/// The API ContainerStatus of one observation.
pub fn container_status(c: &ContainerObservation) -> ContainerStatus {
    let waiting = |reason: &str, message: &str| ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: (!message.is_empty()).then(|| message.to_string()),
        }),
        ..Default::default()
    };
    let (state, id, ready, started) = match &c.observed {
        Observed::Waiting { reason, message } => (waiting(reason, message), None, false, false),
        Observed::Created { container_id } => (
            waiting("ContainerCreating", ""),
            Some(container_id.clone()),
            false,
            false,
        ),
        Observed::Running {
            container_id,
            started_at,
        } => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time_from_nanos(*started_at),
                }),
                ..Default::default()
            },
            Some(container_id.clone()),
            c.probes.ready,
            c.probes.started,
        ),
        Observed::Terminated(t) => (
            ContainerState {
                terminated: Some(terminated_state(t)),
                ..Default::default()
            },
            Some(t.container_id.clone()),
            false,
            false,
        ),
        Observed::BackOff { last, message } => (
            waiting("CrashLoopBackOff", message),
            Some(last.container_id.clone()),
            false,
            false,
        ),
    };
    let last_terminated = match &c.observed {
        Observed::BackOff { last, .. } => Some(last),
        _ => c.last_terminated.as_ref(),
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone(),
        container_id: id.map(|id| format!("{CONTAINER_ID_PREFIX}{id}")),
        ready,
        started: Some(started),
        restart_count: c.restart_count,
        state: Some(state),
        last_state: last_terminated.map(|t| ContainerState {
            terminated: Some(terminated_state(t)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod phase from its containers and restart policy (as the kubelet computes it).
pub fn phase(restart_policy: &str, containers: &[ContainerObservation]) -> &'static str {
    let (mut waiting, mut running, mut stopped, mut succeeded, mut failed) = (0, 0, 0, 0, 0);
    for c in containers {
        match &c.observed {
            Observed::Waiting { .. } | Observed::Created { .. } => {
                if c.last_terminated.is_some() {
                    stopped += 1;
                } else {
                    waiting += 1;
                }
            }
            Observed::Running { .. } => running += 1,
            Observed::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                } else {
                    failed += 1;
                }
            }
            Observed::BackOff { .. } => stopped += 1,
        }
    }
    if containers.is_empty() || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    // everything stopped
    match restart_policy {
        "Never" => {
            if failed > 0 {
                "Failed"
            } else {
                "Succeeded"
            }
        }
        "OnFailure" if succeeded == stopped => "Succeeded",
        // Always: restarting
        _ => "Running",
    }
}

fn condition(type_: &str, ok: bool, reason: Option<&str>) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: if ok { None } else { reason.map(str::to_string) },
        ..Default::default()
    }
}

/// Whether an init container finished successfully.
pub fn init_done(c: &ContainerObservation) -> bool {
    matches!(&c.observed, Observed::Terminated(t) if t.exit_code == 0)
}

/// The status to report for `pod`. Condition transition times are carried over from the
/// pod's current status when a condition did not change (so an unchanged status compares
/// equal), and set to `now` otherwise.
pub fn pod_status(pod: &Pod, obs: &PodObservation, now: Time) -> PodStatus {
    let spec = pod.spec.as_ref();
    let restart_policy = spec
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let mut containers: Vec<ContainerStatus> =
        obs.containers.iter().map(container_status).collect();
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    let initialized = obs.init_containers.iter().all(init_done);
    let init_failed = restart_policy == "Never"
        && obs
            .init_containers
            .iter()
            .any(|c| matches!(&c.observed, Observed::Terminated(t) if t.exit_code != 0));
    let mut phase = phase(restart_policy, &obs.containers);
    if init_failed {
        phase = "Failed";
    } else if !initialized {
        phase = "Pending";
    }
    let init_statuses: Vec<ContainerStatus> = obs
        .init_containers
        .iter()
        .map(|c| ContainerStatus {
            ready: init_done(c),
            ..container_status(c)
        })
        .collect();
    let terminal = phase == "Succeeded" || phase == "Failed";
    let all_ready = !obs.containers.is_empty() && containers.iter().all(|c| c.ready);
    let not_ready_reason = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let mut conditions = vec![
        condition("PodScheduled", true, None),
        condition("Initialized", initialized, Some("ContainersNotInitialized")),
        condition("ContainersReady", all_ready, Some(not_ready_reason)),
        condition("Ready", all_ready, Some(not_ready_reason)),
    ];
    if !all_ready {
        let names: Vec<&str> = containers
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.as_str())
            .collect();
        let message = format!("containers with unready status: [{}]", names.join(" "));
        for c in conditions.iter_mut().skip(2) {
            if !terminal {
                c.message = Some(message.clone());
            }
        }
    }
    if !initialized {
        let names: Vec<&str> = init_statuses
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.as_str())
            .collect();
        conditions[1].message = Some(format!(
            "containers with incomplete status: [{}]",
            names.join(" ")
        ));
    }
    let old = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    for c in &mut conditions {
        let previous = old.and_then(|o| o.iter().find(|p| p.type_ == c.type_));
        c.last_transition_time = match previous {
            Some(p) if p.status == c.status => p.last_transition_time.clone().or(Some(now.clone())),
            _ => Some(now.clone()),
        };
    }
    let pod_ips = obs.pod_ip.as_ref().map(|ip| vec![PodIP { ip: ip.clone() }]);
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: obs.host_ip.clone(),
        host_ips: obs
            .host_ip
            .as_ref()
            .map(|ip| vec![k8s_openapi::api::core::v1::HostIP { ip: ip.clone() }]),
        pod_ip: obs.pod_ip.clone(),
        pod_ips,
        start_time: obs.start_time.clone(),
        container_statuses: Some(containers),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        qos_class: pod.status.as_ref().and_then(|s| s.qos_class.clone()),
        ..Default::default()
    }
}

/// Whether an exited container runs again under `restart_policy`.
pub fn should_restart(restart_policy: &str, exit_code: i32) -> bool {
    match restart_policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;

    fn term(code: i32) -> Terminated {
        Terminated {
            container_id: "abc".into(),
            exit_code: code,
            reason: String::new(),
            message: String::new(),
            started_at: 1_700_000_000_000_000_000,
            finished_at: 1_700_000_001_000_000_000,
        }
    }

    fn obs(name: &str, observed: Observed) -> ContainerObservation {
        ContainerObservation {
            name: name.into(),
            image: "busybox".into(),
            image_id: "docker.io/library/busybox@sha256:1".into(),
            restart_count: 0,
            observed,
            last_terminated: None,
            probes: ProbeView::default(),
        }
    }

    fn running(name: &str) -> ContainerObservation {
        obs(
            name,
            Observed::Running {
                container_id: format!("id-{name}"),
                started_at: 1_700_000_000_000_000_000,
            },
        )
    }

    fn pod(policy: &str) -> Pod {
        Pod {
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn now() -> Time {
        Time(Timestamp::from_second(1_800_000_000).unwrap())
    }

    #[test]
    fn phases() {
        let waiting = obs(
            "w",
            Observed::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            },
        );
        assert_eq!(phase("Always", &[]), "Pending");
        assert_eq!(phase("Always", &[running("a"), waiting.clone()]), "Pending");
        assert_eq!(phase("Always", &[running("a")]), "Running");
        let ok = obs("a", Observed::Terminated(term(0)));
        let bad = obs("b", Observed::Terminated(term(3)));
        assert_eq!(phase("Never", std::slice::from_ref(&ok)), "Succeeded");
        assert_eq!(phase("Never", &[ok.clone(), bad.clone()]), "Failed");
        assert_eq!(phase("Never", &[running("x"), bad.clone()]), "Running");
        assert_eq!(phase("OnFailure", std::slice::from_ref(&ok)), "Succeeded");
        let backoff = obs(
            "b",
            Observed::BackOff {
                last: term(3),
                message: "back-off".into(),
            },
        );
        assert_eq!(phase("OnFailure", &[ok, backoff.clone()]), "Running");
        assert_eq!(phase("Always", &[backoff]), "Running");
        // a restarting container (waiting with a previous end) is not "never started"
        let mut restarting = waiting;
        restarting.last_terminated = Some(term(1));
        assert_eq!(phase("Always", &[restarting]), "Running");
    }

    #[test]
    fn restart_policy() {
        assert!(should_restart("Always", 0));
        assert!(should_restart("OnFailure", 1));
        assert!(!should_restart("OnFailure", 0));
        assert!(!should_restart("Never", 1));
    }

    #[test]
    fn running_pod_status() {
        let o = PodObservation {
            pod_ip: Some("10.244.1.5".into()),
            host_ip: Some("10.250.0.1".into()),
            start_time: Some(now()),
            containers: vec![running("web")],
            init_containers: Vec::new(),
        };
        let s = pod_status(&pod("Always"), &o, now());
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ips.as_ref().unwrap()[0].ip, "10.244.1.5");
        let conds = s.conditions.as_ref().unwrap();
        for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
            let c = conds.iter().find(|c| c.type_ == t).unwrap();
            assert_eq!(c.status, "True", "{t}");
        }
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert!(cs.ready);
        assert_eq!(cs.container_id.as_deref(), Some("containerd://id-web"));
        assert!(cs.state.as_ref().unwrap().running.is_some());
    }

    #[test]
    fn terminated_and_waiting_statuses() {
        let o = PodObservation {
            pod_ip: None,
            host_ip: None,
            start_time: None,
            containers: vec![
                obs("done", Observed::Terminated(term(7))),
                obs(
                    "img",
                    Observed::Waiting {
                        reason: "ErrImageNeverPull".into(),
                        message: "image \"x\" is not present".into(),
                    },
                ),
            ],
            init_containers: Vec::new(),
        };
        let s = pod_status(&pod("Never"), &o, now());
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let cs = s.container_statuses.unwrap();
        let done = cs.iter().find(|c| c.name == "done").unwrap();
        let t = done.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (7, Some("Error")));
        let img = cs.iter().find(|c| c.name == "img").unwrap();
        let w = img.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("ErrImageNeverPull"));
        let ready = s
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "False");
        assert!(ready.message.unwrap().contains("done img"));
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let o = PodObservation {
            pod_ip: Some("10.244.1.5".into()),
            host_ip: None,
            start_time: None,
            containers: vec![running("web")],
            init_containers: Vec::new(),
        };
        let mut p = pod("Always");
        let first = pod_status(&p, &o, now());
        p.status = Some(first.clone());
        let later = Time(Timestamp::from_second(1_900_000_000).unwrap());
        let second = pod_status(&p, &o, later.clone());
        assert_eq!(first, second, "same observation, same status");
        // a change moves only the changed conditions
        let mut o2 = o.clone();
        o2.containers[0].observed = Observed::Terminated(term(1));
        let third = pod_status(&p, &o2, later.clone());
        let conds = third.conditions.unwrap();
        let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.last_transition_time, Some(later));
        let sched = conds.iter().find(|c| c.type_ == "PodScheduled").unwrap();
        assert_eq!(sched.last_transition_time, Some(now()));
    }

    #[test]
    fn init_containers_gate_the_pod() {
        let waiting = |n: &str| {
            obs(
                n,
                Observed::Waiting {
                    reason: "PodInitializing".into(),
                    message: String::new(),
                },
            )
        };
        let mut o = PodObservation {
            pod_ip: None,
            host_ip: None,
            start_time: None,
            containers: vec![waiting("main")],
            init_containers: vec![running("init")],
        };
        let s = pod_status(&pod("Always"), &o, now());
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let init = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Initialized")
            .unwrap();
        assert_eq!(init.status, "False");
        assert!(init.message.as_deref().unwrap().contains("[init]"));
        assert!(!s.init_container_statuses.as_ref().unwrap()[0].ready);

        o.init_containers = vec![obs("init", Observed::Terminated(term(0)))];
        o.containers = vec![running("main")];
        let s = pod_status(&pod("Always"), &o, now());
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert!(s.init_container_statuses.as_ref().unwrap()[0].ready);
        let init = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Initialized")
            .unwrap();
        assert_eq!(init.status, "True");

        o.init_containers = vec![obs("init", Observed::Terminated(term(2)))];
        o.containers = vec![waiting("main")];
        assert_eq!(
            pod_status(&pod("Never"), &o, now()).phase.as_deref(),
            Some("Failed")
        );
        assert_eq!(
            pod_status(&pod("OnFailure"), &o, now()).phase.as_deref(),
            Some("Pending")
        );
    }

    #[test]
    fn probes_decide_started_and_ready() {
        let mut c = running("web");
        c.probes = ProbeView {
            started: true,
            ready: false,
        };
        let o = PodObservation {
            pod_ip: Some("10.244.1.5".into()),
            host_ip: None,
            start_time: Some(now()),
            containers: vec![c.clone()],
            init_containers: Vec::new(),
        };
        let s = pod_status(&pod("Always"), &o, now());
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!((cs.ready, cs.started), (false, Some(true)));
        for t in ["ContainersReady", "Ready"] {
            let cond = s
                .conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == t)
                .unwrap();
            assert_eq!(cond.status, "False", "{t}");
            assert_eq!(cond.reason.as_deref(), Some("ContainersNotReady"));
        }
        c.probes = ProbeView {
            started: false,
            ready: false,
        };
        let cs = container_status(&c);
        assert_eq!((cs.ready, cs.started), (false, Some(false)));
    }

    #[test]
    fn backoff_shows_last_state() {
        let mut c = obs(
            "c",
            Observed::BackOff {
                last: term(2),
                message: "back-off 10s restarting failed container".into(),
            },
        );
        c.restart_count = 3;
        let s = container_status(&c);
        assert_eq!(s.restart_count, 3);
        let w = s.state.unwrap().waiting.unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(s.last_state.unwrap().terminated.unwrap().exit_code, 2);
    }
}
