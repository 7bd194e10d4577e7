//! Kubelet TLS bootstrapping's controllers, as kube-controller-manager runs them:
//! `csrapproving` ([`approver`]) approves node client certificate requests that a
//! SubjectAccessReview allows (bootstrap tokens through `certificatesigningrequests/nodeclient`,
//! nodes renewing their own through `.../selfnodeclient`) and a node's own request for the
//! serving certificate of its kubelet endpoint when it names only the node's addresses,
//! `csrsigning` ([`signer`]) signs approved requests of the cluster's client and kubelet
//! serving signers with the cluster CA, and `tokencleaner`
//! ([`token_cleaner`]) deletes expired bootstrap tokens.

pub mod approver;
pub mod signer;
pub mod token_cleaner;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

/// The signer of kubelets' client certificates.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The signer of kubelets' serving certificates (their :10250 endpoint).
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// The signer of other client certificates of the API server (approved by hand).
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

/// Whether a condition of `type_` is set (any status) on the request.
pub fn has_condition(csr: &CertificateSigningRequest, type_: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_))
}

/// The PEM request of a CSR (`spec.request` is its bytes).
pub fn request_pem(csr: &CertificateSigningRequest) -> Option<&str> {
    std::str::from_utf8(&csr.spec.request.0).ok()
}

/// What a kubelet client certificate must be: `CN=system:node:<name>`, `O=system:nodes`
/// only, usages within digital signature, key encipherment and client auth (the last
/// required). Returns the node name, or why not.
pub fn kubelet_client_subject(csr: &CertificateSigningRequest) -> Result<String, String> {
    let pem = request_pem(csr).ok_or("spec.request is not text")?;
    let (cn, orgs) = bpfk_auth::pki::request_subject(pem).map_err(|e| e.to_string())?;
    let node = cn
        .strip_prefix(bpfk_auth::user::NODE_USER_PREFIX)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("the subject's common name {cn:?} is not system:node:<name>"))?;
    if orgs != [bpfk_auth::user::NODES_GROUP] {
        return Err(format!(
            "the subject's organizations {orgs:?} are not [system:nodes]"
        ));
    }
    check_usages(csr, "client auth")?;
    Ok(node.to_string())
}

/// Whether the usages are `required` with digital signature or key encipherment at most.
fn check_usages(csr: &CertificateSigningRequest, required: &str) -> Result<(), String> {
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let allowed = ["digital signature", "key encipherment", required];
    if !usages.iter().any(|u| u == required)
        || usages.iter().any(|u| !allowed.contains(&u.as_str()))
    {
        return Err(format!(
            "usages {usages:?} are not {required} with digital signature or key encipherment"
        ));
    }
    Ok(())
}

/// A kubelet serving request, as Kubernetes' kubelet-serving signer requires it: the
/// subject a node's (`CN=system:node:<name>`, `O=system:nodes`), usages within digital
/// signature, key encipherment and server auth (the last required), and at least one name,
/// each an IP address or a DNS name. Returns the node and the names, or why not.
pub fn kubelet_serving_request(
    csr: &CertificateSigningRequest,
) -> Result<(String, Vec<String>), String> {
    let pem = request_pem(csr).ok_or("spec.request is not text")?;
    let (cn, orgs) = bpfk_auth::pki::request_subject(pem).map_err(|e| e.to_string())?;
    let node = cn
        .strip_prefix(bpfk_auth::user::NODE_USER_PREFIX)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("the subject's common name {cn:?} is not system:node:<name>"))?;
    if orgs != [bpfk_auth::user::NODES_GROUP] {
        return Err(format!(
            "the subject's organizations {orgs:?} are not [system:nodes]"
        ));
    }
    check_usages(csr, "server auth")?;
    let names = bpfk_auth::pki::request_names(pem).map_err(|e| e.to_string())?;
    if names.is_empty() {
        return Err("the request names no IP address or DNS name".into());
    }
    Ok((node.to_string(), names))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    pub(crate) fn csr(cn: &str, orgs: &[&str], usages: &[&str]) -> CertificateSigningRequest {
        let (pem, _key) = bpfk_auth::pki::client_request(cn, orgs).unwrap();
        let mut csr = CertificateSigningRequest::default();
        csr.metadata.name = Some("node-csr-1".into());
        csr.spec.request = ByteString(pem.into_bytes());
        csr.spec.signer_name = KUBELET_CLIENT_SIGNER.into();
        csr.spec.usages = Some(usages.iter().map(|u| u.to_string()).collect());
        csr
    }

    #[test]
    fn only_node_identities_with_client_usages_are_kubelet_client_requests() {
        let ok = csr(
            "system:node:n1",
            &["system:nodes"],
            &["digital signature", "client auth"],
        );
        assert_eq!(kubelet_client_subject(&ok).unwrap(), "n1");
        let admin = csr("admin", &["system:masters"], &["client auth"]);
        assert!(kubelet_client_subject(&admin)
            .unwrap_err()
            .contains("system:node:"));
        let masters = csr(
            "system:node:n1",
            &["system:nodes", "system:masters"],
            &["client auth"],
        );
        assert!(kubelet_client_subject(&masters)
            .unwrap_err()
            .contains("organizations"));
        let serving = csr("system:node:n1", &["system:nodes"], &["server auth"]);
        assert!(kubelet_client_subject(&serving)
            .unwrap_err()
            .contains("usages"));
    }

    fn serving_csr(cn: &str, orgs: &[&str], names: &[&str]) -> CertificateSigningRequest {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let (pem, _key) = bpfk_auth::pki::serving_request(cn, orgs, &names).unwrap();
        let mut csr = csr(cn, orgs, &["digital signature", "server auth"]);
        csr.spec.request = ByteString(pem.into_bytes());
        csr.spec.signer_name = KUBELET_SERVING_SIGNER.into();
        csr
    }

    #[test]
    fn kubelet_serving_requests_are_a_nodes_with_addresses() {
        let ok = serving_csr("system:node:n1", &["system:nodes"], &["10.250.0.11", "n1"]);
        assert_eq!(
            kubelet_serving_request(&ok).unwrap(),
            (
                "n1".to_string(),
                vec!["10.250.0.11".to_string(), "n1".to_string()]
            )
        );
        let unnamed = serving_csr("system:node:n1", &["system:nodes"], &[]);
        assert!(kubelet_serving_request(&unnamed)
            .unwrap_err()
            .contains("no IP address"));
        let other = serving_csr("alice", &["system:nodes"], &["n1"]);
        assert!(kubelet_serving_request(&other)
            .unwrap_err()
            .contains("system:node:"));
        let mut client = serving_csr("system:node:n1", &["system:nodes"], &["n1"]);
        client.spec.usages = Some(vec!["client auth".into()]);
        assert!(kubelet_serving_request(&client)
            .unwrap_err()
            .contains("server auth"));
    }
}
