//! Helpers shared by the controllers: owner references, pod readiness, selectors, names.

use std::collections::BTreeMap;

use bpfk_apimachinery::selectors::Selector;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;

use crate::error::{Error, Result};

/// The controlling owner reference of an object, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_ref(meta).is_some_and(|o| o.uid == uid)
}

/// A `controller: true` owner reference pointing at `owner`.
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    let meta = owner.meta();
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// `namespace/name` of an object, for messages.
pub fn key(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

/// Parses a `metav1.LabelSelector` field.
pub fn selector(meta: &ObjectMeta, field: &str, sel: &LabelSelector) -> Result<Selector> {
    Selector::from_label_selector(sel).map_err(|e| Error::Invalid {
        object: key(meta),
        field: field.into(),
        reason: e.to_string(),
    })
}

/// Labels of an object (empty when unset).
pub fn labels(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    meta.labels.as_ref().unwrap_or(&EMPTY)
}

/// A pod that counts toward its owner's replicas: not being deleted and not finished.
pub fn is_pod_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// The pod's Ready condition status and when it last changed.
fn ready_condition(pod: &Pod) -> Option<(bool, Option<Timestamp>)> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| {
            (
                c.status == "True",
                c.last_transition_time.as_ref().map(|t| t.0),
            )
        })
}

/// When the pod's Ready condition last changed, if it has one with a time.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod).and_then(|(_, since)| since)
}

/// Whether the pod's Ready condition is True.
pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|(r, _)| r)
}

/// Whether the pod has been ready for at least `min_ready_seconds` at `now`. Returns
/// `(available, seconds until it becomes available if ready but not yet available)`.
pub fn pod_availability(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> (bool, Option<u64>) {
    match ready_condition(pod) {
        Some((true, since)) => {
            if min_ready_seconds <= 0 {
                return (true, None);
            }
            let Some(since) = since else {
                return (true, None);
            };
            let ready_for = now.as_second() - since.as_second();
            if ready_for >= i64::from(min_ready_seconds) {
                (true, None)
            } else {
                (
                    false,
                    Some((i64::from(min_ready_seconds) - ready_for) as u64),
                )
            }
        }
        _ => (false, None),
    }
}

/// Characters Kubernetes uses for generated name suffixes (no vowels, no confusable digits).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A random suffix of `n` safe characters, as `generateName` produces.
pub fn random_suffix(n: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| SAFE_ALPHABET[rng.gen_range(0..SAFE_ALPHABET.len())] as char)
        .collect()
}

/// Maps every character of `s` into the safe alphabet (Kubernetes' `SafeEncodeString`).
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHABET[b as usize % SAFE_ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn availability_honours_min_ready_seconds() {
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
            .unwrap();
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert!(is_pod_ready(&pod));
        assert_eq!(pod_availability(&pod, 0, t0), (true, None));
        assert_eq!(pod_availability(&pod, 10, t0), (false, Some(10)));
        let later: Timestamp = "2026-01-01T00:00:10Z".parse().unwrap();
        assert_eq!(pod_availability(&pod, 10, later), (true, None));
    }

    #[test]
    fn suffixes_use_the_safe_alphabet() {
        let s = random_suffix(5);
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|b| SAFE_ALPHABET.contains(&b)));
        assert_eq!(safe_encode("0123"), safe_encode("0123"));
        assert_eq!(safe_encode("0").len(), 1);
    }
}
