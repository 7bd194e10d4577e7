//! A real, temporary containerd (Debian `containerd` 1.6 with `runc`, CNI plugins from
//! `containernetworking-plugins` in /usr/lib/cni) with its own root, state, gRPC socket,
//! config, CNI configuration directory, runc root and cgroup parent, optionally running
//! inside a given network namespace (entered with setns(2) before exec, like
//! `nsenter --net=/var/run/netns/<ns> containerd --config …`).
//!
//! Dropping a [`ContainerdProcess`] (also while a test panics) kills containerd by PID, then
//! every shim it started (found by its `-address` argument) with the container processes
//! below them, unmounts whatever is still mounted under its directories, removes the
//! cgroups under its cgroup parent, the shims' sockets and the directories. containerd is
//! started with PR_SET_PDEATHSIG, so it also dies when the test process is killed.
//!
//! Everything panics with a clear message when a tool is missing or containerd does not
//! come up: tests that need containerd must fail loudly, never skip.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cgroups::{cgroup_processes, remove_cgroups};
use crate::host::{require_root, require_tool, run, unique_name};

/// How long containerd may take to answer on its socket.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// CNI plugin binaries (Debian containernetworking-plugins).
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// Options for [`ContainerdProcess::start`].
#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    /// Run containerd inside this (existing) network namespace.
    pub netns: Option<String>,
    /// `overlayfs` (default) or `native`.
    pub snapshotter: String,
    /// containerd's `sandbox_image`.
    pub sandbox_image: String,
    /// The cgroup parent pods of this instance use (cgroupfs syntax, `/bpfk-node-1`); its
    /// cgroups are removed on drop. None: a unique `/bpfk-test-<pid>-<n>`.
    pub cgroup_parent: Option<String>,
    /// containerd's CRI registry `config_path` (a `hosts.toml` per registry host).
    pub registry_config_dir: Option<PathBuf>,
}

impl Default for ContainerdOptions {
    fn default() -> Self {
        ContainerdOptions {
            netns: None,
            snapshotter: "overlayfs".into(),
            sandbox_image: "bpfk.local/pause:1".into(),
            cgroup_parent: None,
            registry_config_dir: None,
        }
    }
}

/// A running temporary containerd.
pub struct ContainerdProcess {
    child: Option<Child>,
    options: ContainerdOptions,
    cgroup_parent: String,
    /// Holds root, state, config, CNI conf dir, runc root and the log; removed on drop.
    dir: Option<tempfile::TempDir>,
}

impl ContainerdProcess {
    /// Start containerd with `options`; waits until its socket answers. Panics on failure.
    pub fn start(options: ContainerdOptions) -> ContainerdProcess {
        require_root("containerd");
        require_tool("containerd", &["--version"], "containerd");
        require_tool("runc", &["--version"], "runc");
        require_tool("ctr", &["--version"], "containerd");
        for plugin in ["bridge", "host-local", "loopback"] {
            let path = Path::new(CNI_BIN_DIR).join(plugin);
            assert!(
                path.exists(),
                "CNI plugin {} missing: install Debian package containernetworking-plugins",
                path.display()
            );
        }
        // short path: the socket path must fit in sun_path (108 bytes)
        let dir = tempfile::Builder::new()
            .prefix("bpfk-ctrd-")
            .tempdir_in("/tmp")
            .expect("cannot create a temporary directory for containerd");
        let cgroup_parent = options
            .cgroup_parent
            .clone()
            .unwrap_or_else(|| format!("/{}", unique_name("bpfk-test")));
        let mut c = ContainerdProcess {
            child: None,
            options,
            cgroup_parent,
            dir: Some(dir),
        };
        for sub in [
            "root",
            "state",
            "cni-conf",
            "cni-state",
            "runc",
            "opt",
            "pods",
        ] {
            fs::create_dir_all(c.path(sub)).expect("containerd directories");
        }
        fs::write(c.config_path(), c.config_toml()).expect("write containerd config");
        c.launch();
        c
    }

    fn base(&self) -> &Path {
        self.dir.as_ref().expect("containerd dir").path()
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.base().join(sub)
    }

    /// The gRPC (and CRI) socket.
    pub fn socket(&self) -> PathBuf {
        self.path("containerd.sock")
    }

    /// The CNI configuration directory containerd's CRI plugin reads.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.path("cni-conf")
    }

    /// A directory for CNI IPAM state (host-local `dataDir`), inside this instance's dir.
    pub fn cni_state_dir(&self) -> PathBuf {
        self.path("cni-state")
    }

    /// A directory for pod logs (the kubelet's pod log root), inside this instance's dir.
    pub fn pod_log_dir(&self) -> PathBuf {
        self.path("pods")
    }

    /// A directory for the kubelet's state (pod volumes), inside this instance's dir.
    pub fn kubelet_dir(&self) -> PathBuf {
        self.path("kubelet")
    }

    /// The `bpfk-agent --kubelet` flags that point a kubelet at this containerd: its CRI
    /// socket, CNI config and state, pod log and kubelet directories (not the cgroup parent,
    /// which callers choose).
    pub fn kubelet_runtime_args(&self) -> Vec<std::ffi::OsString> {
        [
            ("--runtime-socket", self.socket()),
            ("--cni-conf-dir", self.cni_conf_dir()),
            ("--cni-state-dir", self.cni_state_dir()),
            ("--pod-log-dir", self.pod_log_dir()),
            ("--kubelet-root-dir", self.kubelet_dir()),
        ]
        .into_iter()
        .flat_map(|(flag, path)| [flag.into(), path.into_os_string()])
        .collect()
    }

    /// The cgroup parent pods of this instance should use (`/bpfk-test-<pid>-<n>` unless
    /// the options named one); its cgroups are removed on drop.
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// The snapshotter images must be unpacked for.
    pub fn snapshotter(&self) -> &str {
        &self.options.snapshotter
    }

    /// containerd's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn config_path(&self) -> PathBuf {
        self.path("config.toml")
    }

    fn log_path(&self) -> PathBuf {
        self.path("containerd.log")
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Run `ctr` against this instance in namespace k8s.io; panics unless it succeeds.
    pub fn ctr(&self, args: &[&str]) -> String {
        let out = run(Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["-n", "k8s.io"])
            .args(args));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn config_toml(&self) -> String {
        let p = |s: &str| self.path(s).display().to_string();
        format!(
            r#"version = 2
root = "{root}"
state = "{state}"
oom_score = 0

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  netns_mounts_under_state_dir = true
  # never ask for an oom_score_adj below containerd's own: lowering it needs a privilege
  # some sandboxes (like this lab machine) refuse, which makes runc fail at create
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{snapshotter}"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{runc}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
{registry}"#,
            root = p("root"),
            state = p("state"),
            socket = self.socket().display(),
            opt = p("opt"),
            sandbox_image = self.options.sandbox_image,
            snapshotter = self.options.snapshotter,
            runc = p("runc"),
            cni_bin = CNI_BIN_DIR,
            cni_conf = p("cni-conf"),
            registry = self.registry_section(),
        )
    }

    /// The CRI plugin's registry section pointing at `registry_config_dir`, if any.
    fn registry_section(&self) -> String {
        match &self.options.registry_config_dir {
            Some(dir) => format!(
                "  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n    config_path = \"{}\"\n",
                dir.display()
            ),
            None => String::new(),
        }
    }

    fn launch(&mut self) {
        let log = fs::File::create(self.log_path()).expect("containerd log file");
        // Enter only the network namespace (setns in the child): `ip netns exec` would also
        // remount /sys, hiding /sys/fs/cgroup from runc.
        let netns_file = self.options.netns.as_ref().map(|ns| {
            let path = Path::new("/var/run/netns").join(ns);
            fs::File::open(&path)
                .unwrap_or_else(|e| panic!("cannot open network namespace {}: {e}", path.display()))
        });
        let netns_fd = netns_file.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: prctl and setns are async-signal-safe; nothing else runs between fork
        // and exec; the namespace fd stays open in the parent until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(fd) = netns_fd {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start containerd: {e}"));
        drop(netns_file);
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("containerd exited with {status}; log:\n{}", self.log());
            }
            let ok = Command::new("ctr")
                .arg("--address")
                .arg(self.socket())
                .args(["version"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok && self.log().contains("containerd successfully booted") {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "containerd did not answer on {} within {START_DEADLINE:?}; log:\n{}",
                    self.socket().display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kill containerd, its shims and their containers; unmount and remove everything.
    fn teardown(&mut self) {
        if std::thread::panicking() && self.dir.is_some() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "containerd log (last 60 lines):\n{}",
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let Some(dir) = self.dir.take() else { return };
        let base = dir.path().to_path_buf();
        let socket = self.socket_in(&base);
        let shim_sockets = shim_sockets(&base.join("state"));
        // shims of this instance, and everything below them (the containers)
        let shims = processes_with_arg_pair("-address", &socket.display().to_string());
        let mut victims = Vec::new();
        for shim in &shims {
            descendants(*shim, &mut victims);
        }
        victims.extend(&shims);
        // processes left in this instance's cgroups
        victims.extend(cgroup_processes(&self.cgroup_parent));
        for pid in &victims {
            // SAFETY: plain kill(2) on pids found above.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            }
        }
        wait_gone(&victims, Duration::from_secs(10));
        unmount_under(&base);
        remove_cgroups(&self.cgroup_parent);
        for s in shim_sockets {
            let _ = fs::remove_file(s);
        }
        // the shims' socket directory, only when nothing else uses it (remove_dir of a
        // non-empty directory fails)
        let _ = fs::remove_dir("/run/containerd/s");
        let _ = fs::remove_dir("/run/containerd");
        if let Err(e) = fs::remove_dir_all(&base) {
            eprintln!("containerd harness: cannot remove {}: {e}", base.display());
        }
        drop(dir);
    }

    fn socket_in(&self, base: &Path) -> PathBuf {
        base.join("containerd.sock")
    }
}

impl Drop for ContainerdProcess {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// `unix:///run/containerd/s/<hash>` addresses recorded by this instance's shims.
fn shim_sockets(state: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let tasks = state.join("io.containerd.runtime.v2.task");
    let Ok(namespaces) = fs::read_dir(&tasks) else {
        return out;
    };
    for ns in namespaces.flatten() {
        let Ok(ids) = fs::read_dir(ns.path()) else {
            continue;
        };
        for id in ids.flatten() {
            if let Ok(address) = fs::read_to_string(id.path().join("address")) {
                if let Some(path) = address.trim().strip_prefix("unix://") {
                    out.push(PathBuf::from(path));
                }
            }
        }
    }
    out
}

fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose argv holds `flag` immediately followed by `value`.
fn processes_with_arg_pair(flag: &str, value: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.windows(2)
                .any(|w| w[0] == flag.as_bytes() && w[1] == value.as_bytes())
        })
        .collect()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn descendants(root: u32, out: &mut Vec<u32>) {
    let pids = all_pids();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for child in pids.iter().copied().filter(|c| parent_of(*c) == Some(p)) {
            if !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
}

fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => false,
    }
}

fn wait_gone(pids: &[u32], limit: Duration) {
    let deadline = Instant::now() + limit;
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// cgroup v1 controller and v2 unified mount points.
/// Mount points (this mount namespace) under `base`.
pub fn mounts_under(base: &Path) -> Vec<PathBuf> {
    let prefix = base.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(unescape_mount_path)
        .filter(|m| m == &prefix || m.starts_with(&format!("{prefix}/")))
        .map(PathBuf::from)
        .collect()
}

fn unescape_mount_path(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn unmount_under(base: &Path) {
    for _ in 0..5 {
        let mut mounts = mounts_under(base);
        if mounts.is_empty() {
            return;
        }
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for m in mounts {
            if let Ok(c) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) {
                // SAFETY: umount2 with a valid NUL-terminated path.
                unsafe {
                    libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
    }
}

/// Pods' IPv4 addresses must be inside `cidr` (`10.244.1.0/24`).
pub fn ipv4_in_cidr(ip: &str, cidr: &str) -> bool {
    let parse = |s: &str| s.parse::<std::net::Ipv4Addr>().ok().map(u32::from);
    let Some((net, len)) = cidr.split_once('/') else {
        return false;
    };
    let (Some(ip), Some(net), Ok(len)) = (parse(ip), parse(net), len.parse::<u32>()) else {
        return false;
    };
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - len.min(32))
    };
    ip & mask == net & mask
}
