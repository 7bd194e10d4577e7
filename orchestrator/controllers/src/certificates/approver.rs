//! `csrapproving`: approves kubelet client certificate requests (signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, subject `system:node:<name>` in
//! `system:nodes`) when a SubjectAccessReview says the requester may create
//! `certificatesigningrequests/nodeclient` (a new node with a bootstrap token) or, renewing
//! its own certificate, `certificatesigningrequests/selfnodeclient`. It also approves a node's
//! own request for its kubelet serving certificate (signer `kubernetes.io/kubelet-serving`,
//! requested by `system:node:<name>` for that name) when every name it asks for is one of the
//! Node's addresses or its name — what kubelet-csr-approver does for kubeadm clusters and
//! k3s does for its agents; Kubernetes itself leaves these to a person. Anything else waits
//! for `kubectl certificate approve`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::{
    has_condition, kubelet_client_subject, kubelet_serving_request, KUBELET_CLIENT_SIGNER,
    KUBELET_SERVING_SIGNER,
};
use crate::error::{Error, Result};
use crate::work_queue::WorkQueue;

const NAME: &str = "csrapproving";
/// How long a serving request whose names are not (yet) the node's is looked at again.
const SERVING_RECHECK: Duration = Duration::from_secs(10);
/// A serving request older than this whose names are not the node's is left to a person.
const SERVING_PATIENCE: Duration = Duration::from_secs(300);

pub struct Context {
    client: Client,
}

/// Runs the approver until its watch ends.
pub async fn run(client: Client, concurrency: u16) -> Result<()> {
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let ctx = Arc::new(Context { client });
    let queue = WorkQueue::new(NAME);
    let results = queue
        .controller(csrs, watcher::Config::default())
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .run(queue.reconciler(reconcile), error_policy, ctx);
    queue.run_until_stopped(results).await
}

fn error_policy(csr: Arc<CertificateSigningRequest>, e: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(csr = %csr.name_any(), error = %e, "cannot judge the certificate request");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Context>) -> Result<Action> {
    if has_condition(&csr, "Approved") || has_condition(&csr, "Denied") {
        return Ok(Action::await_change());
    }
    match csr.spec.signer_name.as_str() {
        KUBELET_CLIENT_SIGNER => approve_client(&csr, &ctx.client).await,
        KUBELET_SERVING_SIGNER => approve_serving(&csr, &ctx.client).await,
        _ => Ok(Action::await_change()),
    }
}

async fn approve_client(csr: &CertificateSigningRequest, client: &Client) -> Result<Action> {
    let Ok(node) = kubelet_client_subject(csr) else {
        // not a kubelet client request: left to a person
        return Ok(Action::await_change());
    };
    let requester = csr.spec.username.as_deref().unwrap_or_default();
    let mut subresources = vec!["nodeclient"];
    if requester == format!("{}{node}", bpfk_auth::user::NODE_USER_PREFIX) {
        subresources.push("selfnodeclient");
    }
    for subresource in subresources {
        if allowed(client, csr, subresource).await? {
            approve(client, csr, CLIENT_APPROVAL).await?;
            tracing::info!(csr = %csr.name_any(), node, requester, "approved a kubelet client certificate");
            break;
        }
    }
    Ok(Action::await_change())
}

const CLIENT_APPROVAL: &str =
    "Auto approving kubelet client certificate after SubjectAccessReview.";
const SERVING_APPROVAL: &str =
    "Auto approving kubelet serving certificate: it names only the node's own addresses.";

async fn approve_serving(csr: &CertificateSigningRequest, client: &Client) -> Result<Action> {
    let Ok((node, names)) = kubelet_serving_request(csr) else {
        return Ok(Action::await_change());
    };
    let requester = csr.spec.username.as_deref().unwrap_or_default();
    if requester != format!("{}{node}", bpfk_auth::user::NODE_USER_PREFIX) {
        // another identity asking for a node's serving certificate: left to a person
        return Ok(Action::await_change());
    }
    let found = Api::<Node>::all(client.clone()).get_opt(&node).await?;
    match found.as_ref().map(|n| names_not_of_node(&names, n)) {
        Some(outside) if outside.is_empty() => {
            approve(client, csr, SERVING_APPROVAL).await?;
            tracing::info!(csr = %csr.name_any(), node, "approved a kubelet serving certificate");
            Ok(Action::await_change())
        }
        // the node may not have reported its addresses yet
        _ if age(csr) < SERVING_PATIENCE => Ok(Action::requeue(SERVING_RECHECK)),
        _ => Ok(Action::await_change()),
    }
}

/// The names of `names` that are neither the node's name nor one of its addresses.
pub fn names_not_of_node<'a>(names: &'a [String], node: &Node) -> Vec<&'a str> {
    let addresses: Vec<&str> = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .map(|a| a.address.as_str())
        .collect();
    let own = node.metadata.name.as_deref().unwrap_or_default();
    names
        .iter()
        .map(String::as_str)
        .filter(|n| *n != own && !addresses.contains(n))
        .collect()
}

fn age(csr: &CertificateSigningRequest) -> Duration {
    let created = csr.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created
        .and_then(|t| Duration::try_from(k8s_openapi::jiff::Timestamp::now() - t).ok())
        .unwrap_or_default()
}

/// Whether the requester may create `certificatesigningrequests/<subresource>`.
async fn allowed(
    client: &Client,
    csr: &CertificateSigningRequest,
    subresource: &str,
) -> Result<bool> {
    let spec = &csr.spec;
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: spec.username.clone(),
            uid: spec.uid.clone(),
            groups: spec.groups.clone(),
            extra: spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                subresource: Some(subresource.into()),
                verb: Some("create".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

async fn approve(client: &Client, csr: &CertificateSigningRequest, message: &str) -> Result<()> {
    let mut approved = csr.clone();
    let status = approved.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("AutoApproved".into()),
            message: Some(message.into()),
            last_update_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
            ..Default::default()
        });
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    match api
        .replace_subresource(
            "approval",
            &csr.name_any(),
            &PostParams::default(),
            &approved,
        )
        .await
    {
        Ok(_) => Ok(()),
        // changed meanwhile: the watch brings the new version
        Err(e) if crate::error::api_code(&e) == Some(409) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_names_must_be_the_nodes_own() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "node-1"},
            "status": {"addresses": [
                {"type": "InternalIP", "address": "10.250.0.11"},
                {"type": "Hostname", "address": "node-1.lab"}
            ]}
        }))
        .unwrap();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let own = names(&["10.250.0.11", "node-1", "node-1.lab"]);
        assert!(names_not_of_node(&own, &node).is_empty());
        let other = names(&["10.250.0.12", "node-1"]);
        assert_eq!(names_not_of_node(&other, &node), ["10.250.0.12"]);
    }
}
