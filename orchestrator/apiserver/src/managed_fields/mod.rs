//! Field ownership (`metadata.managedFields`) and server-side apply, as Kubernetes' field
//! manager keeps them: every write records which fields its manager set (operation
//! `Update`), an apply (`Apply`) merges a configuration into the object, removes the fields
//! the manager applied before and no longer does, and refuses to change fields another
//! manager owns unless forced (409, naming the fields and their managers).

mod fieldset;
mod types;
mod walk;

#[cfg(test)]
mod tests;

pub use fieldset::FieldSet;
pub use walk::WalkError;

use bpfk_apimachinery::registry::ResourceInfo;
use serde_json::{json, Value};

use types::Type;

/// Most `Update` entries an object keeps; older ones are merged into one (as Kubernetes).
const MAX_UPDATE_MANAGERS: usize = 10;

/// The entry older updates are merged into beyond [`MAX_UPDATE_MANAGERS`].
const ANCIENT_CHANGES: &str = "ancient-changes";

/// Who owned the fields of an object that had no managed fields before its first apply.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// The fields no manager owns: identity and bookkeeping the server writes.
const IGNORED: &[&[&str]] = &[
    &["f:apiVersion"],
    &["f:kind"],
    &["f:metadata", "f:name"],
    &["f:metadata", "f:namespace"],
    &["f:metadata", "f:uid"],
    &["f:metadata", "f:creationTimestamp"],
    &["f:metadata", "f:selfLink"],
    &["f:metadata", "f:generation"],
    &["f:metadata", "f:managedFields"],
    &["f:metadata", "f:resourceVersion"],
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    /// RFC 3339; None when not known.
    pub time: Option<String>,
    /// `status`, or empty for the main resource.
    pub subresource: String,
    pub fields: FieldSet,
}

impl Entry {
    fn is(&self, manager: &str, operation: Operation, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation.as_str(),
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields.to_fields_v1(),
        });
        if let Some(t) = &self.time {
            v["time"] = Value::String(t.clone());
        }
        if !self.subresource.is_empty() {
            v["subresource"] = Value::String(self.subresource.clone());
        }
        v
    }

    fn from_json(v: &Value) -> Result<Entry, String> {
        let text = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let operation = match text("operation").as_str() {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            other => {
                return Err(format!(
                    "operation: unsupported value {other:?}: must be Apply or Update"
                ))
            }
        };
        match v.get("fieldsType").and_then(Value::as_str) {
            None | Some("FieldsV1") => {}
            Some(other) => {
                return Err(format!(
                    "fieldsType: unsupported value {other:?}: must be FieldsV1"
                ))
            }
        }
        let fields = match v.get("fieldsV1") {
            Some(doc) => FieldSet::from_fields_v1(doc).map_err(|e| format!("fieldsV1: {e}"))?,
            None => FieldSet::default(),
        };
        Ok(Entry {
            manager: text("manager"),
            operation,
            api_version: text("apiVersion"),
            time: v.get("time").and_then(Value::as_str).map(String::from),
            subresource: text("subresource"),
            fields,
        })
    }
}

/// The managed fields of `obj`, or an error naming the entry and what is wrong.
pub fn decode(obj: &Value) -> Result<Vec<Entry>, String> {
    let Some(list) = obj.pointer("/metadata/managedFields") else {
        return Ok(Vec::new());
    };
    let Some(items) = list.as_array() else {
        return Err("metadata.managedFields: must be a list".into());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, e)| Entry::from_json(e).map_err(|m| format!("metadata.managedFields[{i}].{m}")))
        .collect()
}

/// Store `entries` in `obj` in Kubernetes' order (applies first, then by time and manager);
/// none: the field goes.
fn encode(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.fields.is_empty());
    entries.sort_by(|a, b| {
        let op = |e: &Entry| e.operation == Operation::Update;
        (op(a), &a.time, &a.manager, &a.subresource).cmp(&(
            op(b),
            &b.time,
            &b.manager,
            &b.subresource,
        ))
    });
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            entries.iter().map(Entry::to_json).collect(),
        );
    }
}

/// `set` without the fields nobody owns, limited to what a write through `subresource` can
/// change for the fields an apply sets (`status` alone through `status`; no `status` through
/// the main resource of a kind with a status subresource).
fn owned_part(res: &ResourceInfo, subresource: &str, set: &FieldSet) -> FieldSet {
    let mut out = set.clone();
    for path in IGNORED {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        out = out.without_subtree(&path);
    }
    let status = ["f:status".to_string()];
    let replicas = ["f:spec".to_string(), "f:replicas".to_string()];
    match subresource {
        "" if res.subresource("status").is_some() => out.without_subtree(&status),
        "" => out,
        "status" => out.only_subtree(&status),
        // a Scale's writes reach the object's replica count and nothing else
        "scale" => out.only_subtree(&replicas),
        _ => FieldSet::default(),
    }
}

/// Keep at most [`MAX_UPDATE_MANAGERS`] update entries, merging the oldest into one.
fn cap_updates(entries: &mut Vec<Entry>) {
    let mut updates: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].operation == Operation::Update)
        .collect();
    if updates.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updates.sort_by(|&a, &b| entries[a].time.cmp(&entries[b].time));
    let excess = updates.len() - MAX_UPDATE_MANAGERS + 1;
    let mut ancient = Entry {
        manager: ANCIENT_CHANGES.into(),
        operation: Operation::Update,
        api_version: entries[updates[0]].api_version.clone(),
        time: None,
        subresource: String::new(),
        fields: FieldSet::default(),
    };
    let oldest: std::collections::HashSet<usize> = updates[..excess].iter().copied().collect();
    for &i in &updates[..excess] {
        ancient.fields = ancient.fields.union(&entries[i].fields);
        ancient.time = entries[i].time.clone().max(ancient.time.take());
    }
    let mut i = 0;
    entries.retain(|_| {
        i += 1;
        !oldest.contains(&(i - 1))
    });
    entries.push(ancient);
}

/// Whether a write sets `managedFields` to empty entries only (`[{}]`): Kubernetes' way to
/// clear them (an empty list keeps them).
fn asks_reset(new: &Value) -> bool {
    match new
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    {
        Some(list) => {
            !list.is_empty()
                && list
                    .iter()
                    .all(|e| e.as_object().is_some_and(|m| m.is_empty()))
        }
        None => false,
    }
}

/// The managers of an object about to be written: those the request set itself (a client
/// may rewrite them), else the stored object's (also for an empty list).
fn managers_of(old: Option<&Value>, new: &Value) -> Vec<Entry> {
    let stored = || {
        old.map(|o| decode(o).unwrap_or_default())
            .unwrap_or_default()
    };
    let requested = new.pointer("/metadata/managedFields");
    let unchanged = requested == old.and_then(|o| o.pointer("/metadata/managedFields"));
    if unchanged
        || requested
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
    {
        return stored();
    }
    match decode(new) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::debug!(error = %e, "ignoring the request's managed fields");
            stored()
        }
    }
}

/// Record in `new`'s managed fields a non-apply write by `manager` through `subresource`
/// (empty: the main resource) that turns `old` (None: a create) into `new`: the fields it
/// set or changed become its own and leave other managers; removed fields leave everyone.
pub fn track_update(
    res: &'static ResourceInfo,
    subresource: &str,
    manager: &str,
    old: Option<&Value>,
    new: &mut Value,
    now: &str,
) -> Result<(), WalkError> {
    if asks_reset(new) {
        encode(new, Vec::new());
        return Ok(());
    }
    let mut entries = managers_of(old, new);
    let empty = json!({});
    let ty = Type::root(res);
    let cmp = walk::compare(old.unwrap_or(&empty), new, &ty)?.map(|s| owned_part(res, "", s));
    let changed = cmp.changed();
    for e in &mut entries {
        e.fields = e.fields.difference(&cmp.removed).difference(&changed);
    }
    if !changed.is_empty() {
        let at = entries
            .iter()
            .position(|e| e.is(manager, Operation::Update, subresource));
        let entry = match at {
            Some(i) => &mut entries[i],
            None => {
                entries.push(new_entry(res, manager, Operation::Update, subresource));
                let last = entries.len() - 1;
                &mut entries[last]
            }
        };
        entry.fields = entry.fields.union(&changed);
        entry.time = Some(now.to_string());
        entry.api_version = res.api_version();
    }
    cap_updates(&mut entries);
    encode(new, entries);
    Ok(())
}

fn new_entry(res: &ResourceInfo, manager: &str, operation: Operation, subresource: &str) -> Entry {
    Entry {
        manager: manager.into(),
        operation,
        api_version: res.api_version(),
        time: None,
        subresource: subresource.into(),
        fields: FieldSet::default(),
    }
}

/// Fields an apply would change that another manager owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// How Kubernetes names the manager: `"kubectl"`, or `"kubectl-edit" using apps/v1`.
    pub manager: String,
    /// The field, as `.spec.replicas`.
    pub field: String,
}

/// Why an apply failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    #[error("{0}")]
    Invalid(WalkError),
}

impl From<WalkError> for ApplyError {
    fn from(e: WalkError) -> ApplyError {
        ApplyError::Invalid(e)
    }
}

/// Kubernetes' wording of apply conflicts.
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager, only.field
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        for c in conflicts.iter().filter(|c| c.manager == m) {
            lines.push(format!("- {}", c.field));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

fn manager_name(e: &Entry) -> String {
    let mut name = format!("{:?}", e.manager);
    if !e.subresource.is_empty() {
        name = format!("{name} with subresource {:?}", e.subresource);
    }
    match e.operation {
        Operation::Update => format!("{name} using {}", e.api_version),
        Operation::Apply => name,
    }
}

/// What an apply asks.
pub struct ApplyRequest<'a> {
    pub manager: &'a str,
    /// `status`, or empty for the main resource.
    pub subresource: &'a str,
    /// Take fields other managers own instead of failing.
    pub force: bool,
    pub now: &'a str,
}

/// Server-side apply of `config` by `req.manager` to `live` (None: the object does not exist
/// yet): the object to store, its managed fields set. The caller checks `config`'s type,
/// name and absence of managed fields first.
pub fn apply(
    res: &'static ResourceInfo,
    req: &ApplyRequest<'_>,
    live: Option<&Value>,
    config: &Value,
) -> Result<Value, ApplyError> {
    let ty = Type::root(res);
    let empty = json!({});
    let live_value = live.unwrap_or(&empty);
    let mut entries = starting_managers(res, live, &ty)?;
    let applied = owned_part(res, req.subresource, &walk::field_set(config, &ty)?);
    let mut merged = walk::merge(live_value, config, &ty)?;
    let me = match entries
        .iter()
        .position(|e| e.is(req.manager, Operation::Apply, req.subresource))
    {
        Some(i) => i,
        None => {
            entries.push(new_entry(
                res,
                req.manager,
                Operation::Apply,
                req.subresource,
            ));
            entries.len() - 1
        }
    };
    let last = std::mem::replace(&mut entries[me].fields, applied.clone());
    let others = entries
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != me)
        .fold(FieldSet::default(), |acc, (_, e)| acc.union(&e.fields));
    prune(
        &mut merged,
        &last.difference(&applied),
        &applied.union(&others),
        &ty,
    );
    let cmp = walk::compare(live_value, &merged, &ty)?.map(|s| owned_part(res, req.subresource, s));
    let changed = cmp.changed();
    let conflicts = conflicts_with(&entries, me, &changed);
    if !req.force && !conflicts.is_empty() {
        return Err(ApplyError::Conflicts(conflicts));
    }
    for (i, e) in entries.iter_mut().enumerate() {
        if i != me {
            e.fields = e.fields.difference(&changed).difference(&cmp.removed);
        }
    }
    if merged != *live_value || entries[me].time.is_none() {
        entries[me].time = Some(req.now.to_string());
    }
    entries[me].api_version = res.api_version();
    cap_updates(&mut entries);
    encode(&mut merged, entries);
    Ok(merged)
}

/// The managers an apply starts from: the live object's; one that has none owned everything
/// before this first apply (`before-first-apply`), so an apply cannot silently overwrite it.
fn starting_managers(
    res: &'static ResourceInfo,
    live: Option<&Value>,
    ty: &Type,
) -> Result<Vec<Entry>, ApplyError> {
    let Some(live) = live else {
        return Ok(Vec::new());
    };
    let entries = decode(live).unwrap_or_default();
    if !entries.is_empty() {
        return Ok(entries);
    }
    let mut first = new_entry(res, BEFORE_FIRST_APPLY, Operation::Update, "");
    first.fields = owned_part(res, "", &walk::field_set(live, ty)?);
    Ok(vec![first])
}

/// Remove from `merged` each field of `dropped` (applied before, not now) that no one in
/// `kept` owns, at or below it. An item's key fields stay while the item does.
fn prune(merged: &mut Value, dropped: &FieldSet, kept: &FieldSet, ty: &Type) {
    for path in dropped.members() {
        if kept.has(&path) || kept.has_below(&path) || is_key_of_item(&path) {
            continue;
        }
        walk::remove(merged, &path, ty);
    }
}

/// Whether `path` ends in a key field of the list item it is in (`k:{"name":"a"}`, `f:name`).
fn is_key_of_item(path: &[String]) -> bool {
    let [.., item, field] = path else {
        return false;
    };
    let (Some(keys), Some(name)) = (item.strip_prefix("k:"), field.strip_prefix("f:")) else {
        return false;
    };
    serde_json::from_str::<serde_json::Map<String, Value>>(keys).is_ok_and(|k| k.contains_key(name))
}

/// The fields of `changed` that managers other than entry `me` own.
fn conflicts_with(entries: &[Entry], me: usize, changed: &FieldSet) -> Vec<Conflict> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if i == me {
            continue;
        }
        for path in e.fields.intersection(changed).members() {
            out.push(Conflict {
                manager: manager_name(e),
                field: fieldset::display(&path),
            });
        }
    }
    out
}

/// The manager Kubernetes names a write after when the client gives no `fieldManager`: its
/// User-Agent up to the first `/` (`kubectl` for `kubectl/v1.32.0 (linux/amd64)`).
pub fn manager_from_user_agent(user_agent: Option<&str>) -> String {
    let agent = user_agent.unwrap_or_default();
    let prefix = agent.split('/').next().unwrap_or_default().trim();
    let prefix: String = prefix.chars().take(128).collect();
    if prefix.is_empty() {
        "unknown".into()
    } else {
        prefix
    }
}
