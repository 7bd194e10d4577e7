//! `bpfk apply`: client-side apply, compatible with `kubectl apply`.

use http::Method;
use serde_json::Value;

use crate::client::{with_query, Ctx, MERGE_PATCH};
use crate::discovery::{ResourceInfo, Resources};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::patch::{
    is_empty_patch, last_applied, modified_configuration, three_way_merge_patch, LAST_APPLIED,
};

/// Field manager recorded by the server for our writes.
pub const FIELD_MANAGER: &str = "bpfk-client-side-apply";

/// What applying one object did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// Apply `manifests` (loaded from `-f` by the caller).
pub async fn run(ctx: &Ctx, resources: &Resources, manifests: &[Manifest]) -> Result<()> {
    if manifests.is_empty() {
        return Err(Error::Manifest("no objects passed to apply".to_string()));
    }
    let mut failures = 0;
    for m in manifests {
        match apply_one(ctx, resources, m).await {
            Ok((info, outcome)) => {
                println!("{}/{} {}", info.kind_ref(), m.name(), outcome.as_str())
            }
            Err(e) => {
                eprintln!("{}", with_source(e, "applying", &m.source).report());
                failures += 1;
            }
        }
    }
    if failures > 0 {
        return Err(Error::Reported(failures));
    }
    Ok(())
}

/// Content type of a server-side apply (its body is the manifest, JSON being YAML).
const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// What kubectl adds to an apply conflict.
const CONFLICT_HINT: &str =
    "Please review the fields above--they currently have other managers. Here
are the ways you can resolve this warning:
* If you intend to manage all of these fields, please re-run the apply
  command with the `--force-conflicts` flag.
* If you do not intend to manage all of the fields, please edit your
  manifest to remove references to the fields that should keep their
  current managers.
* You may co-own fields by updating your manifest to match the existing
  value; in this case, you'll become the manager if the other manager(s)
  stop managing the field (remove it from their configuration).
See https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts";

/// `bpfk apply --server-side`: each manifest sent as a server-side apply by
/// `args.field_manager`, as `kubectl apply --server-side` does.
pub async fn run_server_side(
    ctx: &Ctx,
    resources: &Resources,
    manifests: &[Manifest],
    args: &crate::cli::ApplyArgs,
) -> Result<()> {
    if manifests.is_empty() {
        return Err(Error::Manifest("no objects passed to apply".to_string()));
    }
    let mut failures = 0;
    for m in manifests {
        match apply_on_server(ctx, resources, m, args).await {
            Ok(info) => println!("{}/{} serverside-applied", info.kind_ref(), m.name()),
            Err(e) => {
                let conflict = matches!(&e, Error::Api(s) if s.code == 409 && s.message.starts_with("Apply failed"));
                eprintln!("{}", with_source(e, "patching", &m.source).report());
                if conflict {
                    eprintln!("{CONFLICT_HINT}");
                }
                failures += 1;
            }
        }
    }
    if failures > 0 {
        return Err(Error::Reported(failures));
    }
    Ok(())
}

async fn apply_on_server<'r>(
    ctx: &Ctx,
    resources: &'r Resources,
    m: &Manifest,
    args: &crate::cli::ApplyArgs,
) -> Result<&'r ResourceInfo> {
    let (info, obj, ns) = place(ctx, resources, m)?;
    let uri = with_query(
        &info.object_path(ns.as_deref(), m.name()),
        &[
            ("fieldManager", args.field_manager.clone()),
            ("fieldValidation", "Strict".to_string()),
            ("force", args.force_conflicts.to_string()),
        ],
    );
    ctx.send_json(Method::PATCH, &uri, APPLY_PATCH, &obj)
        .await?;
    Ok(info)
}

/// Resolve a manifest's type and namespace; sets `metadata.namespace` like kubectl does.
pub fn place<'r>(
    ctx: &Ctx,
    resources: &'r Resources,
    m: &Manifest,
) -> Result<(&'r ResourceInfo, Value, Option<String>)> {
    let info = resources
        .for_kind(m.api_version(), m.kind())
        .ok_or_else(|| Error::NoKindMatch {
            name: m.name().to_string(),
            namespace: m.namespace().unwrap_or("").to_string(),
            source_name: m.source.clone(),
            kind: m.kind().to_string(),
            api_version: m.api_version().to_string(),
        })?;
    let mut obj = m.object.clone();
    if !info.namespaced {
        return Ok((info, obj, None));
    }
    let ns = match m.namespace() {
        Some(ns) if ctx.namespace_explicit && ns != ctx.namespace => {
            return Err(Error::Usage(format!(
                "the namespace from the provided object \"{ns}\" does not match the namespace \"{}\". You must pass '--namespace={ns}' to perform this operation.",
                ctx.namespace
            )))
        }
        Some(ns) => ns.to_string(),
        None => ctx.namespace.clone(),
    };
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("namespace".into(), Value::String(ns.clone()));
    }
    Ok((info, obj, Some(ns)))
}

async fn apply_one<'r>(
    ctx: &Ctx,
    resources: &'r Resources,
    m: &Manifest,
) -> Result<(&'r ResourceInfo, Outcome)> {
    let (info, obj, ns) = place(ctx, resources, m)?;
    let (modified, _) = modified_configuration(&obj);
    let path = info.object_path(ns.as_deref(), m.name());
    let current = match ctx.get_json(&path, None).await {
        Ok(current) => current,
        Err(e) if e.is_not_found() => {
            let uri = with_query(
                &info.collection_path(ns.as_deref()),
                &[
                    ("fieldManager", FIELD_MANAGER.to_string()),
                    ("fieldValidation", "Strict".to_string()),
                ],
            );
            ctx.send_json(Method::POST, &uri, "application/json", &modified)
                .await
                .map_err(|e| with_source(e, "creating", &m.source))?;
            return Ok((info, Outcome::Created));
        }
        Err(e) => return Err(e),
    };
    let original = last_applied(&current);
    if current
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .is_none()
    {
        eprintln!(
            "Warning: resource {}/{} is missing the {LAST_APPLIED} annotation which is required by apply. \
             apply should only be used on resources created declaratively by apply. \
             The missing annotation will be patched automatically.",
            info.group_resource(),
            m.name()
        );
    }
    let patch = three_way_merge_patch(original.as_ref(), &modified, &current);
    if is_empty_patch(&patch) {
        return Ok((info, Outcome::Unchanged));
    }
    tracing::debug!(%patch, "sending three-way merge patch");
    let uri = with_query(
        &path,
        &[
            ("fieldManager", FIELD_MANAGER.to_string()),
            ("fieldValidation", "Strict".to_string()),
        ],
    );
    ctx.send_json(Method::PATCH, &uri, MERGE_PATCH, &patch)
        .await
        .map_err(|e| with_source(e, "patching", &m.source))?;
    Ok((info, Outcome::Configured))
}

/// kubectl's `AddSourceToErr`: server errors (except Invalid, printed from its
/// causes) say which file they came from.
pub fn with_source(e: Error, verb: &str, source: &str) -> Error {
    match e {
        Error::Api(mut s) if s.reason != "Invalid" && !s.message.starts_with("error when ") => {
            s.message = format!("error when {verb} \"{source}\": {}", s.message);
            Error::Api(s)
        }
        other => other,
    }
}
