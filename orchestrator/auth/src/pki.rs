//! The cluster's public-key infrastructure, made with rcgen and kept in a directory: the
//! cluster CA, the API server's serving certificate, the service-account signing key and the
//! admin's client certificate, created on first start and reused afterwards (as kubeadm's
//! `/etc/kubernetes/pki`).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use crate::user::{self, UserInfo};

/// How long the CA is valid (as kubeadm: ten years).
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long leaf certificates the server makes for itself are valid (as kubeadm: one year).
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A serving certificate closer than this to its end is made again at start.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// The admin's user name and group: kubeadm's `kubernetes-admin` in `system:masters`, the
/// group every authorizer lets do anything (so the admin kubeconfig works even with every
/// RBAC binding deleted).
pub const ADMIN_USER: &str = "kubernetes-admin";
pub const ADMIN_GROUP: &str = user::SYSTEM_MASTERS;
/// The user the API server is to kubelets (pods/log, exec, attach, port-forward): bound to
/// `system:kubelet-api-admin`, nothing more.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Certificate { what: String, source: rcgen::Error },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

pub type Result<T, E = PkiError> = std::result::Result<T, E>;

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertKey {
    // the key never reaches a log
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey").finish_non_exhaustive()
    }
}

/// The cluster CA: its certificate and what signs with it.
pub struct ClusterCa {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// Everything `bpfk-server --data-dir` keeps.
pub struct ServerPki {
    pub dir: PathBuf,
    pub ca: ClusterCa,
    /// The API server's serving certificate.
    pub serving: CertKey,
    /// The admin's client certificate (for the written kubeconfig).
    pub admin: CertKey,
    /// The API server's client certificate toward kubelets (kubeadm's
    /// `apiserver-kubelet-client`, user [`KUBELET_CLIENT_USER`]).
    pub kubelet_client: CertKey,
    /// The ECDSA P-256 key (PKCS#8 PEM) that signs service-account tokens.
    pub service_account_key_pem: String,
}

impl std::fmt::Debug for ServerPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerPki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Certificate {
        what: what.to_string(),
        source,
    }
}

/// Write `text` to `path` with `mode`, atomically (temp file, then rename).
pub fn write_private(path: &Path, text: &str, mode: u32) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    file.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn read(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn validity(params: &mut CertificateParams, for_how_long: Duration) {
    let now = OffsetDateTime::now_utc();
    // a minute back: clocks of two machines are never quite the same
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + for_how_long;
}

impl ClusterCa {
    /// A new self-signed CA named `common_name`.
    pub fn generate(common_name: &str) -> Result<(ClusterCa, String)> {
        let key = KeyPair::generate().map_err(cert_err("CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, CA_VALIDITY);
        let cert = params
            .self_signed(&key)
            .map_err(cert_err("CA certificate"))?;
        let key_pem = key.serialize_pem();
        let ca = ClusterCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        };
        Ok((ca, key_pem))
    }

    /// The CA of a certificate and key in PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ClusterCa> {
        let key = KeyPair::from_pem(key_pem).map_err(cert_err("CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(cert_err("CA certificate"))?;
        Ok(ClusterCa {
            cert_pem: cert_pem.to_string(),
            issuer,
        })
    }

    /// A client certificate for `user` (CN) in `groups` (O), with a new key.
    pub fn issue_client(&self, user: &str, groups: &[&str], valid: Duration) -> Result<CertKey> {
        let key = KeyPair::generate().map_err(cert_err("client key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(user, groups);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, valid);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(cert_err("client certificate"))?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A serving certificate for `names` (IP addresses and DNS names), with a new key.
    pub fn issue_serving(
        &self,
        common_name: &str,
        names: &[String],
        valid: Duration,
    ) -> Result<CertKey> {
        let key = KeyPair::generate().map_err(cert_err("serving key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(common_name, &[]);
        params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<Vec<_>>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, valid);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(cert_err("serving certificate"))?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Sign a PKCS#10 request (PEM) as a client certificate with exactly the subject the
    /// request names, valid for `valid` (the CertificateSigningRequest signer's job: what may
    /// be asked for was checked before). Names the request carries are dropped.
    pub fn sign_client_request(&self, csr_pem: &str, valid: Duration) -> Result<String> {
        self.sign_request(csr_pem, valid, false)
    }

    /// Sign a PKCS#10 request (PEM) as a serving certificate for the subject and the
    /// addresses and names the request carries (checked before, as for client requests).
    pub fn sign_serving_request(&self, csr_pem: &str, valid: Duration) -> Result<String> {
        self.sign_request(csr_pem, valid, true)
    }

    fn sign_request(&self, csr_pem: &str, valid: Duration, serving: bool) -> Result<String> {
        let mut request = parse_request(csr_pem)?;
        let params = &mut request.params;
        params.is_ca = IsCa::ExplicitNoCa;
        if serving {
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params.subject_alt_names.clear();
        }
        validity(params, valid);
        let cert = request
            .signed_by(&self.issuer)
            .map_err(cert_err("signed certificate"))?;
        Ok(cert.pem())
    }
}

fn parse_request(csr_pem: &str) -> Result<CertificateSigningRequestParams> {
    CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| PkiError::Invalid {
        what: "spec.request".into(),
        reason: format!("not a PEM certificate request: {e}"),
    })
}

fn subject(common_name: &str, organizations: &[&str]) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    for org in organizations {
        dn.push(DnType::OrganizationName, *org);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn san(name: &str) -> Result<SanType> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let dns = name.to_string().try_into().map_err(|e| PkiError::Invalid {
        what: format!("subject alternative name {name:?}"),
        reason: format!("{e}"),
    })?;
    Ok(SanType::DnsName(dns))
}

/// A new PKCS#10 request (PEM) for `user` in `groups`, and its key (PEM): what a joining
/// node sends as its CertificateSigningRequest.
pub fn client_request(user: &str, groups: &[&str]) -> Result<(String, String)> {
    let key = KeyPair::generate().map_err(cert_err("client key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(user, groups);
    let csr = params
        .serialize_request(&key)
        .map_err(cert_err("certificate request"))?;
    let pem = csr.pem().map_err(cert_err("certificate request"))?;
    Ok((pem, key.serialize_pem()))
}

/// A new PKCS#10 request (PEM) for a serving certificate of `user` in `groups` for `names`
/// (IP addresses and DNS names), and its key (PEM): what a kubelet asks for to serve its
/// endpoint.
pub fn serving_request(user: &str, groups: &[&str], names: &[String]) -> Result<(String, String)> {
    let key = KeyPair::generate().map_err(cert_err("serving key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(user, groups);
    params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<Vec<_>>>()?;
    let csr = params
        .serialize_request(&key)
        .map_err(cert_err("certificate request"))?;
    let pem = csr.pem().map_err(cert_err("certificate request"))?;
    Ok((pem, key.serialize_pem()))
}

/// The subject alternative names of a PKCS#10 request in PEM (IP addresses and DNS names, as
/// text); any other kind of name (e-mail, URI) is refused.
pub fn request_names(csr_pem: &str) -> Result<Vec<String>> {
    let request = parse_request(csr_pem)?;
    request
        .params
        .subject_alt_names
        .iter()
        .map(|name| match name {
            SanType::IpAddress(ip) => Ok(ip.to_string()),
            SanType::DnsName(dns) => Ok(dns.as_str().to_string()),
            other => Err(PkiError::Invalid {
                what: "spec.request".into(),
                reason: format!(
                    "the subject alternative name {other:?} is not an address or a DNS name"
                ),
            }),
        })
        .collect()
}

/// The names every API server certificate carries besides the operator's: loopback, the
/// in-cluster names of the `kubernetes` Service and its ClusterIP.
pub fn default_serving_names(kubernetes_service_ip: &str) -> Vec<String> {
    let mut names = vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        kubernetes_service_ip.to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
    ];
    if let Ok(host) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    names
}

impl ServerPki {
    /// Load the PKI under `dir/pki`, creating what is missing. The serving certificate is
    /// made again when `serving_names` changed or it is about to end; the CA and the
    /// service-account key are never replaced.
    pub fn load_or_create(dir: &Path, serving_names: &[String]) -> Result<ServerPki> {
        let pki = dir.join("pki");
        fs::create_dir_all(&pki).map_err(io_err(&pki))?;
        let _ = fs::set_permissions(&pki, fs::Permissions::from_mode(0o700));
        let ca = load_or_create_ca(&pki)?;
        let serving = load_or_create_serving(&pki, &ca, serving_names)?;
        let admin = load_or_create_pair(
            &pki,
            "admin",
            |ca| ca.issue_client(ADMIN_USER, &[ADMIN_GROUP], LEAF_VALIDITY),
            &ca,
        )?;
        let kubelet_client = load_or_create_pair(
            &pki,
            "apiserver-kubelet-client",
            |ca| ca.issue_client(KUBELET_CLIENT_USER, &[], LEAF_VALIDITY),
            &ca,
        )?;
        let sa_path = pki.join("sa.key");
        let service_account_key_pem = match read(&sa_path)? {
            Some(pem) => pem,
            None => {
                let key = KeyPair::generate().map_err(cert_err("service-account key"))?;
                let pem = key.serialize_pem();
                write_private(&sa_path, &pem, 0o600)?;
                pem
            }
        };
        Ok(ServerPki {
            dir: pki,
            ca,
            serving,
            admin,
            kubelet_client,
            service_account_key_pem,
        })
    }
}

fn load_or_create_ca(pki: &Path) -> Result<ClusterCa> {
    let (cert_path, key_path) = (pki.join("ca.crt"), pki.join("ca.key"));
    match (read(&cert_path)?, read(&key_path)?) {
        (Some(cert), Some(key)) => ClusterCa::from_pem(&cert, &key),
        (None, None) => {
            let (ca, key_pem) = ClusterCa::generate("bpfk-ca")?;
            write_private(&key_path, &key_pem, 0o600)?;
            write_private(&cert_path, &ca.cert_pem, 0o644)?;
            Ok(ca)
        }
        _ => Err(PkiError::Invalid {
            what: pki.display().to_string(),
            reason: "holds only one of ca.crt and ca.key".into(),
        }),
    }
}

fn load_or_create_pair(
    pki: &Path,
    name: &str,
    make: impl FnOnce(&ClusterCa) -> Result<CertKey>,
    ca: &ClusterCa,
) -> Result<CertKey> {
    let (cert_path, key_path) = (
        pki.join(format!("{name}.crt")),
        pki.join(format!("{name}.key")),
    );
    if let (Some(cert_pem), Some(key_pem)) = (read(&cert_path)?, read(&key_path)?) {
        if !expires_within(&cert_pem, RENEW_BEFORE) {
            return Ok(CertKey { cert_pem, key_pem });
        }
    }
    let pair = make(ca)?;
    write_private(&key_path, &pair.key_pem, 0o600)?;
    write_private(&cert_path, &pair.cert_pem, 0o644)?;
    Ok(pair)
}

fn load_or_create_serving(pki: &Path, ca: &ClusterCa, names: &[String]) -> Result<CertKey> {
    let names_path = pki.join("apiserver.names");
    let wanted = names.join("\n");
    if read(&names_path)?.as_deref() != Some(wanted.as_str()) {
        // new names: the old certificate goes
        let _ = fs::remove_file(pki.join("apiserver.crt"));
    }
    let pair = load_or_create_pair(
        pki,
        "apiserver",
        |ca| ca.issue_serving("kube-apiserver", names, LEAF_VALIDITY),
        ca,
    )?;
    write_private(&names_path, &wanted, 0o644)?;
    Ok(pair)
}

/// Whether the (first) certificate in `pem` ends within `margin`; an unreadable one counts as
/// ending.
pub fn expires_within(pem: &str, margin: Duration) -> bool {
    match not_after(pem) {
        Some(end) => end - OffsetDateTime::now_utc() < margin,
        None => true,
    }
}

/// When the first certificate in `pem` ends.
pub fn not_after(pem: &str) -> Option<OffsetDateTime> {
    let der = first_der(pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.validity().not_after.to_datetime())
}

/// When the first certificate in `pem` starts and ends.
pub fn validity_of(pem: &str) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let der = first_der(pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let validity = cert.validity();
    Some((
        validity.not_before.to_datetime(),
        validity.not_after.to_datetime(),
    ))
}

fn first_der(pem: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|c| c.to_vec())
}

/// The user a client certificate (DER) names: CN is the user, each O a group (as
/// Kubernetes' x509 authenticator). The chain was verified by the TLS layer.
pub fn user_of_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    if name.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    Some(user::authenticated(name, String::new(), groups))
}

/// The subject (CN, O) of a PKCS#10 request in PEM, for the CertificateSigningRequest API.
pub fn request_subject(csr_pem: &str) -> Result<(String, Vec<String>)> {
    let invalid = |reason: String| PkiError::Invalid {
        what: "spec.request".into(),
        reason,
    };
    let request = parse_request(csr_pem)?;
    let dn = &request.params.distinguished_name;
    let cn = dn
        .get(&DnType::CommonName)
        .map(dn_text)
        .ok_or_else(|| invalid("the request names no common name".into()))?;
    let groups = dn
        .iter()
        .filter(|(t, _)| **t == DnType::OrganizationName)
        .map(|(_, v)| dn_text(v))
        .collect();
    Ok((cn, groups))
}

fn dn_text(value: &rcgen::DnValue) -> String {
    match value {
        rcgen::DnValue::Utf8String(s) => s.clone(),
        rcgen::DnValue::PrintableString(s) => s.as_str().to_string(),
        rcgen::DnValue::Ia5String(s) => s.as_str().to_string(),
        rcgen::DnValue::TeletexString(s) => s.as_str().to_string(),
        other => format!("{other:?}"),
    }
}

/// The SHA-256 of the CA certificate's SubjectPublicKeyInfo, as kubeadm's
/// `--discovery-token-ca-cert-hash sha256:...` (hex).
pub fn ca_public_key_hash(ca_pem: &str) -> Option<String> {
    public_key_hash_of_der(&first_der(ca_pem)?)
}

/// [`ca_public_key_hash`] of a DER certificate.
pub fn public_key_hash_of_der(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let spki = cert.tbs_certificate.subject_pki.raw;
    let digest = sha256(spki);
    Some(format!("sha256:{}", hex(&digest)))
}

fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["127.0.0.1".to_string(), "bpfk.example".to_string()];
        let first = ServerPki::load_or_create(dir.path(), &names).unwrap();
        let again = ServerPki::load_or_create(dir.path(), &names).unwrap();
        assert_eq!(first.ca.cert_pem, again.ca.cert_pem);
        assert_eq!(first.serving.cert_pem, again.serving.cert_pem);
        assert_eq!(first.admin.cert_pem, again.admin.cert_pem);
        assert_eq!(first.kubelet_client.cert_pem, again.kubelet_client.cert_pem);
        assert_eq!(first.service_account_key_pem, again.service_account_key_pem);
        let mode = |f: &str| {
            fs::metadata(dir.path().join("pki").join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("ca.key"), 0o600);
        assert_eq!(mode("sa.key"), 0o600);
        assert_eq!(mode("admin.key"), 0o600);
        assert_eq!(mode("apiserver-kubelet-client.key"), 0o600);
        // a new name: a new serving certificate from the same CA
        let more = [names.clone(), vec!["10.250.0.1".to_string()]].concat();
        let third = ServerPki::load_or_create(dir.path(), &more).unwrap();
        assert_eq!(first.ca.cert_pem, third.ca.cert_pem);
        assert_ne!(first.serving.cert_pem, third.serving.cert_pem);
    }

    #[test]
    fn client_certificate_names_user_and_groups() {
        let (ca, _) = ClusterCa::generate("test-ca").unwrap();
        let pair = ca
            .issue_client("system:node:n1", &["system:nodes"], LEAF_VALIDITY)
            .unwrap();
        let der = first_der(&pair.cert_pem).unwrap();
        let user = user_of_certificate(&der).unwrap();
        assert_eq!(user.name, "system:node:n1");
        assert!(user.groups.contains(&"system:nodes".to_string()));
        assert!(user.groups.contains(&"system:authenticated".to_string()));
        assert!(!expires_within(&pair.cert_pem, Duration::from_secs(3600)));
    }

    #[test]
    fn signed_serving_request_keeps_its_names_and_serves_only() {
        let (ca, _) = ClusterCa::generate("test-ca").unwrap();
        let names = vec!["10.250.0.11".to_string(), "node-1".to_string()];
        let (csr, _key) = serving_request("system:node:node-1", &["system:nodes"], &names).unwrap();
        assert_eq!(request_names(&csr).unwrap(), names);
        let pem = ca.sign_serving_request(&csr, LEAF_VALIDITY).unwrap();
        let der = first_der(&pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let sans = cert.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(sans.general_names.len(), 2);
        // a client request signed as a client keeps no names
        let client = ca.sign_client_request(&csr, LEAF_VALIDITY).unwrap();
        let der = first_der(&client).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(cert.subject_alternative_name().unwrap().is_none());
        assert!(
            cert.extended_key_usage()
                .unwrap()
                .unwrap()
                .value
                .client_auth
        );
    }

    #[test]
    fn signed_request_keeps_the_asked_subject() {
        let (ca, _) = ClusterCa::generate("test-ca").unwrap();
        let (csr, _key) = client_request("system:node:n2", &["system:nodes"]).unwrap();
        assert_eq!(
            request_subject(&csr).unwrap(),
            (
                "system:node:n2".to_string(),
                vec!["system:nodes".to_string()]
            )
        );
        let cert = ca.sign_client_request(&csr, LEAF_VALIDITY).unwrap();
        let user = user_of_certificate(&first_der(&cert).unwrap()).unwrap();
        assert_eq!(user.name, "system:node:n2");
        assert!(request_subject("not a request").is_err());
    }

    #[test]
    fn a_request_whose_signature_does_not_match_its_key_is_refused() {
        use base64::Engine;
        let (csr, _key) = client_request("system:node:n3", &["system:nodes"]).unwrap();
        let body: String = csr.lines().filter(|l| !l.starts_with("-----")).collect();
        let mut der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        // the signature is the request's last bytes: proof of the key's possession broken
        let last = der.len() - 1;
        der[last] ^= 0x55;
        let tampered = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        assert!(request_subject(&tampered).is_err());
        let (ca, _) = ClusterCa::generate("test-ca").unwrap();
        assert!(ca.sign_client_request(&tampered, LEAF_VALIDITY).is_err());
    }

    #[test]
    fn ca_hash_is_stable_and_hex() {
        let (ca, _) = ClusterCa::generate("test-ca").unwrap();
        let hash = ca_public_key_hash(&ca.cert_pem).unwrap();
        assert!(hash.starts_with("sha256:"));
        assert_eq!(hash.len(), 7 + 64);
        assert_eq!(Some(hash), ca_public_key_hash(&ca.cert_pem));
    }
}
