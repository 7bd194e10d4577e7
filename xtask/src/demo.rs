//! `cargo xtask demo`: the main job. A local multi-node cluster in network namespaces (the
//! `bpfk-lab` binary of the lab crate `lab/`, the same lab the cluster end-to-end test uses):
//! etcd + bpfk-server, nodes running `bpfk-agent --kubelet` on real containerd with the
//! eBPF service datapath; the design notes' nginx Deployment and a Service on it, and a
//! client pod whose requests to the ClusterIP are answered by pods on every node.
//! Everything the lab starts is stopped and removed at the end, also on failure or Ctrl-C.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{system_deps, util};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Keep the cluster running until Ctrl-C instead of tearing it down at the end.
    #[arg(long)]
    pub keep: bool,
    /// Number of nodes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub nodes: u8,
}

/// nginx replicas: enough for the scheduler's spreading to put pods on every node.
const REPLICAS: usize = 4;
/// Requests the client pod sends to the ClusterIP.
const REQUESTS: usize = 20;
/// Deadline of each wait.
const DEADLINE: Duration = Duration::from_secs(120);

/// The running `bpfk-lab`: closing its stdin makes it tear the cluster down.
struct Lab {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Lab {
    fn stop(&mut self) {
        if self.stdin.take().is_none() {
            return;
        }
        println!("\n=== tear down: agents, pins, containerd and pods, server, etcd, namespaces");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        eprintln!("demo: bpfk-lab exited with {status}");
                    }
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                _ => {
                    eprintln!("demo: bpfk-lab did not finish its teardown in time; killing it");
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What `bpfk-lab` reports once the nodes are Ready.
struct LabInfo {
    kubeconfig: PathBuf,
    api: String,
    dir: PathBuf,
    nodes: Vec<NodeInfo>,
    /// The lab registry (`registry.bpfk.lab:5000`) the nginx image is pulled from.
    registry: String,
}

struct NodeInfo {
    name: String,
    netns: String,
    cgroup: PathBuf,
    pin_dir: PathBuf,
    pod_log_dir: PathBuf,
    agent_log: PathBuf,
}

fn parse_info(line: &str) -> Result<LabInfo> {
    let v: Value = serde_json::from_str(line).context("bpfk-lab's READY line is not JSON")?;
    let s = |v: &Value, k: &str| -> Result<String> {
        v[k].as_str()
            .map(str::to_string)
            .with_context(|| format!("bpfk-lab's READY line has no {k}"))
    };
    let mut nodes = Vec::new();
    for n in v["nodes"]
        .as_array()
        .context("bpfk-lab reported no nodes")?
    {
        nodes.push(NodeInfo {
            name: s(n, "name")?,
            netns: s(n, "netns")?,
            cgroup: s(n, "cgroup")?.into(),
            pin_dir: s(n, "pin_dir")?.into(),
            pod_log_dir: s(n, "pod_log_dir")?.into(),
            agent_log: s(n, "agent_log")?.into(),
        });
    }
    Ok(LabInfo {
        kubeconfig: s(&v, "kubeconfig")?.into(),
        api: s(&v, "api")?,
        dir: s(&v, "dir")?.into(),
        nodes,
        registry: s(&v, "registry")?,
    })
}

fn step(title: &str) {
    println!("\n=== {title}");
}

fn shown(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') || a.contains('$') {
            s.push_str(&format!(" '{a}'"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// Print and run `cmd` with its output on the terminal; fail when it fails.
fn show(cmd: &mut Command) -> Result<()> {
    let line = shown(cmd);
    println!("$ {line}");
    let status = cmd.status().with_context(|| format!("running {line}"))?;
    if !status.success() {
        bail!("command failed: {line}");
    }
    Ok(())
}

/// Print and run `cmd`; its output is shown, and its success returned, not required.
fn show_may_fail(cmd: &mut Command) -> Result<bool> {
    let line = shown(cmd);
    println!("$ {line}");
    Ok(cmd
        .status()
        .with_context(|| format!("running {line}"))?
        .success())
}

/// stdout of `cmd` (not shown), which must succeed.
fn capture(cmd: &mut Command) -> Result<String> {
    let line = shown(cmd);
    let out = cmd.output().with_context(|| format!("running {line}"))?;
    if !out.status.success() {
        bail!(
            "command failed: {line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Poll `probe` every half second until it returns Some, at most [`DEADLINE`].
fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {DEADLINE:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn run(opts: &Options) -> Result<()> {
    if !is_root() {
        bail!("the demo needs root (network namespaces, containerd, eBPF): run it as root");
    }
    system_deps::prepare()?;
    let root = util::repo_root();
    util::run(util::workspace_cargo().current_dir(&root).args([
        "build",
        "--quiet",
        "--bin",
        "bpfk-server",
        "--bin",
        "bpfk",
        "--bin",
        "bpfk-agent",
        "--bin",
        "bpfk-lab",
    ]))?;
    let bin = |name: &str| root.join("target/debug").join(name);

    // Ctrl-C (at any point) tears the lab down before exiting.
    let lab_slot: Arc<Mutex<Option<Lab>>> = Arc::new(Mutex::new(None));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    {
        let slot = lab_slot.clone();
        ctrlc::set_handler(move || {
            let _ = tx.send(());
            // The lock is held through the teardown: the main thread waits for it.
            if let Ok(mut slot) = slot.lock() {
                if let Some(lab) = slot.take() {
                    eprintln!("\ndemo: interrupted");
                    drop(lab);
                    std::process::exit(130);
                }
            }
        })
        .context("installing the Ctrl-C handler")?;
    }

    step(&format!(
        "start the lab: etcd + bpfk-server, then {} nodes (netns, containerd, bpfk-agent --kubelet) join",
        opts.nodes
    ));
    let mut lab_cmd = Command::new(bin("bpfk-lab"));
    lab_cmd
        .args(["--id", "demo", "--nodes", &opts.nodes.to_string()])
        .arg("--server")
        .arg(bin("bpfk-server"))
        .arg("--agent")
        .arg(bin("bpfk-agent"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    // Its own process group: a terminal Ctrl-C reaches only this process, whose handler
    // then closes the lab's stdin so it cleans up.
    lab_cmd.process_group(0);
    println!("$ {}", shown(&lab_cmd));
    let mut child = lab_cmd.spawn().context("starting bpfk-lab")?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().context("bpfk-lab stdout")?;
    *lab_slot.lock().map_err(|_| anyhow::anyhow!("lab lock"))? = Some(Lab { child, stdin });
    let mut lines = BufReader::new(stdout).lines();
    let info = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(json) = line.strip_prefix("BPFK-LAB-READY ") {
                    break parse_info(json)?;
                }
                println!("{line}");
            }
            _ => {
                drop(lab_slot.lock().ok().and_then(|mut s| s.take()));
                bail!("bpfk-lab stopped before the nodes were Ready (its error is above)");
            }
        }
    };
    let result = demo(&info, &bin, opts.keep);
    if let Err(e) = &result {
        eprintln!("\ndemo failed: {e:#}");
    }
    if opts.keep && result.is_ok() {
        println!(
            "\ncluster kept running: export KUBECONFIG={} (API {})\n\
             node netns: {}\nCtrl-C stops and removes everything",
            info.kubeconfig.display(),
            info.api,
            info.nodes
                .iter()
                .map(|n| n.netns.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = rx.recv();
    }
    let lab = lab_slot.lock().ok().and_then(|mut s| s.take());
    drop(lab);
    // the lab's last line
    for line in lines.map_while(|l| l.ok()) {
        println!("{line}");
    }
    result
}

fn demo(info: &LabInfo, bin: &dyn Fn(&str) -> PathBuf, keep: bool) -> Result<()> {
    let bpfk = |args: &[&str]| {
        let mut c = Command::new(bin("bpfk"));
        c.arg("--kubeconfig").arg(&info.kubeconfig).args(args);
        c
    };
    let kubectl = |args: &[&str]| {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig").arg(&info.kubeconfig).args(args);
        c
    };
    println!(
        "API server on {} (the host end of the lab underlay), kubeconfig {}",
        info.api,
        info.kubeconfig.display()
    );
    println!("logs of the server and the agents: {}", info.dir.display());

    step("the nodes joined: each agent's kubelet registered its Node, node IPAM gave it a pod range, then the proxy loaded the eBPF datapath");
    for n in &info.nodes {
        let log = std::fs::read_to_string(&n.agent_log).unwrap_or_default();
        for line in log.lines().filter(|l| {
            [
                "pod range assigned",
                "datapath loaded",
                "routes to other nodes' pods updated",
            ]
            .iter()
            .any(|m| l.contains(m))
        }) {
            println!("{} agent: {line}", n.name);
        }
    }
    show(&mut bpfk(&["get", "nodes", "-o", "wide"]))?;
    show(&mut kubectl(&[
        "get",
        "nodes",
        "-o",
        "custom-columns=NAME:.metadata.name,INTERNAL-IP:.status.addresses[0].address,POD-CIDR:.spec.podCIDR",
    ]))?;

    let manifests = util::repo_root().join("tests/manifests");
    let m = |name: &str| manifests.join(name).to_string_lossy().into_owned();
    step("apply the design notes' nginx Deployment and a Service with bpfk");
    show(&mut bpfk(&["apply", "-f", &m("nginx-deployment.yaml")]))?;
    show(&mut bpfk(&["apply", "-f", &m("nginx-service.yaml")]))?;
    println!("(kubectl apply of the same file: unchanged)");
    show(&mut kubectl(&["apply", "-f", &m("nginx-deployment.yaml")]))?;
    println!("(more replicas, so that the scheduler spreads them over the nodes)");
    show(&mut bpfk(&[
        "scale",
        "deployment",
        "nginx-deployment",
        "--replicas",
        &REPLICAS.to_string(),
    ]))?;

    step("pods run on the nodes' containerd, spread over the nodes, with pod IPs");
    let pods_on = |label: &str| -> Result<Vec<(String, String, String, String)>> {
        let out = capture(&mut kubectl(&[
            "get",
            "pods",
            "-l",
            label,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.spec.nodeName} {.status.podIP}{\"\\n\"}{end}",
        ]))?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 4).then(|| (f[0].into(), f[1].into(), f[2].into(), f[3].into()))
            })
            .collect())
    };
    let nginx = wait_until("the nginx pods Running on every node", || {
        let pods = pods_on("app=nginx")?;
        let running: Vec<_> = pods.into_iter().filter(|p| p.1 == "Running").collect();
        let mut nodes: Vec<&str> = running.iter().map(|p| p.2.as_str()).collect();
        nodes.sort();
        nodes.dedup();
        Ok(
            (running.len() == REPLICAS && nodes.len() == info.nodes.len().min(REPLICAS))
                .then_some(running),
        )
    })?;
    show(&mut bpfk(&["get", "pods", "-o", "wide"]))?;
    show(&mut bpfk(&["get", "deployments,services"]))?;
    println!(
        "(each node's kubelet pulled the image from the lab registry {} through containerd's \
         CRI PullImage: it is not pre-imported)",
        info.registry
    );
    let events = capture(&mut kubectl(&["get", "events"]))?;
    for line in events
        .lines()
        .filter(|l| l.contains("Successfully pulled image"))
        .take(REPLICAS)
    {
        println!("{line}");
    }
    let vip = capture(&mut kubectl(&[
        "get",
        "service",
        "nginx",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]))?
    .trim()
    .to_string();
    wait_until("the EndpointSlice of nginx", || {
        let out = capture(&mut kubectl(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=nginx",
            "-o",
            "jsonpath={range .items[*].endpoints[*]}{.addresses[0]}{\"\\n\"}{end}",
        ]))?;
        Ok((out.lines().count() == REPLICAS).then_some(()))
    })?;
    show(&mut kubectl(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=nginx",
    ]))?;

    step("every agent programmed the Service into its pinned eBPF maps");
    let first = info.nodes.first().context("no nodes")?;
    for n in &info.nodes {
        show(Command::new("ls").arg(&n.pin_dir))?;
    }
    println!(
        "(service map BPFK_SVC_V1: slot 0 of {vip}:80 counts the backends, slots 1..{REPLICAS} \
         point at them; the links attach the sock_addr programs to each node's cgroup and TC \
         to its underlay ul0)"
    );

    step(&format!(
        "a client pod on {} fetches http://{vip}/hostname {REQUESTS} times; each nginx pod answers with its name",
        first.name
    ));
    let client = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client\nspec:\n  nodeName: {node}\n  restartPolicy: Never\n  containers:\n  - name: client\n    image: busybox:1.36\n    command: [\"sh\", \"-c\", \"for i in $(seq 1 {REQUESTS}); do busybox timeout 5 wget -q -O - http://{vip}/hostname || echo FAILED; done\"]\n",
        node = first.name
    );
    let client_file = info.dir.join("client-pod.yaml");
    std::fs::write(&client_file, &client)
        .with_context(|| format!("writing {}", client_file.display()))?;
    print!("{client}");
    show(&mut bpfk(&["apply", "-f", &client_file.to_string_lossy()]))?;
    wait_succeeded(&kubectl, "client")?;
    show(&mut bpfk(&["get", "pod", "client", "-o", "wide"]))?;
    let log = if show_may_fail(&mut bpfk(&["logs", "client"]))? {
        capture(&mut bpfk(&["logs", "client"]))?
    } else {
        println!(
            "(bpfk logs needs the API server to proxy pods/log to the kubelet; reading the \
             container's CRI log file on {} instead)",
            first.name
        );
        let path = client_log_file(&first.pod_log_dir)?;
        println!("$ cat {}", path.display());
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        print!("{text}");
        cri_log_text(&text)
    };
    let node_of: BTreeMap<&str, &str> =
        nginx.iter().map(|p| (p.0.as_str(), p.2.as_str())).collect();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for line in log.lines().map(str::trim).filter(|l| !l.is_empty()) {
        *answers.entry(line.to_string()).or_default() += 1;
    }
    println!(
        "\nanswers through ClusterIP {vip} (client on {}):",
        first.name
    );
    let mut nodes_answering: Vec<&str> = Vec::new();
    for (who, n) in &answers {
        match node_of.get(who.as_str()) {
            Some(node) => {
                let place = if *node == first.name {
                    "same node"
                } else {
                    "cross-node, over the underlay"
                };
                println!("  {n:>3} × {who} on {node} ({place})");
                nodes_answering.push(node);
            }
            None => println!("  {n:>3} × {who}"),
        }
    }
    nodes_answering.sort();
    nodes_answering.dedup();
    if nodes_answering.len() < 2 {
        bail!("the ClusterIP was not answered from pods on several nodes: {answers:?}");
    }

    by_name(info, &bpfk, &kubectl, &vip)?;

    step("only the eBPF socket load balancer knows the ClusterIP");
    println!(
        "(same netns {}: outside the node's cgroup there is no route to {vip}; a process in \
         the cgroup {} is load-balanced like the pods)",
        first.netns,
        first.cgroup.display()
    );
    let fetch = format!("busybox timeout 5 busybox wget -q -O - http://{vip}/hostname");
    let netns = format!("--net=/var/run/netns/{}", first.netns);
    // the same fetch from a shell that first joins the node's cgroup
    let fetch_in_cgroup = format!(
        "echo $$ > {}/cgroup.procs && {fetch}",
        first.cgroup.display()
    );
    show_may_fail(Command::new("nsenter").args([&netns, "sh", "-c", &fetch]))?;
    show(Command::new("nsenter").args([&netns, "sh", "-c", &fetch_in_cgroup]))?;

    if keep {
        println!(
            "\n(--keep: the Deployment stays; `bpfk delete deployment nginx-deployment` removes \
             its pods and the Service's backends)"
        );
        return Ok(());
    }
    step("delete the Deployment: its pods stop and leave the Service's backends");
    show(&mut bpfk(&["delete", "deployment", "nginx-deployment"]))?;
    wait_until("the nginx pods to go", || {
        Ok(pods_on("app=nginx")?.is_empty().then_some(()))
    })?;
    show(&mut bpfk(&["get", "pods", "-o", "wide"]))?;
    println!("(a ClusterIP without endpoints is refused by the socket load balancer)");
    show_may_fail(Command::new("nsenter").args([&netns, "sh", "-c", &fetch_in_cgroup]))?;
    Ok(())
}

/// Waits for pod `name` to succeed (an error when it fails).
fn wait_succeeded(kubectl: &dyn Fn(&[&str]) -> Command, name: &str) -> Result<()> {
    wait_until(&format!("the {name} pod to finish"), || {
        let phase = capture(&mut kubectl(&[
            "get",
            "pod",
            name,
            "-o",
            "jsonpath={.status.phase}",
        ]))?;
        match phase.trim() {
            "Succeeded" => Ok(Some(())),
            "Failed" => bail!("the {name} pod failed"),
            _ => Ok(None),
        }
    })
}

/// A pod asks the cluster DNS (kube-dns 10.96.0.10, answered by its node's agent) for
/// `nginx` and fetches `http://nginx/` by name.
fn by_name(
    info: &LabInfo,
    bpfk: &dyn Fn(&[&str]) -> Command,
    kubectl: &dyn Fn(&[&str]) -> Command,
    vip: &str,
) -> Result<()> {
    let node = info.nodes.last().context("no nodes")?;
    step(&format!(
        "a pod on {} finds the Service by name: its resolv.conf names kube-dns 10.96.0.10, which the eBPF datapath steers to the node's own DNS server in the agent",
        node.name
    ));
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: by-name\nspec:\n  nodeName: {}\n  restartPolicy: Never\n  containers:\n  - name: by-name\n    image: busybox:1.36\n    command: [\"sh\", \"-c\", \"cat /etc/resolv.conf; busybox timeout 10 nslookup nginx; echo fetched: $(busybox timeout 5 wget -q -O - http://nginx/hostname)\"]\n",
        node.name
    );
    let file = info.dir.join("by-name-pod.yaml");
    std::fs::write(&file, &pod).with_context(|| format!("writing {}", file.display()))?;
    print!("{pod}");
    show(&mut bpfk(&["apply", "-f", &file.to_string_lossy()]))?;
    wait_succeeded(&kubectl, "by-name")?;
    let log = capture(&mut bpfk(&["logs", "by-name"]))?;
    print!("{log}");
    let fetched = log
        .lines()
        .find_map(|l| l.strip_prefix("fetched:"))
        .map(str::trim)
        .unwrap_or_default();
    if fetched.is_empty() || !log.contains(vip) {
        bail!("http://nginx/ by name was not answered through {vip}:\n{log}");
    }
    println!("\nhttp://nginx/hostname fetched by name: nginx resolved to ClusterIP {vip}, answered by pod {fetched}");
    Ok(())
}

/// `<pod log root>/default_client_<uid>/client/0.log`
fn client_log_file(pod_log_dir: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(pod_log_dir)
        .with_context(|| format!("reading {}", pod_log_dir.display()))?;
    for e in entries.flatten() {
        if e.file_name()
            .to_string_lossy()
            .starts_with("default_client_")
        {
            let dir = e.path().join("client");
            let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .flatten()
                .map(|f| f.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect();
            logs.sort();
            if let Some(last) = logs.pop() {
                return Ok(last);
            }
        }
    }
    bail!(
        "no log of pod default/client under {}",
        pod_log_dir.display()
    )
}

/// The text of a CRI log file (`<time> <stream> <P|F> <text>` lines).
fn cri_log_text(file: &str) -> String {
    file.lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3))
        .map(|t| format!("{t}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_log_lines_keep_only_the_text() {
        let file = "2026-11-27T15:10:00.1Z stdout F nginx-a\n2026-11-27T15:10:00.2Z stdout F nginx b\nbroken\n";
        assert_eq!(cri_log_text(file), "nginx-a\nnginx b\n");
    }

    #[test]
    fn lab_info_from_the_ready_line() {
        let info = parse_info(
            r#"{"kubeconfig":"/k","api":"http://10.250.0.1:1","dir":"/d","registry":"registry.bpfk.lab:5000","nodes":[{"name":"node-1","netns":"bpfk-demo-n1","cgroup":"/c","pin_dir":"/p","pod_log_dir":"/l","agent_log":"/a"}]}"#,
        )
        .unwrap();
        assert_eq!(info.nodes[0].name, "node-1");
        assert_eq!(info.kubeconfig, PathBuf::from("/k"));
        assert_eq!(info.registry, "registry.bpfk.lab:5000");
        let err = parse_info(r#"{"api":"x","nodes":[]}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("kubeconfig"), "{err}");
    }
}
