//! The files of configMap, secret, downwardAPI and projected volumes (pure): which keys,
//! under which paths (`items`), with which modes (`defaultMode`, per-item `mode`), and what
//! a missing object or key means (`optional`). Errors name the object and key, never a
//! value.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DownwardAPIVolumeFile, KeyToPath, Pod, ServiceAccountTokenProjection, Volume, VolumeProjection,
};

use super::atomic_writer::{FileProjection, Payload};
use crate::cri_config::PodRef;
use crate::downward::{field_value, resource_value, FieldValues};
use crate::env::find_container;
use crate::objects::Objects;

/// Kubernetes' default file mode of these volumes (0644).
pub const DEFAULT_MODE: i32 = 0o644;

/// A projected service account token, supplied by whoever can request one (the TokenRequest
/// API); the volume code only places it.
pub trait TokenSource: Sync {
    /// The token for `projection`, or why there is none.
    fn token(&self, projection: &ServiceAccountTokenProjection) -> Result<String, String>;
}

/// No tokens: a serviceAccountToken projection is an error naming the missing support.
pub struct NoTokens;

impl TokenSource for NoTokens {
    fn token(&self, p: &ServiceAccountTokenProjection) -> Result<String, String> {
        Err(format!(
            "serviceAccountToken projection {:?}: this kubelet cannot request service account tokens yet",
            p.path
        ))
    }
}

/// Everything the volume payloads read.
pub struct VolumeInputs<'a> {
    pub pod: &'a Pod,
    pub id: &'a PodRef,
    pub values: &'a FieldValues,
    pub objects: &'a Objects,
    pub tokens: &'a dyn TokenSource,
}

fn mode_bits(mode: Option<i32>, default: i32) -> u32 {
    (mode.unwrap_or(default) & 0o7777) as u32
}

/// The files for `keys` (all of them, or the `items`); `missing_key` makes the error for a
/// listed key that does not exist (skipped when `optional`).
fn key_files(
    keys: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    missing_key: impl Fn(&str) -> String,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    let Some(items) = items.filter(|i| !i.is_empty()) else {
        for (key, data) in keys {
            let mode = mode_bits(None, default_mode);
            out.insert(key, FileProjection { data, mode });
        }
        return Ok(out);
    };
    for item in items {
        let Some(data) = keys.get(&item.key) else {
            if optional {
                continue;
            }
            return Err(missing_key(&item.key));
        };
        let mode = mode_bits(item.mode, default_mode);
        let data = data.clone();
        out.insert(item.path.clone(), FileProjection { data, mode });
    }
    Ok(out)
}

fn config_map_files(
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    default_mode: i32,
    objects: &Objects,
) -> Result<Payload, String> {
    let optional = optional.unwrap_or(false);
    let Some(cm) = objects.config_map(name) else {
        return match optional {
            true => Ok(Payload::new()),
            false => Err(format!("configmap {name:?} not found")),
        };
    };
    let mut keys: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in cm.data.iter().flatten() {
        keys.insert(k.clone(), v.as_bytes().to_vec());
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        keys.insert(k.clone(), v.0.clone());
    }
    key_files(keys, items, default_mode, optional, |k| {
        format!("configmap {name:?} references non-existent config key: {k}")
    })
}

fn secret_files(
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    default_mode: i32,
    objects: &Objects,
) -> Result<Payload, String> {
    let optional = optional.unwrap_or(false);
    let Some(secret) = objects.secret(name) else {
        return match optional {
            true => Ok(Payload::new()),
            false => Err(format!("secret {name:?} not found")),
        };
    };
    let keys = secret.data.iter().flatten();
    let keys = keys.map(|(k, v)| (k.clone(), v.0.clone())).collect();
    key_files(keys, items, default_mode, optional, |k| {
        format!("secret {name:?} references non-existent secret key: {k}")
    })
}

fn downward_files(
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    inputs: &VolumeInputs,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            field_value(inputs.pod, inputs.id, &f.field_path, inputs.values, true).ok_or_else(
                || {
                    format!(
                        "downwardAPI {:?}: unsupported fieldRef {:?}",
                        item.path, f.field_path
                    )
                },
            )?
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or_default();
            let c = find_container(inputs.pod, name).ok_or_else(|| {
                format!(
                    "downwardAPI {:?}: resourceFieldRef: no container {name:?}",
                    item.path
                )
            })?;
            resource_value(c, r, inputs.values)
                .map_err(|e| format!("downwardAPI {:?}: {e}", item.path))?
        } else {
            return Err(format!(
                "downwardAPI {:?}: neither fieldRef nor resourceFieldRef",
                item.path
            ));
        };
        let mode = mode_bits(item.mode, default_mode);
        out.insert(
            item.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode,
            },
        );
    }
    Ok(out)
}

fn projection_files(
    source: &VolumeProjection,
    default_mode: i32,
    inputs: &VolumeInputs,
) -> Result<Payload, String> {
    if let Some(cm) = &source.config_map {
        let items = cm.items.as_deref();
        return config_map_files(&cm.name, items, cm.optional, default_mode, inputs.objects);
    }
    if let Some(s) = &source.secret {
        let items = s.items.as_deref();
        return secret_files(&s.name, items, s.optional, default_mode, inputs.objects);
    }
    if let Some(d) = &source.downward_api {
        return downward_files(d.items.as_deref().unwrap_or_default(), default_mode, inputs);
    }
    if let Some(t) = &source.service_account_token {
        let token = inputs.tokens.token(t)?;
        let file = FileProjection {
            data: token.into_bytes(),
            mode: mode_bits(None, default_mode),
        };
        return Ok(Payload::from([(t.path.clone(), file)]));
    }
    Err("projected volume source of an unsupported kind".into())
}

/// The files of `volume` when it is a configMap, secret, downwardAPI or projected volume
/// (None for other kinds), or why they cannot be made (`configmap "x" not found`).
pub fn volume_payload(volume: &Volume, inputs: &VolumeInputs) -> Option<Result<Payload, String>> {
    if let Some(cm) = &volume.config_map {
        let mode = cm.default_mode.unwrap_or(DEFAULT_MODE);
        let items = cm.items.as_deref();
        return Some(config_map_files(
            &cm.name,
            items,
            cm.optional,
            mode,
            inputs.objects,
        ));
    }
    if let Some(s) = &volume.secret {
        let mode = s.default_mode.unwrap_or(DEFAULT_MODE);
        let name = s.secret_name.clone().unwrap_or_default();
        return Some(secret_files(
            &name,
            s.items.as_deref(),
            s.optional,
            mode,
            inputs.objects,
        ));
    }
    if let Some(d) = &volume.downward_api {
        let mode = d.default_mode.unwrap_or(DEFAULT_MODE);
        return Some(downward_files(
            d.items.as_deref().unwrap_or_default(),
            mode,
            inputs,
        ));
    }
    let p = volume.projected.as_ref()?;
    let mode = p.default_mode.unwrap_or(DEFAULT_MODE);
    let mut out = Payload::new();
    for source in p.sources.iter().flatten() {
        match projection_files(source, mode, inputs) {
            Ok(files) => out.extend(files),
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use std::sync::Arc;

    fn fixture() -> (Pod, PodRef, Objects) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}
        }))
        .unwrap();
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cfg"}, "data": {"a.conf": "A", "b.conf": "B"},
            "binaryData": {"blob": "AAEC"}
        }))
        .unwrap();
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "creds"}, "data": {"password": "aHVudGVyMg=="}
        }))
        .unwrap();
        let objects = Objects {
            config_maps: [("cfg".to_string(), Some(Arc::new(cm)))].into(),
            secrets: [("creds".to_string(), Some(Arc::new(secret)))].into(),
        };
        let id = PodRef::of(&pod).unwrap();
        (pod, id, objects)
    }

    fn payload_of(volume: serde_json::Value) -> Result<Payload, String> {
        let (pod, id, objects) = fixture();
        let values = FieldValues::default();
        let inputs = VolumeInputs {
            pod: &pod,
            id: &id,
            values: &values,
            objects: &objects,
            tokens: &NoTokens,
        };
        let v: Volume = serde_json::from_value(volume).unwrap();
        volume_payload(&v, &inputs).expect("an API-backed volume")
    }

    #[test]
    fn config_map_all_keys_items_and_modes() {
        let p = payload_of(serde_json::json!({"name": "v", "configMap": {"name": "cfg"}})).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["a.conf", "b.conf", "blob"]);
        assert_eq!(p["blob"].data, [0, 1, 2]);
        assert_eq!(p["a.conf"].mode, 0o644);
        let p = payload_of(serde_json::json!({"name": "v", "configMap": {"name": "cfg", "defaultMode": 0o400,
            "items": [{"key": "a.conf", "path": "conf/app.conf"}, {"key": "b.conf", "path": "b", "mode": 0o600}]}}))
        .unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["b", "conf/app.conf"]);
        assert_eq!((p["conf/app.conf"].mode, p["b"].mode), (0o400, 0o600));
    }

    #[test]
    fn missing_objects_and_keys() {
        let e = payload_of(serde_json::json!({"name": "v", "configMap": {"name": "nope"}}))
            .unwrap_err();
        assert_eq!(e, "configmap \"nope\" not found");
        let p = payload_of(
            serde_json::json!({"name": "v", "configMap": {"name": "nope", "optional": true}}),
        );
        assert!(p.unwrap().is_empty());
        let e = payload_of(
            serde_json::json!({"name": "v", "secret": {"secretName": "creds",
            "items": [{"key": "user", "path": "u"}]}}),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "secret \"creds\" references non-existent secret key: user"
        );
        assert!(!e.contains("hunter2"));
        let p = payload_of(
            serde_json::json!({"name": "v", "secret": {"secretName": "creds", "optional": true,
            "items": [{"key": "user", "path": "u"}, {"key": "password", "path": "p"}]}}),
        )
        .unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["p"]);
        assert_eq!(p["p"].data, b"hunter2");
    }

    #[test]
    fn downward_and_projected() {
        let p = payload_of(serde_json::json!({"name": "v", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "requests.cpu", "divisor": "1m"}}
        ]}}))
        .unwrap();
        assert_eq!(p["labels"].data, b"app=\"web\"");
        assert_eq!(p["cpu"].data, b"500");
        let p = payload_of(serde_json::json!({"name": "v", "projected": {"defaultMode": 0o440, "sources": [
            {"configMap": {"name": "cfg", "items": [{"key": "a.conf", "path": "a"}]}},
            {"secret": {"name": "creds"}},
            {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}
        ]}}))
        .unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["a", "name", "password"]);
        assert!(p.values().all(|f| f.mode == 0o440));
        let e = payload_of(serde_json::json!({"name": "v", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token"}}]}}))
        .unwrap_err();
        assert!(e.contains("serviceAccountToken"), "{e}");
        let v: Volume =
            serde_json::from_value(serde_json::json!({"name": "v", "emptyDir": {}})).unwrap();
        let (pod, id, objects) = fixture();
        let values = FieldValues::default();
        let inputs = VolumeInputs {
            pod: &pod,
            id: &id,
            values: &values,
            objects: &objects,
            tokens: &NoTokens,
        };
        assert!(volume_payload(&v, &inputs).is_none());
    }
}
