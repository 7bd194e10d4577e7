//! GET and LIST, from etcd (consistent reads) or from the watch cache (`resourceVersion=0`).

use base64::Engine;
use bpfk_apimachinery::registry::ResourceInfo;
use bpfk_apimachinery::selectors::{FieldSelector, Selector};
use bpfk_store::{KeyValue, ListOptions};
use serde_json::{json, Value};

use super::{not_found, resource_version, store_err};
use crate::error::{ApiError, Result};
use crate::object;
use crate::query::Query;
use crate::state::{self, AppState};

/// Label and field selectors of a request, parsed once.
pub struct Filter {
    pub res: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub labels: Selector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn from_query(res: &'static ResourceInfo, ns: Option<&str>, q: &Query) -> Result<Filter> {
        let labels = match &q.label_selector {
            Some(s) => Selector::parse(s)
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
            None => Selector::everything(),
        };
        let fields = match &q.field_selector {
            Some(s) => {
                let f = FieldSelector::parse(s)
                    .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
                f.validate_for(res)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                f
            }
            None => FieldSelector::parse("").map_err(|e| ApiError::internal(e.to_string()))?,
        };
        Ok(Filter {
            res,
            namespace: ns.filter(|_| res.namespaced).map(String::from),
            labels,
            fields,
        })
    }

    /// Whether a stored key belongs to the request's namespace.
    pub fn key_in_scope(&self, key: &str) -> bool {
        match &self.namespace {
            Some(_) => key.starts_with(&state::prefix(self.res, self.namespace.as_deref())),
            None => true,
        }
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches(self.res, obj)
    }
}

/// GET one object.
pub async fn get(
    state: &AppState,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    q: &Query,
) -> Result<Value> {
    let key = state::key(res, ns, name);
    let rv = resource_version::parse(q.resource_version.as_deref())?;
    if let Some(rev) = rv.filter(|r| *r > 0) {
        resource_version::wait_fresh(state, res, rev).await?;
    }
    let kv = if rv == Some(0) {
        state.ready_cache(res).await?.get(&key).await
    } else {
        state
            .store
            .get(&key)
            .await
            .map_err(|e| store_err(res, name, e))?
    };
    let kv = kv.ok_or_else(|| not_found(res, name))?;
    state::decode(res, &kv)
}

/// Continue token: where a paged list goes on, at which revision.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    let raw = serde_json::to_vec(&ContinueToken {
        rv,
        start: start.into(),
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Result<ContinueToken> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or_else(|| ApiError::bad_request("continue key is not valid"))
}

/// The objects of a list and the collection's resourceVersion.
pub struct Listed {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

/// LIST a collection (a namespace's, or across namespaces).
pub async fn list(
    state: &AppState,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    q: &Query,
) -> Result<Listed> {
    resource_version::check_options(q, false)?;
    let filter = Filter::from_query(res, ns, q)?;
    let requested = resource_version::parse(q.resource_version.as_deref())?;
    if let Some(rev) = requested.filter(|r| *r > 0 && q.continue_token.is_none()) {
        resource_version::wait_fresh(state, res, rev).await?;
    }
    let from_cache = q.resource_version.as_deref() == Some("0") && q.continue_token.is_none();
    if from_cache {
        let (kvs, revision) = state.ready_cache(res).await?.list().await;
        let items = decode_matching(&filter, kvs.iter())?;
        return Ok(Listed {
            items,
            revision,
            continue_token: None,
            remaining: None,
        });
    }
    let prefix = state::prefix(res, filter.namespace.as_deref());
    let (mut start_after, mut at_revision) = (None, None);
    if let Some(token) = &q.continue_token {
        let t = decode_continue(token)?;
        if !t.start.starts_with(&prefix) {
            return Err(ApiError::bad_request(
                "continue key is not valid for this collection",
            ));
        }
        start_after = Some(t.start);
        at_revision = Some(t.rv);
    } else if q.resource_version_match.as_deref() == Some("Exact") {
        at_revision = requested;
    }
    let limit = q.limit;
    let mut items = Vec::new();
    loop {
        let page = state
            .store
            .list(&prefix, ListOptions { start_after: start_after.clone(), limit, revision: at_revision })
            .await
            .map_err(|e| match e {
                bpfk_store::StoreError::Compacted { .. } if q.continue_token.is_some() => ApiError::Gone {
                    message: "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                },
                other => store_err(res, "", other),
            })?;
        at_revision = Some(page.revision);
        let last_key = page.items.last().map(|kv| kv.key.clone());
        items.extend(decode_matching(&filter, page.items.iter())?);
        let Some(limit) = limit else {
            return Ok(Listed {
                items,
                revision: page.revision,
                continue_token: None,
                remaining: None,
            });
        };
        match last_key {
            Some(last) if page.more => {
                if items.len() as i64 >= limit {
                    let remaining =
                        if filter.labels.is_everything() && filter.fields.is_everything() {
                            page.remaining
                        } else {
                            None
                        };
                    return Ok(Listed {
                        items,
                        revision: page.revision,
                        continue_token: Some(encode_continue(page.revision, &last)),
                        remaining,
                    });
                }
                start_after = Some(last);
            }
            _ => {
                return Ok(Listed {
                    items,
                    revision: page.revision,
                    continue_token: None,
                    remaining: None,
                })
            }
        }
    }
}

fn decode_matching<'a>(
    filter: &Filter,
    kvs: impl Iterator<Item = &'a KeyValue>,
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for kv in kvs {
        if !filter.key_in_scope(&kv.key) {
            continue;
        }
        let obj = state::decode(filter.res, kv)?;
        if filter.matches(&obj) {
            out.push(obj);
        }
    }
    Ok(out)
}

/// The list's own metadata: resourceVersion, continue token, remaining count.
fn list_meta(listed: &Listed) -> Value {
    let mut meta = json!({"resourceVersion": listed.revision.to_string()});
    if let Some(c) = &listed.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = listed.remaining.filter(|r| *r > 0) {
        meta["remainingItemCount"] = json!(r);
    }
    meta
}

/// An object's `PartialObjectMetadata` (meta.k8s.io/v1): its metadata only.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A written object as the client asked for it: its `PartialObjectMetadata` when it asked for
/// metadata only (a garbage collector's patch of ownerReferences or finalizers), else itself.
pub fn written_as(repr: crate::query::Representation, object: Value) -> Value {
    match repr {
        crate::query::Representation::Metadata => partial_metadata(&object),
        _ => object,
    }
}

/// `PartialObjectMetadataList` for listed items.
pub fn partial_metadata_list(listed: Listed) -> Value {
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta(&listed),
        "items": listed.items.iter().map(partial_metadata).collect::<Vec<_>>(),
    })
}

/// The list object (`PodList`, ...) for listed items.
pub fn list_object(res: &ResourceInfo, listed: Listed) -> Value {
    let meta = list_meta(&listed);
    json!({
        "kind": res.list_kind,
        "apiVersion": res.api_version(),
        "metadata": meta,
        "items": listed.items,
    })
}

/// The `Table` for objects (kubectl's `get`).
pub fn table(
    res: &ResourceInfo,
    items: &[Value],
    q: &Query,
    revision: Option<String>,
    continue_token: Option<String>,
) -> Value {
    let include = match q.include_object.as_deref() {
        Some("None") => bpfk_apimachinery::table::IncludeObject::None,
        Some("Object") => bpfk_apimachinery::table::IncludeObject::Object,
        _ => bpfk_apimachinery::table::IncludeObject::Metadata,
    };
    let mut t = bpfk_apimachinery::table::to_table(
        res,
        items,
        &bpfk_apimachinery::table::TableOptions {
            include_object: include,
            no_headers: false,
        },
        chrono::Utc::now(),
    );
    if let Some(rv) = revision {
        t["metadata"]["resourceVersion"] = json!(rv);
    }
    if let Some(c) = continue_token {
        t["metadata"]["continue"] = json!(c);
    }
    t
}

/// The name of an object for error messages.
pub fn name_of(obj: &Value) -> &str {
    object::name(obj).unwrap_or_default()
}
