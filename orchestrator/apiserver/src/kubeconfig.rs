//! Writing the admin kubeconfig that `--write-kubeconfig` asks for.

use std::path::Path;

use bpfk_auth::kubeconfig::{render, Credential};
use bpfk_auth::pki::{self, ServerPki, ADMIN_USER};

/// Write an admin kubeconfig for `server` (https, the cluster CA, the admin's client
/// certificate) to `path`, mode 0600, atomically.
pub fn write_admin(path: &Path, server: &str, pki: &ServerPki) -> Result<(), pki::PkiError> {
    let text = render(
        server,
        &pki.ca.cert_pem,
        ADMIN_USER,
        Credential::Certificate {
            cert_pem: &pki.admin.cert_pem,
            key_pem: &pki.admin.key_pem,
        },
    );
    pki::write_private(path, &text, 0o600)
}
