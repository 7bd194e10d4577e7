//! Create, update (PUT) and patch.

use bpfk_apimachinery::registry::ResourceInfo;
use bpfk_apimachinery::{defaults, patch, unknown_fields, validation};
use rand::Rng;
use serde_json::Value;

use super::retry::Attempts;
use super::{conflict, invalid, not_found, set_type, store_err};
use crate::error::{ApiError, Result};
use crate::object;
use crate::query::{FieldValidation, Query};
use crate::state::{self, AppState};
use crate::{admission, allocator, managed_fields};

/// A successful write: the object as stored, plus warnings for the client.
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    /// True when a new object was created (HTTP 201).
    pub created: bool,
}

/// Check the body's kind/apiVersion against the resource and fill them when missing.
fn check_type(res: &ResourceInfo, obj: &mut Value) -> Result<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !kind.is_empty() && kind != res.kind {
        return Err(ApiError::bad_request(format!(
            "the body kind {kind:?} does not match the resource {} (expected kind {:?})",
            res.plural, res.kind
        )));
    }
    if !api_version.is_empty() && api_version != res.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    set_type(res, obj);
    Ok(())
}

/// Check a body against its kind's schema: a value of the wrong type fails the request with
/// 400 BadRequest whatever the field validation mode (as Kubernetes' decoder does); unknown
/// fields fail under Strict, are dropped and reported under Warn, dropped under Ignore.
fn check_body(res: &ResourceInfo, obj: &mut Value, mode: FieldValidation) -> Result<Vec<String>> {
    let report = unknown_fields::check_fields(res, obj);
    if !report.type_errors.is_empty() {
        let errors: Vec<String> = report
            .type_errors
            .iter()
            .map(|e| {
                if e.field.is_empty() {
                    e.message.clone()
                } else {
                    format!("field \"{}\": {}", e.field, e.message)
                }
            })
            .collect();
        return Err(ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
            errors.join(", "),
            kind = res.kind,
            version = res.version,
        )));
    }
    let unknown = report.unknown;
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let messages: Vec<String> = unknown
        .iter()
        .map(|p| unknown_fields::unknown_field_message(p))
        .collect();
    if mode == FieldValidation::Strict {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            messages.join(", ")
        )));
    }
    for path in &unknown {
        remove_path(obj, path);
    }
    Ok(if mode == FieldValidation::Warn {
        messages
    } else {
        Vec::new()
    })
}

/// Remove the field at a path like `spec.containers[0].imagee`.
pub fn remove_path(obj: &mut Value, path: &str) {
    let mut steps: Vec<either::Step> = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        let field_end = rest.find('[').unwrap_or(rest.len());
        if field_end > 0 {
            steps.push(either::Step::Field(rest[..field_end].to_string()));
        }
        rest = &rest[field_end..];
        while let Some(close) = rest.find(']') {
            if let Ok(i) = rest[1..close].parse::<usize>() {
                steps.push(either::Step::Index(i));
            }
            rest = &rest[close + 1..];
        }
    }
    let Some((last, parents)) = steps.split_last() else {
        return;
    };
    let mut cur = obj;
    for step in parents {
        let next = match step {
            either::Step::Field(f) => cur.get_mut(f.as_str()),
            either::Step::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let (either::Step::Field(f), Some(map)) = (last, cur.as_object_mut()) {
        map.remove(f);
    }
}

mod either {
    pub enum Step {
        Field(String),
        Index(usize),
    }
}

pub(crate) fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// POST to a collection.
pub async fn create(
    state: &AppState,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    obj: Value,
    q: &Query,
) -> Result<Written> {
    create_as(state, res, ns, obj, q, Writer::Update).await
}

/// Who a write's changed fields belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// The request's manager, as an update (`Query::manager`).
    Update,
    /// An apply, which set the managed fields itself.
    Applied,
}

/// Record a non-apply write in `next`'s managed fields (`current`: None for a create).
fn track(
    res: &'static ResourceInfo,
    part: Part,
    q: &Query,
    current: Option<&Value>,
    next: &mut Value,
) {
    let sub = match part {
        Part::Whole => "binding",
        p => p.subresource().unwrap_or(""),
    };
    let now = object::now_rfc3339();
    if let Err(e) = managed_fields::track_update(res, sub, &q.manager(), current, next, &now) {
        // the write goes on; only its ownership record is left as it was
        tracing::debug!(error = %e, kind = res.kind, "managed fields not tracked");
    }
}

async fn create_as(
    state: &AppState,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    mut obj: Value,
    q: &Query,
    writer: Writer,
) -> Result<Written> {
    q.check_write_options("CreateOptions")?;
    check_type(res, &mut obj)?;
    // namespace: the URL decides; a different one in the body is an error
    if res.namespaced {
        let url_ns = ns.ok_or_else(|| {
            ApiError::bad_request(format!("{} must be created in a namespace", res.plural))
        })?;
        match object::namespace(&obj) {
            Some(body_ns) if body_ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
            _ => object::set_meta(&mut obj, "namespace", Value::String(url_ns.into())),
        }
    } else {
        object::remove_meta(&mut obj, "namespace");
    }
    if object::name(&obj).is_none() {
        if let Some(prefix) = object::meta_str(&obj, "generateName")
            .filter(|s| !s.is_empty())
            .map(String::from)
        {
            object::set_meta(
                &mut obj,
                "name",
                Value::String(format!("{prefix}{}", random_suffix())),
            );
        }
    }
    let warnings = check_body(res, &mut obj, q.field_validation)?;
    let name = super::display_name(&obj);

    // fields only the server sets
    for f in [
        "uid",
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        object::remove_meta(&mut obj, f);
    }
    admission::prepare_create(state, res, &mut obj);
    defaults::apply_defaults(res, &mut obj);

    let errors = validation::validate_create(res, &obj);
    if !errors.is_empty() {
        return Err(invalid(res, &name, &errors));
    }
    if res.namespaced {
        admission::check_namespace_accepts(state, res, &name, ns.unwrap_or_default()).await?;
    }
    let requester = crate::authz::requester();
    crate::node_restriction::check_create(requester.as_deref(), res, ns.unwrap_or_default(), &obj)?;
    crate::certificates::admit_create(requester.as_deref(), res, &name, &mut obj)?;
    if res.is("", "Pod") {
        // after validation: it adds only what the server itself writes correctly
        let ns = ns.unwrap_or_default();
        crate::service_account_admission::admit_pod(state, ns, &mut obj).await?;
    }
    if res.is("", "Namespace") {
        crate::pod_security_admission::check_namespace_labels(&name, res, &obj)?;
    } else if let Some(ns) = ns {
        crate::pod_security_admission::admit_create(state, res, ns, &obj).await?;
    }
    crate::escalation::check(state, res, ns, &obj).await?;
    if writer == Writer::Update {
        track(res, Part::Main, q, None, &mut obj);
    }
    object::set_meta(
        &mut obj,
        "uid",
        Value::String(uuid::Uuid::new_v4().to_string()),
    );
    object::set_meta(
        &mut obj,
        "creationTimestamp",
        Value::String(object::now_rfc3339()),
    );
    object::set_meta(&mut obj, "generation", Value::from(1));

    if q.dry_run {
        return Ok(Written {
            object: obj,
            warnings,
            created: true,
        });
    }
    let key = state::key(res, ns, &name);
    let allocations = state.allocation_guard(res).await;
    if allocations.is_some()
        && state
            .store
            .get(&key)
            .await
            .map_err(|e| store_err(res, &name, e))?
            .is_some()
    {
        // don't claim a ClusterIP or NodePort for a Service that exists (the create
        // transaction below refuses an existing key for every other kind)
        return Err(ApiError::AlreadyExists {
            group: res.group.into(),
            kind: res.plural.into(),
            name,
        });
    }
    let allocation = allocator::allocate(state, res, &mut obj).await?;
    let bytes = state::encode(res, &obj)?;
    match state
        .store
        .create_with_ttl(&key, bytes, state.ttl_of(res))
        .await
    {
        Ok(rev) => {
            object::set_meta(&mut obj, "resourceVersion", Value::String(rev.to_string()));
            Ok(Written {
                object: obj,
                warnings,
                created: true,
            })
        }
        Err(e) => {
            // a write that timed out may still be stored: keep its claims (the startup
            // repair releases them if it was not)
            if !matches!(e, bpfk_store::StoreError::Timeout(_)) {
                allocation.release(state).await;
            }
            Err(store_err(res, &name, e))
        }
    }
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but `status` (for kinds with a status subresource).
    Main,
    /// The `status` subresource: only `status` (unless the kind merges it itself).
    Status,
    /// Another subresource exchanging the kind's own objects, whose writes the kind's
    /// strategy merges (a CertificateSigningRequest's `approval`).
    Own(&'static str),
    /// Spec and status together: server-internal writes only (a binding sets
    /// `spec.nodeName` and the `PodScheduled` condition in one write, as Kubernetes does).
    Whole,
}

impl Part {
    /// The part a write through `sub` (`None`: the main resource) may change.
    pub fn from_subresource(res: &ResourceInfo, sub: Option<&str>) -> Result<Part> {
        let Some(sub) = sub else {
            return Ok(Part::Main);
        };
        match res.subresource(sub) {
            Some(s) if s.name == "status" => Ok(Part::Status),
            Some(s) if s.kind == res.kind && s.verbs.contains(&"update") => Ok(Part::Own(s.name)),
            _ => Err(ApiError::NotFound {
                group: res.group.into(),
                kind: format!("{}/{}", res.plural, sub),
                name: String::new(),
            }),
        }
    }

    /// The subresource written through, if any.
    pub fn subresource(self) -> Option<&'static str> {
        match self {
            Part::Status => Some("status"),
            Part::Own(sub) => Some(sub),
            Part::Main | Part::Whole => None,
        }
    }
}

/// Merge what a write asked for into the current object according to the part written.
fn merge_part(res: &ResourceInfo, part: Part, current: &Value, requested: Value) -> Value {
    let sub = part.subresource();
    if let Some(merged) = sub.and_then(|s| res.strategy.merge_subresource(s, current, &requested)) {
        return merged;
    }
    match part {
        Part::Status => with_requested_status(current, requested),
        Part::Own(_) => current.clone(),
        Part::Main | Part::Whole => main_fields(res, part, current, requested),
    }
}

/// `current` with the status of `requested`.
fn with_requested_status(current: &Value, mut requested: Value) -> Value {
    let mut out = current.clone();
    if let Some(map) = out.as_object_mut() {
        match requested.get_mut("status").map(Value::take) {
            Some(status) if !status.is_null() => {
                map.insert("status".into(), status);
            }
            _ => {
                map.remove("status");
            }
        }
    }
    out
}

/// `requested`, with the status of `current` for a main write to a kind with a status
/// subresource, and the metadata a client cannot change.
fn main_fields(res: &ResourceInfo, part: Part, current: &Value, mut requested: Value) -> Value {
    if part == Part::Main && res.subresource("status").is_some() {
        if let Some(map) = requested.as_object_mut() {
            match current.get("status") {
                Some(s) => map.insert("status".into(), s.clone()),
                None => map.remove("status"),
            };
        }
    }
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match current.get("metadata").and_then(|m| m.get(f)) {
            Some(v) => object::set_meta(&mut requested, f, v.clone()),
            None => object::remove_meta(&mut requested, f),
        }
    }
    requested
}

/// The object a write addresses, and the part of it written.
#[derive(Clone, Copy)]
struct Addressed<'a> {
    res: &'static ResourceInfo,
    ns: Option<&'a str>,
    name: &'a str,
    part: Part,
}

/// Validate and store `next` as the new version of `current` (revision `rev`).
/// Returns None when the store lost a race (retry), Some(result) otherwise.
async fn commit_update(
    state: &AppState,
    at: &Addressed<'_>,
    current: &Current,
    mut next: Value,
    q: &Query,
    writer: Writer,
) -> Result<Option<Value>> {
    let Addressed {
        res,
        ns,
        name,
        part,
    } = *at;
    let (current, rev, fresh) = (&current.object, current.rev, current.fresh);
    set_type(res, &mut next);
    if res.namespaced {
        object::set_meta(
            &mut next,
            "namespace",
            Value::String(ns.unwrap_or_default().into()),
        );
    }
    object::set_meta(&mut next, "name", Value::String(name.into()));
    res.strategy.prepare_update(current, &mut next);
    defaults::apply_defaults(res, &mut next);
    if object::spec_part(&next) != object::spec_part(current) {
        let generation = current
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        object::set_meta(&mut next, "generation", Value::from(generation + 1));
    }
    let errors = match part.subresource() {
        Some(sub) => validation::validate_subresource_update(res, sub, &next, current),
        None => validation::validate_update(res, &next, current),
    };
    if !errors.is_empty() {
        return Err(invalid(res, name, &errors));
    }
    crate::certificates::admit_update(state, res, part, current, &next).await?;
    if res.is("", "Namespace") {
        crate::pod_security_admission::admit_namespace_update(state, res, current, &next).await?;
    } else if let Some(ns) = ns {
        crate::pod_security_admission::admit_update(state, res, ns, current, &next).await?;
    }
    crate::escalation::check(state, res, ns, &next).await?;
    if writer == Writer::Update {
        track(res, part, q, Some(current), &mut next);
    }
    object::set_meta(&mut next, "resourceVersion", Value::String(rev.to_string()));
    if (next == *current || q.dry_run) && !fresh {
        // "nothing changes" is only an answer about the stored object, not a cached copy
        return Ok(None);
    }
    if next == *current || q.dry_run {
        // nothing changes: no write, the resourceVersion stays
        return Ok(Some(next));
    }
    let key = state::key(res, ns, name);
    let _allocations = state.allocation_guard(res).await;
    // an object being deleted goes away once its last finalizer is removed
    if object::is_deleting(&next)
        && object::finalizers(&next).is_empty()
        && res.strategy.finalization_done(&next)
    {
        return match state.store.delete(&key, Some(rev)).await {
            Ok(kv) => {
                allocator::after_delete(state, res, &next).await;
                Ok(Some(state::decode_at(
                    res,
                    &state::encode(res, &next)?,
                    kv.mod_revision,
                )?))
            }
            Err(bpfk_store::StoreError::Conflict { .. }) => Ok(None),
            Err(e) => Err(store_err(res, name, e)),
        };
    }
    let allocation = allocator::allocate_on_update(state, res, current, &mut next).await?;
    let encoded = match state::encode(res, &next) {
        Ok(b) => b,
        Err(e) => {
            allocation.release(state).await;
            return Err(e);
        }
    };
    match state
        .store
        .update_with_ttl(&key, encoded, Some(rev), state.ttl_of(res))
        .await
    {
        Ok(new_rev) => {
            allocator::release_after_update(state, res, current, &next).await;
            object::set_meta(
                &mut next,
                "resourceVersion",
                Value::String(new_rev.to_string()),
            );
            Ok(Some(next))
        }
        Err(bpfk_store::StoreError::Conflict { .. }) => {
            allocation.release(state).await;
            Ok(None)
        }
        Err(e @ bpfk_store::StoreError::Timeout(_)) => Err(store_err(res, name, e)),
        Err(e) => {
            allocation.release(state).await;
            Err(store_err(res, name, e))
        }
    }
}

/// Load an object with its revision.
pub async fn load(
    state: &AppState,
    res: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> Result<(Value, i64)> {
    let key = state::key(res, ns, name);
    let kv = state
        .store
        .get(&key)
        .await
        .map_err(|e| store_err(res, name, e))?
        .ok_or_else(|| not_found(res, name))?;
    Ok((state::decode(res, &kv)?, kv.mod_revision))
}

/// The object a write starts from.
pub struct Current {
    pub object: Value,
    /// Its resourceVersion (etcd mod_revision): the write's precondition.
    pub rev: i64,
    /// Read from etcd (true) or from the watch cache (false), which may lag behind.
    pub fresh: bool,
}

/// The current object for attempt `fresh` of a write: the first attempt reads the watch cache
/// (no etcd round trip; the write's revision precondition catches a stale copy), a retry
/// after a conflict, or an object the cache does not hold, reads etcd — as Kubernetes'
/// GuaranteedUpdate starts from the cached object.
async fn load_for_write(
    state: &AppState,
    res: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    fresh: bool,
) -> Result<Current> {
    if !fresh {
        if let Some(cache) = state.cache(res).ok().filter(|c| c.is_ready()) {
            if let Some(kv) = cache.get(&state::key(res, ns, name)).await {
                return Ok(Current {
                    object: state::decode(res, &kv)?,
                    rev: kv.mod_revision,
                    fresh: false,
                });
            }
        }
    }
    let (object, rev) = load(state, res, ns, name).await?;
    Ok(Current {
        object,
        rev,
        fresh: true,
    })
}

/// PUT of an object (or of its status).
pub async fn update(
    state: &AppState,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    part: Part,
    mut body: Value,
    q: &Query,
) -> Result<Written> {
    q.check_write_options("UpdateOptions")?;
    check_type(res, &mut body)?;
    match object::name(&body) {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
        _ => {}
    }
    if let (true, Some(body_ns), Some(url_ns)) = (res.namespaced, object::namespace(&body), ns) {
        if body_ns != url_ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let warnings = check_body(res, &mut body, q.field_validation)?;
    let precondition = object::resource_version(&body).map(String::from);
    let mut fresh = false;
    let mut attempts = Attempts::default();
    while attempts.next().await {
        let current = match load_for_write(state, res, ns, name, fresh).await {
            Ok(found) => found,
            Err(ApiError::NotFound { .. })
                if part == Part::Main && res.strategy.allow_create_on_update() =>
            {
                let mut w = create(state, res, ns, body, q).await?;
                w.warnings.extend(warnings);
                return Ok(w);
            }
            Err(e) => return Err(e),
        };
        if let Some(p) = &precondition {
            if *p != current.rev.to_string() {
                if !current.fresh {
                    fresh = true;
                    continue;
                }
                return Err(conflict(res, name, "the object has been modified; please apply your changes to the latest version and try again"));
            }
        }
        let next = merge_part(res, part, &current.object, body.clone());
        if let Some(object) = commit_update(
            state,
            &Addressed {
                res,
                ns,
                name,
                part,
            },
            &current,
            next,
            q,
            Writer::Update,
        )
        .await?
        {
            return Ok(Written {
                object,
                warnings,
                created: false,
            });
        }
        if precondition.is_some() && current.fresh {
            return Err(conflict(res, name, "the object has been modified; please apply your changes to the latest version and try again"));
        }
        fresh = true;
    }
    Err(attempts.exhausted(&format!("the update of {} {name:?}", res.plural)))
}

/// The patch formats the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    /// Server-side apply: the body is a configuration, not a patch ([`apply`]).
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: Option<&str>) -> Result<PatchKind> {
        let ct = ct.unwrap_or_default();
        let media = ct.split(';').next().unwrap_or_default().trim();
        match media {
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" => Ok(PatchKind::Apply),
            other => Err(ApiError::UnsupportedMediaType {
                message: format!("the body of the request was in an unknown format ({other:?}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"),
            }),
        }
    }
}

/// Apply a patch document to an object.
pub fn apply_patch(
    res: &ResourceInfo,
    kind: PatchKind,
    current: &Value,
    patch_doc: &Value,
) -> Result<Value> {
    match kind {
        PatchKind::Merge => {
            if !patch_doc.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            Ok(patch::json_merge_patch(current, patch_doc))
        }
        PatchKind::Json => patch::json_patch(current, patch_doc).map_err(|e| ApiError::Invalid {
            group: res.group.into(),
            kind: res.kind.into(),
            name: super::display_name(current),
            causes: vec![crate::error::Cause {
                reason: "FieldValueInvalid".into(),
                message: e.to_string(),
                field: String::new(),
            }],
        }),
        PatchKind::Apply => Err(ApiError::UnsupportedMediaType {
            message: format!("server-side apply is not supported for {}", res.plural),
        }),
        PatchKind::Strategic => {
            if !patch_doc.is_object() {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            patch::strategic_merge_patch(res, current, patch_doc)
                .map_err(|e| ApiError::bad_request(e.to_string()))
        }
    }
}

/// PATCH of an object (or of its status).
#[allow(clippy::too_many_arguments)]
pub async fn patch(
    state: &AppState,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    part: Part,
    kind: PatchKind,
    patch_doc: &Value,
    q: &Query,
) -> Result<Written> {
    q.check_write_options("PatchOptions")?;
    if q.force {
        return Err(patch_options_invalid(
            "FieldValueForbidden",
            "force",
            "Forbidden: may not be specified for non-apply patch",
        ));
    }
    let mut fresh = false;
    let mut attempts = Attempts::default();
    while attempts.next().await {
        let current = load_for_write(state, res, ns, name, fresh).await?;
        fresh = true;
        let mut patched = match apply_patch(res, kind, &current.object, patch_doc) {
            Ok(v) => v,
            // e.g. a JSON patch `test` that failed against a cached copy
            Err(_) if !current.fresh => continue,
            Err(e) => return Err(e),
        };
        let warnings = check_body(res, &mut patched, q.field_validation)?;
        if let Some(p) = object::resource_version(&patched) {
            if *p != current.rev.to_string() {
                if !current.fresh {
                    continue;
                }
                return Err(conflict(res, name, "the object has been modified; please apply your changes to the latest version and try again"));
            }
        }
        if object::name(&patched) != Some(name) {
            return Err(ApiError::bad_request(
                "metadata.name cannot be changed by a patch",
            ));
        }
        let next = merge_part(res, part, &current.object, patched);
        if let Some(object) = commit_update(
            state,
            &Addressed {
                res,
                ns,
                name,
                part,
            },
            &current,
            next,
            q,
            Writer::Update,
        )
        .await?
        {
            return Ok(Written {
                object,
                warnings,
                created: false,
            });
        }
    }
    Err(attempts.exhausted(&format!("the write of {} {name:?}", res.plural)))
}

/// 422 for invalid `PatchOptions`.
fn patch_options_invalid(reason: &str, field: &str, message: &str) -> ApiError {
    ApiError::Invalid {
        group: "meta.k8s.io".into(),
        kind: "PatchOptions".into(),
        name: String::new(),
        causes: vec![crate::error::Cause {
            reason: reason.into(),
            message: message.into(),
            field: field.into(),
        }],
    }
}

/// Check an applied configuration as Kubernetes does before merging it: an object of the
/// resource's kind naming the object of the URL, without managed fields; its name is the
/// URL's when left out.
fn check_apply_config(
    res: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    config: &mut Value,
) -> Result<()> {
    let typed = config.get("kind").is_some_and(Value::is_string)
        && config.get("apiVersion").is_some_and(Value::is_string);
    if config.is_object() && !typed {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in a server-side apply configuration",
        ));
    }
    check_type(res, config)?;
    match object::name(config) {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )))
        }
        Some(_) => {}
        None => object::set_meta(config, "name", Value::String(name.into())),
    }
    if let (true, Some(body_ns), Some(url_ns)) = (res.namespaced, object::namespace(config), ns) {
        if body_ns != url_ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(invalid(
            res,
            name,
            &[validation::FieldError::forbidden(
                &validation::Path::new("metadata").child("managedFields"),
                "must be nil in a server-side apply configuration",
            )],
        ));
    }
    Ok(())
}

fn apply_error(res: &ResourceInfo, name: &str, e: managed_fields::ApplyError) -> ApiError {
    match e {
        managed_fields::ApplyError::Conflicts(conflicts) => ApiError::ApplyConflict {
            message: managed_fields::ApplyError::Conflicts(conflicts.clone()).to_string(),
            causes: conflicts
                .into_iter()
                .map(|c| crate::error::Cause {
                    reason: "FieldManagerConflict".into(),
                    message: format!("conflict with {}", c.manager),
                    field: c.field,
                })
                .collect(),
        },
        managed_fields::ApplyError::Invalid(e) => ApiError::bad_request(format!(
            "failed to create typed patch object ({}/{name}): {e}",
            res.kind
        )),
    }
}

/// Server-side apply (PATCH `application/apply-patch+yaml`) of `config` to an object or its
/// status, by the request's `fieldManager`; creates the object when it does not exist.
pub async fn apply(
    state: &AppState,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    part: Part,
    config: Value,
    q: &Query,
) -> Result<Written> {
    let target = Target { res, ns, name };
    let subresource = part.subresource().unwrap_or("");
    apply_through(state, target, part, subresource, config, q).await
}

/// The object an apply writes.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub res: &'static ResourceInfo,
    pub ns: Option<&'a str>,
    pub name: &'a str,
}

/// [`apply`] of `config` (an object of `target`'s kind) writing `part`, its fields recorded as
/// applied through `subresource` (`scale`: an apply to `/scale`, translated to the object).
pub async fn apply_through(
    state: &AppState,
    target: Target<'_>,
    part: Part,
    subresource: &str,
    mut config: Value,
    q: &Query,
) -> Result<Written> {
    let Target { res, ns, name } = target;
    q.check_write_options("PatchOptions")?;
    let manager = q.field_manager.clone().ok_or_else(|| {
        patch_options_invalid(
            "FieldValueRequired",
            "fieldManager",
            "Required value: is required for apply patch",
        )
    })?;
    check_apply_config(res, ns, name, &mut config)?;
    let warnings = check_body(res, &mut config, q.field_validation)?;
    let precondition = object::resource_version(&config).map(String::from);
    let now = object::now_rfc3339();
    let req = managed_fields::ApplyRequest {
        manager: &manager,
        subresource,
        force: q.force,
        now: &now,
    };
    let mut fresh = false;
    let mut attempts = Attempts::default();
    while attempts.next().await {
        let current = match load_for_write(state, res, ns, name, fresh).await {
            Ok(found) => found,
            // an apply through a subresource (status, scale) never creates its object
            Err(ApiError::NotFound { .. }) if part == Part::Main && subresource.is_empty() => {
                let obj = managed_fields::apply(res, &req, None, &config)
                    .map_err(|e| apply_error(res, name, e))?;
                match create_as(state, res, ns, obj, q, Writer::Applied).await {
                    Ok(mut w) => {
                        w.warnings.extend(warnings);
                        return Ok(w);
                    }
                    // created meanwhile: apply to it
                    Err(ApiError::AlreadyExists { .. }) => {
                        fresh = true;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        fresh = true;
        if precondition
            .as_ref()
            .is_some_and(|p| *p != current.rev.to_string())
        {
            if !current.fresh {
                continue;
            }
            return Err(conflict(res, name, "the object has been modified; please apply your changes to the latest version and try again"));
        }
        let applied = match managed_fields::apply(res, &req, Some(&current.object), &config) {
            Ok(v) => v,
            // conflicts found on a cached copy are checked against the stored object
            Err(_) if !current.fresh => continue,
            Err(e) => return Err(apply_error(res, name, e)),
        };
        let managed = applied.pointer("/metadata/managedFields").cloned();
        let mut next = merge_part(res, part, &current.object, applied);
        match managed {
            Some(m) => object::set_meta(&mut next, "managedFields", m),
            None => object::remove_meta(&mut next, "managedFields"),
        }
        let at = Addressed {
            res,
            ns,
            name,
            part,
        };
        if let Some(object) = commit_update(state, &at, &current, next, q, Writer::Applied).await? {
            return Ok(Written {
                object,
                warnings,
                created: false,
            });
        }
    }
    Err(attempts.exhausted(&format!("the apply to {} {name:?}", res.plural)))
}

/// Read-modify-write of an object with retry on conflict, for server-internal changes
/// (bindings, scale, finalize). `change` returns the new object or an error.
pub async fn modify(
    state: &AppState,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    part: Part,
    q: &Query,
    mut change: impl FnMut(&Value) -> Result<Value>,
) -> Result<Value> {
    q.check_write_options("UpdateOptions")?;
    let mut fresh = false;
    let mut attempts = Attempts::default();
    while attempts.next().await {
        let current = load_for_write(state, res, ns, name, fresh).await?;
        fresh = true;
        let changed = match change(&current.object) {
            Ok(v) => v,
            // a refusal based on a cached copy is checked against the stored object
            Err(_) if !current.fresh => continue,
            Err(e) => return Err(e),
        };
        let next = merge_part(res, part, &current.object, changed);
        if let Some(object) = commit_update(
            state,
            &Addressed {
                res,
                ns,
                name,
                part,
            },
            &current,
            next,
            q,
            Writer::Update,
        )
        .await?
        {
            return Ok(object);
        }
    }
    Err(attempts.exhausted(&format!("the write of {} {name:?}", res.plural)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removes_nested_paths() {
        let mut v = json!({"spec": {"containers": [{"name": "a", "imagee": "x"}], "foo": 1}});
        remove_path(&mut v, "spec.containers[0].imagee");
        remove_path(&mut v, "spec.foo");
        remove_path(&mut v, "spec.missing[3].x");
        assert_eq!(v, json!({"spec": {"containers": [{"name": "a"}]}}));
    }

    #[test]
    fn each_subresource_writes_its_part() {
        let find = bpfk_apimachinery::registry::find;
        let csrs = find("certificates.k8s.io", "v1", "certificatesigningrequests").unwrap();
        let part = |res, sub| Part::from_subresource(res, Some(sub));
        assert_eq!(part(csrs, "approval").unwrap(), Part::Own("approval"));
        assert_eq!(part(csrs, "status").unwrap(), Part::Status);
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(part(pods, "binding").unwrap_err().code(), 404);
        assert_eq!(part(pods, "approval").unwrap_err().code(), 404);

        let current = json!({"metadata": {"name": "r"}, "spec": {"signerName": "a.io/b"}});
        let approved = json!({"type": "Approved", "status": "True", "lastUpdateTime": "2025-01-01T00:00:00Z",
                              "lastTransitionTime": "2025-01-01T00:00:00Z"});
        let asked = json!({"metadata": {"name": "r", "labels": {"a": "b"}}, "spec": {"signerName": "evil.io/x"},
                           "status": {"certificate": "eA==", "conditions": [approved]}});
        let approval = merge_part(csrs, Part::Own("approval"), &current, asked.clone());
        assert_eq!(approval["metadata"], current["metadata"]);
        assert_eq!(approval["spec"], current["spec"]);
        assert_eq!(approval["status"], json!({"conditions": [approved]}));
        let status = merge_part(csrs, Part::Status, &current, asked.clone());
        assert_eq!(
            (&status["spec"], &status["status"]),
            (&current["spec"], &asked["status"])
        );
        let main = merge_part(csrs, Part::Main, &current, asked.clone());
        assert_eq!(main["spec"], asked["spec"]);
        assert!(main.get("status").is_none());
        let pod_status = merge_part(pods, Part::Status, &current, asked.clone());
        assert_eq!(
            (&pod_status["spec"], &pod_status["status"]),
            (&current["spec"], &asked["status"])
        );
    }
}
