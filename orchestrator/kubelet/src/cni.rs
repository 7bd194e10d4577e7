//! The node's CNI configuration for containerd's CRI plugin: the standard `bridge` plugin
//! with `host-local` IPAM over this node's pod range (`spec.podCIDR`).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// File name of the configuration the kubelet writes (containerd loads the first by name).
pub const CONFLIST_NAME: &str = "10-bpfk.conflist";
/// Name of the CNI network.
pub const NETWORK_NAME: &str = "bpfk";

/// A CNI configuration failure.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("pod CIDR {cidr:?}: {reason}")]
    BadCidr { cidr: String, reason: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Check an IPv4 CIDR (`10.244.1.0/24`); returns (network, prefix length).
pub fn parse_ipv4_cidr(cidr: &str) -> Result<(std::net::Ipv4Addr, u8), CniError> {
    let bad = |reason: &str| CniError::BadCidr {
        cidr: cidr.into(),
        reason: reason.into(),
    };
    let (addr, len) = cidr.split_once('/').ok_or_else(|| bad("missing /prefix"))?;
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
    let len: u8 = len.parse().map_err(|_| bad("prefix is not a number"))?;
    if len > 30 {
        return Err(bad("prefix longer than /30 leaves no pod addresses"));
    }
    Ok((addr, len))
}

/// The conflist for `pod_cidr`, keeping IPAM state in `ipam_dir`.
pub fn conflist(pod_cidr: &str, bridge: &str, ipam_dir: &Path) -> Result<Value, CniError> {
    parse_ipv4_cidr(pod_cidr)?;
    Ok(json!({
        "cniVersion": "0.4.0",
        "name": NETWORK_NAME,
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": pod_cidr}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": ipam_dir.display().to_string(),
            }
        }]
    }))
}

/// Write the conflist into `conf_dir` (atomically: temporary file, then rename).
pub fn write_conflist(
    conf_dir: &Path,
    pod_cidr: &str,
    bridge: &str,
    ipam_dir: &Path,
) -> Result<PathBuf, CniError> {
    let value = conflist(pod_cidr, bridge, ipam_dir)?;
    let path = conf_dir.join(CONFLIST_NAME);
    let tmp = conf_dir.join(format!(".{CONFLIST_NAME}.tmp"));
    std::fs::create_dir_all(conf_dir).map_err(|source| CniError::Write {
        path: conf_dir.to_path_buf(),
        source,
    })?;
    std::fs::create_dir_all(ipam_dir).map_err(|source| CniError::Write {
        path: ipam_dir.to_path_buf(),
        source,
    })?;
    let text = serde_json::to_string_pretty(&value).map_err(|e| CniError::Write {
        path: tmp.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&tmp, text).map_err(|source| CniError::Write {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, &path).map_err(|source| CniError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_uses_the_pod_cidr() {
        let v = conflist("10.244.3.0/24", "cni0", Path::new("/x")).unwrap();
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.3.0/24"
        );
        assert_eq!(v["plugins"][0]["ipam"]["dataDir"], "/x");
        assert_eq!(v["plugins"][0]["type"], "bridge");
    }

    #[test]
    fn bad_cidrs_are_refused_with_reason() {
        for (cidr, reason) in [
            ("10.244.0.0", "missing /prefix"),
            ("10.244.0/24", "not an IPv4"),
            ("10.244.0.0/x", "not a number"),
            ("10.244.0.0/31", "longer than /30"),
        ] {
            let err = conflist(cidr, "cni0", Path::new("/x"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(reason), "{cidr}: {err}");
        }
    }

    #[test]
    fn writes_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_conflist(
            dir.path(),
            "10.244.1.0/24",
            "cni0",
            &dir.path().join("ipam"),
        )
        .unwrap();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(v["name"], NETWORK_NAME);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "conflist and ipam dir only: {names:?}");
    }
}
