//! `events.k8s.io/v1 Event`: the core/v1 Events seen through the events group's version, as
//! kube-apiserver serves them. Objects are stored once, as core/v1 Events (under the same
//! keys); this version renames fields on the way in and out (`regarding` is
//! `involvedObject`, `note` is `message`, `reportingController` is `reportingComponent`,
//! the `deprecated*` fields are core's `source`, `firstTimestamp`, `lastTimestamp` and
//! `count`). What kube's event `Recorder` writes.

use crate::kinds::core::event::{event_cells, EventStrategy as CoreEventStrategy};
use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "events.k8s.io",
    version: "v1",
    kind: "Event",
    plural: "events",
    singular: "event",
    namespaced: true,
    short_names: &["ev"],
    categories: &[],
    list_kind: "EventList",
    subresources: &[],
    verbs: ALL_VERBS,
    strategy: &EventStrategy,
};

/// Field names of this version and the stored (core/v1) version's, where they differ.
const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Longest `note` (Kubernetes' `NoteLengthLimit`).
const NOTE_LIMIT: usize = 1024;
/// Longest `action`, `reason`, `reportingController` and `reportingInstance`.
const FIELD_LIMIT: usize = 128;

/// The strategy of `events.k8s.io/v1 Event`.
pub struct EventStrategy;

impl KindStrategy for EventStrategy {
    fn validate(&self, obj: &Value, errs: &mut Errors) {
        validate_event(obj, errs);
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::events::v1::Event>(res, obj)
    }

    fn table_columns(&self) -> Vec<Column> {
        CoreEventStrategy.table_columns()
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        event_cells(&to_core(obj.clone()), row.name, row.now)
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ]
    }

    fn stored_elsewhere(&self) -> bool {
        true
    }

    fn served_form(&self, stored: Value) -> Value {
        from_core(stored)
    }

    fn stored_form(&self, obj: Value) -> Value {
        to_core(obj)
    }

    fn expires(&self) -> bool {
        true
    }
}

/// A core/v1 Event in this version.
pub fn from_core(obj: Value) -> Value {
    rename(obj, |(ours, core)| (core, ours), "events.k8s.io/v1")
}

/// An Event of this version as core/v1.
pub fn to_core(obj: Value) -> Value {
    rename(obj, |(ours, core)| (ours, core), "v1")
}

fn rename(
    obj: Value,
    direction: fn((&'static str, &'static str)) -> (&'static str, &'static str),
    api_version: &str,
) -> Value {
    let Value::Object(mut map) = obj else {
        return obj;
    };
    for pair in RENAMED {
        let (from, to) = direction(*pair);
        if let Some(v) = map.remove(from) {
            map.insert(to.to_string(), v);
        }
    }
    if map.contains_key("apiVersion") {
        map.insert("apiVersion".into(), json!(api_version));
    }
    Value::Object(map)
}

/// Kubernetes' `ValidateEventCreate` for events.k8s.io/v1: the fields a structured event
/// must carry, their lengths, the type, the series and the namespace of `regarding`.
fn validate_event(obj: &Value, errs: &mut Errors) {
    let root = Path::new("");
    if !present(obj, "eventTime") {
        errs.push(FieldError::required(&root.child("eventTime"), ""));
    }
    for field in ["reportingController", "reportingInstance", "action", "reason"] {
        match s(obj, field) {
            None | Some("") => errs.push(FieldError::required(&root.child(field), "")),
            Some(v) if v.len() > FIELD_LIMIT => {
                errs.push(FieldError::too_long(&root.child(field), FIELD_LIMIT))
            }
            Some(_) => {}
        }
    }
    if s(obj, "note").is_some_and(|n| n.len() > NOTE_LIMIT) {
        errs.push(FieldError::too_long(&root.child("note"), NOTE_LIMIT));
    }
    if !present(obj, "type") {
        errs.push(FieldError::required(&root.child("type"), ""));
    }
    check_enum(errs, &root, obj, "type", &["Normal", "Warning"]);
    validate_series(obj, errs);
    validate_regarding_namespace(obj, errs);
}

fn validate_series(obj: &Value, errs: &mut Errors) {
    let Some(series) = obj.get("series").filter(|v| !v.is_null()) else {
        return;
    };
    let path = Path::new("series");
    if int(series, "count").is_none_or(|c| c < 2) {
        errs.push(FieldError::invalid(
            &path.child("count"),
            series.get("count").cloned().unwrap_or(Value::Null),
            "should be at least 2",
        ));
    }
    if !present(series, "lastObservedTime") {
        errs.push(FieldError::required(&path.child("lastObservedTime"), ""));
    }
}

fn validate_regarding_namespace(obj: &Value, errs: &mut Errors) {
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
    let regarding = obj.pointer("/regarding/namespace").and_then(Value::as_str);
    if let (Some(ns), Some(r)) = (ns, regarding) {
        if !ns.is_empty() && !r.is_empty() && ns != r {
            errs.push(FieldError::invalid(
                &Path::new("regarding").child("namespace"),
                json!(r),
                "does not match event.namespace",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use crate::validation::validate_create;

    fn structured() -> Value {
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
               "metadata": {"name": "web.1", "namespace": "prod"},
               "eventTime": "2026-01-01T00:00:00.000000Z",
               "reportingController": "default-scheduler", "reportingInstance": "bpfk",
               "action": "Binding", "reason": "Scheduled", "type": "Normal",
               "note": "Successfully assigned prod/web to node-a",
               "regarding": {"kind": "Pod", "name": "web", "namespace": "prod"},
               "deprecatedCount": 3})
    }

    #[test]
    fn round_trips_through_the_stored_core_version() {
        let core = to_core(structured());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "web");
        assert_eq!(core["message"], "Successfully assigned prod/web to node-a");
        assert_eq!(core["reportingComponent"], "default-scheduler");
        assert_eq!(core["count"], 3);
        assert!(core.get("regarding").is_none() && core.get("note").is_none());
        assert_eq!(from_core(core), structured());
    }

    #[test]
    fn requires_what_a_structured_event_carries() {
        let res = find("events.k8s.io", "v1", "events").unwrap();
        assert!(validate_create(res, &structured()).is_empty());
        let mut bad = structured();
        let m = bad.as_object_mut().unwrap();
        m.remove("eventTime");
        m.remove("reportingController");
        m.insert("type".into(), json!("Fatal"));
        m.insert("series".into(), json!({"count": 1}));
        m.insert("regarding".into(), json!({"kind": "Pod", "namespace": "other"}));
        let fields: Vec<String> = validate_create(res, &bad)
            .iter()
            .map(|e| e.field.clone())
            .collect();
        for f in [
            "eventTime",
            "reportingController",
            "type",
            "series.count",
            "series.lastObservedTime",
            "regarding.namespace",
        ] {
            assert!(fields.contains(&f.to_string()), "{f} in {fields:?}");
        }
    }

    #[test]
    fn table_rows_read_the_renamed_fields() {
        let now = chrono::Utc::now();
        let row = RowContext {
            name: json!("web.1"),
            age: json!("1s"),
            now,
        };
        let cells = EventStrategy.table_cells(&structured(), row);
        assert_eq!(cells[3], "pod/web");
        assert_eq!(cells[5], "default-scheduler, bpfk");
        assert_eq!(cells[6], "Successfully assigned prod/web to node-a");
    }
}
