//! The datapath lab tests' side of [`bpfk_lab::netlab`]: the two-node lab built for a test
//! (failing the test loudly when something is missing), each node's datapath loaded inside its
//! namespace, the checks that nothing of a torn-down datapath is left, and the
//! `bpfk-datapath-lab` helpers (servers, bounded clients) started inside lab namespaces.
#![allow(dead_code)]

use std::{
    fs,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use bpfk_datapath::Datapath;
use bpfk_lab::host::{require_root, require_tool};
use bpfk_lab::netlab::{self, NetlabOptions};
use bpfk_lab::netns::{enter_before_exec, in_netns};

pub use bpfk_lab::host::sh_or_panic as sh;

pub const LAB_BIN: &str = env!("CARGO_BIN_EXE_bpfk-datapath-lab");

/// The netlab of a test, with the test's own checks.
pub struct Lab(netlab::Lab);

impl std::ops::Deref for Lab {
    type Target = netlab::Lab;
    fn deref(&self) -> &netlab::Lab {
        &self.0
    }
}

impl Lab {
    /// Two nodes with `pods_per_node` pods each; the datapath routes between them.
    pub fn new(pods_per_node: u8) -> Lab {
        require_root("the datapath lab tests");
        require_tool("ip", &["-V"], "iproute2");
        require_tool("bpftool", &["version"], "bpftool");
        let options = NetlabOptions {
            pods: [pods_per_node; 2],
            owner: "lab",
            static_peer_routes: false,
        };
        Lab(netlab::Lab::new(options).unwrap_or_else(|e| panic!("building the netlab: {e:#}")))
    }

    /// Loads node `i`'s datapath in its namespace, with peer routes and TC on
    /// every pod interface.
    pub fn load_datapath(&self, i: usize) -> Datapath {
        let n = self.node(i);
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

    /// The ids of the links and programs node `i`'s datapath has pinned.
    pub fn attachments(&self, i: usize) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.pin_dir(i)).expect("pin dir").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with("link_") {
                continue;
            }
            let path = e.path();
            let path = path.to_str().expect("utf-8 pin path");
            let j = sh(&["bpftool", "-j", "link", "show", "pinned", path]);
            let v: serde_json::Value = serde_json::from_str(&j).expect("bpftool json");
            let id = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"));
            out.push((id("id"), id("prog_id")));
        }
        out
    }

    /// Asserts that nothing of node `i`'s datapath is left: no pins, none of
    /// the links and programs it had (`before`, from [`Lab::attachments`]),
    /// nothing on its cgroup.
    pub fn assert_clean(&self, i: usize, before: &[(u64, u64)]) {
        let n = self.node(i);
        assert!(
            !self.pin_dir(i).exists(),
            "pin dir {} left behind",
            self.pin_dir(i).display()
        );
        let cg = sh(&[
            "bpftool",
            "cgroup",
            "show",
            n.cgroup.to_str().expect("utf-8"),
        ]);
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

/// A `bpfk-datapath-lab` helper in a lab namespace, killed (by PID) on drop.
pub struct Proc {
    child: Child,
    pub stdout: BufReader<ChildStdout>,
}

impl Proc {
    /// Starts the lab helper in `ns`, inside `cgroup` when given.
    pub fn spawn(ns: &str, cgroup: Option<&Path>, args: &[&str]) -> Proc {
        let mut cmd = Command::new(LAB_BIN);
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env("RUST_LOG", "info");
        enter_before_exec(&mut cmd, Some(ns), cgroup).unwrap_or_else(|e| panic!("{e}"));
        let mut child = cmd.spawn().expect("spawn lab helper");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
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
