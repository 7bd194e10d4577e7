//! HTTP routing: maps a request (method, path, query, headers, body) onto the REST storage.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bpfk_apimachinery::registry::{self, ResourceInfo};
use serde_json::{json, Value};

use crate::authn::{self, PeerIdentity, RequestUser};
use crate::authz;
use crate::error::{ApiError, Result};
use crate::path::{self, ResourcePath, Target};
use crate::query::{negotiate, Query, Representation};
use crate::rest::delete::{self, DeleteOptions};
use crate::rest::pod_log;
use crate::rest::subresource::{self, ScaleChange};
use crate::rest::write::{self, Part, PatchKind};
use crate::rest::{read, review, watch, watch_body};
use crate::state::AppState;
use crate::{codec, discovery, discovery_v2, metrics, openapi};
use bpfk_auth::UserInfo;

/// Largest request body accepted (as Kubernetes: 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

async fn dispatch(State(state): State<Arc<AppState>>, mut req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let peer = req.extensions().get::<PeerIdentity>().cloned();
    let user = match authenticated(&state, peer, req.headers(), &path).await {
        Ok(user) => user,
        Err(e) => return e.into_response(),
    };
    let watching = req.uri().query().is_some_and(asks_watch);
    let attributes = authz::request_attributes(&method, &path, watching);
    if !authn::public_path(&path) {
        if let Err(e) = state.authz.authorize(&state, &attributes.of(&user)).await {
            return e.into_response();
        }
        if let Err(e) = crate::node_restriction::check_request(&state, &user, &attributes).await {
            return e.into_response();
        }
    }
    req.extensions_mut().insert(RequestUser(user.clone()));
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = codec::response_format(accept);
    let served = authz::REQUESTER.scope(user, served(state, method, path, req));
    codec::RESPONSE_FORMAT.scope(format, served).await
}

/// An authenticated, authorized request, served.
async fn served(state: Arc<AppState>, method: Method, path: String, req: Request) -> Response {
    // pods/exec, attach, portforward: upgraded connections, never a buffered body
    if let Some(target) = crate::streaming::stream_target(&path) {
        return crate::streaming::serve(state, target, req).await;
    }
    let raw_query = req.uri().query().map(String::from);
    let headers = req.headers().clone();
    let started = std::time::Instant::now();
    let watching = raw_query.as_deref().is_some_and(asks_watch);
    let labels = metrics::request_labels(&method, &path, watching);
    let inflight = state
        .metrics
        .start(!matches!(method, Method::GET | Method::HEAD));
    if let Err(e) = codec::check_declared_length(&headers, MAX_BODY) {
        return e.into_response();
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return codec::unreadable_body(&e, MAX_BODY).into_response(),
    };
    let metrics = state.metrics.clone();
    let handled = handle(state, &method, &path, raw_query.as_deref(), &headers, body);
    let (handled, admission_warnings) = crate::warnings::collect(handled).await;
    let mut response = match handled {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    add_warning_headers(&mut response, &admission_warnings);
    drop(inflight);
    let code = response.status().as_u16();
    metrics.observe(&labels, code, started.elapsed());
    tracing::debug!(%method, %path, status = code, elapsed_ms = started.elapsed().as_millis() as u64, "request");
    if labels.verb == "WATCH" && response.status().is_success() {
        return counted_watch(response, metrics.watch_opened(&labels.resource));
    }
    response
}

/// The user `req` comes from; 401 for bad credentials, and for none outside the public
/// paths.
async fn authenticated(
    state: &AppState,
    peer: Option<PeerIdentity>,
    headers: &HeaderMap,
    path: &str,
) -> Result<Arc<UserInfo>> {
    let user = state
        .authn
        .authenticate(state, peer.as_ref(), headers)
        .await?;
    if authn::is_anonymous(&user) && !authn::public_path(path) {
        return Err(ApiError::Unauthorized);
    }
    Ok(user)
}

/// Whether a query string asks for a watch (as the query is parsed: `watch` given with any
/// value but false/0).
fn asks_watch(query: &str) -> bool {
    crate::query::Query::parse(Some(query)).is_ok_and(|q| q.watch)
}

/// A watch response whose body holds `guard` (an open watch in the metrics) until it ends.
fn counted_watch(response: Response, guard: metrics::InflightGuard) -> Response {
    let (parts, body) = response.into_parts();
    let stream = body.into_data_stream().map(move |chunk| {
        let _open = &guard;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// `value` in the negotiated format (JSON or protobuf) with `warnings` as headers.
fn json_response(code: StatusCode, value: &Value, warnings: &[String]) -> Response {
    let (content_type, body) = codec::encode_response(value);
    let mut resp = (code, [(header::CONTENT_TYPE, content_type)], body).into_response();
    add_warning_headers(&mut resp, warnings);
    resp
}

/// `Warning: 299 - "text"` for each warning, as kube-apiserver sends them.
fn add_warning_headers(resp: &mut Response, warnings: &[String]) {
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
}

fn ok(value: &Value) -> Result<Response> {
    Ok(json_response(StatusCode::OK, value, &[]))
}

/// Decode a request body by its `Content-Type` (see [`codec`]).
fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // the type is checked first: a body of the wrong type is 415 even when empty
    codec::BodyFormat::from_content_type(content_type)?;
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    codec::decode_body(content_type, body)
}

async fn handle(
    state: Arc<AppState>,
    method: &Method,
    path: &str,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response> {
    match path {
        "/healthz" | "/livez" => return Ok((StatusCode::OK, "ok").into_response()),
        "/readyz"
            if !state
                .bootstrapped
                .load(std::sync::atomic::Ordering::Acquire) =>
        {
            return Ok((
                StatusCode::SERVICE_UNAVAILABLE,
                "[-]poststarthook/rbac/bootstrap-roles failed: not finished\nreadyz check failed",
            )
                .into_response())
        }
        "/readyz" => {
            return Ok(match state.store.health().await {
                Ok(()) => (StatusCode::OK, "ok").into_response(),
                Err(e) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("[-]etcd failed: {e}\nreadyz check failed"),
                )
                    .into_response(),
            })
        }
        "/openapi/v3" | "/openapi/v3/" => return Ok(openapi_response(openapi::index())),
        "/openapi/v2" => {
            let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
            let (content_type, text) = openapi::v2_document(openapi::v2_wants_protobuf(accept));
            return Ok(([(header::CONTENT_TYPE, content_type)], text).into_response());
        }
        "/metrics" if *method == Method::GET => {
            let text = state.metrics.render(&state);
            return Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response());
        }
        _ => {}
    }
    if let Some(gv) = path.strip_prefix("/openapi/v3/") {
        let (group, version) = match gv.split('/').collect::<Vec<_>>().as_slice() {
            ["api", v] => ("", *v),
            ["apis", g, v] => (*g, *v),
            _ => return Err(not_found_path(path)),
        };
        return openapi::group_version_document(group, version)
            .map(openapi_response)
            .ok_or_else(|| not_found_path(path));
    }
    let target = path::parse(path).ok_or_else(|| not_found_path(path))?;
    let server = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    match target {
        Target::CoreVersions | Target::GroupList if discovery_v2::requested(accept).is_some() => {
            let version = discovery_v2::requested(accept).unwrap_or("v2");
            let document = discovery_v2::document(version, target == Target::CoreVersions);
            let mut resp = json_response(StatusCode::OK, &document, &[]);
            if let Ok(ct) = HeaderValue::from_str(&discovery_v2::content_type(version)) {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            Ok(resp)
        }
        Target::Version => ok(&discovery::version()),
        Target::CoreVersions => ok(&discovery::core_versions(&server)),
        Target::GroupList => ok(&discovery::group_list()),
        Target::Group { group } => discovery::group(&group)
            .ok_or_else(|| not_found_path(path))
            .and_then(|d| ok(&d)),
        Target::GroupVersion { group, version } => discovery::resource_list(&group, &version)
            .ok_or_else(|| not_found_path(path))
            .and_then(|d| ok(&d)),
        Target::Resource(rp) => {
            let mut q = Query::parse(raw_query)?;
            let agent = headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok());
            q.user_agent = Some(agent.unwrap_or_default().to_string());
            resource(state, method, rp, q, headers, body).await
        }
    }
}

/// An OpenAPI document, served from the JSON text it was built into once.
fn openapi_response(doc: &openapi::Document) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc.json()).into_response()
}

/// 404 for a path the server does not serve, worded as Kubernetes does.
fn not_found_path(path: &str) -> ApiError {
    tracing::debug!(%path, "no such path");
    ApiError::NotFoundPath
}

fn method_not_allowed(method: &Method, what: &str) -> ApiError {
    ApiError::MethodNotAllowed {
        message: format!(
            "the server does not allow this method on the requested resource ({method} {what})"
        ),
    }
}

async fn resource(
    state: Arc<AppState>,
    method: &Method,
    rp: ResourcePath,
    q: Query,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response> {
    let res: &'static ResourceInfo =
        registry::find(&rp.group, &rp.version, &rp.resource).ok_or(ApiError::NotFoundPath)?;
    if rp.namespace.is_some() && !res.namespaced {
        return Err(ApiError::NotFoundPath);
    }
    let ns = rp.namespace.as_deref();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let repr = negotiate(accept);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());

    match (rp.name.as_deref(), rp.subresource.as_deref()) {
        // collection
        (None, None) => match *method {
            Method::GET if q.watch || rp.watch => {
                let rx = watch::start(state, res, ns, q, repr).await?;
                let (rx, content_type) = match codec::RESPONSE_FORMAT.try_with(|f| *f) {
                    Ok(codec::ResponseFormat::Protobuf) => (
                        watch_body::protobuf_frames(rx),
                        crate::protobuf::WATCH_MEDIA_TYPE,
                    ),
                    _ => (rx, "application/json"),
                };
                let stream = watch_body::gathered(rx).map(Ok::<_, std::convert::Infallible>);
                Ok(Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, content_type)
                    .header(header::TRANSFER_ENCODING, "chunked")
                    .body(Body::from_stream(stream))
                    .map_err(|e| ApiError::internal(e.to_string()))?)
            }
            Method::GET => {
                let listed = read::list(&state, res, ns, &q).await?;
                match repr {
                    Representation::Table => ok(&read::table(
                        res,
                        &listed.items,
                        &q,
                        Some(listed.revision.to_string()),
                        listed.continue_token,
                    )),
                    Representation::Object => ok(&read::list_object(res, listed)),
                    Representation::Metadata => ok(&read::partial_metadata_list(listed)),
                }
            }
            Method::POST if res.supports("create") => {
                let obj = parse_body(headers, &body)?;
                if (res.group, res.plural) == ("", "bindings") {
                    let ns = ns.ok_or_else(|| ApiError::bad_request("bindings are namespaced"))?;
                    let pod = crate::object::name(&obj)
                        .ok_or_else(|| {
                            ApiError::bad_request("binding metadata.name (the pod) is required")
                        })?
                        .to_string();
                    let pods = registry::find("", "v1", "pods")
                        .ok_or_else(|| ApiError::internal("pods not registered"))?;
                    let status = subresource::bind(&state, pods, ns, &pod, &obj).await?;
                    return Ok(json_response(StatusCode::CREATED, &status, &[]));
                }
                if review::is_review(res) {
                    let answered = review::create(&state, res, ns, obj).await?;
                    return Ok(json_response(StatusCode::CREATED, &answered, &[]));
                }
                let w = write::create(&state, res, ns, obj, &q).await?;
                Ok(json_response(StatusCode::CREATED, &w.object, &w.warnings))
            }
            Method::DELETE if res.supports("deletecollection") => {
                let opts = DeleteOptions::from_request(&q, body_opt(headers, &body)?.as_ref())?;
                let listed = read::list(
                    &state,
                    res,
                    ns,
                    &Query {
                        limit: None,
                        continue_token: None,
                        ..q.clone()
                    },
                )
                .await?;
                let mut items = Vec::new();
                for obj in listed.items {
                    let name = read::name_of(&obj).to_string();
                    let obj_ns = crate::object::namespace(&obj).map(String::from);
                    match delete::delete(&state, res, obj_ns.as_deref(), &name, &opts).await {
                        Ok(d) => items.push(d.object),
                        Err(ApiError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                ok(
                    &json!({"kind": res.list_kind, "apiVersion": res.api_version(), "metadata": {}, "items": items}),
                )
            }
            _ => Err(method_not_allowed(method, res.plural)),
        },
        // one object
        (Some(name), None) => match *method {
            Method::GET => {
                let obj = read::get(&state, res, ns, name, &q).await?;
                match repr {
                    Representation::Table => ok(&read::table(
                        res,
                        std::slice::from_ref(&obj),
                        &q,
                        None,
                        None,
                    )),
                    Representation::Object => ok(&obj),
                    Representation::Metadata => ok(&read::partial_metadata(&obj)),
                }
            }
            Method::PUT if res.supports("update") => {
                let w = write::update(
                    &state,
                    res,
                    ns,
                    name,
                    Part::Main,
                    parse_body(headers, &body)?,
                    &q,
                )
                .await?;
                let code = if w.created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                let object = read::written_as(repr, w.object);
                Ok(json_response(code, &object, &w.warnings))
            }
            Method::PATCH if res.supports("patch") => {
                let kind = PatchKind::from_content_type(content_type)?;
                let w = patched(&state, res, ns, name, Part::Main, kind, &body, &q).await?;
                let code = if w.created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                let object = read::written_as(repr, w.object);
                Ok(json_response(code, &object, &w.warnings))
            }
            Method::DELETE if res.supports("delete") => {
                let opts = DeleteOptions::from_request(&q, body_opt(headers, &body)?.as_ref())?;
                let d = delete::delete(&state, res, ns, name, &opts).await?;
                let code = if d.gone {
                    StatusCode::OK
                } else {
                    StatusCode::ACCEPTED
                };
                Ok(json_response(code, &d.object, &[]))
            }
            _ => Err(method_not_allowed(method, res.plural)),
        },
        // subresources
        (Some(name), Some(sub)) => {
            if res.subresource(sub).is_none() {
                return Err(ApiError::NotFound {
                    group: res.group.into(),
                    kind: format!("{}/{}", res.plural, sub),
                    name: name.into(),
                });
            }
            match (sub, method.clone()) {
                // a CSR's approval is written as its status is, the kind merging each
                ("status" | "approval", Method::GET) => {
                    ok(&read::get(&state, res, ns, name, &q).await?)
                }
                ("status" | "approval", Method::PUT) => {
                    let w = write::update(
                        &state,
                        res,
                        ns,
                        name,
                        Part::from_subresource(res, Some(sub))?,
                        parse_body(headers, &body)?,
                        &q,
                    )
                    .await?;
                    Ok(json_response(StatusCode::OK, &w.object, &w.warnings))
                }
                ("status" | "approval", Method::PATCH) => {
                    let kind = PatchKind::from_content_type(content_type)?;
                    let part = Part::from_subresource(res, Some(sub))?;
                    let w = patched(&state, res, ns, name, part, kind, &body, &q).await?;
                    Ok(json_response(StatusCode::OK, &w.object, &w.warnings))
                }
                ("binding", Method::POST) => {
                    let ns = ns.ok_or_else(|| ApiError::bad_request("pods are namespaced"))?;
                    let status =
                        subresource::bind(&state, res, ns, name, &parse_body(headers, &body)?)
                            .await?;
                    Ok(json_response(StatusCode::CREATED, &status, &[]))
                }
                ("eviction", Method::POST) => {
                    let eviction = parse_body(headers, &body)?;
                    let status = subresource::evict(&state, res, ns, name, &eviction, &q).await?;
                    Ok(json_response(StatusCode::CREATED, &status, &[]))
                }
                ("token", Method::POST) => {
                    let ns =
                        ns.ok_or_else(|| ApiError::bad_request("serviceaccounts are namespaced"))?;
                    let tokens = state.authn.service_accounts.as_ref().ok_or_else(|| {
                        ApiError::internal("this server has no service-account key")
                    })?;
                    let answer = tokens
                        .request(&state, ns, name, parse_body(headers, &body)?)
                        .await?;
                    Ok(json_response(StatusCode::CREATED, &answer, &[]))
                }
                ("log", Method::GET) => {
                    let ns = ns.ok_or_else(|| ApiError::bad_request("pods are namespaced"))?;
                    pod_log::get(&state, res, ns, name, &q).await
                }
                ("scale", Method::GET) => ok(&subresource::get_scale(&state, res, ns, name).await?),
                ("scale", Method::PUT) => {
                    let body = parse_body(headers, &body)?;
                    ok(&subresource::write_scale(
                        &state,
                        res,
                        ns,
                        name,
                        ScaleChange::Replace(&body),
                        &q,
                    )
                    .await?)
                }
                ("scale", Method::PATCH) => {
                    let kind = PatchKind::from_content_type(content_type)?;
                    if kind == PatchKind::Apply {
                        let config = parse_apply(&body)?;
                        return ok(
                            &subresource::apply_scale(&state, res, ns, name, &config, &q).await?,
                        );
                    }
                    let doc = parse_patch(&body)?;
                    ok(&subresource::write_scale(
                        &state,
                        res,
                        ns,
                        name,
                        ScaleChange::Patch(kind, &doc),
                        &q,
                    )
                    .await?)
                }
                ("finalize", Method::PUT) => ok(&subresource::finalize_namespace(
                    &state,
                    res,
                    name,
                    &parse_body(headers, &body)?,
                )
                .await?),
                _ => Err(method_not_allowed(
                    method,
                    &format!("{}/{}", res.plural, sub),
                )),
            }
        }
        (None, Some(_)) => Err(not_found_path(&rp.resource)),
    }
}

/// A PATCH of `part` of an object: a server-side apply of the YAML (or JSON) configuration
/// in `body`, or a patch document of `kind`.
#[allow(clippy::too_many_arguments)]
async fn patched(
    state: &AppState,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    part: Part,
    kind: PatchKind,
    body: &Bytes,
    q: &Query,
) -> Result<write::Written> {
    if kind == PatchKind::Apply {
        let config = parse_apply(body)?;
        return write::apply(state, res, ns, name, part, config, q).await;
    }
    write::patch(state, res, ns, name, part, kind, &parse_patch(body)?, q).await
}

/// An apply's configuration (YAML, or JSON which is YAML too).
fn parse_apply(body: &Bytes) -> Result<Value> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the patch body is empty"));
    }
    codec::decode_body(Some("application/yaml"), body)
}

fn parse_patch(body: &Bytes) -> Result<Value> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the patch body is empty"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid patch document: {e}")))
}

fn body_opt(headers: &HeaderMap, body: &Bytes) -> Result<Option<Value>> {
    if body.is_empty() {
        Ok(None)
    } else {
        parse_body(headers, body).map(Some)
    }
}

use futures::StreamExt;
