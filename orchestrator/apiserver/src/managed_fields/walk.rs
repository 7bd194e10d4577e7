//! The walks over objects that field ownership needs: the set of fields a value sets, what
//! changed between two versions, an applied configuration merged into the live object, and a
//! path removed. Lists follow their [`ListType`]: atomic lists are one leaf, set and map items
//! are told apart by value and by key fields.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::fieldset::{self, FieldSet};
use super::types::{ListType, Type};

/// A value that cannot be walked: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkError {
    /// The path elements down to the value, outermost first.
    pub path: Vec<String>,
    pub message: String,
}

impl WalkError {
    fn new(message: impl Into<String>) -> WalkError {
        WalkError {
            path: Vec::new(),
            message: message.into(),
        }
    }

    fn within(mut self, element: &str) -> WalkError {
        self.path.insert(0, element.to_string());
        self
    }
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", fieldset::display(&self.path), self.message)
    }
}

type Result<T> = std::result::Result<T, WalkError>;

/// How a value (or a value and its other version) is walked.
enum Walk<'v> {
    Leaf,
    Object,
    Items(&'v ListType),
}

/// A non-null value, or None.
fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// How to walk `l` and `r` (either may be absent) of type `ty`: objects are walked as
/// structs or maps, non-atomic lists item by item; empty values, atomic values and values
/// of different JSON types are leaves.
fn walk_of<'t>(l: Option<&Value>, r: Option<&Value>, ty: &'t Type, list: &'t ListType) -> Walk<'t> {
    if ty.is_leaf() {
        return Walk::Leaf;
    }
    let object = |v: Option<&Value>| v.is_none_or(|v| v.is_object());
    let array = |v: Option<&Value>| v.is_none_or(|v| v.is_array());
    let non_empty = |v: Option<&Value>| match v {
        Some(Value::Object(m)) => !m.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        _ => false,
    };
    if !(non_empty(l) || non_empty(r)) {
        return Walk::Leaf;
    }
    match (object(l) && object(r), array(l) && array(r), list) {
        (true, _, ListType::Atomic) => Walk::Object,
        (_, true, ListType::Set | ListType::Map(_)) => Walk::Items(list),
        _ => Walk::Leaf,
    }
}

/// The items of an array (none for anything else).
fn items_of(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// The path element of `item` in a list of type `list`.
pub fn item_element(list: &ListType, item: &Value) -> Result<String> {
    match list {
        ListType::Set => Ok(fieldset::value_element(item)),
        ListType::Atomic => Err(WalkError::new("an atomic list has no item keys")),
        ListType::Map(keys) => {
            let Value::Object(fields) = item else {
                return Err(WalkError::new("items of this list must be objects"));
            };
            let mut values = Map::new();
            for k in keys {
                let v = match (fields.get(k.name), k.default) {
                    (Some(v), _) if !v.is_null() => v.clone(),
                    (_, Some(default)) => Value::String(default.into()),
                    _ => {
                        return Err(WalkError::new(format!(
                            "associative list with keys has an element that omits key field {:?}",
                            k.name
                        )))
                    }
                };
                values.insert(k.name.to_string(), v);
            }
            Ok(fieldset::key_element(values.iter()))
        }
    }
}

/// `items` by their path elements, in order; an error for an item without its keys or for
/// two items with the same keys.
fn index_items<'v>(list: &ListType, items: &'v [Value]) -> Result<Vec<(String, &'v Value)>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let pe = item_element(list, item).map_err(|e| e.within(&format!("i:{i}")))?;
        if !seen.insert(pe.clone()) {
            return Err(WalkError::new(format!(
                "duplicate entries for key {}",
                fieldset::display(&[pe])
            )));
        }
        out.push((pe, item));
    }
    Ok(out)
}

/// The fields `v` (of type `ty`) sets, as server-side apply owns them: every leaf, every
/// list item, empty and null values, and the entries of maps with free keys.
pub fn field_set(v: &Value, ty: &Type) -> Result<FieldSet> {
    let list = ty.list_type();
    let mut set = FieldSet::default();
    match walk_of(Some(v), None, ty, &list) {
        Walk::Leaf => return Ok(FieldSet::leaf()),
        Walk::Object => {
            for (k, child) in v.as_object().into_iter().flatten() {
                let element = fieldset::field_element(k);
                let mut sub = field_set(child, &ty.field(k)).map_err(|e| e.within(&element))?;
                let empty = child.is_null() || child.as_object().is_some_and(Map::is_empty);
                sub.member |= empty || !ty.declares(k);
                set.children.insert(element, sub);
            }
        }
        Walk::Items(list) => {
            let item_type = ty.item();
            for (pe, item) in index_items(list, items_of(Some(v)))? {
                let mut sub = field_set(item, &item_type).map_err(|e| e.within(&pe))?;
                sub.member = true;
                set.children.insert(pe, sub);
            }
        }
    }
    Ok(set)
}

/// What changed from one version of an object to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    /// Fields set or changed.
    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }

    /// The comparison with each set passed through `f`.
    pub fn map(self, f: impl Fn(&FieldSet) -> FieldSet) -> Comparison {
        Comparison {
            added: f(&self.added),
            modified: f(&self.modified),
            removed: f(&self.removed),
        }
    }
}

/// Compare `old` with `new` (both of type `ty`): leaves added, modified and removed, and the
/// list items and free-map entries added or removed whole.
pub fn compare(old: &Value, new: &Value, ty: &Type) -> Result<Comparison> {
    let mut walker = Comparer {
        out: Comparison::default(),
        path: Vec::new(),
    };
    walker.node(Some(old), Some(new), ty, false)?;
    Ok(walker.out)
}

struct Comparer {
    out: Comparison,
    path: Vec<String>,
}

impl Comparer {
    /// Compare one node; `whole` says whether the node itself is owned when it comes or
    /// goes (list items, map entries), beside its leaves.
    fn node(&mut self, l: Option<&Value>, r: Option<&Value>, ty: &Type, whole: bool) -> Result<()> {
        let (l, r) = (present(l), present(r));
        let list = ty.list_type();
        match (l, r) {
            (None, None) => return Ok(()),
            _ => match walk_of(l, r, ty, &list) {
                Walk::Leaf => {
                    self.leaf(l, r);
                    return Ok(());
                }
                Walk::Object => self.object(l, r, ty)?,
                Walk::Items(list) => self.items(l, r, ty, list)?,
            },
        }
        if whole {
            match (l, r) {
                (None, Some(_)) => self.out.added.insert(&self.path),
                (Some(_), None) => self.out.removed.insert(&self.path),
                _ => {}
            }
        }
        Ok(())
    }

    fn leaf(&mut self, l: Option<&Value>, r: Option<&Value>) {
        match (l, r) {
            (None, Some(_)) => self.out.added.insert(&self.path),
            (Some(_), None) => self.out.removed.insert(&self.path),
            (Some(a), Some(b)) if a != b => self.out.modified.insert(&self.path),
            _ => {}
        }
    }

    fn object(&mut self, l: Option<&Value>, r: Option<&Value>, ty: &Type) -> Result<()> {
        let empty = Map::new();
        let lm = l.and_then(Value::as_object).unwrap_or(&empty);
        let rm = r.and_then(Value::as_object).unwrap_or(&empty);
        let keys: std::collections::BTreeSet<&String> = lm.keys().chain(rm.keys()).collect();
        for k in keys {
            let child = ty.field(k);
            let whole = !ty.declares(k) || child.is_free_map();
            self.path.push(fieldset::field_element(k));
            let done = self.node(lm.get(k), rm.get(k), &child, whole);
            self.path.pop();
            done?;
        }
        Ok(())
    }

    fn items(
        &mut self,
        l: Option<&Value>,
        r: Option<&Value>,
        ty: &Type,
        list: &ListType,
    ) -> Result<()> {
        let (lv, rv) = (
            index_items(list, items_of(l)),
            index_items(list, items_of(r)),
        );
        let (Ok(lv), Ok(rv)) = (lv, rv) else {
            // items that cannot be told apart are compared as one value
            self.leaf(l, r);
            return Ok(());
        };
        let rmap: HashMap<&str, &Value> = rv.iter().map(|(pe, v)| (pe.as_str(), *v)).collect();
        let lmap: HashMap<&str, &Value> = lv.iter().map(|(pe, v)| (pe.as_str(), *v)).collect();
        let item_type = ty.item();
        let only_new = rv.iter().filter(|(pe, _)| !lmap.contains_key(pe.as_str()));
        for (pe, _) in lv.iter().chain(only_new) {
            self.path.push(pe.clone());
            let done = self.node(
                lmap.get(pe.as_str()).copied(),
                rmap.get(pe.as_str()).copied(),
                &item_type,
                true,
            );
            self.path.pop();
            done?;
        }
        Ok(())
    }
}

/// `config` merged into `live` (both of type `ty`): maps merge key by key (a null in the
/// configuration removes the field), set and map lists item by item, everything else is
/// replaced by the configuration's value.
pub fn merge(live: &Value, config: &Value, ty: &Type) -> Result<Value> {
    merge_node(Some(live), config, ty)
}

fn merge_node(l: Option<&Value>, r: &Value, ty: &Type) -> Result<Value> {
    let Some(l) = present(l) else {
        return Ok(r.clone());
    };
    let list = ty.list_type();
    match walk_of(Some(l), Some(r), ty, &list) {
        Walk::Leaf => Ok(r.clone()),
        Walk::Object => {
            let mut out = l.as_object().cloned().unwrap_or_default();
            for (k, rv) in r.as_object().into_iter().flatten() {
                if rv.is_null() {
                    out.remove(k);
                    continue;
                }
                let element = fieldset::field_element(k);
                let merged =
                    merge_node(out.get(k), rv, &ty.field(k)).map_err(|e| e.within(&element))?;
                out.insert(k.clone(), merged);
            }
            Ok(Value::Object(out))
        }
        Walk::Items(list) => merge_items(l, r, ty, list),
    }
}

/// Merge two lists item by item as Kubernetes does: the configuration's order for the items
/// it names, the live list's other items where they were.
fn merge_items(l: &Value, r: &Value, ty: &Type, list: &ListType) -> Result<Value> {
    let rv = index_items(list, items_of(Some(r)))?;
    // live items that cannot be told apart give way to the configuration
    let Ok(lv) = index_items(list, items_of(Some(l))) else {
        return Ok(r.clone());
    };
    let in_r: HashMap<&str, &Value> = rv.iter().map(|(pe, v)| (pe.as_str(), *v)).collect();
    let in_l: HashMap<&str, &Value> = lv.iter().map(|(pe, v)| (pe.as_str(), *v)).collect();
    let mut shared = rv
        .iter()
        .map(|(pe, _)| pe.as_str())
        .filter(|pe| in_l.contains_key(pe));
    let mut next_shared = shared.next();
    let mut emitted = std::collections::HashSet::new();
    let item_type = ty.item();
    let mut out = Vec::with_capacity(lv.len().max(rv.len()));
    let (mut i, mut j) = (0, 0);
    let merge_one = |pe: &str, rv: &Value| {
        merge_node(in_l.get(pe).copied(), rv, &item_type).map_err(|e| e.within(pe))
    };
    while i < lv.len() || j < rv.len() {
        if i < lv.len() && j < rv.len() {
            let pe = lv[i].0.as_str();
            if pe == rv[j].0 {
                out.push(merge_one(pe, rv[j].1)?);
                emitted.insert(pe);
                (i, j) = (i + 1, j + 1);
                next_shared = shared.next();
                continue;
            }
            if in_r.contains_key(pe) && next_shared.is_some_and(|next| next != pe) {
                // a shared item the configuration places later: emitted when it comes
                i += 1;
                continue;
            }
        }
        if i < lv.len() {
            let pe = lv[i].0.as_str();
            if !in_r.contains_key(pe) {
                out.push(lv[i].1.clone());
                i += 1;
                continue;
            }
            if emitted.contains(pe) {
                i += 1;
            }
        }
        if j < rv.len() {
            let pe = rv[j].0.as_str();
            out.push(merge_one(pe, rv[j].1)?);
            emitted.insert(pe);
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
            j += 1;
        }
    }
    Ok(Value::Array(out))
}

/// Remove the value at `path` from `v` (of type `ty`); maps and lists it leaves empty go
/// too. Returns whether `v` itself is left empty.
pub fn remove(v: &mut Value, path: &[String], ty: &Type) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    match v {
        Value::Object(m) => {
            let Some(name) = first.strip_prefix("f:") else {
                return false;
            };
            let emptied = match (rest.is_empty(), m.get_mut(name)) {
                (true, _) => true,
                (false, Some(child)) => remove(child, rest, &ty.field(name)),
                (false, None) => false,
            };
            if emptied {
                m.remove(name);
            }
            m.is_empty()
        }
        Value::Array(items) => {
            let list = ty.list_type();
            let Some(at) = items
                .iter()
                .position(|it| item_element(&list, it).is_ok_and(|pe| pe == *first))
            else {
                return false;
            };
            if rest.is_empty() || remove(&mut items[at], rest, &ty.item()) {
                items.remove(at);
            }
            items.is_empty()
        }
        _ => false,
    }
}
