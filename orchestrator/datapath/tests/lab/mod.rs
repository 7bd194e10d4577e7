//! A two-node lab built from network namespaces and veth pairs:
//!
//! ```text
//!   pod ns (eth0 10.244.N.x/32) ──veth── node ns N (vpX, ul0 10.250.0.N/24) ──veth── underlay ns (br0)
//! ```
//!
//! Names are unique per lab so tests run in parallel; every namespace,
//! cgroup, pin directory and process is removed on drop, even on panic.
//! There is no route out of the lab: node namespaces only know
//! 10.250.0.0/24, their pods and (via the datapath) the other node's pods.
#![allow(dead_code)]

use std::{
    fs,
    io::{BufRead, BufReader},
    net::Ipv4Addr,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use bpfk_datapath::{Datapath, DatapathConfig, Ipv4Cidr, PeerNode};

pub const LAB_BIN: &str = env!("CARGO_BIN_EXE_bpfk-datapath-lab");
pub const PIN_ROOT: &str = "/sys/fs/bpf/bpfk";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Fails the test loudly unless it runs as root with the tools it needs.
pub fn require_root_and_tools() {
    // SAFETY: plain getter.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "the datapath lab tests need root (netns, eBPF, cgroups): run them as root"
    );
    for tool in ["ip", "bpftool"] {
        let ok = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "the datapath lab tests need `{tool}` on PATH");
    }
}

/// Runs a command and panics with its output when it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sh_quiet(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs `f` on a thread that has entered the network namespace `ns`.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            use std::os::fd::AsRawFd;
            // SAFETY: valid netns fd; only this thread changes namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread panicked")
    })
}

pub struct Node {
    pub index: u8,
    pub ns: String,
    pub name: String,
    pub addr: Ipv4Addr,
    pub pod_cidr: Ipv4Cidr,
    pub cgroup: PathBuf,
    pub pods: Vec<Pod>,
}

pub struct Pod {
    pub ns: String,
    pub addr: Ipv4Addr,
    pub host_if: String,
}

pub struct Lab {
    pub id: String,
    pub underlay: String,
    pub nodes: Vec<Node>,
    cgroup_root: PathBuf,
    namespaces: Vec<String>,
}

fn cgroup2_mount() -> PathBuf {
    bpfk_datapath::sys::cgroup2_mount().expect("cgroup2 must be mounted for the lab tests")
}

impl Lab {
    /// Two nodes with `pods_per_node` pods each.
    pub fn new(pods_per_node: u8) -> Lab {
        require_root_and_tools();
        sweep_stale_labs();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:x}x{n}", std::process::id());
        let underlay = format!("bpfk-{id}-ul");
        let cgroup_root = cgroup2_mount().join(format!("bpfk-lab-{id}"));
        let mut lab = Lab {
            id: id.clone(),
            underlay: underlay.clone(),
            nodes: Vec::new(),
            cgroup_root: cgroup_root.clone(),
            namespaces: Vec::new(),
        };
        fs::create_dir_all(&cgroup_root).expect("create lab cgroup");
        lab.add_ns(&underlay);
        sh(&[
            "ip", "-n", &underlay, "link", "add", "br0", "type", "bridge",
        ]);
        sh(&["ip", "-n", &underlay, "link", "set", "br0", "up"]);
        for i in 1..=2u8 {
            let ns = format!("bpfk-{id}-n{i}");
            lab.add_ns(&ns);
            let port = format!("ul-n{i}");
            sh(&[
                "ip", "-n", &underlay, "link", "add", &port, "type", "veth", "peer", "name", "ul0",
                "netns", &ns,
            ]);
            sh(&[
                "ip", "-n", &underlay, "link", "set", &port, "master", "br0", "up",
            ]);
            let addr = Ipv4Addr::new(10, 250, 0, i);
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "ul0",
            ]);
            sh(&["ip", "-n", &ns, "link", "set", "ul0", "up"]);
            for s in [
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.ul0.rp_filter=0",
            ] {
                sh(&["ip", "netns", "exec", &ns, "sysctl", "-qw", s]);
            }
            let cgroup = cgroup_root.join(format!("n{i}"));
            fs::create_dir_all(&cgroup).expect("create node cgroup");
            let mut node = Node {
                index: i,
                ns: ns.clone(),
                name: format!("lab-{id}-n{i}"),
                addr,
                pod_cidr: format!("10.244.{i}.0/24").parse().unwrap(),
                cgroup,
                pods: Vec::new(),
            };
            for j in 1..=pods_per_node {
                let pod_ns = format!("bpfk-{id}-n{i}p{j}");
                lab.add_ns(&pod_ns);
                let host_if = format!("vp{j}");
                let pod_addr = Ipv4Addr::new(10, 244, i, 10 + j);
                sh(&[
                    "ip", "-n", &ns, "link", "add", &host_if, "type", "veth", "peer", "name",
                    "eth0", "netns", &pod_ns,
                ]);
                sh(&[
                    "ip",
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    "169.254.1.1/32",
                    "dev",
                    &host_if,
                ]);
                sh(&["ip", "-n", &ns, "link", "set", &host_if, "up"]);
                sh(&[
                    "ip",
                    "-n",
                    &ns,
                    "route",
                    "add",
                    &format!("{pod_addr}/32"),
                    "dev",
                    &host_if,
                ]);
                sh(&[
                    "ip",
                    "-n",
                    &pod_ns,
                    "addr",
                    "add",
                    &format!("{pod_addr}/32"),
                    "dev",
                    "eth0",
                ]);
                sh(&["ip", "-n", &pod_ns, "link", "set", "eth0", "up"]);
                sh(&["ip", "-n", &pod_ns, "link", "set", "lo", "up"]);
                sh(&[
                    "ip",
                    "-n",
                    &pod_ns,
                    "route",
                    "add",
                    "169.254.1.1",
                    "dev",
                    "eth0",
                    "scope",
                    "link",
                ]);
                sh(&[
                    "ip",
                    "-n",
                    &pod_ns,
                    "route",
                    "add",
                    "default",
                    "via",
                    "169.254.1.1",
                    "dev",
                    "eth0",
                ]);
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    &ns,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{host_if}.rp_filter=0"),
                ]);
                node.pods.push(Pod {
                    ns: pod_ns,
                    addr: pod_addr,
                    host_if,
                });
            }
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            lab.nodes.push(node);
        }
        lab
    }

    fn add_ns(&mut self, ns: &str) {
        sh(&["ip", "netns", "add", ns]);
        self.namespaces.push(ns.to_string());
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// The datapath config of node `i`.
    pub fn config(&self, i: usize) -> DatapathConfig {
        let n = &self.nodes[i];
        DatapathConfig {
            pin_root: Some(PathBuf::from(PIN_ROOT)),
            cgroup: Some(n.cgroup.clone()),
            underlay_iface: Some("ul0".into()),
            node_addr: Some(n.addr),
            pod_cidr: Some(n.pod_cidr),
            ..Default::default()
        }
    }

    /// The other nodes, as peers of node `i`.
    pub fn peers(&self, i: usize) -> Vec<PeerNode> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| PeerNode {
                pod_cidr: n.pod_cidr,
                node_addr: n.addr,
            })
            .collect()
    }

    /// Loads node `i`'s datapath in its namespace, with peer routes and TC on
    /// every pod interface.
    pub fn load_datapath(&self, i: usize) -> Datapath {
        let n = &self.nodes[i];
        let cfg = self.config(i);
        let peers = self.peers(i);
        let ifs: Vec<String> = n.pods.iter().map(|p| p.host_if.clone()).collect();
        let name = n.name.clone();
        in_netns(&n.ns, move || {
            let mut dp = Datapath::load(&name, cfg).expect("load datapath");
            dp.sync_peers(&peers).expect("peer routes");
            for i in &ifs {
                dp.attach_interface(i).expect("attach tc");
            }
            dp
        })
    }

    pub fn pin_dir(&self, i: usize) -> PathBuf {
        Path::new(PIN_ROOT).join(&self.nodes[i].name)
    }

    /// The ids of the links and programs node `i`'s datapath has pinned.
    pub fn attachments(&self, i: usize) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.pin_dir(i)).expect("pin dir").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("link_") {
                continue;
            }
            let j = sh(&[
                "bpftool",
                "-j",
                "link",
                "show",
                "pinned",
                e.path().to_str().unwrap(),
            ]);
            let v: serde_json::Value = serde_json::from_str(&j).expect("bpftool json");
            out.push((v["id"].as_u64().unwrap(), v["prog_id"].as_u64().unwrap()));
        }
        out
    }

    /// Asserts that nothing of node `i`'s datapath is left: no pins, none of
    /// the links and programs it had (`before`, from [`Lab::attachments`]),
    /// nothing on its cgroup.
    pub fn assert_clean(&self, i: usize, before: &[(u64, u64)]) {
        let n = &self.nodes[i];
        assert!(
            !self.pin_dir(i).exists(),
            "pin dir {} left behind",
            self.pin_dir(i).display()
        );
        let cg = sh(&["bpftool", "cgroup", "show", n.cgroup.to_str().unwrap()]);
        assert!(
            !cg.contains("bpfk"),
            "programs left on {}: {cg}",
            n.cgroup.display()
        );
        // Links and programs are freed asynchronously (RCU): allow a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        let exists = |what: &str, id: u64| {
            Command::new("bpftool")
                .args([what, "show", "id", &id.to_string()])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        for (link, prog) in before {
            while exists("link", *link) || exists("prog", *prog) {
                assert!(
                    Instant::now() < deadline,
                    "link {link} or program {prog} left behind after teardown"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in &self.nodes {
            let _ = bpfk_datapath::teardown_pins(Path::new(PIN_ROOT), &n.name);
        }
        for ns in self.namespaces.iter().rev() {
            sh_quiet(&["ip", "netns", "del", ns]);
        }
        // Processes were killed by their guards; cgroups empty shortly after.
        for n in &self.nodes {
            remove_cgroup(&n.cgroup);
        }
        remove_cgroup(&self.cgroup_root);
    }
}

/// Whether a lab id (`<pid hex>x<n>`) belongs to a process that is gone.
fn lab_owner_dead(id: &str) -> bool {
    id.split_once('x')
        .and_then(|(pid, n)| {
            n.parse::<u32>().ok()?;
            u32::from_str_radix(pid, 16).ok()
        })
        .map(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        .unwrap_or(false)
}

/// Removes what labs of killed test runs left behind (a signal skips Drop):
/// their namespaces, pinned datapaths and cgroups.
fn sweep_stale_labs() {
    if let Ok(entries) = fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_prefix("bpfk-").and_then(|r| r.split('-').next());
            if id.is_some_and(lab_owner_dead) {
                sh_quiet(&["ip", "netns", "del", &name]);
            }
        }
    }
    if let Ok(entries) = fs::read_dir(PIN_ROOT) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_prefix("lab-").and_then(|r| r.split('-').next());
            if id.is_some_and(lab_owner_dead) {
                let _ = bpfk_datapath::teardown_pins(Path::new(PIN_ROOT), &name);
            }
        }
    }
    let cg2 = cgroup2_mount();
    if let Ok(entries) = fs::read_dir(&cg2) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.strip_prefix("bpfk-lab-").is_some_and(lab_owner_dead) {
                for child in fs::read_dir(e.path()).into_iter().flatten().flatten() {
                    if child.path().is_dir() {
                        remove_cgroup(&child.path());
                    }
                }
                remove_cgroup(&e.path());
            }
        }
    }
}

fn remove_cgroup(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.exists() && fs::remove_dir(p).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process in a lab namespace, killed (by PID) on drop.
pub struct Proc {
    child: Child,
    pub stdout: BufReader<ChildStdout>,
}

impl Proc {
    /// Starts the lab helper in `ns`, inside `cgroup` when given.
    pub fn spawn(ns: &str, cgroup: Option<&Path>, args: &[&str]) -> Proc {
        let netns = fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
        let procs = cgroup.map(|c| {
            fs::OpenOptions::new()
                .write(true)
                .open(c.join("cgroup.procs"))
                .expect("open cgroup.procs")
        });
        let mut cmd = Command::new(LAB_BIN);
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env("RUST_LOG", "info");
        use std::os::fd::AsRawFd;
        let fd = netns.as_raw_fd();
        let procs_fd = procs.as_ref().map(|f| f.as_raw_fd());
        // SAFETY: only async-signal-safe calls (setns, open, write, close)
        // between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Die with the test, even when it is killed (Drop never runs).
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(p) = procs_fd {
                    // "0" moves the writing process.
                    if libc::write(p, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn lab helper");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        drop(netns);
        drop(procs);
        Proc { child, stdout }
    }

    /// Reads one stdout line (panics on EOF).
    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.stdout.read_line(&mut l).expect("read helper output");
        assert!(!l.is_empty(), "helper exited without output");
        l.trim().to_string()
    }

    pub fn json(&mut self) -> serde_json::Value {
        let l = self.line();
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("bad helper output {l:?}: {e}"))
    }

    pub fn wait_ready(&mut self) {
        assert_eq!(self.line(), "ready");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs a client to completion and returns its JSON output.
pub fn run_client(ns: &str, cgroup: Option<&Path>, args: &[&str]) -> serde_json::Value {
    let mut p = Proc::spawn(ns, cgroup, args);
    let v = p.json();
    let _ = p.child.wait();
    v
}
