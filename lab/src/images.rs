//! Local stand-in images without a registry: an OCI image layout tarball built from the
//! host's static busybox (Debian `busybox-static`), imported into containerd with `ctr`.
//!
//! The layout is the one `ctr images import` reads: `oci-layout`, `index.json` (one
//! manifest descriptor per image name, annotated with `io.containerd.image.name`) and
//! `blobs/sha256/<digest>` for the layer (an uncompressed tar), the image config and the
//! manifest. Everything is deterministic (mtime 0, uid/gid 0), so the same inputs give the
//! same digests.
//!
//! [`stand_in_images`] describes the images bpfk uses in tests and demos. They are honest
//! stand-ins: the "nginx" image is busybox whose default command writes the pod's hostname to
//! `/www/hostname` and then runs `httpd -f -p 80 -h /www` serving a small index.html (and
//! that file) until SIGTERM, not nginx.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Where Debian's busybox-static installs the static binary.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";

/// Applets linked to busybox under /bin.
pub const APPLETS: &[&str] = &[
    "sh", "ash", "cat", "echo", "env", "false", "grep", "head", "hostname", "httpd", "id", "ip",
    "kill", "ls", "mkdir", "nc", "nslookup", "ping", "ps", "rm", "sed", "sleep", "tail", "test",
    "touch", "true", "wc", "wget", "printf", "date", "uname", "ifconfig", "netstat", "seq",
    // kubectl cp runs tar in the container
    "tar", "tty", // the terminal size of `kubectl exec -it`
    "stty",
];

/// A building or import failure.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("image {image}: {reason}")]
    Invalid { image: String, reason: String },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Import {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

type Result<T, E = OciError> = std::result::Result<T, E>;

/// A file added to an image besides busybox and its applets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraFile {
    /// Path inside the image, without a leading slash (`www/index.html`).
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// One busybox-based image and the names it is imported under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusyboxImage {
    /// Fully qualified references (`docker.io/library/busybox:1.36`).
    pub names: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub extra_files: Vec<ExtraFile>,
}

impl BusyboxImage {
    /// An image named `names` running `cmd` by default.
    pub fn new(names: &[&str], cmd: &[&str]) -> BusyboxImage {
        BusyboxImage {
            names: names.iter().map(|n| n.to_string()).collect(),
            entrypoint: Vec::new(),
            cmd: cmd.iter().map(|c| c.to_string()).collect(),
            env: vec!["PATH=/bin:/usr/bin:/sbin:/usr/sbin".into()],
            working_dir: "/".into(),
            extra_files: Vec::new(),
        }
    }
}

/// Name of the stand-in busybox image.
pub const BUSYBOX_IMAGE: &str = "docker.io/library/busybox:1.36";
/// Name of the stand-in "nginx" image (busybox httpd on port 80) used by the manifests.
pub const NGINX_IMAGE: &str = "docker.io/library/nginx:1.14.2";
/// Name of the stand-in sandbox ("pause") image; containerd's `sandbox_image` must name it.
pub const PAUSE_IMAGE: &str = "bpfk.local/pause:1";

/// The stand-in nginx image's default command (run by `sh -c`): it writes the pod's
/// hostname (the pod name) to `/www/hostname`, so a client going through a Service can tell
/// which pod answered (`GET /hostname`), then serves `/www` with busybox httpd on port 80.
/// Like nginx it stops on SIGTERM: httpd as the container's PID 1 would ignore the signal
/// and make every pod deletion wait out the whole grace period.
pub const NGINX_COMMAND: &str =
    "hostname > /www/hostname; httpd -f -p 80 -h /www & trap 'kill $!; exit 0' TERM; wait";

/// The page the stand-in nginx image serves.
pub const NGINX_INDEX_HTML: &str = "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n<body><h1>Welcome to nginx!</h1>\n<p>bpfk stand-in image: busybox httpd built locally from the host's busybox-static, not nginx.</p>\n</body></html>\n";

/// Name of the kubectl image (busybox plus the host's static `kubectl`), pushed to the lab
/// registry only by the tests that run API clients in pods ([`kubectl_image`]).
pub const KUBECTL_IMAGE: &str = "docker.io/bitnami/kubectl:1.32";
/// Where the host's kubectl is (a static Go binary).
pub const HOST_KUBECTL: &str = "/usr/bin/kubectl";

/// An image running the host's kubectl (entrypoint `kubectl`), as `bitnami/kubectl`: a real
/// Kubernetes client in a pod, with in-cluster configuration from the pod's service-account
/// volume and `KUBERNETES_SERVICE_*` variables.
pub fn kubectl_image() -> std::io::Result<BusyboxImage> {
    let path = std::fs::canonicalize(HOST_KUBECTL)?;
    let binary = std::fs::read(&path)?;
    let mut image = BusyboxImage::new(&[KUBECTL_IMAGE], &["version"]);
    image.entrypoint = vec!["/usr/bin/kubectl".into()];
    image.extra_files.push(ExtraFile {
        path: "usr/bin/kubectl".into(),
        contents: binary,
        mode: 0o755,
    });
    Ok(image)
}

/// The images bpfk builds locally: busybox, the "nginx" stand-in and the sandbox image.
pub fn stand_in_images() -> Vec<BusyboxImage> {
    let busybox = BusyboxImage::new(
        &[BUSYBOX_IMAGE, "docker.io/library/busybox:latest"],
        &["sh"],
    );
    let mut nginx = BusyboxImage::new(
        &[NGINX_IMAGE, "docker.io/library/nginx:latest"],
        &["sh", "-c", NGINX_COMMAND],
    );
    nginx.extra_files.push(ExtraFile {
        path: "www/index.html".into(),
        contents: NGINX_INDEX_HTML.as_bytes().to_vec(),
        mode: 0o644,
    });
    // The sandbox's only process: it holds the namespaces and never exits by itself
    // (containerd stops sandboxes with SIGKILL).
    let mut pause = BusyboxImage::new(&[PAUSE_IMAGE], &["2147483647"]);
    pause.entrypoint = vec!["/bin/sleep".into()];
    vec![busybox, nginx, pause]
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// An OCI content descriptor.
fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256_digest(bytes), "size": bytes.len()})
}

/// A tar stream builder with deterministic headers.
struct TarWriter {
    builder: tar::Builder<Vec<u8>>,
    image: String,
}

impl TarWriter {
    fn new(image: &str) -> TarWriter {
        TarWriter {
            builder: tar::Builder::new(Vec::new()),
            image: image.to_string(),
        }
    }

    fn err(&self, reason: String) -> OciError {
        OciError::Invalid {
            image: self.image.clone(),
            reason,
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h
    }

    fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.builder
            .append_data(&mut h, path, std::io::empty())
            .map_err(|e| self.err(format!("tar entry {path}: {e}")))
    }

    fn file(&mut self, path: &str, mode: u32, contents: &[u8]) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, mode, contents.len() as u64);
        self.builder
            .append_data(&mut h, path, contents)
            .map_err(|e| self.err(format!("tar entry {path}: {e}")))
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.builder
            .append_link(&mut h, path, target)
            .map_err(|e| self.err(format!("tar symlink {path}: {e}")))
    }

    fn finish(self) -> Result<Vec<u8>> {
        let image = self.image.clone();
        self.builder.into_inner().map_err(|e| OciError::Invalid {
            image,
            reason: format!("finishing tar: {e}"),
        })
    }
}

/// The single layer of `image`: busybox, its applets, a minimal /etc and the extra files.
pub fn layer_tar(image: &BusyboxImage, busybox: &[u8]) -> Result<Vec<u8>> {
    let name = image.names.first().cloned().unwrap_or_default();
    let mut tar = TarWriter::new(&name);
    for dir in ["bin/", "etc/", "root/", "var/", "usr/", "usr/bin/"] {
        tar.dir(dir, 0o755)?;
    }
    tar.dir("tmp/", 0o1777)?;
    tar.file("bin/busybox", 0o755, busybox)?;
    for applet in APPLETS {
        tar.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    tar.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    tar.file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
    let mut dirs: Vec<String> = Vec::new();
    for extra in &image.extra_files {
        let path = extra.path.trim_start_matches('/');
        if path.is_empty() || path.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(tar.err(format!(
                "extra file path {:?} is not a plain relative path",
                extra.path
            )));
        }
        // parent directories first
        let mut parent = String::new();
        for component in path
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            parent.push_str(component);
            parent.push('/');
            if !dirs.contains(&parent)
                && !["bin/", "etc/", "root/", "var/", "usr/", "tmp/"].contains(&parent.as_str())
            {
                tar.dir(&parent, 0o755)?;
                dirs.push(parent.clone());
            }
        }
        tar.file(path, extra.mode, &extra.contents)?;
    }
    tar.finish()
}

/// The blobs of one image: (layer, config, manifest) bytes.
pub struct ImageBlobs {
    pub layer: Vec<u8>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

/// Layer, config and manifest of `image`.
pub fn image_blobs(image: &BusyboxImage, busybox: &[u8]) -> Result<ImageBlobs> {
    let layer = layer_tar(image, busybox)?;
    let mut config = json!({
        "architecture": bpfk_common::platform::goarch(),
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": image.env,
            "Cmd": image.cmd,
            "WorkingDir": image.working_dir,
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&layer)]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "bpfk: busybox-static stand-in image"}],
    });
    if !image.entrypoint.is_empty() {
        config["config"]["Entrypoint"] = json!(image.entrypoint);
    }
    let config = to_bytes(&config);
    let manifest = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
    }));
    Ok(ImageBlobs {
        layer,
        config,
        manifest,
    })
}

fn to_bytes(value: &Value) -> Vec<u8> {
    // serializing a Value to a Vec cannot fail
    serde_json::to_vec(value).unwrap_or_default()
}

/// The tag part of a reference (`docker.io/library/nginx:1.14.2` -> `1.14.2`).
fn tag_of(reference: &str) -> &str {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    last.split_once(':').map(|(_, t)| t).unwrap_or("latest")
}

/// An OCI image layout tarball holding `images`; returns its bytes.
pub fn layout_tar(images: &[BusyboxImage], busybox: &[u8]) -> Result<Vec<u8>> {
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut manifests = Vec::new();
    for image in images {
        if image.names.is_empty() {
            return Err(OciError::Invalid {
                image: String::new(),
                reason: "an image needs at least one name".into(),
            });
        }
        let b = image_blobs(image, busybox)?;
        for name in &image.names {
            let mut d = descriptor("application/vnd.oci.image.manifest.v1+json", &b.manifest);
            d["platform"] = json!({"architecture": bpfk_common::platform::goarch(), "os": "linux"});
            d["annotations"] = json!({
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag_of(name),
            });
            manifests.push(d);
        }
        for blob in [b.layer, b.config, b.manifest] {
            blobs.insert(sha256_digest(&blob), blob);
        }
    }
    let index = to_bytes(
        &json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}),
    );
    let mut tar = TarWriter::new("layout");
    tar.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    tar.file("index.json", 0o644, &index)?;
    tar.dir("blobs/", 0o755)?;
    tar.dir("blobs/sha256/", 0o755)?;
    for (digest, blob) in &blobs {
        let hex = digest.trim_start_matches("sha256:");
        tar.file(&format!("blobs/sha256/{hex}"), 0o644, blob)?;
    }
    tar.finish()
}

/// Build the layout tarball for `images` from the busybox binary at `busybox` into `out`.
pub fn write_layout_tar(images: &[BusyboxImage], busybox: &Path, out: &Path) -> Result<()> {
    let binary = std::fs::read(busybox).map_err(|source| OciError::Read {
        path: busybox.to_path_buf(),
        source,
    })?;
    let tar = layout_tar(images, &binary)?;
    std::fs::write(out, tar).map_err(|source| OciError::Write {
        path: out.to_path_buf(),
        source,
    })
}

/// Import a layout tarball into containerd's `k8s.io` namespace (where its CRI plugin
/// looks) with `ctr`, unpacking it for `snapshotter`.
pub fn import_with_ctr(socket: &Path, tarball: &Path, snapshotter: &str) -> Result<()> {
    let mut cmd = Command::new("ctr");
    cmd.arg("--address")
        .arg(socket)
        .args([
            "-n",
            "k8s.io",
            "images",
            "import",
            "--snapshotter",
            snapshotter,
        ])
        .arg(tarball);
    let command = format!("{cmd:?}");
    let out = cmd.output().map_err(|source| OciError::Spawn {
        program: "ctr".into(),
        source,
    })?;
    if !out.status.success() {
        return Err(OciError::Import {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Build all [`stand_in_images`] from `busybox` into `dir/bpfk-images.tar` and import
/// them into containerd at `socket`.
pub fn import_stand_in_images(
    socket: &Path,
    busybox: &Path,
    dir: &Path,
    snapshotter: &str,
) -> Result<PathBuf> {
    let tarball = dir.join("bpfk-images.tar");
    write_layout_tar(&stand_in_images(), busybox, &tarball)?;
    import_with_ctr(socket, &tarball, snapshotter)?;
    Ok(tarball)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(tar_bytes: &[u8]) -> BTreeMap<String, (tar::EntryType, Vec<u8>)> {
        let mut archive = tar::Archive::new(tar_bytes);
        let mut out = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().to_string();
            let kind = entry.header().entry_type();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.insert(path, (kind, data));
        }
        out
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn tags() {
        assert_eq!(tag_of("docker.io/library/nginx:1.14.2"), "1.14.2");
        assert_eq!(tag_of("localhost:5000/x"), "latest");
        assert_eq!(tag_of("bpfk.local/pause:1"), "1");
    }

    #[test]
    fn layout_is_consistent_and_deterministic() {
        let fake_busybox = b"#!fake busybox".to_vec();
        let images = stand_in_images();
        let a = layout_tar(&images, &fake_busybox).unwrap();
        let b = layout_tar(&images, &fake_busybox).unwrap();
        assert_eq!(
            sha256_digest(&a),
            sha256_digest(&b),
            "layout must be deterministic"
        );

        let files = entries(&a);
        let index: Value = serde_json::from_slice(&files["index.json"].1).unwrap();
        let manifests = index["manifests"].as_array().unwrap();
        let names: Vec<&str> = manifests
            .iter()
            .map(|m| {
                m["annotations"]["io.containerd.image.name"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert!(
            names.contains(&NGINX_IMAGE)
                && names.contains(&BUSYBOX_IMAGE)
                && names.contains(&PAUSE_IMAGE)
        );
        // every blob is stored under its own digest with the size its descriptor says
        for m in manifests {
            let digest = m["digest"].as_str().unwrap();
            let manifest = &files[&format!("blobs/sha256/{}", &digest[7..])].1;
            assert_eq!(sha256_digest(manifest), digest);
            assert_eq!(m["size"].as_u64().unwrap() as usize, manifest.len());
            let manifest: Value = serde_json::from_slice(manifest).unwrap();
            let config_d = &manifest["config"];
            let config = &files[&format!(
                "blobs/sha256/{}",
                &config_d["digest"].as_str().unwrap()[7..]
            )]
                .1;
            assert_eq!(sha256_digest(config), config_d["digest"].as_str().unwrap());
            let layer_d = &manifest["layers"][0];
            let layer =
                &files[&format!("blobs/sha256/{}", &layer_d["digest"].as_str().unwrap()[7..])].1;
            assert_eq!(sha256_digest(layer), layer_d["digest"].as_str().unwrap());
            assert_eq!(layer_d["size"].as_u64().unwrap() as usize, layer.len());
            let config: Value = serde_json::from_slice(config).unwrap();
            // uncompressed layer: diff id == layer digest
            assert_eq!(config["rootfs"]["diff_ids"][0], layer_d["digest"]);
            let layer_files = entries(layer);
            assert_eq!(layer_files["bin/busybox"].1, fake_busybox);
            assert_eq!(layer_files["bin/sh"].0, tar::EntryType::Symlink);
            if m["annotations"]["io.containerd.image.name"] == NGINX_IMAGE {
                assert_eq!(config["config"]["Cmd"], json!(["sh", "-c", NGINX_COMMAND]));
                assert!(NGINX_COMMAND.contains("hostname > /www/hostname"));
                assert!(NGINX_COMMAND.contains("httpd -f -p 80 -h /www"));
                assert_eq!(layer_files["www/index.html"].1, NGINX_INDEX_HTML.as_bytes());
                assert_eq!(layer_files["www/"].0, tar::EntryType::Directory);
            }
        }
    }

    #[test]
    fn extra_file_paths_must_be_relative_and_plain() {
        let mut image = BusyboxImage::new(&["x/y:1"], &["sh"]);
        image.extra_files.push(ExtraFile {
            path: "www/../etc/shadow".into(),
            contents: vec![],
            mode: 0o644,
        });
        let err = layer_tar(&image, b"bb").unwrap_err().to_string();
        assert!(err.contains("not a plain relative path"), "{err}");
    }
}
