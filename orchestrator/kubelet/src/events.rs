//! Pod events (as `kubectl describe pod` lists them) through the shared
//! [`Recorder`](bpfk_common::events::Recorder), best effort: a failed write is logged at
//! debug level and never fails a sync.

use bpfk_common::events::{Event, EventType, Recorder, Reporter};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::Client;

/// The recorder of the kubelet of `node`.
pub fn recorder(client: Client, node: &str) -> Recorder {
    let reporter = Reporter {
        controller: "kubelet".into(),
        instance: Some(node.into()),
    };
    Recorder::new(client, reporter)
}

/// The reference events about `pod` carry.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(pod.metadata.name.clone().unwrap_or_default()),
        namespace: Some(
            pod.metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
        ),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Records an event about `pod`.
pub async fn record(recorder: &Recorder, pod: &Pod, type_: EventType, reason: &str, message: &str) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(message.into()),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &pod_reference(pod)).await {
        tracing::debug!(error = %e, %reason, "could not record event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_names_the_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "uid": "u1", "resourceVersion": "9"}
        }))
        .unwrap();
        let r = pod_reference(&pod);
        assert_eq!(
            (r.kind.as_deref(), r.name.as_deref()),
            (Some("Pod"), Some("web"))
        );
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(
            (r.uid.as_deref(), r.resource_version.as_deref()),
            (Some("u1"), Some("9"))
        );
    }
}
