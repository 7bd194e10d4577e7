//! The two-node network-namespace lab of the datapath's lab tests (`lab/tests/datapath_*.rs`)
//! and the datapath benchmark (`bench/src/bin/datapath_bench.rs`):
//!
//! ```text
//!   client pod 10.244.1.11 ─veth─┐
//!   server pod 10.244.1.12 ─veth─ node ns 1 (ul0 10.250.0.1/24) ─veth─┐
//!                                                                    underlay ns (br0)
//!   server pod 10.244.2.11 ─veth─ node ns 2 (ul0 10.250.0.2/24) ─veth─┘
//! ```
//!
//! Node namespaces know the underlay, their pods and (from the datapath's peer routes, or
//! static ones with [`NetlabOptions::static_peer_routes`]) the other node's pod range, and
//! nothing else: there is no route out of the lab. Names carry the owner's PID, so labs run in
//! parallel. Every namespace, cgroup, pinned datapath and process is removed on drop (and
//! child processes die with their owner through `PR_SET_PDEATHSIG`); what a killed owner left
//! is removed by the next lab that starts.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use bpfk_datapath::{DatapathConfig, PeerNode};

use crate::cgroups::remove_dir_waiting;
use crate::host::sh_quiet;
use crate::netns::enter_before_exec;

/// Root of the datapath pins (the `bpfk-datapath` default).
pub const PIN_ROOT: &str = bpfk_datapath::DEFAULT_PIN_ROOT;

/// Set once SIGINT/SIGTERM/SIGHUP arrived: every step stops and unwinds.
pub static ABORTED: AtomicBool = AtomicBool::new(false);

/// PIDs of the lab processes alive right now (killed on a signal).
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Blocks SIGINT, SIGTERM and SIGHUP in this (still single-threaded) process
/// and starts a thread that waits for them: on one it kills the lab
/// processes by PID and sets [`ABORTED`], so the main thread returns an error
/// and the Drop guards clean up. Call first thing in `main`.
pub fn install_signal_guard() -> Result<()> {
    // SAFETY: plain libc signal-set manipulation on a local set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            bail!("pthread_sigmask: {}", std::io::Error::from_raw_os_error(rc));
        }
        set
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig = 0;
            // SAFETY: `set` is a valid, initialised signal set.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                continue;
            }
            eprintln!("signal {sig}: stopping, cleaning up the lab");
            ABORTED.store(true, Ordering::SeqCst);
            let pids = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
            for pid in pids {
                if let Ok(pid) = i32::try_from(pid) {
                    // SAFETY: kill(2) on a PID this process started and has not reaped.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Errors out when a signal asked to stop.
pub fn check_aborted() -> Result<()> {
    if ABORTED.load(Ordering::SeqCst) {
        bail!("interrupted by a signal");
    }
    Ok(())
}

/// Runs a command to completion ([`crate::host::sh`]) unless a signal asked to stop.
pub fn sh(args: &[&str]) -> Result<String> {
    check_aborted()?;
    Ok(crate::host::sh(args)?)
}

/// `sh` inside network namespace `ns` (`ip netns exec`).
pub fn sh_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    sh(&all)
}

/// A pod: its namespace, address and the host side of its veth.
#[derive(Clone, Debug)]
pub struct Pod {
    pub ns: String,
    pub addr: Ipv4Addr,
    pub host_if: String,
}

/// A node: its namespace, underlay address, pod range and cgroup.
#[derive(Clone, Debug)]
pub struct Node {
    pub ns: String,
    /// Datapath node name (also its pin directory name).
    pub name: String,
    pub addr: Ipv4Addr,
    pub pod_cidr: bpfk_datapath::Ipv4Cidr,
    pub cgroup: PathBuf,
    pub pods: Vec<Pod>,
}

/// What to build.
#[derive(Clone, Copy, Debug)]
pub struct NetlabOptions {
    /// Node 1 gets `pods[0]` pods, node 2 `pods[1]`; pod `j` of node `i` is `10.244.i.(10 + j)`.
    pub pods: [u8; 2],
    /// Who builds it (`lab`, `bench`): the first part of node names and so of pin directories.
    pub owner: &'static str,
    /// Route each node's pod range to the other over the underlay from the start (the benchmark
    /// compares paths without a datapath); otherwise the datapath's peer routes do it.
    pub static_peer_routes: bool,
}

/// Labs started by this process so far (part of the id).
static LABS: AtomicU32 = AtomicU32::new(0);

/// The lab; dropping it removes everything it created.
pub struct Lab {
    /// `<owner pid, hex>x<n>`: in every namespace, node and cgroup name.
    pub id: String,
    /// The underlay namespace (the bridge).
    pub underlay: String,
    pub nodes: Vec<Node>,
    namespaces: Vec<String>,
    cgroup_root: PathBuf,
}

impl Lab {
    /// Builds the lab `options` describe, after removing what killed owners left behind.
    pub fn new(options: NetlabOptions) -> Result<Lab> {
        sweep_stale_labs();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:x}x{n}", std::process::id());
        let cgroup_root = bpfk_datapath::sys::cgroup2_mount()
            .context("cgroup2 mount")?
            .join(format!("bpfk-netlab-{id}"));
        let underlay = format!("bpfk-{id}-ul");
        let mut lab = Lab {
            id: id.clone(),
            underlay: underlay.clone(),
            nodes: Vec::new(),
            namespaces: Vec::new(),
            cgroup_root: cgroup_root.clone(),
        };
        fs::create_dir_all(&cgroup_root)
            .with_context(|| format!("creating {}", cgroup_root.display()))?;
        lab.add_ns(&underlay)?;
        sh(&[
            "ip", "-n", &underlay, "link", "add", "br0", "type", "bridge",
        ])?;
        sh(&["ip", "-n", &underlay, "link", "set", "br0", "up"])?;
        for i in 1..=2u8 {
            let ns = format!("bpfk-{id}-n{i}");
            lab.add_ns(&ns)?;
            let port = format!("ul-n{i}");
            sh(&[
                "ip", "-n", &underlay, "link", "add", &port, "type", "veth", "peer", "name", "ul0",
                "netns", &ns,
            ])?;
            sh(&[
                "ip", "-n", &underlay, "link", "set", &port, "master", "br0", "up",
            ])?;
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
            ])?;
            sh(&["ip", "-n", &ns, "link", "set", "ul0", "up"])?;
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            for s in [
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.ul0.rp_filter=0",
            ] {
                sh_in(&ns, &["sysctl", "-qw", s])?;
            }
            let cgroup = cgroup_root.join(format!("n{i}"));
            fs::create_dir_all(&cgroup)
                .with_context(|| format!("creating {}", cgroup.display()))?;
            let mut node = Node {
                ns: ns.clone(),
                name: format!("{}-{id}-n{i}", options.owner),
                addr,
                pod_cidr: format!("10.244.{i}.0/24").parse()?,
                cgroup,
                pods: Vec::new(),
            };
            for j in 1..=options.pods[usize::from(i - 1)] {
                let pod = lab.add_pod(&ns, i, j)?;
                node.pods.push(pod);
            }
            lab.nodes.push(node);
        }
        if options.static_peer_routes {
            lab.add_static_peer_routes()?;
        }
        Ok(lab)
    }

    /// Each node's route to the other's pod range over the underlay (what the datapath's peer
    /// routes do).
    fn add_static_peer_routes(&self) -> Result<()> {
        for (me, other) in [(0usize, 1usize), (1, 0)] {
            let (ns, cidr, via) = (
                &self.nodes[me].ns,
                self.nodes[other].pod_cidr,
                self.nodes[other].addr,
            );
            sh(&[
                "ip",
                "-n",
                ns,
                "route",
                "replace",
                &cidr.to_string(),
                "via",
                &via.to_string(),
                "dev",
                "ul0",
            ])?;
        }
        Ok(())
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// The datapath config of node `i`: pins under [`PIN_ROOT`], its cgroup, the underlay.
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

    /// Node `i`'s pin directory.
    pub fn pin_dir(&self, i: usize) -> PathBuf {
        Path::new(PIN_ROOT).join(&self.nodes[i].name)
    }

    fn add_ns(&mut self, ns: &str) -> Result<()> {
        sh(&["ip", "netns", "add", ns])?;
        self.namespaces.push(ns.to_string());
        Ok(())
    }

    fn add_pod(&mut self, node_ns: &str, i: u8, j: u8) -> Result<Pod> {
        let pod_ns = format!("{node_ns}p{j}");
        self.add_ns(&pod_ns)?;
        let host_if = format!("vp{j}");
        let addr = Ipv4Addr::new(10, 244, i, 10 + j);
        let a32 = format!("{addr}/32");
        sh(&[
            "ip", "-n", node_ns, "link", "add", &host_if, "type", "veth", "peer", "name", "eth0",
            "netns", &pod_ns,
        ])?;
        sh(&[
            "ip",
            "-n",
            node_ns,
            "addr",
            "add",
            "169.254.1.1/32",
            "dev",
            &host_if,
        ])?;
        sh(&["ip", "-n", node_ns, "link", "set", &host_if, "up"])?;
        sh(&["ip", "-n", node_ns, "route", "add", &a32, "dev", &host_if])?;
        sh(&["ip", "-n", &pod_ns, "addr", "add", &a32, "dev", "eth0"])?;
        sh(&["ip", "-n", &pod_ns, "link", "set", "eth0", "up"])?;
        sh(&["ip", "-n", &pod_ns, "link", "set", "lo", "up"])?;
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
        ])?;
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
        ])?;
        sh_in(
            node_ns,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv4.conf.{host_if}.rp_filter=0"),
            ],
        )?;
        // Short connections in a loop: let the client reuse TIME_WAIT ports.
        sh_in(&pod_ns, &["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"])?;
        Ok(Pod {
            ns: pod_ns,
            addr,
            host_if,
        })
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
            remove_dir_waiting(&n.cgroup);
        }
        remove_dir_waiting(&self.cgroup_root);
    }
}

/// Whether a lab id (`<pid hex>x<n>`) belongs to a process that is gone.
fn owner_dead(id: &str) -> bool {
    id.split_once('x')
        .and_then(|(pid, n)| {
            n.parse::<u32>().ok()?;
            u32::from_str_radix(pid, 16).ok()
        })
        .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// Removes what labs of killed owners left behind (a signal skips Drop): their namespaces
/// (`bpfk-<id>-*`), pinned datapaths (`<owner>-<id>-n<i>`) and cgroups (`bpfk-netlab-<id>`).
fn sweep_stale_labs() {
    let id_after = |name: &str, prefix_parts: usize| -> Option<String> {
        name.split('-').nth(prefix_parts).map(str::to_string)
    };
    for name in dir_names(Path::new(crate::netns::NETNS_DIR)) {
        if name.starts_with("bpfk-") && id_after(&name, 1).is_some_and(|id| owner_dead(&id)) {
            sh_quiet(&["ip", "netns", "del", &name]);
        }
    }
    for name in dir_names(Path::new(PIN_ROOT)) {
        if id_after(&name, 1).is_some_and(|id| owner_dead(&id)) {
            let _ = bpfk_datapath::teardown_pins(Path::new(PIN_ROOT), &name);
        }
    }
    let Ok(cg2) = bpfk_datapath::sys::cgroup2_mount() else {
        return;
    };
    for name in dir_names(&cg2) {
        if name.strip_prefix("bpfk-netlab-").is_some_and(owner_dead) {
            for node in dir_names(&cg2.join(&name)) {
                remove_dir_waiting(&cg2.join(&name).join(node));
            }
            remove_dir_waiting(&cg2.join(&name));
        }
    }
}

/// The names of the directories (or files) in `dir`; none when it cannot be read.
fn dir_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// A process started in a lab namespace; killed by PID and reaped on drop.
pub struct Proc {
    child: Option<Child>,
    pid: u32,
}

fn command_in(ns: &str, cgroup: Option<&Path>, args: &[&str]) -> Result<Command> {
    check_aborted()?;
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]);
    enter_before_exec(&mut cmd, Some(ns), cgroup).with_context(|| format!("{args:?} in {ns}"))?;
    Ok(cmd)
}

/// Starts `cmd` and records its pid, so an interrupted run kills it.
fn spawn_tracked(cmd: &mut Command, args: &[&str]) -> Result<(Child, u32)> {
    let child = cmd.spawn().with_context(|| format!("starting {args:?}"))?;
    let pid = child.id();
    if let Ok(mut l) = LIVE.lock() {
        l.push(pid);
    }
    Ok((child, pid))
}

/// Forgets a pid recorded by [`spawn_tracked`] once its process is reaped.
fn untrack(pid: u32) {
    if let Ok(mut l) = LIVE.lock() {
        l.retain(|p| *p != pid);
    }
}

impl Proc {
    /// Starts `args` in `ns` (inside `cgroup` when given), output discarded.
    pub fn spawn(ns: &str, cgroup: Option<&Path>, args: &[&str]) -> Result<Proc> {
        let mut cmd = command_in(ns, cgroup, args)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (child, pid) = spawn_tracked(&mut cmd, args)?;
        Ok(Proc {
            child: Some(child),
            pid,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        untrack(self.pid);
    }
}

/// Runs `args` in `ns` (inside `cgroup` when given) to completion, killing
/// it after `limit`. Returns its output and the CPU time (user + system) it
/// used.
pub fn run_in(
    ns: &str,
    cgroup: Option<&Path>,
    args: &[&str],
    limit: Duration,
) -> Result<(Output, Duration)> {
    let mut cmd = command_in(ns, cgroup, args)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (child, pid) = spawn_tracked(&mut cmd, args)?;
    // A watchdog kills the client if it overruns its bound.
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let watchdog = std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        while !done2.load(Ordering::SeqCst) {
            if Instant::now() > deadline {
                if let Ok(p) = i32::try_from(pid) {
                    // SAFETY: kill(2) on our unreaped child.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let out = wait_with_rusage(child);
    done.store(true, Ordering::SeqCst);
    let _ = watchdog.join();
    untrack(pid);
    check_aborted()?;
    out.with_context(|| format!("waiting for {args:?}"))
}

/// Like `Child::wait_with_output`, but reaps with wait4 to get the child's
/// CPU time.
fn wait_with_rusage(mut child: Child) -> Result<(Output, Duration)> {
    use std::io::Read;
    let mut so = child.stdout.take().context("stdout")?;
    let mut se = child.stderr.take().context("stderr")?;
    let err_thread = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let mut stdout = Vec::new();
    let _ = so.read_to_end(&mut stdout);
    let stderr = err_thread.join().unwrap_or_default();
    let pid = i32::try_from(child.id()).context("pid")?;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, valid pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if rc != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    let cpu = tv(ru.ru_utime) + tv(ru.ru_stime);
    use std::os::unix::process::ExitStatusExt;
    Ok((
        Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout,
            stderr,
        },
        cpu,
    ))
}
