//! Images through CRI: the pull policy (Always / IfNotPresent / Never, defaulted from the
//! tag as Kubernetes does), `PullImage` with the pod's pull-secret credentials, serial or
//! parallel pulls, a per pod-and-image back-off (ErrImagePull, then ImagePullBackOff while
//! it lasts: 10 s doubling to 5 min), and the events Kubernetes records (Pulling, Pulled with
//! the time it took, Failed, BackOff, ErrImageNeverPull). The kubelet never downloads an
//! image itself: the runtime does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bpfk_common::events::EventType;
use k8s_openapi::api::core::v1::Container;

use crate::cri::{proto, CriClient, CriError};
use crate::keyring::{lookup, Credential};

/// When an image is pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// The tag of `image` (`nginx:1.14` → `1.14`; none for `nginx` or a digest-only reference).
pub fn image_tag(image: &str) -> Option<&str> {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split_once(':').map(|(_, t)| t)
}

/// The container's policy; unset (an object that skipped the API server's defaulting) is
/// defaulted as there: `:latest` or no tag (and no digest) → Always, else IfNotPresent.
pub fn pull_policy(container: &Container) -> PullPolicy {
    match container.image_pull_policy.as_deref() {
        Some("Always") => PullPolicy::Always,
        Some("Never") => PullPolicy::Never,
        Some("IfNotPresent") => PullPolicy::IfNotPresent,
        _ => {
            let image = container.image.as_deref().unwrap_or_default();
            match image_tag(image) {
                Some(t) if t != "latest" => PullPolicy::IfNotPresent,
                _ if image.contains('@') => PullPolicy::IfNotPresent,
                _ => PullPolicy::Always,
            }
        }
    }
}

/// An event to record about the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullEvent {
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

fn normal(reason: &'static str, message: String) -> PullEvent {
    PullEvent {
        type_: EventType::Normal,
        reason,
        message,
    }
}

fn warning(reason: &'static str, message: String) -> PullEvent {
    PullEvent {
        type_: EventType::Warning,
        reason,
        message,
    }
}

/// Why a container's image is not there: the waiting reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    pub reason: &'static str,
    pub message: String,
}

/// One back-off entry: when the last pull failed, how long to wait, and its error.
#[derive(Debug, Clone)]
struct Failure {
    at: Instant,
    delay: Duration,
    error: String,
}

/// Pull failures by key (`<pod uid>/<image>`): Kubernetes' flowcontrol back-off.
#[derive(Debug)]
pub struct PullBackOff {
    base: Duration,
    max: Duration,
    failures: HashMap<String, Failure>,
}

impl PullBackOff {
    pub fn new(base: Duration, max: Duration) -> PullBackOff {
        PullBackOff {
            base,
            max,
            failures: HashMap::new(),
        }
    }

    /// The last error while `key` still waits out its back-off at `now`.
    pub fn waiting(&self, key: &str, now: Instant) -> Option<&str> {
        let f = self.failures.get(key)?;
        (now < f.at + f.delay).then_some(f.error.as_str())
    }

    /// Records a failed pull: the first waits `base`, each next one twice as long (up to
    /// `max`); an entry idle for twice `max` starts over. Returns the delay.
    pub fn failed(&mut self, key: &str, now: Instant, error: String) -> Duration {
        let (base, max) = (self.base, self.max);
        self.failures
            .retain(|_, f| now.duration_since(f.at) < 2 * max);
        let delay = match self.failures.get(key) {
            Some(f) => (f.delay * 2).min(max),
            None => base,
        };
        self.failures.insert(
            key.to_string(),
            Failure {
                at: now,
                delay,
                error,
            },
        );
        delay
    }

    pub fn succeeded(&mut self, key: &str) {
        self.failures.remove(key);
    }
}

/// What [`ImageManager::ensure`] needs to know about the pull.
pub struct PullRequest<'a> {
    pub pod_uid: &'a str,
    pub container: &'a Container,
    /// Credentials of the pod's imagePullSecrets.
    pub credentials: &'a [Credential],
    pub sandbox: Option<&'a proto::PodSandboxConfig>,
}

/// The outcome: the image id to run, or why not; and the events to record.
pub type Ensured = (Result<String, NotReady>, Vec<PullEvent>);

/// Pulls images for all pod workers.
pub struct ImageManager {
    cri: CriClient,
    /// Held during a pull when pulls are serialized.
    serial: Option<tokio::sync::Mutex<()>>,
    backoff: Mutex<PullBackOff>,
}

/// The runtime's message of a failed call (not tonic's whole status dump).
fn cri_message(e: &CriError) -> String {
    match e {
        CriError::Call { status, .. } => status.message().to_string(),
        other => other.to_string(),
    }
}

impl ImageManager {
    pub fn new(cri: CriClient, serialize: bool, backoff: PullBackOff) -> ImageManager {
        ImageManager {
            cri,
            serial: serialize.then(|| tokio::sync::Mutex::new(())),
            backoff: Mutex::new(backoff),
        }
    }

    /// Makes sure the container's image is present as its policy says; returns its id.
    pub async fn ensure(&self, req: &PullRequest<'_>) -> Ensured {
        let image = req.container.image.clone().unwrap_or_default();
        let policy = pull_policy(req.container);
        let present = match self.cri.image_status(&image).await {
            Ok(p) => p,
            Err(e) => {
                let message = format!("Failed to inspect image {image:?}: {}", cri_message(&e));
                return (
                    Err(NotReady {
                        reason: "ImageInspectError",
                        message: message.clone(),
                    }),
                    vec![warning("InspectFailed", message)],
                );
            }
        };
        let already = |id: String| {
            let message = format!("Container image {image:?} already present on machine");
            (Ok(id), vec![normal("Pulled", message)])
        };
        match (policy, present) {
            (PullPolicy::Never, Some(p)) | (PullPolicy::IfNotPresent, Some(p)) => already(p.id),
            (PullPolicy::Never, None) => {
                let message =
                    format!("Container image {image:?} is not present with pull policy of Never");
                (
                    Err(NotReady {
                        reason: "ErrImageNeverPull",
                        message: message.clone(),
                    }),
                    vec![warning("ErrImageNeverPull", message)],
                )
            }
            _ => self.pull(req, &image).await,
        }
    }

    async fn pull(&self, req: &PullRequest<'_>, image: &str) -> Ensured {
        let key = format!("{}/{image}", req.pod_uid);
        let waiting = self
            .backoff
            .lock()
            .ok()
            .and_then(|b| b.waiting(&key, Instant::now()).map(str::to_string));
        if let Some(error) = waiting {
            let message = format!("Back-off pulling image {image:?}: ErrImagePull: {error}");
            return (
                Err(NotReady {
                    reason: "ImagePullBackOff",
                    message,
                }),
                vec![normal(
                    "BackOff",
                    format!("Back-off pulling image {image:?}"),
                )],
            );
        }
        let mut events = vec![normal("Pulling", format!("Pulling image {image:?}"))];
        let queued = Instant::now();
        let _turn = match &self.serial {
            Some(m) => Some(m.lock().await),
            None => None,
        };
        let started = Instant::now();
        match self.pull_with_credentials(req, image).await {
            Ok(id) => {
                let (took, total) = (started.elapsed(), queued.elapsed());
                if let Ok(mut b) = self.backoff.lock() {
                    b.succeeded(&key);
                }
                let size = match self.cri.image_status(&id).await {
                    Ok(Some(i)) => format!(" Image size: {} bytes.", i.size),
                    _ => String::new(),
                };
                events.push(normal("Pulled", format!(
                    "Successfully pulled image {image:?} in {took:.3?} ({total:.3?} including waiting).{size}"
                )));
                (Ok(id), events)
            }
            Err(error) => {
                if let Ok(mut b) = self.backoff.lock() {
                    b.failed(&key, Instant::now(), error.clone());
                }
                events.push(warning(
                    "Failed",
                    format!("Failed to pull image {image:?}: {error}"),
                ));
                events.push(warning("Failed", "Error: ErrImagePull".into()));
                (
                    Err(NotReady {
                        reason: "ErrImagePull",
                        message: error,
                    }),
                    events,
                )
            }
        }
    }

    /// Tries each matching credential in turn (anonymous when none matches); the last
    /// error when all fail.
    async fn pull_with_credentials(
        &self,
        req: &PullRequest<'_>,
        image: &str,
    ) -> Result<String, String> {
        let matching = lookup(req.credentials, image);
        let attempts: Vec<Option<proto::AuthConfig>> = if matching.is_empty() {
            vec![None]
        } else {
            matching.iter().map(|c| Some(c.to_cri())).collect()
        };
        let mut last = String::new();
        for auth in attempts {
            let sandbox = req.sandbox.cloned();
            match self.cri.pull_image(image, auth, sandbox).await {
                Ok(id) => {
                    tracing::info!(%image, %id, "image pulled");
                    return Ok(id);
                }
                Err(e) => last = cri_message(&e),
            }
        }
        tracing::warn!(%image, error = %last, "image pull failed");
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(image: &str, policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            image_pull_policy: policy.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn policy_defaults_follow_the_tag() {
        assert_eq!(pull_policy(&container("nginx", None)), PullPolicy::Always);
        assert_eq!(
            pull_policy(&container("nginx:latest", None)),
            PullPolicy::Always
        );
        assert_eq!(
            pull_policy(&container("nginx:1.14", None)),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            pull_policy(&container("registry.bpfk.lab:5000/nginx", None)),
            PullPolicy::Always,
            "a registry port is no tag"
        );
        assert_eq!(
            pull_policy(&container("x@sha256:0123", None)),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            pull_policy(&container("nginx", Some("Never"))),
            PullPolicy::Never
        );
        assert_eq!(image_tag("a.b:5000/x/y:2"), Some("2"));
    }

    #[test]
    fn back_off_doubles_to_the_maximum_and_resets() {
        let mut b = PullBackOff::new(Duration::from_secs(10), Duration::from_secs(300));
        let t0 = Instant::now();
        assert_eq!(b.waiting("k", t0), None);
        assert_eq!(
            b.failed("k", t0, "401 Unauthorized".into()),
            Duration::from_secs(10)
        );
        assert_eq!(
            b.waiting("k", t0 + Duration::from_secs(5)),
            Some("401 Unauthorized")
        );
        assert_eq!(b.waiting("k", t0 + Duration::from_secs(10)), None);
        let mut t = t0;
        let mut delays = Vec::new();
        for _ in 0..7 {
            t += Duration::from_secs(11);
            delays.push(b.failed("k", t, "e".into()).as_secs());
        }
        assert_eq!(delays, [20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.waiting("other", t), None, "per key");
        b.succeeded("k");
        assert_eq!(b.waiting("k", t), None);
        assert_eq!(b.failed("k", t, "e".into()), Duration::from_secs(10));
        let much_later = t + Duration::from_secs(601);
        assert_eq!(
            b.failed("k", much_later, "e".into()),
            Duration::from_secs(10),
            "idle entries expire"
        );
    }
}
