//! Registry credentials from a pod's `imagePullSecrets` (pure), as Kubernetes'
//! credentialprovider keyring: `kubernetes.io/dockerconfigjson` (`{"auths": {...}}`) and
//! `kubernetes.io/dockercfg` (the map itself) entries keyed by registry (`host[:port][/path]`,
//! optional scheme, `*` globs in host labels); an image matches an entry whose host
//! matches its registry host (ports must be equal) and whose path is a prefix of its
//! repository path. Longer (more specific) keys come first. Credentials are never logged:
//! [`Credential`]'s Debug shows only the registry.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

use crate::cri::proto;

/// One registry's credentials.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Credential {
    /// The key it was found under (`registry.example:5000`).
    pub registry: String,
    pub username: String,
    pub password: String,
    /// base64 `user:password` as written in the docker config.
    pub auth: String,
    pub identity_token: String,
    pub registry_token: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// The CRI form of it, for `PullImage`. The server address stays empty, as Kubernetes'
    /// keyring leaves it: the kubelet already matched the image's registry, and containerd
    /// drops credentials whose address differs from the host it contacts (a mirror's).
    pub fn to_cri(&self) -> proto::AuthConfig {
        proto::AuthConfig {
            username: self.username.clone(),
            password: self.password.clone(),
            auth: self.auth.clone(),
            server_address: String::new(),
            identity_token: self.identity_token.clone(),
            registry_token: self.registry_token.clone(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Entry {
    username: String,
    password: String,
    auth: String,
    identitytoken: String,
    registrytoken: String,
}

#[derive(Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

/// The credentials of one pull secret; an error names the secret and the problem, never
/// its contents.
pub fn credentials_of(secret: &Secret) -> Result<Vec<Credential>, String> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let data = secret.data.clone().unwrap_or_default();
    let entries: BTreeMap<String, Entry> = if let Some(json) = data.get(".dockerconfigjson") {
        serde_json::from_slice::<DockerConfigJson>(&json.0)
            .map(|c| c.auths)
            .map_err(|_| {
                format!("pull secret {name:?}: .dockerconfigjson is not a docker config")
            })?
    } else if let Some(cfg) = data.get(".dockercfg") {
        serde_json::from_slice(&cfg.0)
            .map_err(|_| format!("pull secret {name:?}: .dockercfg is not a docker config"))?
    } else {
        return Err(format!(
            "pull secret {name:?}: neither .dockerconfigjson nor .dockercfg"
        ));
    };
    Ok(entries
        .into_iter()
        .map(|(registry, e)| Credential {
            registry,
            username: e.username,
            password: e.password,
            auth: e.auth,
            identity_token: e.identitytoken,
            registry_token: e.registrytoken,
        })
        .collect())
}

/// Registry host (with port) and repository path of an image reference, with Docker's
/// defaults (`nginx` is `docker.io/library/nginx`).
pub fn registry_and_path(image: &str) -> (String, String) {
    let name = image.split('@').next().unwrap_or(image);
    let (first, rest) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        Some(_) => ("docker.io".to_string(), name.to_string()),
        None => ("docker.io".to_string(), format!("library/{name}")),
    };
    // drop the tag of the last component
    let path = match rest.rsplit_once('/') {
        Some((dir, last)) => format!("{dir}/{}", last.split(':').next().unwrap_or(last)),
        None => rest.split(':').next().unwrap_or(&rest).to_string(),
    };
    (normalize_host(&first), path)
}

fn normalize_host(host: &str) -> String {
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// A keyring key as (host, port, path): the scheme and a trailing `/v1/` style path of old
/// docker configs are ignored.
fn parse_key(key: &str) -> (String, Option<String>, String) {
    let without_scheme = key.split_once("://").map(|(_, r)| r).unwrap_or(key);
    let (host_port, path) = without_scheme
        .split_once('/')
        .unwrap_or((without_scheme, ""));
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, Some(p.to_string())),
        _ => (host_port, None),
    };
    let path = path.trim_end_matches('/');
    let path = if path == "v1" || path == "v2" {
        ""
    } else {
        path
    };
    (normalize_host(host), port, path.to_string())
}

/// `*` matches one whole host label (`*.example.com` matches `a.example.com`).
fn host_matches(pattern: &str, host: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let h: Vec<&str> = host.split('.').collect();
    p.len() == h.len() && p.iter().zip(&h).all(|(p, h)| *p == "*" || p == h)
}

fn key_matches(key: &str, image_host: &str, image_path: &str) -> bool {
    let (host, port, path) = parse_key(key);
    let (ihost, iport) = match image_host.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.to_string())),
        None => (image_host, None),
    };
    host_matches(&host, ihost)
        && port == iport
        && (path.is_empty() || image_path == path || image_path.starts_with(&format!("{path}/")))
}

/// The credentials that apply to `image`, most specific key first.
pub fn lookup(credentials: &[Credential], image: &str) -> Vec<Credential> {
    let (host, path) = registry_and_path(image);
    let mut found: Vec<Credential> = credentials
        .iter()
        .filter(|c| key_matches(&c.registry, &host, &path))
        .cloned()
        .collect();
    found.sort_by_key(|c| std::cmp::Reverse(c.registry.len()));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(key: &str, json: serde_json::Value) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("regcred".into()),
                ..Default::default()
            },
            data: Some([(key.to_string(), ByteString(json.to_string().into_bytes()))].into()),
            ..Default::default()
        }
    }

    #[test]
    fn image_references() {
        assert_eq!(
            registry_and_path("nginx"),
            ("docker.io".into(), "library/nginx".into())
        );
        assert_eq!(
            registry_and_path("user/app:1"),
            ("docker.io".into(), "user/app".into())
        );
        assert_eq!(
            registry_and_path("registry.bpfk.lab:5000/private/app:1.0"),
            ("registry.bpfk.lab:5000".into(), "private/app".into())
        );
        assert_eq!(
            registry_and_path("localhost/x@sha256:abc"),
            ("localhost".into(), "x".into())
        );
    }

    #[test]
    fn both_secret_formats() {
        let json = secret(
            ".dockerconfigjson",
            serde_json::json!({"auths": {"registry.bpfk.lab:5000": {"username": "u", "password": "p", "auth": "dTpw"}}}),
        );
        let c = credentials_of(&json).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].username.as_str(), c[0].password.as_str()), ("u", "p"));
        assert_eq!(c[0].to_cri().username, "u");
        assert_eq!(c[0].registry, "registry.bpfk.lab:5000");
        let cfg = secret(
            ".dockercfg",
            serde_json::json!({"https://index.docker.io/v1/": {"auth": "dTpw"}}),
        );
        let c = credentials_of(&cfg).unwrap();
        assert_eq!(c[0].auth, "dTpw");
        assert_eq!(
            lookup(&c, "busybox").len(),
            1,
            "docker hub keys match docker.io images"
        );
        let bad = secret(".dockerconfigjson", serde_json::json!("hunter2"));
        let e = credentials_of(&bad).unwrap_err();
        assert!(e.contains("regcred") && !e.contains("hunter2"), "{e}");
        assert!(!format!("{:?}", c[0]).contains("dTpw"));
    }

    #[test]
    fn matching_by_host_port_and_path() {
        let cred = |r: &str| Credential {
            registry: r.into(),
            ..Default::default()
        };
        let all = vec![
            cred("registry.bpfk.lab:5000"),
            cred("registry.bpfk.lab:5000/private"),
            cred("*.bpfk.lab:5001"),
            cred("http://other.lab"),
        ];
        let found = |image: &str| -> Vec<String> {
            lookup(&all, image)
                .into_iter()
                .map(|c| c.registry)
                .collect()
        };
        assert_eq!(
            found("registry.bpfk.lab:5000/private/app:1"),
            ["registry.bpfk.lab:5000/private", "registry.bpfk.lab:5000"]
        );
        assert_eq!(
            found("registry.bpfk.lab:5000/public/app"),
            ["registry.bpfk.lab:5000"]
        );
        assert_eq!(
            found("registry.bpfk.lab:5000/privateer/app"),
            ["registry.bpfk.lab:5000"]
        );
        assert_eq!(found("auth.bpfk.lab:5001/x"), ["*.bpfk.lab:5001"]);
        assert!(found("registry.bpfk.lab/x").is_empty(), "ports must match");
        assert!(
            found("a.b.bpfk.lab:5001/x").is_empty(),
            "a glob is one label"
        );
        assert_eq!(found("other.lab/x/y"), ["http://other.lab"]);
    }
}
