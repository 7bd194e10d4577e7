//! Volumes backed by API objects: configMap (on the node's disk), secret, downwardAPI and
//! projected (each on its own tmpfs, so secret data never reaches a disk), under
//! `<root>/pods/<uid>/volumes/kubernetes.io~<plugin>/<volume>`. Their files are written by
//! the [`atomic_writer`] on every pod sync, so updates of the objects reach the running
//! containers (except through subPath mounts, which pin the file they were started with).

pub mod atomic_writer;
pub mod projection;

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Volume;

pub use atomic_writer::{FileProjection, Payload};
pub use projection::{volume_payload, NoTokens, TokenSource, VolumeInputs};

use crate::cri_config::pod_dir;

/// The plugin directory of an API-backed volume and whether it lives on a tmpfs.
pub fn plugin_of(volume: &Volume) -> Option<(&'static str, bool)> {
    if volume.config_map.is_some() {
        Some(("kubernetes.io~configmap", false))
    } else if volume.secret.is_some() {
        Some(("kubernetes.io~secret", true))
    } else if volume.downward_api.is_some() {
        Some(("kubernetes.io~downward-api", true))
    } else if volume.projected.is_some() {
        Some(("kubernetes.io~projected", true))
    } else {
        None
    }
}

/// Where an API-backed volume lives on the node (None for other kinds).
pub fn volume_dir(root: &Path, uid: &str, volume: &Volume) -> Option<PathBuf> {
    let (plugin, _) = plugin_of(volume)?;
    Some(
        pod_dir(root, uid)
            .join("volumes")
            .join(plugin)
            .join(&volume.name),
    )
}

/// Why a volume could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetUpError {
    #[error("mounting a tmpfs on {path}: {source}")]
    Mount {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("creating {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] atomic_writer::WriteError),
}

/// Whether `dir` is a mount point (its device differs from its parent's).
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(d), Some(Ok(p))) = (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) else {
        return false;
    };
    d.dev() != p.dev()
}

fn mount_tmpfs(dir: &Path) -> Result<(), SetUpError> {
    let err = |source| SetUpError::Mount {
        path: dir.to_path_buf(),
        source,
    };
    let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|e| err(std::io::Error::other(e)))?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    // SAFETY: mount(2) with valid NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            flags,
            c"mode=0755".as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Creates the volume's directory (mounting its tmpfs the first time) and writes
/// `payload` into it atomically; returns whether the files changed.
pub fn set_up(dir: &Path, tmpfs: bool, payload: &Payload) -> Result<bool, SetUpError> {
    std::fs::create_dir_all(dir).map_err(|source| SetUpError::Create {
        path: dir.to_path_buf(),
        source,
    })?;
    if tmpfs && !is_mount_point(dir) {
        mount_tmpfs(dir)?;
    }
    Ok(atomic_writer::write(dir, payload)?)
}

/// Unmounts the tmpfs volumes of the pod in `pod_dir` (before its directory is removed).
pub fn unmount_all(pod_dir: &Path) {
    let Ok(plugins) = std::fs::read_dir(pod_dir.join("volumes")) else {
        return;
    };
    for plugin in plugins.flatten() {
        let Ok(volumes) = std::fs::read_dir(plugin.path()) else {
            continue;
        };
        for v in volumes.flatten() {
            let path = v.path();
            if !is_mount_point(&path) {
                continue;
            }
            let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            // SAFETY: umount2(2) with a valid NUL-terminated path.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                let e = std::io::Error::last_os_error();
                tracing::warn!(path = %path.display(), error = %e, "unmounting a volume failed");
            }
        }
    }
}

/// Sets up every configMap, secret, downwardAPI and projected volume of the pod under
/// `root` (updating files that changed); returns how many volumes changed, or the first
/// failure as Kubernetes words it (`MountVolume.SetUp failed for volume "v" : configmap "x"
/// not found`).
pub fn sync_pod(root: &Path, inputs: &VolumeInputs) -> Result<usize, String> {
    let volumes = inputs.pod.spec.as_ref().and_then(|s| s.volumes.as_deref());
    let mut changed = 0;
    for v in volumes.unwrap_or_default() {
        let (Some(dir), Some((_, tmpfs))) = (volume_dir(root, &inputs.id.uid, v), plugin_of(v))
        else {
            continue;
        };
        let failed = |e: String| format!("MountVolume.SetUp failed for volume {:?} : {e}", v.name);
        let payload = match volume_payload(v, inputs) {
            Some(p) => p.map_err(failed)?,
            None => continue,
        };
        if set_up(&dir, tmpfs, &payload).map_err(|e| failed(e.to_string()))? {
            changed += 1;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_directories() {
        let v = |j| serde_json::from_value::<Volume>(j).unwrap();
        let cm = v(serde_json::json!({"name": "c", "configMap": {"name": "x"}}));
        let s = v(serde_json::json!({"name": "s", "secret": {"secretName": "x"}}));
        let e = v(serde_json::json!({"name": "e", "emptyDir": {}}));
        assert_eq!(plugin_of(&cm), Some(("kubernetes.io~configmap", false)));
        assert_eq!(plugin_of(&s), Some(("kubernetes.io~secret", true)));
        assert_eq!(plugin_of(&e), None);
        assert_eq!(
            volume_dir(Path::new("/k"), "u", &s).unwrap(),
            Path::new("/k/pods/u/volumes/kubernetes.io~secret/s")
        );
    }

    #[test]
    fn disk_volume_set_up_without_tmpfs() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("v");
        let payload = Payload::from([(
            "k".to_string(),
            FileProjection {
                data: b"v".to_vec(),
                mode: 0o644,
            },
        )]);
        assert!(set_up(&dir, false, &payload).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("k")).unwrap(), "v");
        assert!(!is_mount_point(&dir));
    }
}
