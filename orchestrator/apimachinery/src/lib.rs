//! bpfk-apimachinery: the pure logic that makes the bpfk API server behave like Kubernetes.
//!
//! Nothing in this crate performs I/O. Objects are handled as [`serde_json::Value`] (the API
//! server's representation); `k8s-openapi` types are used where typed structure helps (discovery
//! documents, unknown-field detection).
//!
//! Modules, one concern each:
//! - [`kinds`]: every served kind, one file each (resource facts and strategy), registered
//!   once.
//! - [`registry`]: the served resources (group/version/kind/plural/scope/short names/...) and the
//!   discovery documents built from them.
//! - [`defaults`]: Kubernetes' defaulting (idempotent).
//! - [`selectors`]: label and field selectors.
//! - [`validation`]: create/update validation with Kubernetes field paths and causes.
//! - [`unknown_fields`]: detection of fields a kind does not have (`fieldValidation=Strict`).
//! - [`patch`]: JSON merge patch, JSON patch and strategic merge patch.
//! - [`table`]: `meta.k8s.io/v1` `Table` rendering for `kubectl get`.

#![warn(missing_docs)]

pub mod defaults;
pub mod kinds;
pub mod names;
pub mod patch;
pub mod pod_references;
pub mod registry;
pub mod selectors;
pub mod table;
pub mod unknown_fields;
pub mod validation;

pub use patch::PatchError;
pub use registry::ResourceInfo;
pub use selectors::{FieldSelector, Selector, SelectorError};
pub use table::{IncludeObject, TableOptions};
pub use validation::{FieldError, FieldErrorKind};
