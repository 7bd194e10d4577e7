//! What a value at a path of an object is, as field ownership sees it: a struct of declared
//! fields, a map of free keys (labels), a list (atomic, a set, or a map of items by key
//! fields), or a leaf owned whole. Structs, maps and leaves come from Kubernetes' own message
//! types (the protobuf descriptors the codec uses); how a list merges comes from the
//! strategic-merge table the kinds declare (its merge keys are the lists' map keys, as
//! Kubernetes derives them for its built-in types).

use bpfk_apimachinery::patch::{self, ListStrategy};
use bpfk_apimachinery::registry::ResourceInfo;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use crate::protobuf::schema::{self, Shape};

/// Structs Kubernetes marks `+structType=atomic`: owned and replaced whole.
const ATOMIC_STRUCTS: &[&str] = &[
    "k8s.io.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "k8s.io.apimachinery.pkg.apis.meta.v1.OwnerReference",
    "k8s.io.api.core.v1.ObjectReference",
    "k8s.io.api.core.v1.TypedLocalObjectReference",
    "k8s.io.api.core.v1.ConfigMapKeySelector",
    "k8s.io.api.core.v1.SecretKeySelector",
    "k8s.io.api.core.v1.ObjectFieldSelector",
    "k8s.io.api.core.v1.ResourceFieldSelector",
    "k8s.io.api.core.v1.NodeSelector",
    "k8s.io.api.core.v1.NodeSelectorTerm",
];

/// A key field of a list's items and the value an item without it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyField {
    pub name: &'static str,
    pub default: Option<&'static str>,
}

const fn key(name: &'static str) -> KeyField {
    KeyField {
        name,
        default: None,
    }
}

const PROTOCOL: KeyField = KeyField {
    name: "protocol",
    default: Some("TCP"),
};

/// How a list's items are told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Owned and replaced whole.
    Atomic,
    /// Items are scalars, each owned on its own (`v:`).
    Set,
    /// Items are objects, owned by these key fields (`k:`).
    Map(Vec<KeyField>),
}

/// What the value at a path is.
#[derive(Debug, Clone)]
pub enum Form {
    Struct(MessageDescriptor),
    /// Free keys, each value of the inner form.
    Map(Box<Form>),
    List(ListType, Box<Form>),
    Leaf,
    /// No schema is known: objects are walked as structs, arrays are atomic.
    Unknown,
}

/// The form of a value at `path` (field names joined by `.`, list items left out: the key
/// of the strategic-merge table) in objects of `res`.
#[derive(Debug, Clone)]
pub struct Type {
    pub res: &'static ResourceInfo,
    pub path: String,
    pub form: Form,
}

impl Type {
    /// The type of whole objects of `res`.
    pub fn root(res: &'static ResourceInfo) -> Type {
        let form = schema::message_of(&res.api_version(), res.kind)
            .map(Form::Struct)
            .unwrap_or(Form::Unknown);
        Type {
            res,
            path: String::new(),
            form,
        }
    }

    /// The type of the value under `key` of an object of this type.
    pub fn field(&self, key: &str) -> Type {
        let path = if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        };
        let form = match &self.form {
            Form::Struct(desc) => match find_field(desc, key) {
                Some(field) => self.form_of_field(&field, &path),
                None => Form::Unknown,
            },
            Form::Map(inner) => (**inner).clone(),
            Form::List(..) | Form::Leaf => Form::Leaf,
            Form::Unknown => Form::Unknown,
        };
        Type {
            res: self.res,
            path,
            form,
        }
    }

    /// The type of the items of a list of this type.
    pub fn item(&self) -> Type {
        let form = match &self.form {
            Form::List(_, inner) => (**inner).clone(),
            _ => Form::Unknown,
        };
        Type {
            res: self.res,
            path: self.path.clone(),
            form,
        }
    }

    /// Whether `key` is a declared field of this struct (false for a map's free keys).
    pub fn declares(&self, key: &str) -> bool {
        match &self.form {
            Form::Struct(desc) => find_field(desc, key).is_some(),
            Form::Map(_) => false,
            _ => true,
        }
    }

    /// How a list of this type merges (atomic when this is not a list).
    pub fn list_type(&self) -> ListType {
        match &self.form {
            Form::List(t, _) => t.clone(),
            _ => ListType::Atomic,
        }
    }

    pub fn is_leaf(&self) -> bool {
        matches!(self.form, Form::Leaf)
    }

    pub fn is_free_map(&self) -> bool {
        matches!(self.form, Form::Map(_))
    }

    fn form_of_field(&self, field: &FieldDescriptor, path: &str) -> Form {
        if field.is_map() {
            let value = match field.kind() {
                Kind::Message(entry) => form_of_kind(&entry.map_entry_value_field().kind()),
                _ => Form::Leaf,
            };
            return Form::Map(Box::new(value));
        }
        if field.is_list() {
            let item = form_of_kind(&field.kind());
            return Form::List(list_type(self.res, path), Box::new(item));
        }
        form_of_kind(&field.kind())
    }
}

/// The field of `desc` JSON calls `key`, looking into structs Go embeds inline.
fn find_field(desc: &MessageDescriptor, key: &str) -> Option<FieldDescriptor> {
    if let Some(f) = desc.get_field_by_name(key) {
        return Some(f);
    }
    desc.fields()
        .filter_map(|f| schema::inline(&f))
        .find_map(|embedded| find_field(&embedded, key))
}

fn form_of_kind(kind: &Kind) -> Form {
    let Kind::Message(m) = kind else {
        return Form::Leaf;
    };
    match schema::shape(m) {
        Shape::Object if !ATOMIC_STRUCTS.contains(&m.full_name()) => Form::Struct(m.clone()),
        _ => Form::Leaf,
    }
}

/// The list type of the list at `path`: its strategic-merge strategy, with the key fields
/// Kubernetes gives ports (a port number and its protocol, TCP when left out).
fn list_type(res: &ResourceInfo, path: &str) -> ListType {
    match patch::list_strategy(res, path) {
        ListStrategy::MergeByKey("containerPort") => {
            ListType::Map(vec![key("containerPort"), PROTOCOL])
        }
        ListStrategy::MergeByKey("port") if path == "spec.ports" => {
            ListType::Map(vec![key("port"), PROTOCOL])
        }
        ListStrategy::MergeByKey(k) => ListType::Map(vec![key(k)]),
        ListStrategy::MergePrimitives => ListType::Set,
        ListStrategy::Replace => ListType::Atomic,
    }
}
