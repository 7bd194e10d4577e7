//! `csrapproving`: approves kubelet client certificate requests (signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, subject `system:node:<name>` in
//! `system:nodes`) when a SubjectAccessReview says the requester may create
//! `certificatesigningrequests/nodeclient` (a new node with a bootstrap token) or, renewing
//! its own certificate, `certificatesigningrequests/selfnodeclient`; anything else waits for
//! `kubectl certificate approve`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::{has_condition, kubelet_client_subject, KUBELET_CLIENT_SIGNER};
use crate::error::{Error, Result};
use crate::util::run_until_stopped;

const NAME: &str = "csrapproving";

pub struct Context {
    client: Client,
}

/// Runs the approver until its watch ends.
pub async fn run(client: Client, concurrency: u16) -> Result<()> {
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let ctx = Arc::new(Context { client });
    let results = Controller::new(csrs, watcher::Config::default())
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .run(
            |csr, ctx| crate::metrics::timed(NAME, reconcile(csr, ctx)),
            error_policy,
            ctx,
        );
    run_until_stopped(NAME, results).await
}

fn error_policy(csr: Arc<CertificateSigningRequest>, e: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(csr = %csr.name_any(), error = %e, "cannot judge the certificate request");
    Action::requeue(Duration::from_secs(2))
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Context>) -> Result<Action> {
    let decided = has_condition(&csr, "Approved") || has_condition(&csr, "Denied");
    if decided || csr.spec.signer_name != KUBELET_CLIENT_SIGNER {
        return Ok(Action::await_change());
    }
    let Ok(node) = kubelet_client_subject(&csr) else {
        // not a kubelet client request: left to a person
        return Ok(Action::await_change());
    };
    let requester = csr.spec.username.as_deref().unwrap_or_default();
    let mut subresources = vec!["nodeclient"];
    if requester == format!("{}{node}", bpfk_auth::user::NODE_USER_PREFIX) {
        subresources.push("selfnodeclient");
    }
    for subresource in subresources {
        if allowed(&ctx.client, &csr, subresource).await? {
            approve(&ctx.client, &csr).await?;
            tracing::info!(csr = %csr.name_any(), node, requester, "approved a kubelet client certificate");
            break;
        }
    }
    Ok(Action::await_change())
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

async fn approve(client: &Client, csr: &CertificateSigningRequest) -> Result<()> {
    let mut approved = csr.clone();
    let status = approved.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("AutoApproved".into()),
            message: Some(
                "Auto approving kubelet client certificate after SubjectAccessReview.".into(),
            ),
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
