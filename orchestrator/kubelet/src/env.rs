//! A container's environment (pure): `envFrom` sources first (ConfigMap / Secret keys with
//! an optional prefix; keys that are no valid variable names are skipped and reported),
//! then `env` (values with `$(VAR)` expansion, `fieldRef`, `resourceFieldRef`,
//! `configMapKeyRef`, `secretKeyRef`, each with `optional`). Errors name the object and the
//! key, never a value.

use k8s_openapi::api::core::v1::{Container, EnvFromSource, EnvVar, EnvVarSource, Pod};

use crate::cri_config::{expand, PodRef};
use crate::downward::{field_value, resource_value, FieldValues};
use crate::objects::Objects;

/// Keys of one envFrom source that were skipped (invalid variable names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKeys {
    /// `configMap` or `secret`.
    pub kind: &'static str,
    /// `<namespace>/<name>`.
    pub source: String,
    pub keys: Vec<String>,
}

impl SkippedKeys {
    /// The message of Kubernetes' `InvalidEnvironmentVariableNames` event.
    pub fn message(&self) -> String {
        format!(
            "Keys [{}] from the EnvFrom {} {} were skipped since they are considered invalid environment variable names.",
            self.keys.join(", "),
            self.kind,
            self.source
        )
    }
}

/// The environment, and what envFrom skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    pub vars: Vec<(String, String)>,
    pub skipped: Vec<SkippedKeys>,
}

impl Environment {
    fn set(&mut self, name: String, value: String) {
        self.vars.retain(|(n, _)| n != &name);
        self.vars.push((name, value));
    }
}

/// Kubernetes' rule for environment variable names: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || "-._".contains(c));
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// Everything [`environment`] reads besides the container.
pub struct EnvInputs<'a> {
    pub pod: &'a Pod,
    pub id: &'a PodRef,
    pub values: &'a FieldValues,
    pub objects: &'a Objects,
    /// The Service variables ([`crate::service_env`]): below the container's own.
    pub services: &'a [(String, String)],
}

/// An envFrom source's kind, `<namespace>/<name>` and its (key, value) pairs.
type SourceKeys = (&'static str, String, Vec<(String, String)>);

fn env_from_keys(from: &EnvFromSource, inputs: &EnvInputs) -> Result<Option<SourceKeys>, String> {
    let ns = &inputs.id.namespace;
    if let Some(r) = &from.config_map_ref {
        let Some(cm) = inputs.objects.config_map(&r.name) else {
            return match r.optional {
                Some(true) => Ok(None),
                _ => Err(format!("configmap {:?} not found", r.name)),
            };
        };
        let data = cm.data.clone().unwrap_or_default().into_iter().collect();
        return Ok(Some(("configMap", format!("{ns}/{}", r.name), data)));
    }
    if let Some(r) = &from.secret_ref {
        let Some(secret) = inputs.objects.secret(&r.name) else {
            return match r.optional {
                Some(true) => Ok(None),
                _ => Err(format!("secret {:?} not found", r.name)),
            };
        };
        let data = secret.data.iter().flatten();
        let data = data
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        return Ok(Some(("secret", format!("{ns}/{}", r.name), data)));
    }
    Ok(None)
}

fn add_env_from(
    out: &mut Environment,
    from: &EnvFromSource,
    inputs: &EnvInputs,
) -> Result<(), String> {
    let Some((kind, source, data)) = env_from_keys(from, inputs)? else {
        return Ok(());
    };
    let prefix = from.prefix.as_deref().unwrap_or_default();
    let mut skipped = Vec::new();
    for (key, value) in data {
        let name = format!("{prefix}{key}");
        if is_env_var_name(&name) {
            out.set(name, value);
        } else {
            skipped.push(key);
        }
    }
    if !skipped.is_empty() {
        skipped.sort();
        out.skipped.push(SkippedKeys {
            kind,
            source,
            keys: skipped,
        });
    }
    Ok(())
}

/// The value of `valueFrom`; None: an optional reference that does not resolve (the
/// variable is left out).
fn value_from(
    name: &str,
    from: &EnvVarSource,
    container: &Container,
    inputs: &EnvInputs,
) -> Result<Option<String>, String> {
    let ns = &inputs.id.namespace;
    if let Some(f) = &from.field_ref {
        return field_value(inputs.pod, inputs.id, &f.field_path, inputs.values, false)
            .map(Some)
            .ok_or_else(|| format!("env {name}: unsupported fieldRef {:?}", f.field_path));
    }
    if let Some(r) = &from.resource_field_ref {
        let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
            Some(other) => find_container(inputs.pod, other)
                .ok_or_else(|| format!("env {name}: resourceFieldRef: no container {other:?}"))?,
            None => container,
        };
        return resource_value(target, r, inputs.values)
            .map(Some)
            .map_err(|e| format!("env {name}: {e}"));
    }
    let optional = |o: Option<bool>, err: String| match o {
        Some(true) => Ok(None),
        _ => Err(err),
    };
    if let Some(r) = &from.config_map_key_ref {
        let Some(cm) = inputs.objects.config_map(&r.name) else {
            return optional(r.optional, format!("configmap {:?} not found", r.name));
        };
        return match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
            Some(v) => Ok(Some(v.clone())),
            None => optional(
                r.optional,
                format!("couldn't find key {} in ConfigMap {ns}/{}", r.key, r.name),
            ),
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let Some(secret) = inputs.objects.secret(&r.name) else {
            return optional(r.optional, format!("secret {:?} not found", r.name));
        };
        return match secret.data.as_ref().and_then(|d| d.get(&r.key)) {
            Some(v) => Ok(Some(String::from_utf8_lossy(&v.0).into_owned())),
            None => optional(
                r.optional,
                format!("couldn't find key {} in Secret {ns}/{}", r.key, r.name),
            ),
        };
    }
    Err(format!("env {name}: valueFrom names no source"))
}

/// A container (or init container) of `pod` by name.
pub fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// `container`'s environment, or why it cannot be built (`configmap "x" not found`).
pub fn environment(container: &Container, inputs: &EnvInputs) -> Result<Environment, String> {
    let mut out = Environment::default();
    for from in container.env_from.iter().flatten() {
        add_env_from(&mut out, from, inputs)?;
    }
    for EnvVar {
        name,
        value,
        value_from: source,
    } in container.env.iter().flatten()
    {
        let resolved = match (value, source) {
            (Some(v), _) if v.contains("$(") => {
                let known: Vec<(String, String)> =
                    inputs.services.iter().chain(&out.vars).cloned().collect();
                Some(expand(v, &known))
            }
            (Some(v), _) => Some(v.clone()),
            (None, None) => Some(String::new()),
            (None, Some(from)) => value_from(name, from, container, inputs)?,
        };
        if let Some(v) = resolved {
            out.set(name.clone(), v);
        }
    }
    let own: std::collections::HashSet<String> = out.vars.iter().map(|(n, _)| n.clone()).collect();
    for (name, value) in inputs.services {
        if !own.contains(name) {
            out.vars.push((name.clone(), value.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use std::sync::Arc;

    fn fixture() -> (Pod, PodRef, Objects) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "1Gi"}}}]}
        }))
        .unwrap();
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cfg"}, "data": {"mode": "fast", "1bad": "x", "ok.key": "y"}
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

    fn container(spec: serde_json::Value) -> Container {
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn names() {
        for good in ["A", "a_b", "-x", ".y", "A1.b-c"] {
            assert!(is_env_var_name(good), "{good}");
        }
        for bad in ["", "1A", "a b", "a=b", "é"] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
    }

    #[test]
    fn env_from_then_env_with_references() {
        let (pod, id, objects) = fixture();
        let values = FieldValues::default();
        let inputs = EnvInputs {
            pod: &pod,
            id: &id,
            values: &values,
            objects: &objects,
            services: &[],
        };
        let c = container(serde_json::json!({
            "name": "c",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                        {"configMapRef": {"name": "absent", "optional": true}}],
            "env": [
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": true}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "MSG", "value": "$(MODE)-$(CFG_mode)"}
            ]
        }));
        let env = environment(&c, &inputs).unwrap();
        let get = |n: &str| {
            env.vars
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("CFG_mode"), Some("fast"));
        assert_eq!(get("CFG_ok.key"), Some("y"));
        assert_eq!(get("CFG_1bad"), Some("x"), "the prefix makes it valid");
        assert_eq!(get("PASSWORD"), Some("hunter2"));
        assert_eq!(get("GONE"), None);
        assert_eq!(get("MEM"), Some("1024"));
        assert_eq!(get("MSG"), Some("fast-fast"));
        assert!(env.skipped.is_empty());
        let unprefixed = container(serde_json::json!({
            "name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]
        }));
        let env = environment(&unprefixed, &inputs).unwrap();
        assert_eq!(env.skipped.len(), 1);
        assert_eq!(env.skipped[0].keys, ["1bad"]);
        assert!(env.skipped[0].message().contains("configMap prod/cfg"));
    }

    #[test]
    fn service_variables_sit_below_the_containers_own() {
        let (pod, id, objects) = fixture();
        let values = FieldValues::default();
        let services = [
            (
                "KUBERNETES_SERVICE_HOST".to_string(),
                "10.96.0.1".to_string(),
            ),
            ("KUBERNETES_SERVICE_PORT".to_string(), "443".to_string()),
        ];
        let inputs = EnvInputs {
            pod: &pod,
            id: &id,
            values: &values,
            objects: &objects,
            services: &services,
        };
        let c = container(serde_json::json!({"name": "c", "env": [
            {"name": "KUBERNETES_SERVICE_PORT", "value": "6443"},
            {"name": "API", "value": "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"}]}));
        let env = environment(&c, &inputs).unwrap();
        let get = |n: &str| {
            env.vars
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some("6443"));
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
        assert_eq!(get("API"), Some("https://10.96.0.1:6443"));
    }

    #[test]
    fn missing_objects_and_keys_name_them_without_values() {
        let (pod, id, objects) = fixture();
        let values = FieldValues::default();
        let inputs = EnvInputs {
            pod: &pod,
            id: &id,
            values: &values,
            objects: &objects,
            services: &[],
        };
        let err = |spec| environment(&container(spec), &inputs).unwrap_err();
        let e = err(serde_json::json!({"name": "c", "env": [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "k"}}}]}));
        assert_eq!(e, "configmap \"missing\" not found");
        let e = err(serde_json::json!({"name": "c", "env": [
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "user"}}}]}));
        assert_eq!(e, "couldn't find key user in Secret prod/creds");
        let e = err(serde_json::json!({"name": "c", "envFrom": [{"secretRef": {"name": "nope"}}]}));
        assert_eq!(e, "secret \"nope\" not found");
        let e = err(serde_json::json!({"name": "c", "env": [
            {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}]}));
        assert!(e.contains("env X") && e.contains("spec.nope"), "{e}");
        assert!(!e.contains("hunter2"));
    }
}
