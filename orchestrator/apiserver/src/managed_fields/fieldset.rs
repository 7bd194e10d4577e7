//! Sets of field paths, as `metadata.managedFields[].fieldsV1` writes them: a tree whose keys
//! are path elements (`f:name` a field, `k:{"name":"nginx"}` a list item by its keys,
//! `v:"x"` a set item by value, `i:0` an index) and whose nodes are members of the set or
//! only lead to members (`.` marks a node that is both).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Largest nesting of a `fieldsV1` document read from a client.
const MAX_DEPTH: usize = 64;

/// A set of paths: this node (when `member`) and the sets below it, by path element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    pub member: bool,
    pub children: BTreeMap<String, FieldSet>,
}

/// A path: its elements in their `fieldsV1` spelling.
pub type Path = [String];

impl FieldSet {
    /// A set holding only this node.
    pub fn leaf() -> FieldSet {
        FieldSet {
            member: true,
            children: BTreeMap::new(),
        }
    }

    /// True when no path is a member.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// Add `path` (relative to this node; empty: this node).
    pub fn insert(&mut self, path: &Path) {
        let mut node = self;
        for element in path {
            node = node.children.entry(element.clone()).or_default();
        }
        node.member = true;
    }

    /// The node at `path`, if the set has one.
    pub fn get(&self, path: &Path) -> Option<&FieldSet> {
        let mut node = self;
        for element in path {
            node = node.children.get(element)?;
        }
        Some(node)
    }

    /// Whether `path` itself is a member.
    pub fn has(&self, path: &Path) -> bool {
        self.get(path).is_some_and(|n| n.member)
    }

    /// Whether some member lies strictly below `path`.
    pub fn has_below(&self, path: &Path) -> bool {
        self.get(path)
            .is_some_and(|n| n.children.values().any(|c| !c.is_empty()))
    }

    /// Paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.member |= other.member;
        for (k, theirs) in &other.children {
            let merged = match out.children.get(k) {
                Some(mine) => mine.union(theirs),
                None => theirs.clone(),
            };
            out.children.insert(k.clone(), merged);
        }
        out
    }

    /// Paths of this set that are not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (k, mine) in &self.children {
            let rest = match other.children.get(k) {
                Some(theirs) => mine.difference(theirs),
                None => mine.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(k.clone(), rest);
            }
        }
        out
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (k, mine) in &self.children {
            if let Some(theirs) = other.children.get(k) {
                let both = mine.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(k.clone(), both);
                }
            }
        }
        out
    }

    /// This set without the node at `path` and everything below it.
    pub fn without_subtree(&self, path: &Path) -> FieldSet {
        let mut out = self.clone();
        let Some((last, parents)) = path.split_last() else {
            return FieldSet::default();
        };
        let mut node = &mut out;
        for element in parents {
            match node.children.get_mut(element) {
                Some(n) => node = n,
                None => return out,
            }
        }
        node.children.remove(last);
        out
    }

    /// Only the node at `path` and what lies below it (the rest removed).
    pub fn only_subtree(&self, path: &Path) -> FieldSet {
        let mut out = FieldSet::default();
        if let Some(sub) = self.get(path) {
            let mut node = &mut out;
            for element in path {
                node = node.children.entry(element.clone()).or_default();
            }
            *node = sub.clone();
        }
        out
    }

    /// Every member path, parents before their children.
    pub fn members(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut path = Vec::new();
        self.collect_members(&mut path, &mut out);
        out
    }

    fn collect_members(&self, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member {
            out.push(path.clone());
        }
        for (k, child) in &self.children {
            path.push(k.clone());
            child.collect_members(path, out);
            path.pop();
        }
    }

    /// The `fieldsV1` document of this set.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, child) in &self.children {
            if !child.is_empty() {
                map.insert(k.clone(), child.to_fields_v1());
            }
        }
        Value::Object(map)
    }

    /// Read a `fieldsV1` document; an error names what is wrong where.
    pub fn from_fields_v1(doc: &Value) -> Result<FieldSet, String> {
        Self::read(doc, 0).map(|mut set| {
            set.member = false;
            set
        })
    }

    fn read(doc: &Value, depth: usize) -> Result<FieldSet, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nests deeper than {MAX_DEPTH} levels"));
        }
        let Value::Object(map) = doc else {
            return Err("must be an object".into());
        };
        let mut set = FieldSet {
            member: map.is_empty(),
            children: BTreeMap::new(),
        };
        for (k, child) in map {
            if k == "." {
                set.member = true;
                continue;
            }
            let element = canonical_element(k).ok_or_else(|| {
                format!("{k:?} is not a path element (f:, k:, v: or i: followed by its value)")
            })?;
            let node = Self::read(child, depth + 1).map_err(|e| format!("{k}: {e}"))?;
            set.children.insert(element, node);
        }
        Ok(set)
    }
}

/// A path element in the one spelling this server writes (`k:` keys sorted by name), or
/// None when `raw` is not one.
fn canonical_element(raw: &str) -> Option<String> {
    let (prefix, rest) = raw.split_at_checked(2)?;
    match prefix {
        "f:" => Some(raw.to_string()),
        "i:" => rest.parse::<usize>().ok().map(|i| format!("i:{i}")),
        "v:" => serde_json::from_str::<Value>(rest)
            .ok()
            .map(|v| value_element(&v)),
        "k:" => match serde_json::from_str::<Value>(rest).ok()? {
            Value::Object(keys) => Some(key_element(keys.iter())),
            _ => None,
        },
        _ => None,
    }
}

/// `f:name`.
pub fn field_element(name: &str) -> String {
    format!("f:{name}")
}

/// `v:<json>`: a set item.
pub fn value_element(v: &Value) -> String {
    format!("v:{v}")
}

/// `k:{"a":1,"b":"x"}`: a list item by its key fields, sorted by name.
pub fn key_element<'a>(keys: impl Iterator<Item = (&'a String, &'a Value)>) -> String {
    let mut sorted: Vec<(&String, &Value)> = keys.collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let body: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::String((*k).clone())))
        .collect();
    format!("k:{{{}}}", body.join(","))
}

/// A path as Kubernetes prints it in conflicts: `.spec.replicas`,
/// `.spec.containers[name="nginx"].image`, `.metadata.finalizers[="a"]`.
pub fn display(path: &Path) -> String {
    let mut out = String::new();
    for element in path {
        let (prefix, rest) = element.split_at_checked(2).unwrap_or(("", element));
        match prefix {
            "f:" => {
                out.push('.');
                out.push_str(rest);
            }
            "k:" => match serde_json::from_str::<Value>(rest) {
                Ok(Value::Object(keys)) => {
                    let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    out.push_str(&format!("[{}]", parts.join(",")));
                }
                _ => out.push_str(element),
            },
            "v:" => out.push_str(&format!("[={rest}]")),
            "i:" => out.push_str(&format!("[{rest}]")),
            _ => out.push_str(element),
        }
    }
    out
}
