//! Events for `kubectl describe`, recorded through the interface of kube's
//! [`kube::runtime::events::Recorder`] (same [`Event`], [`EventType`] and [`Reporter`], same
//! `new` and `publish`). kube's recorder writes `events.k8s.io/v1` Events; bpfk's API server
//! serves core/v1 Events only, so this one writes those (one object per event, named
//! `<object>.<nanoseconds>` as kube's are).

use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;

pub use kube::runtime::events::{Event, EventType, Reporter};

/// Publishes events as one reporting component (and instance).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    reporter: Reporter,
}

impl Recorder {
    /// A recorder for the component `reporter` names.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Recorder { client, reporter }
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
        let event = self.core_event(ev, reference, Timestamp::now());
        let api: Api<CoreEvent> = Api::namespaced(self.client.clone(), event_namespace(reference));
        api.create(&PostParams::default(), &event).await?;
        Ok(())
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
