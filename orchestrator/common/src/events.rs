//! Events for `kubectl describe` and `kubectl events`, recorded through kube's
//! [`Recorder`] (`events.k8s.io/v1` Events, which the API server stores as core/v1 Events and
//! serves through both versions; a repeat of the same event within kube's cache window
//! becomes a series on the first object instead of a new one). Recording is best effort,
//! as in Kubernetes' components: a failed write is logged, never a failure of the work.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;

pub use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// A recorder reporting as `component` (`default-scheduler`, `replicaset-controller`), its
/// instance being `<component>-<hostname>` as Kubernetes' components name theirs.
pub fn recorder(client: Client, component: &str) -> Recorder {
    Recorder::new(client, reporter(component, host_name().as_deref()))
}

/// The reporter `component` on the host `host`.
pub fn reporter(component: &str, host: Option<&str>) -> Reporter {
    Reporter {
        controller: component.to_string(),
        instance: Some(match host {
            Some(h) if !h.is_empty() => format!("{component}-{h}"),
            _ => component.to_string(),
        }),
    }
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
}

/// The event `reason` of `type_` for `action`, with `note`.
pub fn event(type_: EventType, reason: &str, action: &str, note: String) -> Event {
    Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    }
}

/// Records `ev` about `regarding`, logging (not returning) a failure.
pub async fn record(recorder: &Recorder, regarding: &ObjectReference, ev: Event) {
    if let Err(e) = recorder.publish(&ev, regarding).await {
        tracing::debug!(error = %e, reason = %ev.reason, "could not record event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_names_component_and_host() {
        let r = reporter("default-scheduler", Some("node-a"));
        assert_eq!(r.controller, "default-scheduler");
        assert_eq!(r.instance.as_deref(), Some("default-scheduler-node-a"));
        let r = reporter("kubelet", None);
        assert_eq!(r.instance.as_deref(), Some("kubelet"));
    }
}
