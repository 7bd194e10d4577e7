//! `core/v1 ConfigMap`: `data` (strings) and `binaryData` (base64 bytes) under config keys,
//! at most 1 MiB in all; `immutable: true` freezes both and itself.

use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "ConfigMap",
    plural: "configmaps",
    singular: "configmap",
    namespaced: true,
    short_names: &["cm"],
    categories: &[],
    list_kind: "ConfigMapList",
    subresources: &[],
    verbs: ALL_VERBS,
    strategy: &ConfigMapStrategy,
};

/// The strategy of `ConfigMap`.
pub struct ConfigMapStrategy;

/// Most bytes of `data` and `binaryData` together (Kubernetes' `MaxSecretSize`).
pub const MAX_TOTAL_BYTES: usize = 1024 * 1024;

const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

const FROZEN: &str = "field is immutable when `immutable` is set";

impl KindStrategy for ConfigMapStrategy {
    fn validate(&self, obj: &Value, errs: &mut Errors) {
        let binary = obj.get("binaryData").and_then(Value::as_object);
        let mut total = 0;
        for (key, value) in entries(obj, "data") {
            total += value.as_str().map_or(0, str::len);
            let path = Path::new("data").key(key);
            push_msgs(errs, &path, key, config_key(key));
            if binary.is_some_and(|b| b.contains_key(key)) {
                let detail = "duplicate of key present in binaryData";
                errs.push(FieldError::invalid(&path, json!(key), detail));
            }
        }
        for (key, value) in entries(obj, "binaryData") {
            total += value.as_str().map_or(0, decoded_len);
            push_msgs(errs, &Path::new("binaryData").key(key), key, config_key(key));
        }
        if total > MAX_TOTAL_BYTES {
            errs.push(FieldError::too_long(&Path::new(""), MAX_TOTAL_BYTES));
        }
    }

    fn validate_update(&self, new: &Value, old: &Value, errs: &mut Errors) {
        validate_frozen(new, old, &["data", "binaryData"], errs);
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::core::v1::ConfigMap>(res, obj)
    }

    fn table_columns(&self) -> Vec<Column> {
        vec![
            NAME,
            col("Data", "string", "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.", 0),
            AGE,
        ]
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        let keys = entries(obj, "data").count() + entries(obj, "binaryData").count();
        vec![row.name, json!(keys), row.age]
    }
}

/// An update of an object `immutable: true` froze: `immutable` and each of `fields` stay as
/// they were (ConfigMaps and Secrets).
pub(crate) fn validate_frozen(new: &Value, old: &Value, fields: &[&str], errs: &mut Errors) {
    if !is_immutable(old) {
        return;
    }
    if !is_immutable(new) {
        errs.push(FieldError::forbidden(&Path::new("immutable"), FROZEN));
    }
    for field in fields {
        if present_value(new, field) != present_value(old, field) {
            errs.push(FieldError::forbidden(&Path::new(field), FROZEN));
        }
    }
}

/// The entries of the map at `obj[field]` (none when missing or not a map).
pub(crate) fn entries<'a>(obj: &'a Value, field: &str) -> impl Iterator<Item = (&'a String, &'a Value)> {
    obj.get(field).and_then(Value::as_object).into_iter().flatten()
}

/// `obj[field]`, a null value counting as absent.
fn present_value<'a>(obj: &'a Value, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

fn is_immutable(obj: &Value) -> bool {
    obj.get("immutable") == Some(&Value::Bool(true))
}

/// Kubernetes' `IsConfigMapKey`: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.`, `..`
/// or starting with `..`.
pub fn config_key(key: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if key.len() > names::DNS1123_SUBDOMAIN_MAX {
        msgs.push(format!(
            "must be no more than {} characters",
            names::DNS1123_SUBDOMAIN_MAX
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if key.is_empty() || !key.chars().all(allowed) {
        msgs.push(CONFIG_KEY_MSG.into());
    }
    match key {
        "." => msgs.push("must not be '.'".into()),
        ".." => msgs.push("must not be '..'".into()),
        k if k.starts_with("..") => msgs.push("must not start with '..'".into()),
        _ => {}
    }
    msgs
}

/// Bytes a base64 string decodes to.
pub(crate) fn decoded_len(b64: &str) -> usize {
    let padding = b64.bytes().rev().take_while(|b| *b == b'=').count();
    (b64.len() / 4 * 3 + (b64.len() % 4 * 3 / 4)).saturating_sub(padding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::{validate_create, validate_update};

    fn cm(body: Value) -> Value {
        let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "game", "namespace": "default"}});
        if let (Some(map), Some(extra)) = (obj.as_object_mut(), body.as_object()) {
            map.extend(extra.clone());
        }
        obj
    }

    fn create_errors(body: Value) -> Vec<String> {
        validate_create(&RESOURCE, &cm(body))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn keys_follow_the_config_key_rule() {
        assert!(create_errors(json!({"data": {"game.properties": "a=1", "KEY_2-x": ""},
            "binaryData": {"blob": "AAEC"}}))
        .is_empty());
        assert_eq!(
            create_errors(json!({"data": {"bad key": "x"}})),
            [format!("data[bad key]: Invalid value: \"bad key\": {CONFIG_KEY_MSG}")]
        );
        assert_eq!(
            create_errors(json!({"binaryData": {"..": "AA=="}})),
            ["binaryData[..]: Invalid value: \"..\": must not be '..'"]
        );
        assert_eq!(config_key("."), ["must not be '.'"]);
        assert_eq!(config_key("..x"), ["must not start with '..'"]);
        assert_eq!(config_key(&"k".repeat(254)), ["must be no more than 253 characters"]);
    }

    #[test]
    fn a_key_in_both_maps_and_an_oversized_map_are_refused() {
        assert_eq!(
            create_errors(json!({"data": {"k": "v"}, "binaryData": {"k": "AA=="}})),
            ["data[k]: Invalid value: \"k\": duplicate of key present in binaryData"]
        );
        let big = "x".repeat(MAX_TOTAL_BYTES / 2 + 1);
        let errs = create_errors(json!({"data": {"a": big, "b": big}}));
        assert_eq!(errs, [": Too long: may not be more than 1048576 bytes"]);
        assert_eq!(decoded_len("AAEC"), 3);
        assert_eq!(decoded_len("AA=="), 1);
        assert_eq!(decoded_len("AAE="), 2);
    }

    #[test]
    fn immutable_freezes_data_binary_data_and_itself() {
        let old = cm(json!({"immutable": true, "data": {"k": "v"}}));
        let fields = |new: Value| -> Vec<String> {
            validate_update(&RESOURCE, &cm(new), &old)
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        assert!(fields(json!({"immutable": true, "data": {"k": "v"}})).is_empty());
        assert_eq!(fields(json!({"immutable": true, "data": {"k": "w"}})), ["data"]);
        assert_eq!(
            fields(json!({"immutable": false, "data": {"k": "v"}, "binaryData": {"b": "AA=="}})),
            ["immutable", "binaryData"]
        );
        let mutable = cm(json!({"data": {"k": "v"}}));
        assert!(validate_update(&RESOURCE, &cm(json!({"data": {}})), &mutable).is_empty());
    }

    #[test]
    fn served_in_core_v1_as_cm() {
        assert_eq!(crate::registry::resolve("cm").map(|r| r.plural), Some("configmaps"));
        let list = crate::registry::api_resource_list("", "v1").expect("core/v1");
        let entry = list.resources.iter().find(|r| r.name == "configmaps");
        let entry = entry.expect("configmaps in discovery");
        assert_eq!(entry.kind, "ConfigMap");
        assert!(entry.namespaced);
        assert_eq!(entry.short_names.as_deref(), Some(&["cm".to_string()][..]));
        assert!(entry.verbs.iter().any(|v| v == "watch"));
    }

    #[test]
    fn table_counts_keys_of_both_maps() {
        let strategy = ConfigMapStrategy;
        let names: Vec<_> = strategy.table_columns().iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Data", "Age"]);
        let row = RowContext {
            name: json!("game"),
            age: json!("5m"),
            now: Utc::now(),
        };
        let obj = cm(json!({"data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}));
        assert_eq!(strategy.table_cells(&obj, row), [json!("game"), json!(3), json!("5m")]);
    }
}
