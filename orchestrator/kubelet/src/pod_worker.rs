//! One task per pod (by UID): runs its sandbox and containers through CRI, restarts exited
//! containers by restart policy, reports `pods/status`, and on deletion stops everything
//! within the grace period and confirms the deletion (DELETE with grace period 0).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::Client;
use serde_json::json;
use tokio::sync::watch;

use bpfk_common::api_error::{is_conflict, is_not_found};

use crate::config::Config;
use crate::cri::{proto, CriClient, CriError, LABEL_CONTAINER_NAME, LABEL_POD_UID};
use crate::cri_config::{self, PodRef};
use crate::downward::FieldValues;
use crate::env::{environment, EnvInputs};
use crate::error::{Error, Result};
use crate::events;
use crate::images::{ImageManager, PullRequest};
use crate::lifecycle::{self, Hook};
use crate::objects::{references, ObjectCache, Objects};
use crate::pod_actions::{
    compute_pod_actions, sandbox_action, BackOff, ContainerAction, ContainerSeen, CurrentSandbox,
    RuntimeState, SandboxAction, SandboxSeen,
};
use crate::prober::{PodProber, ProbeTarget};
use crate::security_context::{self, SECCOMP_DIR};
use crate::status::{self, ContainerObservation, Observed, PodObservation, ProbeView, Terminated};
use crate::termination;
use crate::volumes::{self, VolumeInputs};
use bpfk_common::events::{EventType, Recorder};

/// Shared by all workers.
pub struct Ctx {
    pub client: Client,
    pub cri: CriClient,
    pub config: Config,
    pub host_ip: Option<String>,
    /// ConfigMaps and Secrets the pods refer to.
    pub objects: ObjectCache,
    /// Service account tokens of the pods' projected volumes.
    pub tokens: crate::tokens::TokenManager,
    /// Every Service (for the containers' Service variables).
    pub services: kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Service>,
    pub images: ImageManager,
    /// The node's capacity (unset container limits read as it through the Downward API).
    pub node_capacity: crate::config::Capacity,
}

/// Waiting reasons of containers whose image is not there (their events come from
/// [`ImageManager`]).
const IMAGE_REASONS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "ImageInspectError",
];

/// How long a pod that vanished from the API (force-deleted) gets to stop.
const GONE_GRACE_SECS: i64 = 2;

/// What the worker should do next.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Done,
}

/// The sandbox the worker runs the pod in.
#[derive(Debug, Clone)]
struct Sandbox {
    id: String,
    config: proto::PodSandboxConfig,
    ip: Option<String>,
}

struct Worker {
    ctx: Arc<Ctx>,
    uid: String,
    recorder: Recorder,
    /// (container, reason) warnings already recorded as events, so a waiting container
    /// does not add one every sync.
    warned: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    sandbox: Option<Sandbox>,
    start_time: Option<Time>,
    last_posted: Option<PodStatus>,
    /// The resourceVersion our last status write produced.
    last_posted_version: Option<u64>,
    sandbox_stopped: bool,
    /// The pod's probe workers (created at the first sync).
    prober: Option<PodProber>,
    /// The pod's ConfigMaps and Secrets as read at the start of the current sync.
    objects: Objects,
    /// Whether the API-backed volumes were all set up once (later failures keep the files).
    volumes_ready: bool,
}

/// Run the worker for pod `uid` until the pod is deleted (or the sender goes away because
/// the kubelet stops). `rx` carries the latest Pod, or None once it vanished from the API.
pub async fn run(ctx: Arc<Ctx>, uid: String, mut rx: watch::Receiver<Option<Arc<Pod>>>) {
    let period = ctx.config.pod_sync_period;
    let recorder = events::recorder(ctx.client.clone(), &ctx.config.node_name);
    let mut worker = Worker {
        ctx,
        uid,
        recorder,
        warned: Default::default(),
        sandbox: None,
        start_time: None,
        last_posted: None,
        last_posted_version: None,
        sandbox_stopped: false,
        prober: None,
        objects: Objects::default(),
        volumes_ready: false,
    };
    loop {
        let current = rx.borrow_and_update().clone();
        let flow = match current {
            None => worker
                .teardown(GONE_GRACE_SECS, None)
                .await
                .map(|_| Flow::Done),
            Some(pod) => worker.sync(&pod).await,
        };
        match flow {
            Ok(Flow::Done) => return,
            Ok(Flow::Continue) => {}
            Err(e) => tracing::warn!(uid = %worker.uid, error = %e, "pod sync failed; retrying"),
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = worker.probes_changed() => {}
            _ = tokio::time::sleep(period) => {}
        }
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The pod's termination grace period in seconds (default 30).
fn pod_grace(pod: &Pod) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
}

/// A container that has not been created, waiting for `reason`.
fn waiting_container(c: &Container, reason: &str, message: &str) -> ContainerObservation {
    ContainerObservation {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        image_id: String::new(),
        restart_count: 0,
        observed: Observed::Waiting {
            reason: reason.into(),
            message: message.into(),
        },
        last_terminated: None,
        probes: ProbeView::default(),
    }
}

/// A container's environment (name, value) and mounts.
type ContainerInputs = (Vec<(String, String)>, Vec<proto::Mount>);

/// A container not running for `reason`.
fn waiting(reason: &str, message: impl Into<String>) -> Observed {
    Observed::Waiting {
        reason: reason.into(),
        message: message.into(),
    }
}

/// What the runtime shows of one container of the pod.
struct ContainerView {
    /// Status of its latest attempt.
    latest: Option<proto::ContainerStatus>,
    /// The latest attempt, as [`compute_pod_actions`] takes it.
    seen: Option<ContainerSeen>,
    /// How the attempt before ended.
    previous: Option<Terminated>,
}

fn container_seen(st: &proto::ContainerStatus, attempt: u32) -> ContainerSeen {
    let state = match proto::ContainerState::try_from(st.state) {
        Ok(proto::ContainerState::ContainerRunning) => RuntimeState::Running,
        Ok(proto::ContainerState::ContainerCreated) => RuntimeState::Created,
        _ => RuntimeState::Exited,
    };
    ContainerSeen {
        state,
        attempt,
        exit_code: st.exit_code,
        finished_at: st.finished_at,
    }
}

fn sandbox_seen(s: &proto::PodSandbox) -> SandboxSeen {
    SandboxSeen {
        id: s.id.clone(),
        ready: s.state == proto::PodSandboxState::SandboxReady as i32,
        attempt: s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
    }
}

fn terminated(s: &proto::ContainerStatus) -> Terminated {
    Terminated {
        container_id: s.id.clone(),
        exit_code: s.exit_code,
        reason: s.reason.clone(),
        message: s.message.clone(),
        started_at: s.started_at,
        finished_at: s.finished_at,
    }
}

fn image_ref(s: &proto::ContainerStatus) -> String {
    if s.image_ref.is_empty() {
        s.image_id.clone()
    } else {
        s.image_ref.clone()
    }
}

impl Worker {
    async fn event(&self, pod: &Pod, type_: EventType, reason: &str, message: &str) {
        events::record(&self.recorder, pod, type_, reason, message).await;
    }

    /// A Warning event once per (container, reason) until the container starts.
    async fn warn_once(&self, pod: &Pod, container: &str, reason: &str, message: &str) {
        self.event_once(pod, container, EventType::Warning, reason, message)
            .await;
    }

    fn cri(&self) -> &CriClient {
        &self.ctx.cri
    }

    fn config(&self) -> &Config {
        &self.ctx.config
    }

    async fn sync(&mut self, pod: &Pod) -> Result<Flow> {
        let Some(id) = PodRef::of(pod) else {
            return Err(Error::Pod {
                pod: self.uid.clone(),
                reason: "object without name or uid".into(),
            });
        };
        if pod.metadata.deletion_timestamp.is_some() {
            self.kill_pod(pod, &id).await?;
            return Ok(Flow::Done);
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded") | Some("Failed")) {
            self.stop_finished_sandbox(&id).await?;
            return Ok(Flow::Continue);
        }
        if self.start_time.is_none() {
            self.start_time = pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.clone())
                .or_else(|| Some(Time(Timestamp::now())));
        }
        if let Err(message) = self.sync_volumes(pod, &id).await {
            let obs = self.waiting_observation(pod, "ContainerCreating", "");
            self.post_status(pod, &id, &obs).await?;
            return Err(Error::Pod {
                pod: id.to_string(),
                reason: message,
            });
        }
        let sandbox = match self.ensure_sandbox(pod, &id).await {
            Ok(sb) => sb,
            Err(e) => {
                let obs = self.waiting_observation(pod, "ContainerCreating", &e.to_string());
                self.post_status(pod, &id, &obs).await?;
                return Err(e);
            }
        };
        self.kill_unhealthy(pod, &id).await;
        let (init_containers, mut containers) = self.sync_containers(pod, &id, &sandbox).await?;
        self.apply_probes(pod, sandbox.ip.as_deref(), &mut containers);
        let obs = PodObservation {
            pod_ip: sandbox.ip.clone(),
            host_ip: self.ctx.host_ip.clone(),
            start_time: self.start_time.clone(),
            containers,
            init_containers,
        };
        self.post_status(pod, &id, &obs).await?;
        Ok(Flow::Continue)
    }

    /// A deleted pod: every container stopped within its grace period, then the deletion
    /// confirmed.
    async fn kill_pod(&mut self, pod: &Pod, id: &PodRef) -> Result<()> {
        let spec = pod.spec.as_ref();
        let mut grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| spec.and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30);
        if let Some(prober) = &mut self.prober {
            prober.stop();
        }
        if self.sandbox.is_some() {
            for c in spec.iter().flat_map(|s| s.containers.iter()) {
                let message = format!("Stopping container {}", c.name);
                self.event(pod, EventType::Normal, "Killing", &message)
                    .await;
            }
            grace = self.pre_stop_all(pod, grace).await;
        }
        self.teardown(grace, Some(id)).await
    }

    /// Runs the preStop hooks of the pod's running containers side by side within `grace`
    /// seconds; the grace left for SIGTERM → SIGKILL.
    async fn pre_stop_all(&self, pod: &Pod, grace: i64) -> i64 {
        let containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or_default();
        if !containers
            .iter()
            .any(|c| c.lifecycle.as_ref().is_some_and(|l| l.pre_stop.is_some()))
        {
            return grace;
        }
        let running = match self.running_containers().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(uid = %self.uid, error = %e, "listing containers for preStop hooks failed");
                return grace;
            }
        };
        let started = std::time::Instant::now();
        let hooks = running.iter().filter_map(|c| {
            let name = c.labels.get(LABEL_CONTAINER_NAME)?;
            let spec = containers.iter().find(|s| &s.name == name)?;
            Some(self.pre_stop(pod, spec, &c.id, grace))
        });
        futures::future::join_all(hooks).await;
        lifecycle::remaining_grace(grace, started, std::time::Instant::now())
    }

    /// `container`'s preStop hook against attempt `cid` within `grace` seconds (a failure
    /// is an event, and the stop goes on); the grace left for SIGTERM → SIGKILL.
    async fn pre_stop(&self, pod: &Pod, container: &Container, cid: &str, grace: i64) -> i64 {
        if container
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .is_none()
        {
            return grace;
        }
        let started = std::time::Instant::now();
        let ip = self.sandbox.as_ref().and_then(|s| s.ip.as_deref());
        let limit = Duration::from_secs(grace.max(0) as u64);
        if let Some(message) =
            lifecycle::run_hook(Hook::PreStop, container, self.cri(), cid, ip, limit).await
        {
            self.event(
                pod,
                EventType::Warning,
                Hook::PreStop.failed_reason(),
                &message,
            )
            .await;
        }
        lifecycle::remaining_grace(grace, started, std::time::Instant::now())
    }

    /// The pod's running containers, as the runtime lists them.
    async fn running_containers(&self) -> Result<Vec<proto::Container>> {
        let all = self
            .cri()
            .list_containers(Some(proto::ContainerFilter {
                label_selector: [(LABEL_POD_UID.to_string(), self.uid.clone())].into(),
                ..Default::default()
            }))
            .await?;
        Ok(all
            .into_iter()
            .filter(|c| c.state == proto::ContainerState::ContainerRunning as i32)
            .collect())
    }

    /// Resolves when a probe result changed (never when the pod has no prober yet).
    async fn probes_changed(&self) {
        match &self.prober {
            Some(p) => p.changed().await,
            None => std::future::pending().await,
        }
    }

    /// Probe workers for the running containers; their readiness and startup into `observed`.
    fn apply_probes(
        &mut self,
        pod: &Pod,
        pod_ip: Option<&str>,
        observed: &mut [ContainerObservation],
    ) {
        let spec = pod
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or_default();
        let prober = self.prober.get_or_insert_with(|| {
            PodProber::new(self.ctx.cri.clone(), self.recorder.clone(), pod)
        });
        let running: Vec<ProbeTarget> = observed
            .iter()
            .filter_map(|o| match &o.observed {
                Observed::Running {
                    container_id,
                    started_at,
                } => Some(ProbeTarget {
                    container: spec.iter().find(|c| c.name == o.name)?,
                    container_id,
                    started_at: *started_at,
                }),
                _ => None,
            })
            .collect();
        prober.sync(pod_ip, &running);
        for o in observed.iter_mut() {
            if let (Observed::Running { container_id, .. }, Some(c)) =
                (&o.observed, spec.iter().find(|c| c.name == o.name))
            {
                o.probes = prober.view(c, container_id);
            }
        }
    }

    /// Kills each container whose liveness or startup probe failed (the next sync restarts
    /// it by restart policy, with back-off), within the probe's or the pod's grace period.
    async fn kill_unhealthy(&mut self, pod: &Pod, id: &PodRef) {
        let Some(prober) = self.prober.as_mut() else {
            return;
        };
        let spec = pod.spec.as_ref();
        for u in prober.take_unhealthy() {
            let probe = spec
                .and_then(|s| s.containers.iter().find(|c| c.name == u.container))
                .and_then(|c| u.kind.of(c));
            let grace = probe
                .and_then(|p| p.termination_grace_period_seconds)
                .or_else(|| spec.and_then(|s| s.termination_grace_period_seconds))
                .unwrap_or(30);
            let kind = u.kind.title().to_lowercase();
            let message = format!(
                "Container {} failed {kind} probe, will be restarted",
                u.container
            );
            tracing::info!(pod = %id, container = %u.container, %kind, "probe failed; killing the container");
            self.event(pod, EventType::Normal, "Killing", &message)
                .await;
            let grace = match spec.and_then(|s| s.containers.iter().find(|c| c.name == u.container))
            {
                Some(c) => self.pre_stop(pod, c, &u.container_id, grace).await,
                None => grace,
            };
            if let Err(e) = self
                .cri()
                .stop_container(&u.container_id, grace.max(0))
                .await
            {
                tracing::warn!(pod = %id, container = %u.container, error = %e, "killing unhealthy container failed");
            }
        }
    }

    /// A finished pod keeps its containers (for logs) but frees its network.
    async fn stop_finished_sandbox(&mut self, id: &PodRef) -> Result<()> {
        if self.sandbox_stopped {
            return Ok(());
        }
        for sb in self.pod_sandboxes().await? {
            self.cri().stop_pod_sandbox(&sb.id).await?;
        }
        self.sandbox_stopped = true;
        tracing::info!(pod = %id, "pod finished; sandbox stopped");
        Ok(())
    }

    /// Observes the pod's containers, computes the [`PodActions`] and carries them out;
    /// returns what to report of the init containers and the containers.
    async fn sync_containers(
        &self,
        pod: &Pod,
        id: &PodRef,
        sandbox: &Sandbox,
    ) -> Result<(Vec<ContainerObservation>, Vec<ContainerObservation>)> {
        let spec = pod.spec.clone().unwrap_or_default();
        let existing = self
            .cri()
            .list_containers(Some(proto::ContainerFilter {
                pod_sandbox_id: sandbox.id.clone(),
                ..Default::default()
            }))
            .await?;
        let mut views = HashMap::new();
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
        {
            views.insert(
                c.name.clone(),
                self.observe_container(id, c, &existing).await?,
            );
        }
        let backoff = BackOff {
            base: self.config().restart_backoff,
            max: self.config().restart_backoff_max,
        };
        let seen = |name: &str| views.get(name).and_then(|v| v.seen.as_ref());
        let actions = compute_pod_actions(&spec, seen, backoff, now_nanos());
        let init_specs = spec.init_containers.iter().flatten();
        let mut init_observed = Vec::new();
        for (c, (_, action)) in init_specs.zip(&actions.init_containers) {
            init_observed.push(self.carry_out(pod, id, sandbox, c, &views, *action).await);
        }
        let mut observed = Vec::new();
        for (c, (_, action)) in spec.containers.iter().zip(&actions.containers) {
            observed.push(self.carry_out(pod, id, sandbox, c, &views, *action).await);
        }
        Ok((init_observed, observed))
    }

    /// Every container of the pod waiting for `reason`.
    fn waiting_observation(&self, pod: &Pod, reason: &str, message: &str) -> PodObservation {
        let spec = pod.spec.clone().unwrap_or_default();
        let waiting = |list: &[Container]| -> Vec<ContainerObservation> {
            list.iter()
                .map(|c| waiting_container(c, reason, message))
                .collect()
        };
        PodObservation {
            pod_ip: self.sandbox.as_ref().and_then(|s| s.ip.clone()),
            host_ip: self.ctx.host_ip.clone(),
            start_time: self.start_time.clone(),
            containers: waiting(&spec.containers),
            init_containers: waiting(spec.init_containers.as_deref().unwrap_or_default()),
        }
    }

    async fn post_status(&mut self, pod: &Pod, id: &PodRef, obs: &PodObservation) -> Result<()> {
        let mut status = status::pod_status(pod, obs, Time(Timestamp::now()));
        // keep transition times of what we posted last (the watched pod may lag behind),
        // unless someone else wrote the status since
        let overwritten = self.status_overwritten(pod);
        if let (Some(last), false) = (&self.last_posted, overwritten) {
            let mut with_last = pod.clone();
            with_last.status = Some(last.clone());
            let again = status::pod_status(&with_last, obs, Time(Timestamp::now()));
            if &again == last {
                return Ok(());
            }
            status = again;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &id.namespace);
        self.last_posted = None;
        let written = api
            .patch_status(
                &id.name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": {"uid": id.uid}, "status": status })),
            )
            .await?;
        tracing::debug!(pod = %id, phase = ?status.phase, overwritten, "pod status reported");
        self.last_posted = Some(status);
        self.last_posted_version = resource_version(&written);
        Ok(())
    }

    /// Whether another writer changed the pod's status after our last write (the node
    /// lifecycle controller marks the pods of a node it lost not ready): then the kubelet,
    /// which owns the status, writes what it observes again.
    fn status_overwritten(&self, pod: &Pod) -> bool {
        let newer = match (resource_version(pod), self.last_posted_version) {
            (Some(seen), Some(ours)) => seen > ours,
            _ => false,
        };
        newer && pod.status.as_ref() != self.last_posted.as_ref()
    }

    /// Sandboxes of this pod known to the runtime, newest first.
    async fn pod_sandboxes(&self) -> Result<Vec<proto::PodSandbox>> {
        let mut list = self
            .cri()
            .list_pod_sandbox(Some(proto::PodSandboxFilter {
                label_selector: [(LABEL_POD_UID.to_string(), self.uid.clone())].into(),
                ..Default::default()
            }))
            .await?;
        list.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(list)
    }

    /// The worker's sandbox as the runtime shows it now.
    async fn current_sandbox(&self) -> Result<CurrentSandbox> {
        let Some(sb) = &self.sandbox else {
            return Ok(CurrentSandbox::None);
        };
        match self.cri().pod_sandbox_status(&sb.id).await {
            Ok(s) => Ok(CurrentSandbox::Seen(SandboxSeen {
                id: sb.id.clone(),
                ready: s.state == proto::PodSandboxState::SandboxReady as i32,
                attempt: s.metadata.map(|m| m.attempt).unwrap_or(0),
            })),
            Err(e) if e.is_not_found() => Ok(CurrentSandbox::Lost),
            Err(e) => Err(e.into()),
        }
    }

    /// Keeps, adopts or creates the pod's sandbox, per [`sandbox_action`].
    async fn ensure_sandbox(&mut self, pod: &Pod, id: &PodRef) -> Result<Sandbox> {
        let current = self.current_sandbox().await?;
        let listed: Vec<SandboxSeen> = match current {
            // after a kubelet restart: the pod's sandboxes, to adopt a ready one
            CurrentSandbox::None => self
                .pod_sandboxes()
                .await?
                .iter()
                .map(sandbox_seen)
                .collect(),
            _ => Vec::new(),
        };
        match sandbox_action(&current, &listed) {
            SandboxAction::Keep => self.sandbox.clone().ok_or_else(|| Error::Pod {
                pod: id.to_string(),
                reason: "no sandbox to keep".into(),
            }),
            SandboxAction::Adopt {
                id: sandbox_id,
                attempt,
            } => {
                tracing::info!(pod = %id, sandbox = %sandbox_id, "adopted running sandbox");
                let config = self.sandbox_config(pod, id, attempt);
                self.run_in(pod, sandbox_id, config).await
            }
            SandboxAction::Create { kill, attempt } => {
                if let Some(old) = kill {
                    tracing::warn!(pod = %id, sandbox = %old, "sandbox is not ready any more; recreating it");
                    self.cri().stop_pod_sandbox(&old).await?;
                }
                self.sandbox = None;
                self.create_sandbox(pod, id, attempt).await
            }
        }
    }

    fn sandbox_config(&self, pod: &Pod, id: &PodRef, attempt: u32) -> proto::PodSandboxConfig {
        let config = self.config();
        let mut sandbox = cri_config::sandbox_config(
            pod,
            id,
            attempt,
            &config.pod_log_dir,
            &config.cgroup_parent,
            &config.root_dir.join(SECCOMP_DIR),
        );
        sandbox.dns_config = Some(crate::pod_dns::dns_config_of(pod, &config.dns));
        sandbox
    }

    async fn create_sandbox(&mut self, pod: &Pod, id: &PodRef, attempt: u32) -> Result<Sandbox> {
        let config = self.sandbox_config(pod, id, attempt);
        let log_dir = std::path::PathBuf::from(&config.log_directory);
        std::fs::create_dir_all(&log_dir).map_err(|source| Error::Read {
            path: log_dir.clone(),
            source,
        })?;
        let sandbox_id = self.cri().run_pod_sandbox(config.clone()).await?;
        tracing::info!(pod = %id, sandbox = %sandbox_id, "sandbox running");
        self.run_in(pod, sandbox_id, config).await
    }

    /// Makes `sandbox_id` the worker's sandbox.
    async fn run_in(
        &mut self,
        pod: &Pod,
        sandbox_id: String,
        config: proto::PodSandboxConfig,
    ) -> Result<Sandbox> {
        let ip = self.sandbox_ip(pod, &sandbox_id).await?;
        tracing::debug!(sandbox = %sandbox_id, ip = ?ip, "pod sandbox in use");
        let sb = Sandbox {
            id: sandbox_id,
            config,
            ip,
        };
        self.sandbox = Some(sb.clone());
        Ok(sb)
    }

    async fn sandbox_ip(&self, pod: &Pod, sandbox_id: &str) -> Result<Option<String>> {
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false)
        {
            return Ok(self.ctx.host_ip.clone());
        }
        let st = self.cri().pod_sandbox_status(sandbox_id).await?;
        Ok(st.network.map(|n| n.ip).filter(|ip| !ip.is_empty()))
    }

    /// The runtime's view of `container`: its latest attempt and the one before. Removes
    /// older attempts (the current and the previous one stay, for logs and lastState).
    async fn observe_container(
        &self,
        id: &PodRef,
        container: &Container,
        existing: &[proto::Container],
    ) -> Result<ContainerView> {
        let mut mine: Vec<&proto::Container> = existing
            .iter()
            .filter(|c| c.labels.get(LABEL_CONTAINER_NAME) == Some(&container.name))
            .collect();
        let attempt_of = |c: &proto::Container| c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
        mine.sort_by_key(|c| std::cmp::Reverse((attempt_of(c), c.created_at)));
        for old in mine.iter().skip(2) {
            if let Err(e) = self.cri().remove_container(&old.id).await {
                tracing::warn!(pod = %id, container = %old.id, error = %e, "removing old container failed");
            }
        }
        let previous = match mine.get(1) {
            Some(p) => match self.cri().container_status(&p.id).await {
                Ok(s) => Some(terminated(&self.with_message(container, s))),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let Some(latest) = mine.first() else {
            return Ok(ContainerView {
                latest: None,
                seen: None,
                previous,
            });
        };
        let st = self.cri().container_status(&latest.id).await?;
        let st = self.with_message(container, st);
        let seen = container_seen(&st, attempt_of(latest));
        Ok(ContainerView {
            latest: Some(st),
            seen: Some(seen),
            previous,
        })
    }

    /// `st` with the termination message of an exited attempt (file or log, by policy).
    fn with_message(
        &self,
        container: &Container,
        mut st: proto::ContainerStatus,
    ) -> proto::ContainerStatus {
        let exited = st.state == proto::ContainerState::ContainerExited as i32;
        if exited && st.message.is_empty() {
            st.message = termination::message(&self.config().root_dir, &self.uid, container, &st);
        }
        st
    }

    /// Carries out `action` (`None`: waiting for the init containers) for `container`.
    async fn carry_out(
        &self,
        pod: &Pod,
        id: &PodRef,
        sandbox: &Sandbox,
        container: &Container,
        views: &HashMap<String, ContainerView>,
        action: Option<ContainerAction>,
    ) -> ContainerObservation {
        let view = views.get(&container.name);
        let (Some(action), Some(view)) = (action, view) else {
            return waiting_container(container, "PodInitializing", "");
        };
        let mut obs = ContainerObservation {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            image_id: view.latest.as_ref().map(image_ref).unwrap_or_default(),
            restart_count: view.seen.map_or(0, |s| s.attempt as i32),
            observed: Observed::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            },
            last_terminated: view.previous.clone(),
            probes: ProbeView::default(),
        };
        obs.observed = match (action, view.latest.as_ref()) {
            (ContainerAction::Start, _) | (_, None) => {
                self.start(pod, id, sandbox, container, 0).await
            }
            (ContainerAction::Keep, Some(st)) => Observed::Running {
                container_id: st.id.clone(),
                started_at: st.started_at,
            },
            (ContainerAction::RetryStart, Some(st)) => self.retry_start(st).await,
            (ContainerAction::Leave, Some(st)) => Observed::Terminated(terminated(st)),
            (ContainerAction::Restart { attempt }, Some(st)) => {
                tracing::info!(pod = %id, container = %container.name, attempt, "restarting exited container");
                obs.last_terminated = Some(terminated(st));
                obs.restart_count = attempt as i32;
                self.start(pod, id, sandbox, container, attempt).await
            }
            (ContainerAction::BackOff { delay }, Some(st)) => {
                self.back_off(pod, id, container, st, delay).await
            }
        };
        obs
    }

    /// Starts a container created by an earlier sync whose start failed.
    async fn retry_start(&self, st: &proto::ContainerStatus) -> Observed {
        match self.cri().start_container(&st.id).await {
            Ok(()) => Observed::Created {
                container_id: st.id.clone(),
            },
            Err(e) => Observed::Waiting {
                reason: "RunContainerError".into(),
                message: e.to_string(),
            },
        }
    }

    /// A crashed container waiting out its back-off (a Warning event the first time).
    async fn back_off(
        &self,
        pod: &Pod,
        id: &PodRef,
        container: &Container,
        st: &proto::ContainerStatus,
        delay: Duration,
    ) -> Observed {
        let name = &container.name;
        let event = format!("Back-off restarting failed container {name}");
        self.warn_once(pod, name, "BackOff", &event).await;
        Observed::BackOff {
            message: format!(
                "back-off {}s restarting failed container={name} pod={}_{}({})",
                delay.as_secs(),
                id.name,
                id.namespace,
                id.uid
            ),
            last: terminated(st),
        }
    }

    /// [`create_and_start`](Self::create_and_start) plus its events.
    async fn start(
        &self,
        pod: &Pod,
        id: &PodRef,
        sandbox: &Sandbox,
        container: &Container,
        attempt: u32,
    ) -> Observed {
        let started = self.create_and_start(pod, id, sandbox, container, attempt);
        let observed = started.await.unwrap_or_else(|waiting| waiting);
        let name = &container.name;
        match &observed {
            Observed::Created { .. } => {
                if let Ok(mut w) = self.warned.lock() {
                    w.retain(|(c, _)| c != name);
                }
                self.event(
                    pod,
                    EventType::Normal,
                    "Created",
                    &format!("Created container {name}"),
                )
                .await;
                self.event(
                    pod,
                    EventType::Normal,
                    "Started",
                    &format!("Started container {name}"),
                )
                .await;
            }
            // the image manager recorded the image events already
            Observed::Waiting { reason, .. } if IMAGE_REASONS.contains(&reason.as_str()) => {}
            Observed::Waiting { reason, message } => {
                self.warn_once(pod, name, reason, message).await;
            }
            _ => {}
        }
        observed
    }

    /// Image check, create and start; `Err` is the Waiting state of a container that could
    /// not be started.
    async fn create_and_start(
        &self,
        pod: &Pod,
        id: &PodRef,
        sandbox: &Sandbox,
        container: &Container,
        attempt: u32,
    ) -> Result<Observed, Observed> {
        let image_id = self.ensure_image(pod, id, sandbox, container).await?;
        let (env, mut mounts) = self.container_inputs(pod, id, sandbox, container).await?;
        let root = &self.config().root_dir;
        let message_mount =
            termination::prepare(root, &id.uid, container, attempt).map_err(|e| {
                waiting(
                    "CreateContainerConfigError",
                    format!("termination message file: {e}"),
                )
            })?;
        mounts.push(message_mount);
        let domain = &self.config().dns.cluster_domain;
        let hosts =
            crate::etc_hosts::mount_for(root, pod, container, sandbox.ip.as_deref(), domain)
                .map_err(|e| {
                    waiting("CreateContainerConfigError", format!("pod hosts file: {e}"))
                })?;
        mounts.extend(hosts);
        self.verify_non_root(pod, id, container, &image_id).await?;
        let seccomp_root = root.join(SECCOMP_DIR);
        let security = security_context::for_container(pod, container, &seccomp_root);
        let inputs = cri_config::ContainerInputs {
            attempt,
            image_id: &image_id,
            env: &env,
            mounts,
            security,
        };
        let config = cri_config::container_config(pod, id, container, inputs);
        let log_dir = std::path::Path::new(&sandbox.config.log_directory).join(&container.name);
        std::fs::create_dir_all(&log_dir).map_err(|e| {
            let message = format!("creating log directory {}: {e}", log_dir.display());
            waiting("CreateContainerError", message)
        })?;
        let cid = self
            .cri()
            .create_container(&sandbox.id, config, sandbox.config.clone())
            .await
            .map_err(|e| waiting("CreateContainerError", e.to_string()))?;
        self.cri()
            .start_container(&cid)
            .await
            .map_err(|e| waiting("RunContainerError", e.to_string()))?;
        tracing::info!(pod = %id, container = %container.name, id = %cid, attempt, "container started");
        self.post_start(pod, sandbox, container, &cid).await?;
        Ok(Observed::Created { container_id: cid })
    }

    /// runAsNonRoot: the container must not run as root, by its runAsUser or its image's
    /// user (`CreateContainerConfigError` otherwise, as the kubelet).
    async fn verify_non_root(
        &self,
        pod: &Pod,
        id: &PodRef,
        container: &Container,
        image_id: &str,
    ) -> Result<(), Observed> {
        if !security_context::requires_non_root(pod, container) {
            return Ok(());
        }
        let image = self
            .cri()
            .image_status(image_id)
            .await
            .map_err(|e| waiting("CreateContainerConfigError", e.to_string()))?;
        let display = format!("{}_{}({})", id.name, id.namespace, id.uid);
        security_context::verify_non_root(pod, container, image.as_ref(), &display)
            .map_err(|message| waiting("CreateContainerConfigError", message))
    }

    /// The container's postStart hook; when it fails the container is killed (the next
    /// sync restarts it by restart policy) and waits with `PostStartHookError`.
    async fn post_start(
        &self,
        pod: &Pod,
        sandbox: &Sandbox,
        container: &Container,
        cid: &str,
    ) -> Result<(), Observed> {
        let ip = sandbox.ip.as_deref();
        let limit = lifecycle::POST_START_TIMEOUT;
        let Some(message) =
            lifecycle::run_hook(Hook::PostStart, container, self.cri(), cid, ip, limit).await
        else {
            return Ok(());
        };
        self.event(
            pod,
            EventType::Warning,
            Hook::PostStart.failed_reason(),
            &message,
        )
        .await;
        let grace = pod_grace(pod);
        if let Err(e) = self.cri().stop_container(cid, grace).await {
            tracing::warn!(container = %container.name, error = %e, "killing the container after its postStart hook failed");
        }
        Err(waiting("PostStartHookError", message))
    }

    /// The id of the container's image, pulled as its policy says (events recorded).
    async fn ensure_image(
        &self,
        pod: &Pod,
        id: &PodRef,
        sandbox: &Sandbox,
        container: &Container,
    ) -> Result<String, Observed> {
        let credentials = self.pull_credentials(pod, &container.name).await;
        let request = PullRequest {
            pod_uid: &id.uid,
            container,
            credentials: &credentials,
            sandbox: Some(&sandbox.config),
        };
        let (result, events) = self.ctx.images.ensure(&request).await;
        for e in events {
            // once per container until it starts: what repeats every sync while it waits
            let repeats = matches!(e.reason, "BackOff" | "ErrImageNeverPull" | "InspectFailed")
                || e.message.ends_with("already present on machine");
            if repeats {
                self.event_once(pod, &container.name, e.type_, e.reason, &e.message)
                    .await;
            } else {
                self.event(pod, e.type_, e.reason, &e.message).await;
            }
        }
        result.map_err(|n| waiting(n.reason, n.message))
    }

    /// The credentials of the pod's imagePullSecrets that exist and parse (a Warning event
    /// names those that do not, as Kubernetes: the pull is still tried).
    async fn pull_credentials(
        &self,
        pod: &Pod,
        container: &str,
    ) -> Vec<crate::keyring::Credential> {
        let names = pod
            .spec
            .iter()
            .flat_map(|s| s.image_pull_secrets.iter().flatten());
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for name in names.map(|r| r.name.clone()) {
            match self
                .objects
                .secret(&name)
                .map(crate::keyring::credentials_of)
            {
                Some(Ok(c)) => out.extend(c),
                Some(Err(e)) => problems.push(e),
                None => problems.push(format!("secret {name:?} not found")),
            }
        }
        if !problems.is_empty() {
            let message = format!(
                "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                problems.join("; ")
            );
            self.event_once(
                pod,
                container,
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                &message,
            )
            .await;
        }
        out
    }

    /// An event once per (container, reason) until the container starts.
    async fn event_once(
        &self,
        pod: &Pod,
        container: &str,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        let first = self
            .warned
            .lock()
            .map(|mut w| w.insert((container.to_string(), reason.to_string())))
            .unwrap_or(false);
        if first {
            self.event(pod, type_, reason, message).await;
        }
    }

    /// The Service variables of `pod`'s containers (the API server's, and its namespace's
    /// Services unless `enableServiceLinks: false`).
    fn service_variables(&self, pod: &Pod, namespace: &str) -> Vec<(String, String)> {
        let links = pod.spec.as_ref().and_then(|s| s.enable_service_links);
        let services = self.ctx.services.state();
        crate::service_env::service_env(
            services.iter().map(|s| s.as_ref()),
            namespace,
            links.unwrap_or(true),
        )
    }

    /// What the Downward API reads besides the pod object.
    fn field_values(&self, pod_ip: Option<String>) -> FieldValues {
        FieldValues {
            pod_ip,
            host_ip: self.ctx.host_ip.clone(),
            node_name: self.config().node_name.clone(),
            node_cpu: Some(self.ctx.node_capacity.cpu.clone()),
            node_memory: Some(self.ctx.node_capacity.memory.clone()),
        }
    }

    /// Reads the pod's ConfigMaps and Secrets and writes its API-backed volumes. Before the
    /// volumes were set up once, a failure blocks the pod (FailedMount); later it only keeps
    /// the files as they are (as Kubernetes does when an object goes away).
    async fn sync_volumes(&mut self, pod: &Pod, id: &PodRef) -> Result<(), String> {
        let refs = references(pod);
        match self.ctx.objects.fetch(&id.namespace, &refs).await {
            Ok(objects) => self.objects = objects,
            Err(e) => return Err(e.to_string()),
        }
        let values = self.field_values(None);
        let tokens = self.ctx.tokens.for_pod(pod).await;
        let inputs = VolumeInputs {
            pod,
            id,
            values: &values,
            objects: &self.objects,
            tokens: &tokens,
        };
        match volumes::sync_pod(&self.config().root_dir, &inputs) {
            Ok(changed) => {
                if changed > 0 && self.volumes_ready {
                    tracing::info!(pod = %id, changed, "volumes updated");
                }
                self.volumes_ready = true;
                Ok(())
            }
            Err(message) if self.volumes_ready => {
                tracing::warn!(pod = %id, error = %message, "volume update failed; files kept");
                Ok(())
            }
            Err(message) => {
                self.event_once(pod, "", EventType::Warning, "FailedMount", &message)
                    .await;
                Err(message)
            }
        }
    }

    /// The container's environment and mounts (creating its hostPath and emptyDir
    /// directories).
    async fn container_inputs(
        &self,
        pod: &Pod,
        id: &PodRef,
        sandbox: &Sandbox,
        container: &Container,
    ) -> Result<ContainerInputs, Observed> {
        let config_error = |message: String| waiting("CreateContainerConfigError", message);
        let values = self.field_values(sandbox.ip.clone());
        // as the kubelet, containers start once the Services were listed (bounded: a
        // kubelet cut off from the API starts them without)
        let listed = self.ctx.services.wait_until_ready();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), listed).await;
        let services = self.service_variables(pod, &id.namespace);
        let inputs = EnvInputs {
            pod,
            id,
            values: &values,
            objects: &self.objects,
            services: &services,
        };
        let environment = environment(container, &inputs).map_err(config_error)?;
        for skipped in &environment.skipped {
            let reason = "InvalidEnvironmentVariableNames";
            self.event_once(
                pod,
                &container.name,
                EventType::Warning,
                reason,
                &skipped.message(),
            )
            .await;
        }
        let env = environment.vars;
        let (mounts, dirs) = cri_config::mounts(pod, id, container, &self.config().root_dir)
            .map_err(config_error)?;
        for dir in dirs {
            let result = if dir.create {
                std::fs::create_dir_all(&dir.path)
            } else if dir.path.is_dir() {
                Ok(())
            } else {
                Err(std::io::Error::other(
                    "hostPath type Directory: not a directory",
                ))
            };
            result.map_err(|e| {
                config_error(format!("volume directory {}: {e}", dir.path.display()))
            })?;
        }
        Ok((env, mounts))
    }

    /// Stop every container of the pod (SIGTERM, SIGKILL after `grace` seconds), stop and
    /// remove its sandboxes; with `confirm`, delete the Pod object with grace period 0.
    async fn teardown(&mut self, grace: i64, confirm: Option<&PodRef>) -> Result<()> {
        let containers = self
            .cri()
            .list_containers(Some(proto::ContainerFilter {
                label_selector: [(LABEL_POD_UID.to_string(), self.uid.clone())].into(),
                ..Default::default()
            }))
            .await?;
        let running = containers
            .iter()
            .filter(|c| c.state == proto::ContainerState::ContainerRunning as i32);
        let stops = running.map(|c| {
            let cri = self.cri().clone();
            let id = c.id.clone();
            async move {
                match cri.stop_container(&id, grace.max(0)).await {
                    Err(e) if !e.is_not_found() => Err(e),
                    _ => Ok(()),
                }
            }
        });
        for r in futures::future::join_all(stops).await {
            r?;
        }
        for sb in self.pod_sandboxes().await? {
            stop_and_remove_sandbox(self.cri(), &sb.id).await?;
        }
        self.sandbox = None;
        // the pod's volumes (emptyDir contents, the tmpfs of secrets) go with it
        let dir = cri_config::pod_dir(&self.config().root_dir, &self.uid);
        volumes::unmount_all(&dir);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "removing pod volumes failed");
            }
        }
        tracing::info!(uid = %self.uid, "pod containers stopped and sandbox removed");
        match confirm {
            Some(id) => self.confirm_deletion(id).await,
            None => Ok(()),
        }
    }

    /// Deletes the Pod object with grace period 0 (its containers are gone).
    async fn confirm_deletion(&self, id: &PodRef) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &id.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(id.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&id.name, &params).await {
            Ok(_) => tracing::info!(pod = %id, "pod deletion confirmed"),
            Err(e) if is_not_found(&e) || is_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}

/// Stop then remove a sandbox (both idempotent).
pub async fn stop_and_remove_sandbox(cri: &CriClient, id: &str) -> Result<(), CriError> {
    match cri.stop_pod_sandbox(id).await {
        Err(e) if !e.is_not_found() => return Err(e),
        _ => {}
    }
    match cri.remove_pod_sandbox(id).await {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// Sandboxes labelled with a pod UID that is not in `keep` (pods deleted while the kubelet
/// was not watching): stop and remove them.
pub async fn remove_orphan_sandboxes(
    cri: &CriClient,
    keep: &std::collections::HashSet<String>,
) -> Result<usize> {
    let mut removed = 0;
    for sb in cri.list_pod_sandbox(None).await? {
        let Some(uid) = sb.labels.get(LABEL_POD_UID) else {
            continue;
        };
        if keep.contains(uid) {
            continue;
        }
        tracing::info!(sandbox = %sb.id, %uid, "removing sandbox of a pod that no longer exists");
        stop_and_remove_sandbox(cri, &sb.id).await?;
        removed += 1;
    }
    Ok(removed)
}

/// Map of the latest sandbox per pod UID (for tests and debugging).
pub async fn sandboxes_by_uid(cri: &CriClient) -> Result<HashMap<String, Vec<proto::PodSandbox>>> {
    let mut out: HashMap<String, Vec<proto::PodSandbox>> = HashMap::new();
    for sb in cri.list_pod_sandbox(None).await? {
        if let Some(uid) = sb.labels.get(LABEL_POD_UID) {
            out.entry(uid.clone()).or_default().push(sb);
        }
    }
    Ok(out)
}

/// A stored object's resourceVersion (the store's revision, increasing with every write).
fn resource_version(pod: &Pod) -> Option<u64> {
    pod.metadata.resource_version.as_deref()?.parse().ok()
}
