//! `core/v1 Event`.

use crate::kinds::prelude::*;

/// The served resource.
pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
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

/// The strategy of `Event`.
pub struct EventStrategy;

impl KindStrategy for EventStrategy {
    fn validate(&self, obj: &Value, errs: &mut Errors) {
        validate_event(obj, errs);
    }

    fn check_fields(&self, res: &ResourceInfo, obj: &Value) -> FieldReport {
        check_as::<k8s_openapi::api::core::v1::Event>(res, obj)
    }

    fn table_columns(&self) -> Vec<Column> {
        vec![
            col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded.", 0),
            col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future.", 0),
            col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.", 0),
            col("Object", "string", "The object that this event is about.", 0),
            col("Subobject", "string", "The field of the object this event is about.", 1),
            col("Source", "string", "The component reporting this event.", 1),
            col("Message", "string", "A human-readable description of the status of this operation.", 0),
            col("First Seen", "string", "The time at which the event was first recorded.", 1),
            col("Count", "string", "The number of times this event has occurred.", 1),
            Column { priority: 1, ..NAME },
        ]
    }

    fn table_cells(&self, obj: &Value, row: RowContext) -> Vec<Value> {
        event_cells(obj, row.name, row.now)
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    }

    fn field_path<'f>(&self, field: &'f str) -> &'f str {
        match field {
            "source" => "source.component",
            other => other,
        }
    }

    fn expires(&self) -> bool {
        true
    }
}

fn validate_event(obj: &Value, errs: &mut Errors) {
    let io = Path::new("involvedObject");
    match obj.get("involvedObject").and_then(Value::as_object) {
        None => errs.push(FieldError::required(&io, "")),
        Some(m) if m.is_empty() => errs.push(FieldError::required(&io, "")),
        Some(_) => {
            let ev_ns = obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            if let Some(ns) = obj
                .pointer("/involvedObject/namespace")
                .and_then(Value::as_str)
            {
                if !ns.is_empty() && !ev_ns.is_empty() && ns != ev_ns {
                    errs.push(FieldError::invalid(
                        &io.child("namespace"),
                        Value::String(ns.into()),
                        "does not match event.namespace",
                    ));
                }
            }
        }
    }
    check_enum(errs, &Path::new(""), obj, "type", &["Normal", "Warning"]);
}

pub(crate) fn event_cells(ev: &Value, name: Value, now: DateTime<Utc>) -> Vec<Value> {
    let first = if ev.get("firstTimestamp").is_some_and(|v| !v.is_null()) {
        age_of(ev.get("firstTimestamp"), now)
    } else {
        age_of(ev.get("eventTime"), now)
    };
    let mut last = if ev.get("lastTimestamp").is_some_and(|v| !v.is_null()) {
        age_of(ev.get("lastTimestamp"), now)
    } else {
        first.clone()
    };
    let mut count = int_at(ev, "/count").unwrap_or(0);
    if ev.get("series").is_some_and(|v| !v.is_null()) {
        last = age_of(ev.pointer("/series/lastObservedTime"), now);
        count = int_at(ev, "/series/count").unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let kind = str_at(ev, "/involvedObject/kind").to_ascii_lowercase();
    let obj_name = str_at(ev, "/involvedObject/name");
    let target = if obj_name.is_empty() {
        kind
    } else {
        format!("{kind}/{obj_name}")
    };
    let mut source = str_at(ev, "/source/component").to_string();
    if source.is_empty() {
        source = str_at(ev, "/reportingComponent").to_string();
    }
    let host = match str_at(ev, "/source/host") {
        "" => str_at(ev, "/reportingInstance"),
        h => h,
    };
    if !host.is_empty() {
        source = format!("{source}, {host}");
    }
    vec![
        json!(last),
        json!(str_at(ev, "/type")),
        json!(str_at(ev, "/reason")),
        json!(target),
        json!(str_at(ev, "/involvedObject/fieldPath")),
        json!(source),
        json!(str_at(ev, "/message").trim()),
        json!(first),
        json!(count),
        name,
    ]
}
