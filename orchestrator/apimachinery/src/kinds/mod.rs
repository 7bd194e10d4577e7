//! Every served kind, each defined in one file (as kube-apiserver's
//! `pkg/registry/<group>/<kind>/strategy.go`): its [`ResourceInfo`] (group, version, plural,
//! short names, scope, subresources) and its [`KindStrategy`] (defaulting, validation, table
//! columns, selectable fields, strategic-merge keys, what the server resets or carries over on
//! writes). The generic engines ([`crate::validation`], [`crate::patch`], [`crate::table`],
//! [`crate::selectors`], [`crate::defaults`], [`crate::unknown_fields`]) ask the strategy and
//! never match on a kind.
//!
//! Adding a kind: one file under the group's folder, and its name in [`register!`] below.

use serde_json::{Map, Value};

use crate::names;
use crate::patch::ListStrategy;
use crate::registry::ResourceInfo;
use crate::table::{Column, AGE, NAME};
use crate::unknown_fields::FieldReport;
use crate::validation::FieldError;

pub(crate) mod prelude;
#[cfg(test)]
pub(crate) mod test_support;

/// What the API server allocates for objects of a kind (done by the server, which holds the
/// allocation keys; the strategy only names the need).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocates {
    /// Nothing.
    Nothing,
    /// A Service's ClusterIP and NodePorts.
    ServiceAddresses,
}

/// The cells every row starts from: the object's name and age, and the time rows are
/// rendered at (for ages of other fields).
pub struct RowContext {
    /// `metadata.name`.
    pub name: Value,
    /// Age of `metadata.creationTimestamp`, as kubectl prints it (`5m`).
    pub age: Value,
    /// The time the table is rendered at.
    pub now: chrono::DateTime<chrono::Utc>,
}

/// The per-kind facts and hooks the generic code asks. Every method has the behaviour of a
/// plain kind as default (no defaults, no extra validation, `NAME`/`AGE` columns, ...).
pub trait KindStrategy: Sync {
    /// Kubernetes' defaulting of a decoded object (idempotent; `obj` is a JSON object).
    fn default(&self, _obj: &mut Value) {}

    /// The rule `metadata.name` follows (DNS-1123 subdomain unless the kind says otherwise).
    fn name_rule(&self) -> fn(&str) -> Vec<String> {
        names::dns1123_subdomain
    }

    /// Validation of a new object beyond `metadata` (which the generic code checks).
    fn validate(&self, _obj: &Value, _errs: &mut Vec<FieldError>) {}

    /// What an update may not change, beyond what [`KindStrategy::validate`] checks.
    fn validate_update(&self, _new: &Value, _old: &Value, _errs: &mut Vec<FieldError>) {}

    /// Validation of a write to the `status` subresource (`status` of the new object).
    fn validate_status(&self, _status: &Value, _errs: &mut Vec<FieldError>) {}

    /// Unknown fields and type errors, from the kind's typed model (none without one).
    fn check_fields(&self, _res: &ResourceInfo, _obj: &Value) -> FieldReport {
        FieldReport::default()
    }

    /// Where a pod spec lives in objects of this kind (`spec` for a Pod,
    /// `spec.template.spec` for workloads), beside its `metadata`: what PodSecurity
    /// admission evaluates.
    fn pod_spec_path(&self) -> Option<&'static str> {
        None
    }

    /// The strategic-merge strategy of a kind-specific list at `path`
    /// (`spec.ports` of a Service); `None` = the generic rules decide.
    fn list_strategy(&self, _path: &str) -> Option<ListStrategy> {
        None
    }

    /// The columns `kubectl get` prints.
    fn table_columns(&self) -> Vec<Column> {
        vec![NAME, AGE]
    }

    /// One row's cells, one per column of [`KindStrategy::table_columns`].
    fn table_cells(&self, _obj: &Value, row: RowContext) -> Vec<Value> {
        vec![row.name, row.age]
    }

    /// Field selector fields beyond `metadata.name` and `metadata.namespace`.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// The object path a selectable field reads (`source` of an Event is `source.component`).
    fn field_path<'f>(&self, field: &'f str) -> &'f str {
        field
    }

    /// Reset what a client may not set on create (`status`, as `PrepareForCreate`).
    fn prepare_create(&self, _obj: &mut Map<String, Value>) {}

    /// Carry over from `old` what an update may leave out (`PrepareForUpdate`).
    fn prepare_update(&self, _old: &Value, _new: &mut Value) {}

    /// The object a write through subresource `sub` stores, from the stored object and the
    /// requested one, when the kind has its own rule for `sub` (kube-apiserver's
    /// per-subresource `PrepareForUpdate`: a CSR's `approval` takes only its Approved and
    /// Denied conditions). `None`: the generic rule (`status` replaces the status alone; a
    /// kind's other subresources change nothing).
    fn merge_subresource(&self, _sub: &str, _current: &Value, _requested: &Value) -> Option<Value> {
        None
    }

    /// What a write through subresource `sub` may not do beyond
    /// [`KindStrategy::validate_update`] (a CSR's `status` may not add an Approved condition).
    fn validate_subresource_update(
        &self,
        _sub: &str,
        _new: &Value,
        _old: &Value,
        _errs: &mut Vec<FieldError>,
    ) {
    }

    /// Whether a PUT of a missing object creates it.
    fn allow_create_on_update(&self) -> bool {
        false
    }

    /// Whether the kind's own finalization of an object being deleted is done.
    fn finalization_done(&self, _obj: &Value) -> bool {
        true
    }

    /// Mark an object whose deletion starts (a Namespace's `Terminating` phase).
    fn begin_deletion(&self, _obj: &mut Value) {}

    /// Seconds a delete of `obj` waits for its node to confirm (pods; 0 = delete now), given
    /// the grace period the client asked for.
    fn deletion_grace_seconds(&self, _obj: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    /// Why an object of this name may never be deleted (the system namespaces).
    fn undeletable(&self, _name: &str) -> Option<&'static str> {
        None
    }

    /// What the server allocates for objects of this kind.
    fn allocation(&self) -> Allocates {
        Allocates::Nothing
    }

    /// Whether objects of this resource are stored as another resource's (in its version,
    /// under its keys, e.g. `events.k8s.io/v1` Events as core/v1 Events, as kube-apiserver
    /// stores them): they share that resource's watch cache, and sweeps over every resource
    /// visit them once, through it.
    fn stored_elsewhere(&self) -> bool {
        false
    }

    /// A stored object as this resource's version shows it (the identity unless
    /// [`KindStrategy::stored_elsewhere`]).
    fn served_form(&self, stored: Value) -> Value {
        stored
    }

    /// An object of this resource's version as it is stored (the inverse of
    /// [`KindStrategy::served_form`]).
    fn stored_form(&self, obj: Value) -> Value {
        obj
    }

    /// Whether objects expire the server's `--event-ttl` after their last write (Events, kept
    /// under an etcd lease as kube-apiserver keeps them).
    fn expires(&self) -> bool {
        false
    }
}

/// Declares each group's kind modules and the one table of served resources, in
/// discovery order: the core group, then the named groups by their APIServices' priority
/// ([`apiregistration::api_service::LOCAL_PRIORITIES`], as kube-apiserver orders them). Helper modules shared by a group's kinds are listed in `[...]`.
macro_rules! register {
    ($($group:ident [$($helper:ident),*] { $($kind:ident,)* })*) => {
        $(
            #[doc = concat!("The kinds of the `", stringify!($group), "` API group.")]
            pub mod $group {
                $(pub(crate) mod $helper;)*
                $(pub mod $kind;)*
            }
        )*
        /// Every served resource, in discovery order.
        pub(crate) static RESOURCES: &[ResourceInfo] = &[$($($group::$kind::RESOURCE,)*)*];
    };
}

register! {
    core [pod_spec] {
        namespace,
        node,
        pod,
        binding,
        service,
        endpoints,
        event,
        config_map,
        secret,
        service_account,
    }
    apiregistration [] {
        api_service,
    }
    apps [workload] {
        deployment,
        replica_set,
    }
    events [] {
        event,
    }
    authentication [] {
        self_subject_review,
        token_review,
    }
    authorization [review] {
        self_subject_access_review,
        self_subject_rules_review,
        subject_access_review,
        local_subject_access_review,
    }
    certificates [] {
        certificate_signing_request,
    }
    rbac [policy_rules] {
        cluster_role,
        cluster_role_binding,
        role,
        role_binding,
    }
    coordination [] {
        lease,
    }
    discovery [] {
        endpoint_slice,
    }
}
