//! The lab's OCI registry: Debian's `docker-registry` (CNCF distribution 2.8) serving the
//! stand-in images on the host end of the underlay, pushed there with `skopeo` (a real
//! client, over plain HTTP inside the lab). Two registry processes: one open
//! ([`REGISTRY_PORT`]) and one behind htpasswd basic auth ([`AUTH_REGISTRY_PORT`]; the
//! distribution registry's auth applies to a whole registry). Nodes reach both by the name
//! [`REGISTRY_HOST`]: each node's containerd maps `registry.bpfk.lab:<port>` to
//! `http://10.250.k.1:<port>` through a `hosts.toml` under its registry `config_path`
//! ([`write_hosts_config`]), so no name is ever resolved through DNS.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::host::{require_tool, run};
use crate::images::{layout_tar, BusyboxImage};
use crate::netns::spawn_in;

/// The name nodes know the lab registry by.
pub const REGISTRY_HOST: &str = "registry.bpfk.lab";
/// The open registry's port.
pub const REGISTRY_PORT: u16 = 5000;
/// The port of the registry behind basic auth.
pub const AUTH_REGISTRY_PORT: u16 = 5001;
/// The user and password the auth registry accepts (a lab fixture, not a secret).
pub const AUTH_USER: &str = "bpfk";
pub const AUTH_PASSWORD: &str = "bpfk-lab-pull";
/// How long a registry may take to answer.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// `registry.bpfk.lab:<port>`.
pub fn registry_name(port: u16) -> String {
    format!("{REGISTRY_HOST}:{port}")
}

/// The registry's configuration file (distribution's YAML).
pub fn config_yaml(listen: SocketAddr, storage: &Path, htpasswd: Option<&Path>) -> String {
    let auth = htpasswd
        .map(|p| {
            format!(
                "auth:\n  htpasswd:\n    realm: bpfk-lab\n    path: {}\n",
                p.display()
            )
        })
        .unwrap_or_default();
    format!(
        "version: 0.1\nlog:\n  level: info\n  fields:\n    service: registry\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {listen}\n{auth}",
        storage.display()
    )
}

/// containerd's `hosts.toml` for `registry.bpfk.lab:<port>`: plain HTTP to the lab
/// address, which is also the `server`, so nothing falls back to resolving the name.
pub fn hosts_toml(address: SocketAddr) -> String {
    format!(
        "server = \"http://{address}\"\n\n[host.\"http://{address}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    )
}

/// Writes `<dir>/<registry name>/hosts.toml` for both registries on `ip`; returns `dir`,
/// containerd's CRI `registry.config_path`.
pub fn write_hosts_config(dir: &Path, ip: Ipv4Addr) -> PathBuf {
    for port in [REGISTRY_PORT, AUTH_REGISTRY_PORT] {
        let host_dir = dir.join(registry_name(port));
        fs::create_dir_all(&host_dir).expect("registry hosts directory");
        let toml = hosts_toml(SocketAddr::from((ip, port)));
        fs::write(host_dir.join("hosts.toml"), toml).expect("write hosts.toml");
    }
    dir.to_path_buf()
}

/// One registry process, killed by PID on drop.
struct RegistryProcess {
    child: Option<Child>,
    log: PathBuf,
    addr: SocketAddr,
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl RegistryProcess {
    fn start(dir: &Path, name: &str, addr: SocketAddr, htpasswd: Option<&Path>) -> Self {
        let storage = dir.join(format!("{name}-storage"));
        fs::create_dir_all(&storage).expect("registry storage");
        let config = dir.join(format!("{name}.yml"));
        fs::write(&config, config_yaml(addr, &storage, htpasswd)).expect("registry config");
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("registry log"));
        let mut p = RegistryProcess {
            child: Some(spawn_in(&mut cmd, None, None)),
            log,
            addr,
        };
        p.wait_answering();
        p
    }

    fn wait_answering(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "docker-registry on {} exited with {status}: {}",
                    self.addr,
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            // the open registry answers 200, the one behind auth 401
            if let Ok((200 | 401, _)) = crate::cluster::http_get(self.addr, "/v2/") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {} within {START_DEADLINE:?}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The lab's two registries.
pub struct LabRegistry {
    open: RegistryProcess,
    auth: RegistryProcess,
    dir: PathBuf,
}

/// Where each stand-in image is pushed: (registry port, repository:tag, image).
pub fn pushed_images() -> Vec<(u16, String, BusyboxImage)> {
    let mut out = Vec::new();
    for image in crate::images::stand_in_images() {
        let Some(name) = image.names.first().cloned() else {
            continue;
        };
        let Some(path) = name.strip_prefix("docker.io/") else {
            continue; // the sandbox image stays local
        };
        out.push((REGISTRY_PORT, path.to_string(), image.clone()));
        if path.starts_with("library/nginx:") {
            let private = path.replacen("library/", "private/", 1);
            out.push((AUTH_REGISTRY_PORT, private, image));
        }
    }
    out
}

impl LabRegistry {
    /// Starts both registries on `ip` (files under `dir`) and pushes [`pushed_images`]
    /// built from `busybox`.
    pub fn start(dir: &Path, ip: Ipv4Addr, busybox: &[u8]) -> LabRegistry {
        require_tool("docker-registry", &["--version"], "docker-registry");
        require_tool("skopeo", &["--version"], "skopeo");
        require_tool("htpasswd", &["-nbB", "probe", "probe"], "apache2-utils");
        let dir = dir.join("registry");
        fs::create_dir_all(&dir).expect("registry directory");
        let htpasswd = dir.join("htpasswd");
        let out = run(Command::new("htpasswd").args(["-Bbn", AUTH_USER, AUTH_PASSWORD]));
        fs::write(&htpasswd, &out.stdout).expect("write htpasswd");
        let open = RegistryProcess::start(&dir, "open", (ip, REGISTRY_PORT).into(), None);
        let auth = RegistryProcess::start(
            &dir,
            "auth",
            (ip, AUTH_REGISTRY_PORT).into(),
            Some(&htpasswd),
        );
        let registry = LabRegistry { open, auth, dir };
        for (port, reference, image) in pushed_images() {
            registry.push(port, &reference, &image, busybox);
        }
        registry
    }

    /// `skopeo copy` of `image` (its first tag) to `<registry>/<reference>`.
    fn push(&self, port: u16, reference: &str, image: &BusyboxImage, busybox: &[u8]) {
        let tar = self
            .dir
            .join(format!("{}.tar", reference.replace(['/', ':'], "_")));
        let single = BusyboxImage {
            names: vec![format!("docker.io/{reference}")],
            ..image.clone()
        };
        let bytes = layout_tar(&[single], busybox)
            .unwrap_or_else(|e| panic!("building {reference} for the registry: {e}"));
        fs::write(&tar, bytes).expect("write image layout");
        let tag = reference
            .rsplit_once(':')
            .map(|(_, t)| t)
            .unwrap_or("latest");
        let addr = if port == REGISTRY_PORT {
            self.open.addr
        } else {
            self.auth.addr
        };
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if port == AUTH_REGISTRY_PORT {
            cmd.arg(format!("--dest-creds={AUTH_USER}:{AUTH_PASSWORD}"));
        }
        cmd.arg(format!("oci-archive:{}:{tag}", tar.display()))
            .arg(format!("docker://{addr}/{reference}"));
        run(&mut cmd);
    }

    /// Push `image` (named `docker.io/<repository>:<tag>`) to the open registry.
    pub fn push_image(&self, image: &BusyboxImage, busybox: &[u8]) {
        let name = image.names.first().expect("an image name");
        let reference = name
            .strip_prefix("docker.io/")
            .unwrap_or_else(|| panic!("{name}: only docker.io/ names are mirrored by the lab"));
        self.push(REGISTRY_PORT, reference, image, busybox);
    }

    /// `registry.bpfk.lab:5000`.
    pub fn name(&self) -> String {
        registry_name(self.open.addr.port())
    }

    /// `registry.bpfk.lab:5001` (basic auth: [`AUTH_USER`], [`AUTH_PASSWORD`]).
    pub fn auth_name(&self) -> String {
        registry_name(self.auth.addr.port())
    }

    /// The logs of both registries.
    pub fn logs(&self) -> String {
        [&self.open.log, &self.auth.log]
            .iter()
            .map(|p| fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs() {
        let addr: SocketAddr = "10.250.3.1:5001".parse().unwrap();
        let y = config_yaml(addr, Path::new("/s"), Some(Path::new("/h")));
        assert!(y.contains("addr: 10.250.3.1:5001") && y.contains("rootdirectory: /s"));
        assert!(y.contains("htpasswd:\n    realm: bpfk-lab\n    path: /h"));
        assert!(!config_yaml(addr, Path::new("/s"), None).contains("auth:"));
        let t = hosts_toml(addr);
        assert!(t.starts_with("server = \"http://10.250.3.1:5001\""));
        assert!(t.contains("[host.\"http://10.250.3.1:5001\"]"));
    }

    #[test]
    fn what_is_pushed_where() {
        let pushed: Vec<(u16, String)> = pushed_images()
            .into_iter()
            .map(|(p, r, _)| (p, r))
            .collect();
        assert!(pushed.contains(&(REGISTRY_PORT, "library/nginx:1.14.2".into())));
        assert!(pushed.contains(&(REGISTRY_PORT, "library/busybox:1.36".into())));
        assert!(pushed.contains(&(AUTH_REGISTRY_PORT, "private/nginx:1.14.2".into())));
        assert!(pushed.iter().all(|(_, r)| !r.contains("pause")));
    }
}
