//! A local multi-node bpfk cluster in network namespaces, used by the cluster end-to-end
//! test and (through the `bpfk-lab` binary) by `cargo xtask demo`:
//!
//! ```text
//!  host (root netns)                 underlay netns               node netns node-i
//!  etcd 127.0.0.1:*                  br0 ──┬── host ─────veth──── bpfkl<k>h 10.250.k.1/24 (host)
//!  bpfk-server 10.250.k.1:PORT             ├── n1 ───veth──── ul0 10.250.k.11/24  containerd, bpfk-agent --kubelet,
//!                                          └── n2 ───veth──── ul0 10.250.k.12/24  cni0 bridge + pods (10.244.x)
//! ```
//!
//! The API server listens on the host end of a veth into the underlay, so node agents
//! (started in their node netns with setns(2), like containerd) reach it at 10.250.k.1, and
//! so do `kubectl`/`bpfk` on the host. Node netns have loopback, ul0 and (from the agents'
//! datapath) routes to the other nodes' pod ranges; no default route: nothing can leave the
//! lab. k is the first free 10.250.k.0/24 (k = 0 unless another lab runs at the same time;
//! a lock file under /run says which are taken); lab k's pods get 10.244.16k.0/20.
//!
//! The lab is sealed on the host side too: while it runs, the root netns routes each node's
//! pod range via that node (so a pod talking to the API server, or to any host address, gets
//! its answers back through the lab) and holds unreachable routes for all of 10.244.0.0/16
//! and 10.96.0.0/12, so no reply or probe to a pod or service address ever takes the host's
//! default route. Teardown removes exactly those routes.
//!
//! Each node gets a containerd with the stand-in images, and one `bpfk-agent --kubelet`
//! with `--node-ip`, `--underlay-iface ul0`, `--kubelet-port`, `--dns-no-forward` (its
//! cluster DNS server on the node address refuses names outside the cluster at once: nothing
//! is forwarded out of the lab) and its own cgroup for the
//! socket load balancer, `<cgroup2>/bpfk-<node>`; the kubelet's cgroup parent is the same
//! `/bpfk-<node>`, so pod processes (runc joins the unified hierarchy too on a v1+v2 hybrid
//! host) sit below the cgroup the sock_addr programs are attached to. A test of other agent
//! or kubelet flags puts them in `BPFK_LAB_AGENT_ARGS` (whitespace separated, e.g.
//! `--container-log-max-size 4Ki`): every agent of a lab started afterwards gets them.
//!
//! Dropping the [`Lab`] (also while panicking) kills the agents by PID and runs
//! `bpfk-agent --teardown` for each node's pins, stops containerd (its pods, mounts and
//! cgroups), the server and etcd, and deletes the namespaces, the host veth and the cgroups.
//! A lab whose process was SIGKILLed (its children die with it: PDEATHSIG) is cleaned up by
//! the next lab that starts: its `/run/bpfk-lab-id-<id>.lock`, no longer locked, records its
//! nodes and directories, so its shims, pods, pins, cgroups, mounts and namespaces go.
//! Everything panics with a clear message when something is missing: never a silent skip.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;

use crate::api_client::ApiCredentials;
use crate::containerd::{ContainerdOptions, ContainerdProcess};
use crate::etcd::{EtcdOptions, EtcdProcess};
use crate::host::{require_root, require_tool, sh_or_panic, sh_quiet};
use crate::netns::Netns;
pub use crate::netns::{output_in, spawn_in};
use crate::registry::{write_hosts_config, LabRegistry};

/// Where the agents pin their maps and links (`<root>/<node>/`).
pub const PIN_ROOT: &str = "/sys/fs/bpf/bpfk";
/// The kubelet log endpoint port of every node (each listens on its own node address).
pub const KUBELET_PORT: u16 = 10250;
/// Interface of each node on the underlay bridge.
pub const UNDERLAY_IFACE: &str = "ul0";
/// Deadline of each start-up step (nothing is pulled: the stand-in images are local).
const START_DEADLINE: Duration = Duration::from_secs(120);
/// How many labs may run at once: lab k has the underlay 10.250.k.0/24 and the pod range
/// 10.244.16k.0/20 (see [`lab_pod_range`]).
const MAX_LABS: u8 = 16;
/// All pod addresses of all labs; the host routes what no lab node owns to nowhere.
pub const POD_SUPERNET: &str = "10.244.0.0/16";
/// The API server's service ClusterIP range (fixed in bpfk-apiserver).
pub const SERVICE_RANGE: &str = "10.96.0.0/12";

/// Lab k's cluster CIDR: a /20 of [`POD_SUPERNET`] (16 nodes of /24), so labs running side
/// by side never share pod addresses and the host can route each lab's pods into its lab.
pub fn lab_pod_range(octet: u8) -> String {
    format!("10.244.{}.0/20", u16::from(octet) * 16)
}

/// The binaries a lab runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub server: PathBuf,
    pub agent: PathBuf,
}

/// Where tests put extra flags for every agent of the labs they start.
pub const AGENT_ARGS_ENV: &str = "BPFK_LAB_AGENT_ARGS";

fn extra_agent_args() -> Vec<String> {
    std::env::var(AGENT_ARGS_ENV)
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// What to build.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Short id naming the lab's namespaces (`bpfk-<id>-ul`, `bpfk-<id>-n1`, …); only one
    /// lab with a given id runs at a time.
    pub id: String,
    /// Number of nodes (1..=9).
    pub nodes: u8,
    /// Prefix of the node names: `Some("")` gives `node-1`, `node-2`, …; `None` gives
    /// `<id>-node-1`, …, so two labs never share node names (nor the pins and cgroups named
    /// after them).
    pub node_prefix: Option<String>,
    pub binaries: Binaries,
    /// `RUST_LOG` of the server and the agents.
    pub log_level: String,
    /// Flags added to bpfk-server's (e.g. `--cluster-signing-duration=1m`).
    pub server_args: Vec<String>,
}

impl LabOptions {
    /// A test's lab: `nodes` nodes named after `id`, the workspace's own bpfk-server and
    /// bpfk-agent, logging at info.
    pub fn for_test(id: impl Into<String>, nodes: u8) -> LabOptions {
        LabOptions {
            id: id.into(),
            nodes,
            node_prefix: None,
            binaries: Binaries {
                server: crate::server::binary("bpfk-server"),
                agent: crate::server::binary("bpfk-agent"),
            },
            log_level: "info".into(),
            server_args: Vec::new(),
        }
    }
}

/// GET `url` with busybox wget (3 s at most) from `netns` inside `cgroup`: the body
/// (trimmed), or the exit status and output of the failure.
pub fn fetch_in(netns: &str, cgroup: &Path, url: &str) -> Result<String, String> {
    let args = [
        "busybox", "timeout", "3", "busybox", "wget", "-q", "-O", "-", url,
    ];
    let out = crate::netns::output_in(&args, Some(netns), Some(cgroup));
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{} {stdout} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The cgroup v2 mount point (`/sys/fs/cgroup/unified` on a hybrid host).
pub fn cgroup2_mount() -> PathBuf {
    bpfk_datapath::sys::cgroup2_mount()
        .unwrap_or_else(|e| panic!("the socket load balancer needs cgroup v2: {e}"))
}

/// An exclusive, non-blocking flock(2) on `/run/bpfk-lab-<what>.lock`, held until drop
/// (or until the process dies).
struct LockFile {
    _file: fs::File,
    /// Removed on drop (ids are per run); subnet lock files stay (there are few).
    remove: Option<PathBuf>,
}

impl Drop for LockFile {
    fn drop(&mut self) {
        if let Some(p) = self.remove.take() {
            let _ = fs::remove_file(p);
        }
    }
}

impl LockFile {
    fn try_take(what: &str) -> Option<LockFile> {
        let path = PathBuf::from(format!("/run/bpfk-lab-{what}.lock"));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open lock file {}: {e}", path.display()));
        // SAFETY: flock on a valid fd.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        (rc == 0).then_some(LockFile {
            _file: file,
            remove: what.starts_with("id-").then_some(path),
        })
    }

    /// Start the lock file's record of what this lab created (for [`sweep_dead_labs`]).
    fn record(&self, text: &str) {
        let mut f = &self._file;
        let _ = f.set_len(0);
        let _ = f.write_all(text.as_bytes());
    }

    /// Add `text` to the record.
    fn append(&self, text: &str) {
        let _ = (&self._file).write_all(text.as_bytes());
    }

    fn contents(&self) -> String {
        self.remove
            .as_ref()
            .and_then(|p| fs::read_to_string(p).ok())
            .unwrap_or_default()
    }
}

/// One plain HTTP/1.0 GET to `addr` (no chunked answers, the server closes): (status,
/// body). Only lab addresses and loopback are ever passed here.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl LabOptions {
    /// The name of node `i` (from 1).
    pub fn node_name(&self, i: u8) -> String {
        match &self.node_prefix {
            Some(prefix) => format!("{prefix}node-{i}"),
            None => format!("{}-node-{i}", self.id),
        }
    }
}

/// The routes a lab added to the host's (root) network namespace, so that no lab packet ever
/// takes the host's default route: each node's pod range via that node, and unreachable
/// routes for the rest of the pod and service ranges. Removed (exactly these) on drop.
struct HostRoutes {
    /// Each route as `ip route` arguments (`10.244.0.0/24 via 10.250.0.11 dev bpfkl0h`).
    added: Vec<String>,
}

impl HostRoutes {
    /// `ip route replace ROUTE`, recorded in the lab's lock file for [`sweep_dead_labs`].
    fn add(&mut self, route: &str, record: &LockFile) {
        record.append(&format!("route {route}\n"));
        let mut args = vec!["ip", "route", "replace"];
        args.extend(route.split_whitespace());
        sh_or_panic(&args);
        self.added.push(route.to_string());
    }
}

impl Drop for HostRoutes {
    fn drop(&mut self) {
        while let Some(route) = self.added.pop() {
            delete_host_route(&route);
        }
    }
}

fn delete_host_route(route: &str) {
    let mut args = vec!["ip", "route", "del"];
    args.extend(route.split_whitespace());
    sh_quiet(&args);
}

/// The underlay: bridge netns, host veth, the lock on its subnet.
struct Underlay {
    host_if: String,
    ns: Option<Netns>,
    _lock: LockFile,
}

impl Drop for Underlay {
    fn drop(&mut self) {
        sh_quiet(&["ip", "link", "del", &self.host_if]);
        drop(self.ns.take());
    }
}

/// A process killed by PID on drop.
struct Process {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
            panic!(
                "{} exited with {status}; log tail:\n{}",
                self.name,
                tail(&self.log(), 60)
            );
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One node: its netns, containerd and agent.
pub struct LabNode {
    name: String,
    ip: Ipv4Addr,
    cgroup: PathBuf,
    agent_binary: PathBuf,
    agent: Option<Process>,
    containerd: Option<ContainerdProcess>,
    netns: Option<Netns>,
    /// The API server's kubelet client credentials, aimed at this node's endpoint.
    kubelet_client: Option<ApiCredentials>,
}

impl LabNode {
    /// The Node name (`node-1`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its underlay address (InternalIP), 10.250.k.(10+i).
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Its network namespace.
    pub fn netns(&self) -> &str {
        self.netns.as_ref().map(Netns::name).unwrap_or_default()
    }

    /// The cgroup v2 directory the socket load balancer is attached to (pods live below).
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// The kubelet's cgroup parent (`/bpfk-<node>`).
    pub fn cgroup_parent(&self) -> String {
        format!("/bpfk-{}", self.name)
    }

    /// The agent's pin directory.
    pub fn pin_dir(&self) -> PathBuf {
        Path::new(PIN_ROOT).join(&self.name)
    }

    /// The kubelet's pod log root (`<root>/<ns>_<pod>_<uid>/<container>/<n>.log`).
    pub fn pod_log_dir(&self) -> PathBuf {
        self.containerd
            .as_ref()
            .map(ContainerdProcess::pod_log_dir)
            .unwrap_or_default()
    }

    /// The kubelet endpoint, `10.250.k.(10+i):10250` (TLS, client certificates only).
    pub fn kubelet_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, KUBELET_PORT))
    }

    /// Credentials for the kubelet endpoint: the API server's kubelet client certificate
    /// and the cluster CA (which signed the kubelet's serving certificate).
    pub fn kubelet_client(&self) -> &ApiCredentials {
        self.kubelet_client
            .as_ref()
            .expect("the node's kubelet client credentials")
    }

    /// The agent's log so far.
    pub fn agent_log(&self) -> String {
        self.agent.as_ref().map(Process::log).unwrap_or_default()
    }

    /// The agent's log file.
    pub fn agent_log_path(&self) -> PathBuf {
        self.agent
            .as_ref()
            .map(|a| a.log.clone())
            .unwrap_or_default()
    }

    /// A container's log through the node's kubelet endpoint, as the API server asks it.
    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> String {
        let path = format!("/containerLogs/{namespace}/{pod}/{container}");
        match self.kubelet_client().request("GET", &path, None) {
            Ok((200, body)) => body,
            Ok((code, body)) => panic!("GET {}{path}: {code} {body}", self.kubelet_addr()),
            Err(e) => panic!("GET {}{path}: {e}", self.kubelet_addr()),
        }
    }

    /// One HTTP/1.0 GET to `addr` (`10.244.1.3:80`) from this node's netns (a thread that
    /// entered it; the caller's cgroup, so no socket load balancing): status line and body.
    pub fn http_get(&self, addr: &str, path: &str) -> std::io::Result<(String, String)> {
        match self.netns.as_ref() {
            Some(ns) => ns.http_get(addr, path),
            None => Err(std::io::Error::other("node netns gone")),
        }
    }

    /// Run `args` in this node's netns, inside the node cgroup (`in_node_cgroup`: its
    /// sockets get the eBPF socket load balancer, like a pod's) or not (the caller's cgroup).
    pub fn exec(&self, args: &[&str], in_node_cgroup: bool) -> Output {
        output_in(
            args,
            Some(self.netns()),
            in_node_cgroup.then_some(self.cgroup.as_path()),
        )
    }

    /// GET `url` with busybox wget from this node's netns and cgroup (so the socket load
    /// balancer translates ClusterIPs, as for a pod): the body, or why it failed.
    pub fn fetch(&self, url: &str) -> Result<String, String> {
        fetch_in(self.netns(), &self.cgroup, url)
    }

    fn teardown_pins(&self) {
        let out = Command::new(&self.agent_binary)
            .args(["--node-name", &self.name, "--kubeconfig", "/dev/null"])
            .args(["--pin-root", PIN_ROOT, "--teardown"])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "lab: bpfk-agent --teardown for {} failed: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("lab: cannot run bpfk-agent --teardown: {e}"),
        }
    }
}

impl Drop for LabNode {
    fn drop(&mut self) {
        // Agent first (it would recreate what is removed below), then its pins and links,
        // then containerd (pods, mounts, the cgroups under /bpfk-<node> in every
        // hierarchy), then the node cgroup and the netns.
        if let Some(mut agent) = self.agent.take() {
            agent.kill();
            self.teardown_pins();
        }
        drop(self.containerd.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.cgroup.exists()
            && fs::remove_dir(&self.cgroup).is_err()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.cgroup.exists() {
            eprintln!("lab: cannot remove cgroup {}", self.cgroup.display());
        }
        drop(self.netns.take());
    }
}

/// A running lab cluster.
pub struct Lab {
    nodes: Vec<LabNode>,
    server: Option<Process>,
    etcd: Option<EtcdProcess>,
    host_routes: Option<HostRoutes>,
    underlay: Option<Underlay>,
    dir: Option<tempfile::TempDir>,
    api: SocketAddr,
    kubeconfig: PathBuf,
    /// The admin credentials of `kubeconfig`, once the server wrote it.
    credentials: Option<ApiCredentials>,
    id_lock: LockFile,
    registry: Option<LabRegistry>,
    /// containerd's registry `config_path` on every node (hosts.toml per registry).
    registry_hosts: PathBuf,
}

impl Lab {
    /// Build the lab and wait until every node is Ready with a pod range, its agent has
    /// loaded the datapath, and it has routes to every other node's pods.
    pub fn start(options: LabOptions) -> Lab {
        require_root("the multi-node lab");
        require_tool("ip", &["-V"], "iproute2");
        assert!(
            (1..=9).contains(&options.nodes),
            "a lab has 1 to 9 nodes, not {}",
            options.nodes
        );
        for bin in [&options.binaries.server, &options.binaries.agent] {
            assert!(bin.exists(), "binary {} not found: build it", bin.display());
        }
        let busybox = Path::new(crate::images::DEFAULT_BUSYBOX);
        assert!(
            busybox.exists(),
            "{} missing: install Debian package busybox-static",
            busybox.display()
        );
        let cg2 = cgroup2_mount();
        sweep_dead_labs();
        let id_lock = LockFile::try_take(&format!("id-{}", options.id)).unwrap_or_else(|| {
            panic!(
                "a lab with id {:?} is already running on this machine",
                options.id
            )
        });
        // What a later run must clean up should this process die without its drop.
        let names: String = (1..=options.nodes)
            .map(|i| format!("node {}\n", options.node_name(i)))
            .collect();
        id_lock.record(&names);
        sweep_stale_netns(&options.id);

        let (octet, subnet_lock) = (0..MAX_LABS)
            .find_map(|k| LockFile::try_take(&format!("10.250.{k}")).map(|l| (k, l)))
            .unwrap_or_else(|| panic!("all {MAX_LABS} lab subnets 10.250.k.0/24 are in use"));
        let host_ip = Ipv4Addr::new(10, 250, octet, 1);
        let host_if = format!("bpfkl{octet}h");
        // Left by a lab that died without cleaning up (we hold the subnet's lock).
        sh_quiet(&["ip", "link", "del", &host_if]);
        let ul = Netns::create(&format!("bpfk-{}-ul", options.id));
        let mut lab = Lab {
            nodes: Vec::new(),
            server: None,
            etcd: None,
            host_routes: None,
            underlay: None,
            dir: None,
            api: SocketAddr::from((host_ip, 0)),
            kubeconfig: PathBuf::new(),
            credentials: None,
            id_lock,
            registry: None,
            registry_hosts: PathBuf::new(),
        };
        let ul_name = ul.name().to_string();
        lab.underlay = Some(Underlay {
            host_if: host_if.clone(),
            ns: Some(ul),
            _lock: subnet_lock,
        });
        sh_or_panic(&["ip", "-n", &ul_name, "link", "add", "br0", "type", "bridge"]);
        sh_or_panic(&["ip", "-n", &ul_name, "link", "set", "br0", "up"]);
        sh_or_panic(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", "host", "netns",
            &ul_name,
        ]);
        sh_or_panic(&[
            "ip", "-n", &ul_name, "link", "set", "host", "master", "br0", "up",
        ]);
        sh_or_panic(&[
            "ip",
            "addr",
            "add",
            &format!("{host_ip}/24"),
            "dev",
            &host_if,
        ]);
        sh_or_panic(&["ip", "link", "set", &host_if, "up"]);
        lab.seal_host_routes(octet);

        let dir = tempfile::Builder::new()
            .prefix("bpfk-lab-")
            .tempdir()
            .expect("lab tempdir");
        let dir_path = dir.path().to_path_buf();
        lab.id_lock.append(&format!("dir {}\n", dir_path.display()));
        lab.dir = Some(dir);
        lab.kubeconfig = dir_path.join("kubeconfig");

        let etcd = EtcdProcess::start_with(EtcdOptions {
            tls: true,
            ..Default::default()
        });
        let etcd_endpoint = etcd.endpoint();
        lab.etcd = Some(etcd);
        lab.start_server(&options, &etcd_endpoint, host_ip, octet, &dir_path);

        let busybox_bytes =
            fs::read(busybox).unwrap_or_else(|e| panic!("reading {}: {e}", busybox.display()));
        lab.registry = Some(LabRegistry::start(&dir_path, host_ip, &busybox_bytes));
        lab.registry_hosts = write_hosts_config(&dir_path.join("registry-hosts"), host_ip);
        // Imported on every node: the sandbox image and busybox; the "nginx" image is not,
        // pods pull it from the lab registry.
        let images = dir_path.join("bpfk-images.tar");
        let local: Vec<_> = crate::images::stand_in_images()
            .into_iter()
            .filter(|i| !i.names.iter().any(|n| n == crate::images::NGINX_IMAGE))
            .collect();
        crate::images::write_layout_tar(&local, busybox, &images)
            .unwrap_or_else(|e| panic!("building the stand-in images failed: {e}"));
        for i in 1..=options.nodes {
            let node = lab.start_node(&options, i, octet, &ul_name, &cg2, &images, &dir_path);
            lab.nodes.push(node);
        }
        let pod_cidrs = lab.wait_nodes_ready();
        lab.route_pod_ranges(&pod_cidrs);
        lab
    }

    /// Unreachable routes (metric 4000 + k, one pair per lab) for every pod and service
    /// address: what no lab node owns never falls through to the host's default route.
    fn seal_host_routes(&mut self, octet: u8) {
        let mut routes = HostRoutes { added: Vec::new() };
        let metric = 4000 + u32::from(octet);
        for range in [POD_SUPERNET, SERVICE_RANGE] {
            routes.add(
                &format!("unreachable {range} metric {metric}"),
                &self.id_lock,
            );
        }
        self.host_routes = Some(routes);
    }

    /// Each node's pod range routed from the host into the lab, via that node.
    fn route_pod_ranges(&mut self, pod_cidrs: &[String]) {
        let Some(routes) = self.host_routes.as_mut() else {
            return;
        };
        let host_if = self
            .underlay
            .as_ref()
            .map(|u| u.host_if.clone())
            .unwrap_or_default();
        for (node, cidr) in self.nodes.iter().zip(pod_cidrs) {
            let route = format!("{cidr} via {} dev {host_if}", node.ip);
            routes.add(&route, &self.id_lock);
        }
    }

    fn start_server(
        &mut self,
        options: &LabOptions,
        etcd: &str,
        host_ip: Ipv4Addr,
        octet: u8,
        dir: &Path,
    ) {
        let log = dir.join("bpfk-server.log");
        let mut cmd = Command::new(&options.binaries.server);
        cmd.args(["--etcd-servers", etcd]);
        if let Some(tls) = self.etcd.as_ref().and_then(|e| e.tls()) {
            cmd.args(tls.server_flags());
        }
        cmd.args(["--listen", &format!("{host_ip}:0")])
            .args(["--cluster-cidr", &lab_pod_range(octet)])
            .arg("--write-kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--data-dir")
            .arg(dir.join("server-data"))
            .args(&options.server_args)
            .env("RUST_LOG", &options.log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("server log file"));
        let mut server = Process {
            name: "bpfk-server".into(),
            child: Some(spawn_in(&mut cmd, None, None)),
            log,
        };
        let deadline = Instant::now() + START_DEADLINE;
        let api = loop {
            server.assert_running();
            if let Some(creds) = ApiCredentials::read(&self.kubeconfig) {
                if let (Some(addr), Ok((200, _))) =
                    (creds.addr(), creds.request("GET", "/readyz", None))
                {
                    self.credentials = Some(creds);
                    break addr;
                }
            }
            assert!(
                Instant::now() < deadline,
                "bpfk-server did not answer on {host_ip} within {START_DEADLINE:?}; log:\n{}",
                tail(&server.log(), 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        self.api = api;
        self.server = Some(server);
    }

    #[allow(clippy::too_many_arguments)]
    fn start_node(
        &mut self,
        options: &LabOptions,
        i: u8,
        octet: u8,
        ul: &str,
        cg2: &Path,
        images: &Path,
        dir: &Path,
    ) -> LabNode {
        let name = options.node_name(i);
        let ns = Netns::create(&format!("bpfk-{}-n{i}", options.id));
        let ip = Ipv4Addr::new(10, 250, octet, 10 + i);
        let mut node = LabNode {
            name: name.clone(),
            ip,
            cgroup: cg2.join(format!("bpfk-{name}")),
            agent_binary: options.binaries.agent.clone(),
            agent: None,
            containerd: None,
            netns: Some(ns),
            kubelet_client: None,
        };
        let ns = node.netns().to_string();
        let port = format!("n{i}");
        sh_or_panic(&[
            "ip",
            "-n",
            ul,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            UNDERLAY_IFACE,
            "netns",
            &ns,
        ]);
        sh_or_panic(&["ip", "-n", ul, "link", "set", &port, "master", "br0", "up"]);
        sh_or_panic(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            UNDERLAY_IFACE,
        ]);
        sh_or_panic(&["ip", "-n", &ns, "link", "set", UNDERLAY_IFACE, "up"]);
        for s in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv4.conf.ul0.rp_filter=0",
        ] {
            sh_or_panic(&["ip", "netns", "exec", &ns, "sysctl", "-qw", s]);
        }
        // Pins left by an earlier run that died (the agent would reuse its maps).
        node.teardown_pins();
        fs::create_dir_all(&node.cgroup)
            .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", node.cgroup.display()));
        let containerd = ContainerdProcess::start(ContainerdOptions {
            netns: Some(ns.clone()),
            cgroup_parent: Some(node.cgroup_parent()),
            registry_config_dir: Some(self.registry_hosts.clone()),
            ..Default::default()
        });
        if let Some(dir) = containerd.socket().parent() {
            self.id_lock
                .append(&format!("containerd {}\n", dir.display()));
        }
        crate::images::import_with_ctr(&containerd.socket(), images, containerd.snapshotter())
            .unwrap_or_else(|e| panic!("importing the stand-in images on {name} failed: {e}"));
        let log = dir.join(format!("bpfk-agent-{name}.log"));
        // the agent joins as a new machine would: the server's join token, its node
        // certificate by a CertificateSigningRequest
        let server = self.api_url();
        let token = self.join_token();
        let mut cmd = Command::new(&options.binaries.agent);
        cmd.args(["--node-name", &name, "--server", &server])
            .arg("--cert-dir")
            .arg(dir.join(format!("pki-{name}")))
            .env("BPFK_TOKEN", token.trim())
            .args(["--node-ip", &ip.to_string()])
            .args(["--underlay-iface", UNDERLAY_IFACE])
            .arg("--cgroup")
            .arg(&node.cgroup)
            .args(["--pin-root", PIN_ROOT])
            .args(["--kubelet", "--kubelet-port", &KUBELET_PORT.to_string()])
            // The node-local DNS server never forwards: there is no upstream in the lab.
            .arg("--dns-no-forward")
            .args(containerd.kubelet_runtime_args())
            .args(["--cgroup-parent", &node.cgroup_parent()])
            .args(["--pod-infra-container-image", crate::images::PAUSE_IMAGE])
            .args(extra_agent_args())
            .env("RUST_LOG", &options.log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("agent log file"));
        node.containerd = Some(containerd);
        node.kubelet_client = Some(self.kubelet_client_at(node.kubelet_addr()));
        node.agent = Some(Process {
            name: format!("bpfk-agent {name}"),
            child: Some(spawn_in(&mut cmd, Some(&ns), None)),
            log,
        });
        node
    }

    /// Waits as [`Lab::start`] says; returns each node's pod range.
    fn wait_nodes_ready(&mut self) -> Vec<String> {
        let deadline = Instant::now() + START_DEADLINE;
        let mut cidrs: Vec<Option<String>> = vec![None; self.nodes.len()];
        let api = self.credentials().clone();
        loop {
            let mut waiting = Vec::new();
            for (i, node) in self.nodes.iter_mut().enumerate() {
                if let Some(a) = node.agent.as_mut() {
                    a.assert_running();
                }
                match self_node(&api, &node.name) {
                    Some(n) if node_ready(&n) => {
                        cidrs[i] = n.spec.and_then(|s| s.pod_cidr);
                        if cidrs[i].is_none() {
                            waiting.push(format!("{}: no podCIDR", node.name));
                        }
                    }
                    _ => waiting.push(format!("{}: not Ready", node.name)),
                }
                if !node.pin_dir().join("link_cgroup_connect4").exists() {
                    waiting.push(format!("{}: datapath not loaded", node.name));
                }
                // any HTTP answer: the endpoint has its serving certificate
                if node.kubelet_client().request("GET", "/", None).is_err() {
                    waiting.push(format!("{}: kubelet endpoint not serving", node.name));
                }
            }
            if waiting.is_empty() {
                // every node routes every other node's pod range over the underlay
                for (i, node) in self.nodes.iter().enumerate() {
                    for (j, cidr) in cidrs.iter().enumerate() {
                        let Some(cidr) = cidr.as_deref().filter(|_| i != j) else {
                            continue;
                        };
                        let routes =
                            sh_or_panic(&["ip", "-n", node.netns(), "route", "show", cidr]);
                        if routes.trim().is_empty() {
                            waiting.push(format!("{}: no route to {cidr}", node.name));
                        }
                    }
                }
            }
            if waiting.is_empty() {
                return cidrs.into_iter().flatten().collect();
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|n| format!("--- {} agent:\n{}", n.name, tail(&n.agent_log(), 40)))
                    .collect();
                panic!(
                    "lab nodes not ready within {START_DEADLINE:?}: {waiting:?}\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The lab registry's name, `registry.bpfk.lab:5000` (every node's containerd maps it
    /// to the registry on 10.250.k.1).
    pub fn registry(&self) -> String {
        self.registry
            .as_ref()
            .map(LabRegistry::name)
            .unwrap_or_default()
    }

    /// The registry behind basic auth, `registry.bpfk.lab:5001` (user
    /// [`crate::registry::AUTH_USER`], password [`crate::registry::AUTH_PASSWORD`]); it holds
    /// `private/nginx:1.14.2`.
    pub fn auth_registry(&self) -> String {
        self.registry
            .as_ref()
            .map(LabRegistry::auth_name)
            .unwrap_or_default()
    }

    /// A client certificate of the cluster CA for `user` in `groups` (the lab acts as the
    /// cluster's operator, as `kubeadm kubeconfig user` does with the CA key).
    /// The API server's kubelet client credentials (its `apiserver-kubelet-client`
    /// certificate, the cluster CA) aimed at the kubelet endpoint `addr`.
    fn kubelet_client_at(&self, addr: SocketAddr) -> ApiCredentials {
        let pki = self.dir().join("server-data").join("pki");
        let read = |f: &str| fs::read_to_string(pki.join(f)).expect("the server's PKI");
        ApiCredentials {
            identity: Some((
                read("apiserver-kubelet-client.crt"),
                read("apiserver-kubelet-client.key"),
            )),
            token: None,
            ..self.credentials().at(addr)
        }
    }

    pub fn issue_client_cert(&self, user: &str, groups: &[&str]) -> bpfk_auth::pki::CertKey {
        let pki = self.dir().join("server-data").join("pki");
        crate::api_client::issue_client_cert(&pki, user, groups)
    }

    /// The join token the server wrote under its data directory (it writes it once its
    /// system namespaces exist, just after it answers).
    pub fn join_token(&self) -> String {
        let path = self.dir().join("server-data").join("join-token");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match fs::read_to_string(&path) {
                Ok(text) if !text.trim().is_empty() => return text,
                _ if std::time::Instant::now() > deadline => {
                    panic!("bpfk-server wrote no join token to {}", path.display())
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Push [`crate::images::KUBECTL_IMAGE`] (the host's kubectl) to the lab registry, for
    /// pods that are API clients; returns the reference pods pull it by.
    pub fn push_kubectl_image(&self) -> String {
        let image = crate::images::kubectl_image()
            .unwrap_or_else(|e| panic!("{}: {e} (install kubectl)", crate::images::HOST_KUBECTL));
        let busybox = fs::read(crate::images::DEFAULT_BUSYBOX).expect("busybox-static");
        self.registry
            .as_ref()
            .expect("the lab registry")
            .push_image(&image, &busybox);
        let repository = crate::images::KUBECTL_IMAGE.trim_start_matches("docker.io/");
        format!("{}/{repository}", self.registry())
    }

    /// Both registries' logs.
    pub fn registry_logs(&self) -> String {
        self.registry
            .as_ref()
            .map(LabRegistry::logs)
            .unwrap_or_default()
    }

    /// The API server address (10.250.k.1:PORT), reachable from the host and every node.
    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    /// `https://10.250.k.1:PORT`
    pub fn api_url(&self) -> String {
        format!("https://{}", self.api)
    }

    /// The admin credentials of the kubeconfig the server wrote.
    pub fn credentials(&self) -> &ApiCredentials {
        self.credentials.as_ref().expect("the lab's server is up")
    }

    /// The host end of the lab's underlay veth (`bpfkl<k>h`, holding the API address).
    pub fn host_iface(&self) -> &str {
        self.underlay
            .as_ref()
            .map(|u| u.host_if.as_str())
            .unwrap_or_default()
    }

    /// The routes this lab added to the host's network namespace (as `ip route` arguments),
    /// removed again by its teardown.
    pub fn host_routes(&self) -> Vec<String> {
        self.host_routes
            .as_ref()
            .map(|r| r.added.clone())
            .unwrap_or_default()
    }

    /// The kubeconfig the server wrote (pointing at [`api_url`](Self::api_url)).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The lab's directory (kubeconfig, logs, images).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/"))
    }

    pub fn nodes(&self) -> &[LabNode] {
        &self.nodes
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> &LabNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no lab node {name}"))
    }

    /// The server's log so far.
    pub fn server_log(&self) -> String {
        self.server.as_ref().map(Process::log).unwrap_or_default()
    }

    /// A kube-rs client for the server.
    pub fn client(&self) -> kube::Client {
        self.credentials().kube_client()
    }

    /// Panics (with the log tail) when an agent or the server has exited.
    pub fn assert_running(&mut self) {
        if let Some(s) = self.server.as_mut() {
            s.assert_running();
        }
        for n in &mut self.nodes {
            if let Some(a) = n.agent.as_mut() {
                a.assert_running();
            }
        }
    }

    /// Polls `check` every [`WAIT_POLL`] until it gives a value. Panics after `within`,
    /// naming `what` and the last reason `check` gave, or at once when a lab process died.
    pub async fn wait_for<T, Fut>(
        &mut self,
        what: &str,
        within: Duration,
        mut check: impl FnMut() -> Fut,
    ) -> T
    where
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let deadline = Instant::now() + within;
        loop {
            self.assert_running();
            match check().await {
                Ok(v) => return v,
                Err(last) => wait_or_give_up(what, within, deadline, &last).await,
            }
        }
    }

    /// [`Lab::wait_for`] for a check that needs the lab itself (its nodes, its kubeconfig).
    pub async fn wait_with<T>(
        &mut self,
        what: &str,
        within: Duration,
        mut check: impl FnMut(&Lab) -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            self.assert_running();
            match check(self) {
                Ok(v) => return v,
                Err(last) => wait_or_give_up(what, within, deadline, &last).await,
            }
        }
    }
}

/// How often [`Lab::wait_for`] checks.
pub const WAIT_POLL: Duration = Duration::from_millis(300);

async fn wait_or_give_up(what: &str, within: Duration, deadline: Instant, last: &str) {
    assert!(
        Instant::now() < deadline,
        "timed out after {within:?} waiting for {what}; last: {last}"
    );
    tokio::time::sleep(WAIT_POLL).await;
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "lab: bpfk-server log tail:\n{}",
                tail(&self.server_log(), 40)
            );
            for n in &self.nodes {
                eprintln!(
                    "lab: {} agent log tail:\n{}",
                    n.name,
                    tail(&n.agent_log(), 60)
                );
            }
        }
        // Nodes (agents, pins, containerd, cgroups, netns), then the control plane, then
        // the underlay and the files.
        while let Some(n) = self.nodes.pop() {
            drop(n);
        }
        drop(self.registry.take());
        drop(self.server.take());
        drop(self.etcd.take());
        drop(self.host_routes.take());
        drop(self.underlay.take());
        drop(self.dir.take());
    }
}

fn self_node(api: &ApiCredentials, name: &str) -> Option<Node> {
    match api.request("GET", &format!("/api/v1/nodes/{name}"), None) {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Labs whose process died without its drop (SIGKILL, a test-runner timeout): their id
/// lock file is still there but nobody holds the lock. Removes their namespaces, pins,
/// the processes left in their node cgroups, and those cgroups.
fn sweep_dead_labs() {
    let Ok(entries) = fs::read_dir("/run") else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(id) = file
            .strip_prefix("bpfk-lab-id-")
            .and_then(|f| f.strip_suffix(".lock"))
        else {
            continue;
        };
        let Some(lock) = LockFile::try_take(&format!("id-{id}")) else {
            continue; // a running lab
        };
        eprintln!("lab: cleaning up after lab {id:?}, whose process died");
        let record = lock.contents();
        let entries = |kind: &str| -> Vec<String> {
            let prefix = format!("{kind} ");
            record
                .lines()
                .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
                .collect()
        };
        for route in entries("route") {
            delete_host_route(&route);
        }
        // containerd died with the lab (PDEATHSIG), its shims did not
        for dir in entries("containerd") {
            kill_shims_of(&Path::new(&dir).join("containerd.sock"));
        }
        for node in entries("node") {
            let node = node.as_str();
            let pins = Path::new(PIN_ROOT).join(node);
            if let Ok(files) = fs::read_dir(&pins) {
                for f in files.flatten() {
                    let _ = fs::remove_file(f.path());
                }
            }
            let _ = fs::remove_dir(&pins);
            crate::cgroups::kill_and_remove(&format!("bpfk-{node}"));
        }
        for dir in entries("containerd").into_iter().chain(entries("dir")) {
            let dir = PathBuf::from(dir);
            let mut mounts = crate::containerd::mounts_under(&dir);
            mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            for m in mounts {
                if let Ok(c) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) {
                    // SAFETY: umount2 with a valid NUL-terminated path.
                    unsafe {
                        libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                    }
                }
            }
            let _ = fs::remove_dir_all(&dir);
        }
        sweep_stale_netns(id);
        drop(lock);
    }
}

/// Kill the containerd shims serving `socket` (their `-address` argument).
fn kill_shims_of(socket: &Path) {
    let want = socket.as_os_str().as_encoded_bytes();
    let Ok(procs) = fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.windows(2).any(|w| w[0] == b"-address" && w[1] == want) {
            // SAFETY: kill(2) of a shim of the dead lab's containerd.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Namespaces `bpfk-<id>-*` left by a lab with this id that died without cleaning up (the
/// caller holds the id's lock, so no running lab owns them).
fn sweep_stale_netns(id: &str) {
    let prefix = format!("bpfk-{id}-");
    let Ok(entries) = fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) {
            eprintln!("lab: removing stale network namespace {name}");
            sh_quiet(&["ip", "netns", "del", &name]);
        }
    }
}
