//! Writes decisions to the API server: bindings, the `PodScheduled=False` condition and
//! `Scheduled` and `FailedScheduling` events (through kube's event recorder).

use bpfk_common::api_error::api_code;
use bpfk_common::events::{self, EventType, Recorder};
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

/// How a binding attempt ended.
#[derive(Debug)]
pub enum BindResult {
    /// The pod is bound.
    Bound,
    /// The pod was bound elsewhere or deleted meanwhile: nothing to do.
    Gone,
    /// Transient failure: retry later.
    Failed(kube::Error),
}

/// POSTs a `Binding` to `pods/NAME/binding`.
pub async fn bind(
    client: Client,
    namespace: &str,
    name: &str,
    uid: &str,
    node: &str,
) -> BindResult {
    let api: Api<Pod> = Api::namespaced(client, namespace);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            uid: Some(uid.to_string()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    };
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => BindResult::Bound,
        Err(e) if matches!(api_code(&e), Some(404 | 409)) => {
            tracing::debug!(pod = %format!("{namespace}/{name}"), error = %e, "binding refused, pod bound or gone");
            BindResult::Gone
        }
        Err(e) => BindResult::Failed(e),
    }
}

/// Sets `PodScheduled=False, reason Unschedulable` with `message` on the pod (keeping its other
/// conditions) and records a `FailedScheduling` event. Errors are logged, not returned: the
/// next attempt reports again.
pub async fn report_unschedulable(client: Client, recorder: &Recorder, pod: &Pod, message: &str) {
    let (Some(ns), Some(name)) = (
        pod.metadata.namespace.as_deref(),
        pod.metadata.name.as_deref(),
    ) else {
        return;
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let already = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message));
    if !already {
        let mut conditions: Vec<serde_json::Value> = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.type_ != "PodScheduled")
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect();
        conditions.push(json!({
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": now,
        }));
        let patch = json!({"status": {"phase": "Pending", "conditions": conditions}});
        let api: Api<Pod> = Api::namespaced(client.clone(), ns);
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "could not set PodScheduled=False");
        }
    }
    let note = message.to_string();
    let regarding = pod_reference(pod);
    let ev = events::event(EventType::Warning, "FailedScheduling", "Scheduling", note);
    events::record(recorder, &regarding, ev).await;
}

/// Records `Scheduled` about the pod `regarding` bound to `node`.
pub async fn report_scheduled(recorder: &Recorder, regarding: &ObjectReference, node: &str) {
    let ns = regarding.namespace.as_deref().unwrap_or_default();
    let name = regarding.name.as_deref().unwrap_or_default();
    let note = format!("Successfully assigned {ns}/{name} to {node}");
    let ev = events::event(EventType::Normal, "Scheduled", "Binding", note);
    events::record(recorder, regarding, ev).await;
}

/// The reference events about `pod` carry.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        ..Default::default()
    }
}
