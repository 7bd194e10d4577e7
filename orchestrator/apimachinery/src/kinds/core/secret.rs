//! `core/v1 Secret`: base64 `data` under config keys (at most 1 MiB decoded in all), the
//! write-only `stringData` merged into it, the keys each built-in `type` requires, and
//! `immutable`. Validation never echoes a secret's value.

use base64::Engine;

use crate::kinds::core::config_map::{config_key, decoded_len, entries, validate_frozen};
use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "Secret",
    plural: "secrets",
    singular: "secret",
    namespaced: true,
    short_names: &[],
    categories: &[],
    list_kind: "SecretList",
    subresources: &[],
    verbs: ALL_VERBS,
    strategy: &SecretStrategy,
};

/// The strategy of `Secret`.
pub struct SecretStrategy;

/// Most decoded bytes of `data` (Kubernetes' `MaxSecretSize`).
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// What an error shows in place of a secret's value.
const REDACTED: &str = "<secret contents redacted>";

/// The annotation naming a service-account-token Secret's ServiceAccount.
pub const SERVICE_ACCOUNT_NAME_KEY: &str = "kubernetes.io/service-account.name";

impl KindStrategy for SecretStrategy {
    fn default(&self, obj: &mut Value) {
        merge_string_data(obj);
        let untyped = obj.get("type").and_then(Value::as_str).unwrap_or("").is_empty();
        if let (true, Some(map)) = (untyped, obj.as_object_mut()) {
            map.insert("type".into(), json!("Opaque"));
        }
    }

    fn validate(&self, obj: &Value, errs: &mut Errors) {
        let mut total = 0;
        for (key, value) in entries(obj, "data") {
            total += value.as_str().map_or(0, decoded_len);
            push_msgs(errs, &Path::new("data").key(key), key, config_key(key));
        }
        if total > MAX_SECRET_BYTES {
            errs.push(FieldError::too_long(&Path::new("data"), MAX_SECRET_BYTES));
        }
        validate_type_keys(obj, errs);
    }

    fn validate_update(&self, new: &Value, old: &Value, errs: &mut Errors) {
        check_immutable("type", new.get("type"), old.get("type"), errs);
        validate_frozen(new, old, &["data"], errs);
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::core::v1::Secret>(res, obj)
    }

    fn table_columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Type", "string", "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types", 0),
            col("Data", "string", "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4", 0),
            AGE,
        ]
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        let keys = entries(obj, "data").count();
        vec![row.name, json!(str_at(obj, "/type")), json!(keys), row.age]
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["type"]
    }
}

/// `stringData` is write-only: each value lands base64-encoded under its key in `data`
/// (winning over `data`'s), and the field is dropped, as the API server's conversion does.
fn merge_string_data(obj: &mut Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = map.remove("stringData") else {
        return;
    };
    let data = map.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Some(data) = data.as_object_mut() {
        for (key, value) in strings {
            let text = value.as_str().unwrap_or_default();
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            data.insert(key, Value::String(encoded));
        }
    }
}

/// The keys a built-in secret type requires (Kubernetes' `ValidateSecret`).
fn validate_type_keys(obj: &Value, errs: &mut Errors) {
    let data = |key: &str| obj.get("data").and_then(|d| d.get(key)).and_then(Value::as_str);
    let required = |errs: &mut Errors, key: &str| {
        errs.push(FieldError::required(&Path::new("data").key(key), ""));
    };
    match obj.get("type").and_then(Value::as_str).unwrap_or("") {
        "kubernetes.io/service-account-token" => {
            let name = obj.pointer("/metadata/annotations").and_then(|a| a.get(SERVICE_ACCOUNT_NAME_KEY));
            if name.and_then(Value::as_str).unwrap_or("").is_empty() {
                let path = Path::new("metadata.annotations").key(SERVICE_ACCOUNT_NAME_KEY);
                errs.push(FieldError::required(&path, ""));
            }
        }
        "kubernetes.io/dockercfg" => validate_json_key(data(".dockercfg"), ".dockercfg", errs),
        "kubernetes.io/dockerconfigjson" => {
            validate_json_key(data(".dockerconfigjson"), ".dockerconfigjson", errs)
        }
        "kubernetes.io/basic-auth" if data("username").is_none() && data("password").is_none() => {
            required(errs, "username");
            required(errs, "password");
        }
        "kubernetes.io/ssh-auth" if data("ssh-privatekey").unwrap_or("").is_empty() => {
            required(errs, "ssh-privatekey");
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if data(key).is_none() {
                    required(errs, key);
                }
            }
        }
        _ => {}
    }
}

/// A docker config key must be present and hold a JSON object; the error never shows it.
fn validate_json_key(value: Option<&str>, key: &str, errs: &mut Errors) {
    let path = Path::new("data").key(key);
    let Some(encoded) = value else {
        errs.push(FieldError::required(&path, ""));
        return;
    };
    let parsed = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            serde_json::from_slice::<Map<String, Value>>(&bytes).map_err(|e| e.to_string())
        });
    if let Err(reason) = parsed {
        errs.push(FieldError::invalid(&path, json!(REDACTED), reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::{validate_create, validate_update};

    fn secret(body: Value) -> Value {
        let mut obj = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "default"}});
        if let (Some(map), Some(extra)) = (obj.as_object_mut(), body.as_object()) {
            map.extend(extra.clone());
        }
        SecretStrategy.default(&mut obj);
        obj
    }

    fn create_errors(body: Value) -> Vec<String> {
        validate_create(&RESOURCE, &secret(body))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn string_data_lands_in_data_and_type_defaults_to_opaque() {
        let obj = secret(json!({"data": {"a": "eA==", "b": "eA=="}, "stringData": {"b": "pw"}}));
        assert_eq!(obj["data"], json!({"a": "eA==", "b": "cHc="}));
        assert!(obj.get("stringData").is_none());
        assert_eq!(obj["type"], "Opaque");
        let typed = secret(json!({"type": "kubernetes.io/tls"}));
        assert_eq!(typed["type"], "kubernetes.io/tls");
    }

    #[test]
    fn keys_size_and_the_keys_each_type_requires() {
        assert!(create_errors(json!({"stringData": {"password": "x"}})).is_empty());
        assert_eq!(
            create_errors(json!({"data": {"bad key": "eA=="}})).len(),
            1,
            "a key outside the config-key rule"
        );
        let big = "x".repeat(MAX_SECRET_BYTES + 1);
        assert_eq!(
            create_errors(json!({"stringData": {"a": big}})),
            ["data: Too long: may not be more than 1048576 bytes"]
        );
        assert_eq!(
            create_errors(json!({"type": "kubernetes.io/tls", "stringData": {"tls.crt": "c"}})),
            ["data[tls.key]: Required value"]
        );
        assert_eq!(
            create_errors(json!({"type": "kubernetes.io/basic-auth"})),
            ["data[username]: Required value", "data[password]: Required value"]
        );
        assert_eq!(
            create_errors(json!({"type": "kubernetes.io/service-account-token"})),
            ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
        );
    }

    #[test]
    fn a_malformed_docker_config_is_refused_without_its_contents() {
        let errs = create_errors(json!({"type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": "{\"auths\": hunter2"}}));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\""), "{errs:?}");
        assert!(!errs[0].contains("hunter2"), "{errs:?}");
        let ok = json!({"type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": "{\"auths\": {}}"}});
        assert!(create_errors(ok).is_empty());
        assert_eq!(
            create_errors(json!({"type": "kubernetes.io/dockercfg"})),
            ["data[.dockercfg]: Required value"]
        );
    }

    #[test]
    fn type_is_immutable_and_immutable_freezes_data() {
        let old = secret(json!({"immutable": true, "stringData": {"k": "v"}}));
        let fields = |new: Value| -> Vec<String> {
            validate_update(&RESOURCE, &secret(new), &old)
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert!(fields(json!({"immutable": true, "stringData": {"k": "v"}})).is_empty());
        assert_eq!(fields(json!({"immutable": true, "stringData": {"k": "w"}})), ["data"]);
        assert_eq!(
            fields(json!({"immutable": true, "type": "x", "stringData": {"k": "v"}})),
            ["type"]
        );
    }

    #[test]
    fn table_prints_type_and_key_count() {
        let names: Vec<_> = SecretStrategy.table_columns().iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Type", "Data", "Age"]);
        let row = RowContext { name: json!("db"), age: json!("1m"), now: Utc::now() };
        let obj = secret(json!({"stringData": {"a": "1", "b": "2"}}));
        let cells = SecretStrategy.table_cells(&obj, row);
        assert_eq!(cells, [json!("db"), json!("Opaque"), json!(2), json!("1m")]);
    }
}
