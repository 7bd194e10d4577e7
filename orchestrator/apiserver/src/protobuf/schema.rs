//! Kubernetes' message types, from the descriptor set `build.rs` compiles out of
//! `proto/kubernetes`: which message a kind is, and which messages JSON shows as something
//! other than an object.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    let bytes: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes.fds"));
    // compiled by protoc at build time: a set that does not load is a build defect
    DescriptorPool::decode(bytes).expect("the compiled Kubernetes descriptor set loads")
});

const META_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
const RUNTIME: &str = "k8s.io.apimachinery.pkg.runtime";

/// The message of `kind` in `api_version` (`v1`, `apps/v1`, `rbac.authorization.k8s.io/v1`):
/// `k8s.io.api.<group's first label>.<version>.<kind>` (`core` for the core group),
/// kube-aggregator's for `apiregistration.k8s.io`, or meta.k8s.io's (`Status`,
/// `PartialObjectMetadata`, `APIResourceList`, ...).
pub fn message_of(api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    if version.is_empty() || kind.is_empty() {
        return None;
    }
    let meta = || {
        POOL.get_message_by_name(&format!(
            "k8s.io.apimachinery.pkg.apis.meta.{version}.{kind}"
        ))
    };
    match group {
        "meta.k8s.io" => meta(),
        "apiregistration.k8s.io" => POOL.get_message_by_name(&format!(
            "k8s.io.kube_aggregator.pkg.apis.apiregistration.{version}.{kind}"
        )),
        "" => POOL
            .get_message_by_name(&format!("k8s.io.api.core.{version}.{kind}"))
            .or_else(meta),
        _ => {
            let package = group.split('.').next().unwrap_or(group);
            POOL.get_message_by_name(&format!("k8s.io.api.{package}.{version}.{kind}"))
        }
    }
}

/// `runtime.Unknown`: the envelope of every protobuf body (type, raw message).
pub fn unknown() -> MessageDescriptor {
    runtime("Unknown")
}

/// `runtime.TypeMeta`: the envelope's `apiVersion` and `kind`.
pub fn type_meta() -> MessageDescriptor {
    runtime("TypeMeta")
}

/// `runtime.RawExtension`: an embedded object's bytes.
pub fn raw_extension() -> MessageDescriptor {
    runtime("RawExtension")
}

/// `meta.v1.WatchEvent`: one event of a watch stream.
pub fn watch_event() -> MessageDescriptor {
    message(&format!("{META_V1}.WatchEvent"))
}

fn runtime(name: &str) -> MessageDescriptor {
    message(&format!("{RUNTIME}.{name}"))
}

fn message(full_name: &str) -> MessageDescriptor {
    POOL.get_message_by_name(full_name)
        .unwrap_or_else(|| panic!("{full_name} is in the compiled Kubernetes descriptor set"))
}

/// How JSON shows a message whose Go type marshals itself (Kubernetes' JSON is the Go
/// types' JSON, not protobuf's JSON mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A JSON object of the message's fields.
    Object,
    /// `meta.v1.Time`: RFC 3339 to the second (`null` when zero).
    Time,
    /// `meta.v1.MicroTime`: RFC 3339 with microseconds.
    MicroTime,
    /// `meta.v1.Duration`: Go's duration text (`1h2m3s`).
    Duration,
    /// `resource.Quantity`: its canonical string.
    Quantity,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// `runtime.RawExtension` and `meta.v1.FieldsV1`: embedded JSON.
    RawJson,
    /// A Go slice type (`ExtraValue`, `Verbs`): a message of one `repeated items = 1`,
    /// which JSON shows as the array.
    Items,
}

/// The JSON shape of messages of `desc`.
pub fn shape(desc: &MessageDescriptor) -> Shape {
    match desc.full_name() {
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => Shape::Time,
        "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => Shape::MicroTime,
        "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => Shape::Duration,
        "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1"
        | "k8s.io.apimachinery.pkg.runtime.RawExtension" => Shape::RawJson,
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => Shape::Quantity,
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => Shape::IntOrString,
        _ if is_items_wrapper(desc) => Shape::Items,
        _ => Shape::Object,
    }
}

/// A message of exactly one field, `repeated <scalar> items = 1`: how go-to-protobuf writes
/// a named Go slice (`type ExtraValue []string`).
fn is_items_wrapper(desc: &MessageDescriptor) -> bool {
    let mut fields = desc.fields();
    let (Some(only), None) = (fields.next(), fields.next()) else {
        return false;
    };
    only.name() == "items"
        && only.number() == 1
        && only.is_list()
        && !matches!(only.kind(), Kind::Message(_))
}

/// The fields whose Go struct is embedded with `json:",inline"` (its fields appear in the
/// outer object in JSON, in a field of their own in protobuf): every such field of the
/// served groups' types at k8s.io/api v0.33.9, by message and field.
const INLINE: [(&str, &str); 11] = [
    ("k8s.io.api.core.v1.Volume", "volumeSource"),
    (
        "k8s.io.api.core.v1.PersistentVolumeSpec",
        "persistentVolumeSource",
    ),
    (
        "k8s.io.api.core.v1.SecretProjection",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapVolumeSource",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapProjection",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapKeySelector",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.SecretKeySelector",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapEnvSource",
        "localObjectReference",
    ),
    ("k8s.io.api.core.v1.SecretEnvSource", "localObjectReference"),
    ("k8s.io.api.core.v1.Probe", "handler"),
    (
        "k8s.io.api.core.v1.EphemeralContainer",
        "ephemeralContainerCommon",
    ),
];

/// Whether `field` holds an embedded struct whose fields JSON shows inline; its message.
pub fn inline(field: &FieldDescriptor) -> Option<MessageDescriptor> {
    let parent = field.parent_message();
    let listed = INLINE
        .iter()
        .any(|(m, f)| *f == field.name() && *m == parent.full_name());
    match (listed, field.kind()) {
        (true, Kind::Message(m)) => Some(m),
        _ => None,
    }
}

/// Every message in the set (for the tests that check the shapes above).
#[cfg(test)]
pub fn all_messages() -> impl Iterator<Item = MessageDescriptor> {
    POOL.all_messages()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_their_messages() {
        let name = |v, k| message_of(v, k).map(|d| d.full_name().to_string());
        assert_eq!(name("v1", "Pod").as_deref(), Some("k8s.io.api.core.v1.Pod"));
        assert_eq!(
            name("v1", "Status").as_deref(),
            Some("k8s.io.apimachinery.pkg.apis.meta.v1.Status")
        );
        assert_eq!(
            name("apps/v1", "Deployment").as_deref(),
            Some("k8s.io.api.apps.v1.Deployment")
        );
        assert_eq!(
            name("rbac.authorization.k8s.io/v1", "ClusterRoleBinding").as_deref(),
            Some("k8s.io.api.rbac.v1.ClusterRoleBinding")
        );
        assert_eq!(
            name("meta.k8s.io/v1", "PartialObjectMetadataList").as_deref(),
            Some("k8s.io.apimachinery.pkg.apis.meta.v1.PartialObjectMetadataList")
        );
        assert_eq!(name("v1", "NoSuchKind"), None);
        assert_eq!(name("", "Pod"), None);
        assert_eq!(name("apps/v1", ""), None);
    }

    #[test]
    fn every_served_kind_and_its_list_has_a_message() {
        for res in bpfk_apimachinery::registry::resources() {
            let api_version = match res.group {
                "" => res.version.to_string(),
                g => format!("{g}/{}", res.version),
            };
            assert!(
                message_of(&api_version, res.kind).is_some(),
                "{api_version} {}",
                res.kind
            );
            assert!(
                message_of(&api_version, res.list_kind).is_some() || !res.supports("list"),
                "{api_version} {}",
                res.list_kind
            );
        }
    }

    #[test]
    fn every_inline_field_is_an_embedded_message() {
        for (message, field) in INLINE {
            let desc = POOL.get_message_by_name(message).expect(message);
            let f = desc.get_field_by_name(field).expect(field);
            assert!(inline(&f).is_some(), "{message}.{field}");
        }
        let pod_spec = POOL
            .get_message_by_name("k8s.io.api.core.v1.PodSpec")
            .unwrap();
        assert!(inline(&pod_spec.get_field_by_name("affinity").unwrap()).is_none());
    }

    #[test]
    fn only_go_slice_types_are_items_wrappers() {
        let mut wrappers: Vec<String> = all_messages()
            .filter(|m| shape(m) == Shape::Items)
            .map(|m| m.full_name().to_string())
            .collect();
        wrappers.sort();
        assert_eq!(
            wrappers,
            [
                "k8s.io.api.authentication.v1.ExtraValue",
                "k8s.io.api.authorization.v1.ExtraValue",
                "k8s.io.api.certificates.v1.ExtraValue",
                "k8s.io.apimachinery.pkg.apis.meta.v1.Verbs",
            ]
        );
    }
}
