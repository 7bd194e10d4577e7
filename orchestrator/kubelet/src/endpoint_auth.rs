//! Who may use the kubelet endpoint, as the kubelet's webhook authentication and
//! authorization decide it: the client is the user its certificate names (the TLS layer
//! required one chaining to the client CA), and each request is a verb on a subresource of
//! the node (`GET /containerLogs/…` is `get nodes/proxy`, `/logs/` `nodes/log`, `/stats/`
//! `nodes/stats`, `/metrics` `nodes/metrics`, `/spec/` `nodes/spec`, the rest — exec,
//! attach, port-forward — `nodes/proxy`), allowed by a SubjectAccessReview to the API
//! server. Decisions are kept per user, groups, verb and subresource: allowed for five
//! minutes, denied for thirty seconds (the kubelet's defaults).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bpfk_auth::user::UserInfo;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use rustls::pki_types::CertificateDer;

/// How long an allowed decision is reused.
const ALLOWED_TTL: Duration = Duration::from_secs(300);
/// How long a denied decision is reused.
const DENIED_TTL: Duration = Duration::from_secs(30);
/// Decisions kept at most (the cache is emptied when full).
const MAX_DECISIONS: usize = 4096;

/// The user of a connection's client certificate (none when it names no user).
#[derive(Debug, Clone)]
pub struct PeerUser(pub Option<Arc<UserInfo>>);

/// [`bpfk_streaming::tls_server::Identify`] for the endpoint.
pub fn identify(cert: Option<&CertificateDer<'_>>) -> PeerUser {
    PeerUser(
        cert.and_then(|c| bpfk_auth::pki::user_of_certificate(c))
            .map(Arc::new),
    )
}

/// The node subresource and verb a request to the endpoint is.
pub fn attributes(method: &Method, path: &str) -> (&'static str, &'static str) {
    let verb = match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    };
    let subresource = match path {
        p if p == "/metrics" || p.starts_with("/metrics/") => "metrics",
        p if p.starts_with("/stats/") || p == "/stats" => "stats",
        p if p.starts_with("/logs/") || p == "/logs" => "log",
        p if p.starts_with("/spec/") || p == "/spec" => "spec",
        p if p.starts_with("/checkpoint/") => "checkpoint",
        _ => "proxy",
    };
    (verb, subresource)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DecisionKey {
    user: String,
    groups: Vec<String>,
    verb: &'static str,
    subresource: &'static str,
}

/// Asks the API server whether a user may use this node's endpoint.
pub struct EndpointAuthorizer {
    client: kube::Client,
    node_name: String,
    decisions: Mutex<HashMap<DecisionKey, (bool, Instant)>>,
}

impl EndpointAuthorizer {
    pub fn new(client: kube::Client, node_name: &str) -> EndpointAuthorizer {
        EndpointAuthorizer {
            client,
            node_name: node_name.to_string(),
            decisions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `user` may `verb` `nodes/<subresource>` of this node.
    async fn allowed(&self, key: DecisionKey) -> Result<bool, kube::Error> {
        if let Some(allowed) = self.remembered(&key) {
            return Ok(allowed);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(key.user.clone()),
                groups: Some(key.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(key.verb.into()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(key.subresource.into()),
                    name: Some(self.node_name.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = api.create(&PostParams::default(), &review).await?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        self.remember(key, allowed);
        Ok(allowed)
    }

    fn remembered(&self, key: &DecisionKey) -> Option<bool> {
        let decisions = self.decisions.lock().ok()?;
        let (allowed, at) = decisions.get(key)?;
        let ttl = if *allowed { ALLOWED_TTL } else { DENIED_TTL };
        (at.elapsed() < ttl).then_some(*allowed)
    }

    fn remember(&self, key: DecisionKey, allowed: bool) {
        if let Ok(mut decisions) = self.decisions.lock() {
            if decisions.len() >= MAX_DECISIONS {
                decisions.clear();
            }
            decisions.insert(key, (allowed, Instant::now()));
        }
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The endpoint's authorization layer (axum middleware over [`EndpointAuthorizer`]).
pub async fn authorize(
    State(authorizer): State<Arc<EndpointAuthorizer>>,
    req: Request,
    next: Next,
) -> Response {
    let user = req.extensions().get::<PeerUser>().and_then(|p| p.0.clone());
    let Some(user) = user else {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized\n".into());
    };
    let (verb, subresource) = attributes(req.method(), req.uri().path());
    let key = DecisionKey {
        user: user.name.clone(),
        groups: user.groups.clone(),
        verb,
        subresource,
    };
    match authorizer.allowed(key).await {
        Ok(true) => next.run(req).await,
        Ok(false) => text(
            StatusCode::FORBIDDEN,
            format!(
                "Forbidden (user={}, verb={verb}, resource=nodes, subresource(s)=[{subresource}])\n",
                user.name
            ),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot authorize a kubelet endpoint request");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Authorization error: the API server did not answer the access review\n".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_node_subresources_as_the_kubelets() {
        let cases = [
            (Method::GET, "/containerLogs/ns/p/c", ("get", "proxy")),
            (Method::POST, "/exec/ns/p/c", ("create", "proxy")),
            (Method::GET, "/exec/ns/p/c", ("get", "proxy")),
            (Method::POST, "/portforward/ns/p", ("create", "proxy")),
            (Method::GET, "/stats/summary", ("get", "stats")),
            (Method::GET, "/metrics", ("get", "metrics")),
            (Method::GET, "/metrics/cadvisor", ("get", "metrics")),
            (Method::GET, "/logs/syslog", ("get", "log")),
            (Method::GET, "/spec/", ("get", "spec")),
            (Method::DELETE, "/pods", ("delete", "proxy")),
            (Method::GET, "/metricsx", ("get", "proxy")),
        ];
        for (method, path, want) in cases {
            assert_eq!(attributes(&method, path), want, "{method} {path}");
        }
    }
}
