//! What kube-apiserver does to CertificateSigningRequests beyond the kind's strategy
//! ([`bpfk_apimachinery::kinds::certificates::certificate_signing_request`]):
//! - on create, the requester's identity goes into `spec.username`, `uid`, `groups` and
//!   `extra` (the strategy dropped whatever the client sent: approvers trust these), the
//!   PKCS#10 request must parse with a valid signature (422 otherwise), and the
//!   `kubernetes.io/kube-apiserver-client` signer may not be asked for `system:masters`
//!   (CertificateSubjectRestriction admission);
//! - a write through `approval` needs the `approve` verb, and a write through `status` that
//!   changes the certificate or the conditions the `sign` verb, on the resource `signers` of
//!   `certificates.k8s.io` named by the request's signer (or `<domain>/*`), as the
//!   CertificateApproval and CertificateSigning admission plugins check.
//!
//! Writes the server makes itself (no requester) pass.

use bpfk_apimachinery::kinds::certificates::certificate_signing_request::{
    self as csr, GROUP, KUBE_APISERVER_CLIENT,
};
use bpfk_apimachinery::registry::ResourceInfo;
use bpfk_auth::authz::{Attributes, ResourceAttributes};
use bpfk_auth::pki::{self, PkiError};
use bpfk_auth::user::{UserInfo, SYSTEM_MASTERS};
use serde_json::{json, Value};

use crate::error::{ApiError, Result};
use crate::rest::invalid;
use crate::rest::write::Part;
use crate::state::AppState;

fn is_csr(res: &ResourceInfo) -> bool {
    res.is(GROUP, "CertificateSigningRequest")
}

/// A new request: stamped with its requester, its PKCS#10 request parsed, its subject
/// checked against its signer.
pub fn admit_create(
    requester: Option<&UserInfo>,
    res: &ResourceInfo,
    name: &str,
    obj: &mut Value,
) -> Result<()> {
    if !is_csr(res) {
        return Ok(());
    }
    if let Some(user) = requester {
        set_requester(obj, user);
    }
    let pem = csr::request_pem(obj).unwrap_or_default();
    let (_, groups) = pki::request_subject(&pem).map_err(|e| {
        let detail = match e {
            PkiError::Invalid { reason, .. } => reason,
            other => other.to_string(),
        };
        invalid(res, name, &[csr::invalid_request(detail)])
    })?;
    if csr::signer_name(obj) == KUBE_APISERVER_CLIENT && groups.iter().any(|g| g == SYSTEM_MASTERS)
    {
        let message = format!(
            "use of {KUBE_APISERVER_CLIENT} signer with {SYSTEM_MASTERS} group is not allowed"
        );
        return Err(forbidden(res, name, message));
    }
    Ok(())
}

/// `spec.username`, `uid`, `groups` and `extra` of `user` (empty ones left out, as
/// Kubernetes serializes them).
fn set_requester(obj: &mut Value, user: &UserInfo) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert("username".into(), json!(user.name));
    let fields = [
        ("uid", json!(user.uid), user.uid.is_empty()),
        ("groups", json!(user.groups), user.groups.is_empty()),
        ("extra", json!(user.extra), user.extra.is_empty()),
    ];
    for (field, value, empty) in fields {
        if !empty {
            spec.insert(field.into(), value);
        }
    }
}

/// A write through `approval` or `status`, allowed only to who may `approve` or `sign` for
/// the request's signer.
pub async fn admit_update(
    state: &AppState,
    res: &ResourceInfo,
    part: Part,
    current: &Value,
    next: &Value,
) -> Result<()> {
    if !is_csr(res) {
        return Ok(());
    }
    let Some(user) = crate::authz::requester() else {
        return Ok(());
    };
    let verb = match part.subresource() {
        Some("approval") => "approve",
        Some("status") if issuance_changed(current, next) => "sign",
        _ => return Ok(()),
    };
    let signer = csr::signer_name(current);
    if may_for_signer(state, &user, verb, signer).await? {
        return Ok(());
    }
    let name = crate::rest::display_name(current);
    let message = format!("user not permitted to {verb} requests with signerName {signer:?}");
    Err(forbidden(res, &name, message))
}

/// Whether a status write changes what a signer writes: the certificate or the conditions.
fn issuance_changed(current: &Value, next: &Value) -> bool {
    let at = |obj: &Value, key: &str| obj.pointer(&format!("/status/{key}")).cloned();
    at(current, "certificate") != at(next, "certificate")
        || at(current, "conditions") != at(next, "conditions")
}

/// Whether `user` may `verb` the signer `signer`, by name or as `<domain>/*` (Kubernetes'
/// `IsAuthorizedForSignerName`).
async fn may_for_signer(
    state: &AppState,
    user: &UserInfo,
    verb: &str,
    signer: &str,
) -> Result<bool> {
    let domain = signer.split('/').next().unwrap_or_default();
    for name in [signer.to_string(), format!("{domain}/*")] {
        let target = ResourceAttributes {
            api_group: GROUP.into(),
            resource: "signers".into(),
            name,
            ..Default::default()
        };
        let attrs = Attributes {
            user,
            verb,
            resource: Some(&target),
            path: "",
        };
        if state.authz.decide(state, &attrs).await?.allowed() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn forbidden(res: &ResourceInfo, name: &str, message: String) -> ApiError {
    ApiError::Forbidden {
        group: res.group.into(),
        kind: res.plural.into(),
        name: name.into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfk_apimachinery::registry;

    fn res() -> &'static ResourceInfo {
        registry::find(GROUP, "v1", "certificatesigningrequests").unwrap()
    }

    fn request(pem: &str, signer: &str) -> Value {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(pem);
        json!({"metadata": {"name": "r"}, "spec": {"request": encoded, "signerName": signer,
               "usages": ["client auth"], "username": "root"}})
    }

    #[test]
    fn create_stamps_the_requester_and_parses_the_request() {
        let (pem, _) = pki::client_request("system:node:n1", &["system:nodes"]).unwrap();
        let mut obj = request(&pem, KUBE_APISERVER_CLIENT);
        let alice = bpfk_auth::user::authenticated("alice".into(), String::new(), vec![]);
        admit_create(Some(&alice), res(), "r", &mut obj).unwrap();
        assert_eq!(obj["spec"]["username"], "alice");
        assert_eq!(obj["spec"]["groups"], json!(["system:authenticated"]));
        assert!(obj["spec"].get("uid").is_none() && obj["spec"].get("extra").is_none());

        let garbage =
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n";
        let err = admit_create(
            None,
            res(),
            "r",
            &mut request(garbage, KUBE_APISERVER_CLIENT),
        );
        let err = err.unwrap_err();
        assert_eq!(err.code(), 422);
        assert!(
            err.message().starts_with(
                r#"CertificateSigningRequest.certificates.k8s.io "r" is invalid: spec.request: Invalid value: not a PEM certificate request"#
            ),
            "{}",
            err.message()
        );
    }

    #[test]
    fn the_client_signer_is_never_for_system_masters() {
        let (pem, _) = pki::client_request("mallory", &[SYSTEM_MASTERS]).unwrap();
        let err = admit_create(None, res(), "r", &mut request(&pem, KUBE_APISERVER_CLIENT));
        assert_eq!(
            err.unwrap_err().message(),
            r#"certificatesigningrequests.certificates.k8s.io "r" is forbidden: use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"#
        );
        let other_signer = &mut request(&pem, "example.com/signer");
        assert!(admit_create(None, res(), "r", other_signer).is_ok());
    }

    #[test]
    fn signing_is_a_change_of_certificate_or_conditions() {
        let stored = json!({"status": {"conditions": [{"type": "Approved"}]}});
        assert!(!issuance_changed(&stored, &stored));
        let issued = json!({"status": {"conditions": [{"type": "Approved"}], "certificate": "x"}});
        assert!(issuance_changed(&stored, &issued));
        assert!(issuance_changed(&stored, &json!({})));
    }
}
