//! What a kind's file uses: the generic helpers of validation, defaulting and tables.

pub(crate) use std::collections::{BTreeMap, BTreeSet};

pub(crate) use chrono::{DateTime, Utc};
pub(crate) use serde_json::{json, Map, Value};

pub(crate) use crate::defaults::{child_object, each_item, map_child, set_default};
pub(crate) use crate::kinds::{Allocates, KindStrategy, RowContext};
pub(crate) use crate::names;
pub(crate) use crate::patch::ListStrategy;
pub(crate) use crate::registry::{
    status_of, ResourceInfo, Subresource, ALL_VERBS, CREATE_ONLY, NAMESPACE_VERBS, SCALE,
};
pub(crate) use crate::table::{
    age_of, col, first_three, format_label_selector, format_labels, human_duration, int_at,
    list_at, or_none, parse_time, str_at, Column, AGE, NAME,
};
pub(crate) use crate::unknown_fields::{check_as, FieldReport};
pub(crate) use crate::validation::{
    arr, check_enum, int, is_empty_selector, present, push_msgs, s, validate_label_selector,
    validate_labels, validate_port_number, Errors, FieldError, Path, PROTOCOLS,
};

/// `obj.spec`, `null` when missing.
pub(crate) fn spec_of(obj: &Value) -> &Value {
    obj.get("spec").unwrap_or(&Value::Null)
}

/// Whether `field` of `new` differs from `old`'s: then an `Invalid ... field is immutable`
/// error at `path`.
pub(crate) fn check_immutable(
    path: &str,
    new: Option<&Value>,
    old: Option<&Value>,
    errs: &mut Errors,
) {
    if new != old {
        errs.push(FieldError::invalid(
            &Path::new(path),
            new.cloned().unwrap_or(Value::Null),
            "field is immutable",
        ));
    }
}
