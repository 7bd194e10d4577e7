//! Events for `kubectl describe`, recorded through the interface of kube's
//! [`kube::runtime::events::Recorder`] (same [`Event`], [`EventType`] and [`Reporter`], same
//! `new` and `publish`). kube's recorder writes `events.k8s.io/v1` Events; bpfk's API server
//! serves core/v1 Events only, so this one writes those (one object per event, named
//! `<object>.<nanoseconds>` as kube's are). A repeat of the same event (same object, type,
//! reason and message within [`SERIES_WINDOW`]) is counted on the first one, as Kubernetes'
//! event correlator does: `count` grows and `lastTimestamp` moves, so `kubectl describe`
//! shows `(x7 over 20s)` instead of seven lines.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;

pub use kube::runtime::events::{Event, EventType, Reporter};

/// How long a repeated event counts on the earlier one (Kubernetes: 10 minutes).
pub const SERIES_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);
/// The most event series a recorder remembers (the oldest are forgotten beyond).
const SERIES_LIMIT: usize = 4096;

/// What makes two events the same: the object, type, reason and message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    object: (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
    type_: String,
    reason: String,
    message: Option<String>,
}

/// The Event object an event series is counted on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recorded {
    name: String,
    count: i32,
    last: Timestamp,
}

/// The event series a recorder has written.
#[derive(Debug, Default)]
struct Series {
    seen: HashMap<SeriesKey, Recorded>,
}

impl Series {
    /// The series `key` continues at `now`, if one was recorded within the window.
    fn repeat(&mut self, key: &SeriesKey, now: Timestamp) -> Option<Recorded> {
        let r = self.seen.get_mut(key)?;
        let window = k8s_openapi::jiff::SignedDuration::try_from(SERIES_WINDOW).unwrap_or_default();
        if now.duration_since(r.last) > window {
            self.seen.remove(key);
            return None;
        }
        r.count = r.count.saturating_add(1);
        r.last = now;
        Some(r.clone())
    }

    fn start(&mut self, key: SeriesKey, recorded: Recorded) {
        if self.seen.len() >= SERIES_LIMIT {
            if let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, r)| r.last)
                .map(|(k, _)| k.clone())
            {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(key, recorded);
    }

    fn forget(&mut self, key: &SeriesKey) {
        self.seen.remove(key);
    }
}

/// Publishes events as one reporting component (and instance).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    series: Arc<Mutex<Series>>,
}

impl Recorder {
    /// A recorder for the component `reporter` names.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Recorder {
            client,
            reporter,
            series: Arc::default(),
        }
    }

    /// The core/v1 Event for `ev` about the object `reference` at `now`.
    pub fn core_event(&self, ev: &Event, reference: &ObjectReference, now: Timestamp) -> CoreEvent {
        let component = self.reporter.controller.clone();
        let instance = self.reporter.instance.clone();
        let object = reference.name.clone().unwrap_or_else(|| component.clone());
        CoreEvent {
            metadata: ObjectMeta {
                name: Some(format!("{object}.{:x}", now.as_nanosecond())),
                namespace: Some(event_namespace(reference).to_string()),
                ..Default::default()
            },
            involved_object: reference.clone(),
            related: ev.secondary.clone(),
            reason: Some(ev.reason.clone()),
            message: ev.note.clone(),
            type_: Some(match ev.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            action: Some(ev.action.clone()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            source: Some(EventSource {
                component: Some(component.clone()),
                host: instance.clone(),
            }),
            reporting_instance: Some(instance.unwrap_or_else(|| component.clone())),
            reporting_component: Some(component),
            ..Default::default()
        }
    }

    /// Creates the Event for `ev` about `reference` (in its namespace, `default` for
    /// cluster-scoped objects).
    pub async fn publish(
        &self,
        ev: &Event,
        reference: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = series_key(ev, reference);
        let api: Api<CoreEvent> = Api::namespaced(self.client.clone(), event_namespace(reference));
        let repeat = self
            .series
            .lock()
            .ok()
            .and_then(|mut s| s.repeat(&key, now));
        if let Some(r) = repeat {
            let patch = serde_json::json!({"count": r.count, "lastTimestamp": Time(now)});
            match api
                .patch(&r.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // expired or deleted: a new series starts
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    if let Ok(mut s) = self.series.lock() {
                        s.forget(&key);
                    }
                    return Err(e);
                }
            }
        }
        let event = self.core_event(ev, reference, now);
        let created = api.create(&PostParams::default(), &event).await?;
        let recorded = Recorded {
            name: created.metadata.name.unwrap_or_default(),
            count: 1,
            last: now,
        };
        if let Ok(mut s) = self.series.lock() {
            s.start(key, recorded);
        }
        Ok(())
    }
}

fn series_key(ev: &Event, reference: &ObjectReference) -> SeriesKey {
    SeriesKey {
        object: (
            reference.kind.clone(),
            reference.namespace.clone(),
            reference.name.clone(),
            reference.uid.clone(),
        ),
        type_: format!("{:?}", ev.type_),
        reason: ev.reason.clone(),
        message: ev.note.clone(),
    }
}

fn event_namespace(reference: &ObjectReference) -> &str {
    reference
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or("default")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder(instance: Option<&str>) -> Recorder {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let reporter = Reporter {
            controller: "kubelet".into(),
            instance: instance.map(String::from),
        };
        Recorder::new(Client::try_from(config).unwrap(), reporter)
    }

    fn event(type_: EventType) -> Event {
        Event {
            type_,
            reason: "Failed".into(),
            note: Some("boom".into()),
            action: "Start".into(),
            secondary: None,
        }
    }

    #[tokio::test]
    async fn names_the_object_reporter_and_instance() {
        let reference = ObjectReference {
            kind: Some("Pod".into()),
            name: Some("web".into()),
            namespace: Some("prod".into()),
            uid: Some("u1".into()),
            ..Default::default()
        };
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let e = recorder(Some("node-a")).core_event(&event(EventType::Warning), &reference, now);
        assert!(e.metadata.name.unwrap().starts_with("web."));
        assert_eq!(e.metadata.namespace.as_deref(), Some("prod"));
        assert_eq!(e.involved_object.uid.as_deref(), Some("u1"));
        assert_eq!(
            (e.type_.as_deref(), e.reason.as_deref()),
            (Some("Warning"), Some("Failed"))
        );
        assert_eq!(
            (e.message.as_deref(), e.action.as_deref()),
            (Some("boom"), Some("Start"))
        );
        let source = e.source.unwrap();
        assert_eq!(source.host.as_deref(), Some("node-a"));
        assert_eq!(source.component.as_deref(), Some("kubelet"));
        assert_eq!(e.reporting_instance.as_deref(), Some("node-a"));
    }

    #[test]
    fn repeats_within_the_window_count_on_the_first_event() {
        let reference = ObjectReference {
            kind: Some("Pod".into()),
            name: Some("web".into()),
            ..Default::default()
        };
        let key = series_key(&event(EventType::Warning), &reference);
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut series = Series::default();
        assert_eq!(series.repeat(&key, t0), None);
        series.start(
            key.clone(),
            Recorded {
                name: "web.1".into(),
                count: 1,
                last: t0,
            },
        );
        let t1: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let again = series.repeat(&key, t1).unwrap();
        assert_eq!(
            (again.name.as_str(), again.count, again.last),
            ("web.1", 2, t1)
        );
        // another message is another series
        let other = Event {
            note: Some("other".into()),
            ..event(EventType::Warning)
        };
        assert_eq!(series.repeat(&series_key(&other, &reference), t1), None);
        // past the window (counted from the last repeat) a new event starts
        let late: Timestamp = "2026-01-01T00:15:01Z".parse().unwrap();
        assert_eq!(series.repeat(&key, late), None);
        assert_eq!(
            series.repeat(&key, late),
            None,
            "the old series is forgotten"
        );
    }

    #[tokio::test]
    async fn cluster_scoped_objects_get_events_in_default() {
        let reference = ObjectReference {
            kind: Some("Node".into()),
            name: Some("node-a".into()),
            ..Default::default()
        };
        let now = Timestamp::now();
        let e = recorder(None).core_event(&event(EventType::Normal), &reference, now);
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.reporting_instance.as_deref(), Some("kubelet"));
    }
}
