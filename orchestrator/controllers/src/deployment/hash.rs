//! The pod-template hash that names a Deployment's ReplicaSets (`<deployment>-<hash>`) and
//! labels their pods (`pod-template-hash`).
//!
//! Like Kubernetes: 32-bit FNV-1a over a deterministic rendering of the template (here its
//! JSON serialization; struct fields in declaration order, maps sorted), followed by the
//! collision count when set, printed in decimal and mapped onto the safe alphabet.

use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::util::safe_encode;

/// Label carrying the hash on ReplicaSets and pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

fn fnv1a(mut h: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The template with the hash label removed (so a ReplicaSet's template compares equal to
/// the Deployment's).
pub fn without_hash_label(t: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = t.clone();
    if let Some(meta) = t.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH);
            if labels.is_empty() {
                meta.labels = None;
            }
        }
    }
    t
}

/// Computes the hash of a pod template.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let t = without_hash_label(template);
    let bytes = serde_json::to_vec(&t).unwrap_or_default();
    let mut h = fnv1a(FNV_OFFSET, &bytes);
    if let Some(c) = collision_count {
        h = fnv1a(h, c.to_string().as_bytes());
    }
    safe_encode(&h.to_string())
}

/// Whether two templates are equal apart from the hash label.
pub fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash_label(a) == without_hash_label(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "nginx"}},
            "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]}
        }))
        .unwrap()
    }

    #[test]
    fn stable_and_sensitive_to_the_template() {
        let a = pod_template_hash(&template("nginx:1.14.2"), None);
        assert_eq!(a, pod_template_hash(&template("nginx:1.14.2"), None));
        assert_ne!(a, pod_template_hash(&template("nginx:1.16.1"), None));
        assert_ne!(a, pod_template_hash(&template("nginx:1.14.2"), Some(1)));
        assert!(!a.is_empty() && a.len() <= 10);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }

    #[test]
    fn hash_label_is_ignored() {
        let t = template("nginx:1.14.2");
        let mut labelled = t.clone();
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), "abc".into());
        assert_eq!(
            pod_template_hash(&t, None),
            pod_template_hash(&labelled, None)
        );
        assert!(equal_ignoring_hash(&t, &labelled));
        assert!(!equal_ignoring_hash(&t, &template("other")));
    }

    #[test]
    fn fnv_known_values() {
        // FNV-1a 32 test vectors
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0x811c9dc5);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xe40c292c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0xbf9cf968);
    }
}
