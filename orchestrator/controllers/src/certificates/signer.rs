//! `csrsigning`: signs approved requests of the client signers
//! (`kubernetes.io/kube-apiserver-client-kubelet`, `kubernetes.io/kube-apiserver-client`)
//! and of the kubelet serving signer (`kubernetes.io/kubelet-serving`) with the cluster CA (`--cluster-signing-cert-file`, `--cluster-signing-key-file`), for
//! `--cluster-signing-duration` or the shorter `spec.expirationSeconds`, writing
//! `status.certificate`; a kubelet request whose subject is not a node's fails (condition
//! Failed) rather than being signed.

use std::sync::Arc;
use std::time::Duration;

use bpfk_auth::pki::ClusterCa;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::{
    has_condition, kubelet_client_subject, kubelet_serving_request, request_pem, CLIENT_SIGNER,
    KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER,
};
use crate::error::{Error, Result};
use crate::work_queue::WorkQueue;

const NAME: &str = "csrsigning";
/// The shortest certificate `spec.expirationSeconds` may ask for (as Kubernetes).
const MIN_DURATION: Duration = Duration::from_secs(600);

pub struct Context {
    client: Client,
    ca: ClusterCa,
    /// `--cluster-signing-duration`.
    duration: Duration,
}

/// Runs the signer until its watch ends.
pub async fn run(
    client: Client,
    ca: ClusterCa,
    duration: Duration,
    concurrency: u16,
) -> Result<()> {
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let ctx = Arc::new(Context {
        client,
        ca,
        duration,
    });
    let queue = WorkQueue::new(NAME);
    let results = queue
        .controller(csrs, watcher::Config::default())
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .run(queue.reconciler(reconcile), error_policy, ctx);
    queue.run_until_stopped(results).await
}

fn error_policy(csr: Arc<CertificateSigningRequest>, e: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(csr = %csr.name_any(), error = %e, "cannot sign the certificate request");
    Action::requeue(Duration::from_secs(2))
}

/// How long the certificate is valid: the signer's duration, or less when asked.
pub fn lifetime(csr: &CertificateSigningRequest, signer_duration: Duration) -> Duration {
    match csr.spec.expiration_seconds {
        Some(secs) => Duration::from_secs(secs.max(0) as u64)
            .max(MIN_DURATION)
            .min(signer_duration),
        None => signer_duration,
    }
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Context>) -> Result<Action> {
    let signer = csr.spec.signer_name.as_str();
    let issued = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some();
    let ready = has_condition(&csr, "Approved") && !has_condition(&csr, "Failed") && !issued;
    let signers = [KUBELET_CLIENT_SIGNER, CLIENT_SIGNER, KUBELET_SERVING_SIGNER];
    if !ready || !signers.contains(&signer) {
        return Ok(Action::await_change());
    }
    let mut signed = (*csr).clone();
    match certificate(&csr, &ctx) {
        Ok(pem) => {
            signed
                .status
                .get_or_insert_with(Default::default)
                .certificate = Some(ByteString(pem.into_bytes()));
        }
        Err(why) => fail(&mut signed, why),
    }
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    match api
        .replace_status(&csr.name_any(), &PostParams::default(), &signed)
        .await
    {
        Ok(_) => tracing::info!(csr = %csr.name_any(), signer, "signed a certificate request"),
        Err(e) if crate::error::api_code(&e) == Some(409) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// The signed certificate (PEM), or why the request cannot be signed.
fn certificate(
    csr: &CertificateSigningRequest,
    ctx: &Context,
) -> std::result::Result<String, String> {
    let pem = request_pem(csr).ok_or("spec.request is not text")?;
    let valid = lifetime(csr, ctx.duration);
    let signed = match csr.spec.signer_name.as_str() {
        KUBELET_SERVING_SIGNER => {
            kubelet_serving_request(csr)?;
            ctx.ca.sign_serving_request(pem, valid)
        }
        KUBELET_CLIENT_SIGNER => {
            kubelet_client_subject(csr)?;
            ctx.ca.sign_client_request(pem, valid)
        }
        _ => ctx.ca.sign_client_request(pem, valid),
    };
    signed.map_err(|e| e.to_string())
}

fn fail(csr: &mut CertificateSigningRequest, why: String) {
    let status = csr.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Failed".into(),
            status: "True".into(),
            reason: Some("SignerValidationFailure".into()),
            message: Some(why),
            last_update_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
            ..Default::default()
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_live_the_signers_duration_or_the_shorter_one_asked() {
        let year = Duration::from_secs(365 * 24 * 3600);
        let mut csr = CertificateSigningRequest::default();
        assert_eq!(lifetime(&csr, year), year);
        csr.spec.expiration_seconds = Some(3600);
        assert_eq!(lifetime(&csr, year), Duration::from_secs(3600));
        csr.spec.expiration_seconds = Some(60);
        assert_eq!(lifetime(&csr, year), MIN_DURATION);
        csr.spec.expiration_seconds = Some(10 * 365 * 24 * 3600);
        assert_eq!(lifetime(&csr, year), year);
    }
}
