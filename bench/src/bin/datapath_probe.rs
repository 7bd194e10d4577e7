//! What each eBPF program of the datapath costs per connection: run count and run time
//! (`kernel.bpf_stats_enabled`) of every program a node's datapath attached, around a
//! bounded number of connections, for direct pod → pod traffic, socket-level and
//! per-packet service traffic, on the two-node netns lab (`bpfk_lab::netlab`).
//!
//! The datapath runs as a separate process, a `bpfk-datapath-lab datapath --plan` given
//! with `--datapath-lab`, so the same harness measures two builds (before and after a
//! change). Run as root:
//! `cargo run --release -p bpfk-bench --bin datapath_probe -- --datapath-lab target/debug/bpfk-datapath-lab --label after`.
//! Prints a Markdown table (stdout); `--append FILE` also appends it there.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use bpfk_datapath::{
    DatapathConfig, Endpoint, EndpointPort, Protocol, ServiceName, ServicePort, ServiceSpec,
};
use bpfk_lab::netlab::{install_signal_guard, run_in, sh, sh_in, Lab, NetlabOptions, Proc};
use serde::Serialize;

const VIP_LOCAL: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const VIP_REMOTE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);
const PORT: u16 = 8080;
const SVC_PORT: u16 = 80;
const CONNECTIONS: u32 = 2000;

/// The plan `bpfk-datapath-lab datapath` reads (its stable JSON).
#[derive(Serialize)]
struct Plan {
    config: DatapathConfig,
    interfaces: Vec<String>,
    peers: Vec<bpfk_datapath::PeerNode>,
    services: Vec<(ServiceSpec, Vec<Endpoint>)>,
}

struct Args {
    datapath_lab: PathBuf,
    label: String,
    services: usize,
    append: Option<PathBuf>,
}

const HELP: &str = "\
datapath_probe: per-program run count and run time per connection of a bpfk datapath build
usage: datapath_probe --datapath-lab PATH [--label TEXT] [--services N] [--append FILE]
  --datapath-lab PATH  a bpfk-datapath-lab binary (its `datapath` subcommand is the datapath)
  --label TEXT         names the build in the table (default: the path)
  --services N         dummy services programmed besides the measured two (default 1000)
  --append FILE        also append the table to FILE
";

fn parse_args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        datapath_lab: PathBuf::new(),
        label: String::new(),
        services: 1000,
        append: None,
    };
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--datapath-lab" => args.datapath_lab = PathBuf::from(value("--datapath-lab")?),
            "--label" => args.label = value("--label")?,
            "--services" => {
                args.services = value("--services")?
                    .parse()
                    .context("--services: a number")?
            }
            "--append" => args.append = Some(PathBuf::from(value("--append")?)),
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{HELP}"),
        }
    }
    if args.datapath_lab.as_os_str().is_empty() {
        bail!("--datapath-lab is required\n{HELP}");
    }
    if args.services > 60_000 {
        bail!("--services: at most 60000");
    }
    if args.label.is_empty() {
        args.label = args.datapath_lab.display().to_string();
    }
    Ok(args)
}

fn service(name: &str, vip: Ipv4Addr, backends: &[Ipv4Addr]) -> (ServiceSpec, Vec<Endpoint>) {
    let spec = ServiceSpec {
        name: ServiceName::new("default", name),
        cluster_ip: Some(vip),
        ports: vec![ServicePort {
            name: "tcp".into(),
            protocol: Protocol::Tcp,
            port: SVC_PORT,
            node_port: None,
        }],
        affinity_timeout_s: None,
        lb_algorithm: Default::default(),
    };
    let eps = backends
        .iter()
        .map(|a| Endpoint {
            addr: *a,
            ports: vec![EndpointPort {
                name: "tcp".into(),
                protocol: Protocol::Tcp,
                port: PORT,
            }],
        })
        .collect();
    (spec, eps)
}

fn services(n: usize, local: Ipv4Addr, remote: Ipv4Addr) -> Vec<(ServiceSpec, Vec<Endpoint>)> {
    let mut all: Vec<_> = (0..n)
        .map(|i| {
            let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 97, 0, 1)) + i as u32);
            let eps = [
                Ipv4Addr::new(10, 244, 1, 100 + (i % 100) as u8),
                Ipv4Addr::new(10, 244, 2, 100 + (i % 100) as u8),
            ];
            service(&format!("dummy-{i}"), vip, &eps)
        })
        .collect();
    all.push(service("local", VIP_LOCAL, &[local]));
    all.push(service("remote", VIP_REMOTE, &[remote]));
    all
}

/// (program name, id) of every link node `i`'s datapath pinned.
fn programs(lab: &Lab, i: usize) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(lab.pin_dir(i))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("link_") {
            continue;
        }
        let path = e.path().to_string_lossy().into_owned();
        let j = sh(&["bpftool", "-j", "link", "show", "pinned", &path])?;
        let v: serde_json::Value = serde_json::from_str(&j).context("bpftool link json")?;
        let id = v["prog_id"].as_u64().context("link without prog_id")?;
        out.push((name, id));
    }
    Ok(out)
}

/// (run_cnt, run_time_ns) of a program.
fn run_stats(id: u64) -> Result<(u64, u64)> {
    let j = sh(&["bpftool", "-j", "prog", "show", "id", &id.to_string()])?;
    let v: serde_json::Value = serde_json::from_str(&j).context("bpftool prog json")?;
    Ok((
        v["run_cnt"].as_u64().unwrap_or(0),
        v["run_time_ns"].as_u64().unwrap_or(0),
    ))
}

/// Run statistics of every distinct program of both nodes, summed per program name.
fn snapshot(progs: &[(String, u64)]) -> Result<BTreeMap<String, (u64, u64)>> {
    let mut seen = BTreeMap::new();
    for (link, id) in progs {
        seen.insert(*id, program_kind(link));
    }
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (id, kind) in seen {
        let (c, t) = run_stats(id)?;
        let e = out.entry(kind).or_default();
        e.0 += c;
        e.1 += t;
    }
    Ok(out)
}

/// The hook a pinned link stands for (every TC link shares one program per node).
fn program_kind(link: &str) -> String {
    if link.starts_with("link_tc_") {
        "tc_ingress".into()
    } else {
        link.trim_start_matches("link_cgroup_").to_string()
    }
}

struct Node {
    _proc: Proc,
}

fn start_datapath(lab: &Lab, i: usize, exe: &str, dir: &Path, plan: &Plan) -> Result<Node> {
    let n = &lab.nodes[i];
    let path = dir.join(format!("plan-{i}.json"));
    std::fs::write(&path, serde_json::to_vec(plan)?).context("writing the plan")?;
    let path = path.to_string_lossy().into_owned();
    let p = Proc::spawn(
        &n.ns,
        None,
        &[exe, "datapath", "--node", &n.name, "--plan", &path],
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let want: Vec<PathBuf> = n
        .pods
        .iter()
        .map(|p| lab.pin_dir(i).join(format!("link_tc_{}", p.host_if)))
        .collect();
    while !want.iter().all(|w| w.exists()) {
        if Instant::now() > deadline {
            bail!("datapath of {} not up within 60 s", n.name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The services are synced after the links: give them a moment.
    std::thread::sleep(Duration::from_secs(3));
    Ok(Node { _proc: p })
}

struct Case {
    name: &'static str,
    in_cgroup: bool,
    targets: [Ipv4Addr; 2],
    port: u16,
}

fn main() -> std::process::ExitCode {
    bpfk_common::exit::report("datapath_probe", run())
}

fn run() -> Result<()> {
    let args = parse_args()?;
    install_signal_guard()?;
    // SAFETY: plain getter.
    if unsafe { libc::geteuid() } != 0 {
        bail!("datapath_probe needs root");
    }
    let exe = std::fs::canonicalize(&args.datapath_lab)
        .with_context(|| format!("{}", args.datapath_lab.display()))?;
    let exe = exe.to_string_lossy().into_owned();
    let dir = std::env::temp_dir().join(format!("bpfk-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = probe(&args, &exe, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn probe(args: &Args, exe: &str, dir: &Path) -> Result<()> {
    let stats_before = sh(&["sysctl", "-n", "kernel.bpf_stats_enabled"])?;
    sh(&["sysctl", "-qw", "kernel.bpf_stats_enabled=1"])?;
    let lab = Lab::new(NetlabOptions {
        pods: [2, 1],
        owner: "bench",
        static_peer_routes: true,
    })?;
    let out = measure(args, exe, dir, &lab);
    drop(lab);
    sh(&[
        "sysctl",
        "-qw",
        &format!("kernel.bpf_stats_enabled={}", stats_before.trim()),
    ])?;
    let table = out?;
    print!("{table}");
    if let Some(path) = &args.append {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)?;
        f.write_all(table.as_bytes())?;
    }
    Ok(())
}

fn measure(args: &Args, exe: &str, dir: &Path, lab: &Lab) -> Result<String> {
    let local = lab.nodes[0].pods[1].clone();
    let remote = lab.nodes[1].pods[0].clone();
    let mut servers = Vec::new();
    for (pod, name) in [(&local, "local"), (&remote, "remote")] {
        sh_in(&pod.ns, &["sysctl", "-qw", "net.ipv4.tcp_max_tw_buckets=0"])?;
        servers.push(Proc::spawn(
            &pod.ns,
            None,
            &[
                exe,
                "tcp-server",
                "--port",
                &PORT.to_string(),
                "--name",
                name,
            ],
        )?);
    }
    let svcs = services(args.services, local.addr, remote.addr);
    let mut nodes = Vec::new();
    for i in 0..2 {
        let plan = Plan {
            config: lab.config(i),
            interfaces: lab.nodes[i]
                .pods
                .iter()
                .map(|p| p.host_if.clone())
                .collect(),
            peers: Vec::new(),
            services: svcs.clone(),
        };
        nodes.push(start_datapath(lab, i, exe, dir, &plan)?);
    }
    let mut progs = programs(lab, 0)?;
    progs.extend(programs(lab, 1)?);
    let cases = [
        Case {
            name: "direct pod → pod",
            in_cgroup: false,
            targets: [local.addr, remote.addr],
            port: PORT,
        },
        Case {
            name: "socket LB (client in the node cgroup)",
            in_cgroup: true,
            targets: [VIP_LOCAL, VIP_REMOTE],
            port: SVC_PORT,
        },
        Case {
            name: "per-packet TC (client outside the cgroup)",
            in_cgroup: false,
            targets: [VIP_LOCAL, VIP_REMOTE],
            port: SVC_PORT,
        },
    ];
    let mut table = format!(
        "\n### {} ({} services, {CONNECTIONS} connections per row, both nodes' programs)\n\n\
         | Case | Backend | conn/s | Program | runs / conn | ns / run | ns / conn |\n\
         |---|---|---:|---|---:|---:|---:|\n",
        args.label,
        svcs.len()
    );
    for case in &cases {
        for (target, backend) in case.targets.iter().zip(["same node", "other node"]) {
            measure_case(lab, exe, &progs, case, *target, backend, &mut table)?;
        }
    }
    drop(nodes);
    drop(servers);
    Ok(table)
}

/// One row group: `CONNECTIONS` connections of `case` to `target`, per program.
fn measure_case(
    lab: &Lab,
    exe: &str,
    progs: &[(String, u64)],
    case: &Case,
    target: Ipv4Addr,
    backend: &str,
    table: &mut String,
) -> Result<()> {
    let client = &lab.nodes[0].pods[0];
    let cgroup = case.in_cgroup.then_some(lab.nodes[0].cgroup.as_path());
    let before = snapshot(progs)?;
    let start = Instant::now();
    let (out, _) = run_in(
        &client.ns,
        cgroup,
        &[
            exe,
            "tcp-client",
            "--addr",
            &format!("{target}:{}", case.port),
            "--count",
            &CONNECTIONS.to_string(),
        ],
        Duration::from_secs(120),
    )?;
    let secs = start.elapsed().as_secs_f64();
    let after = snapshot(progs)?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("tcp-client output")?;
    if v["errors"] != serde_json::json!({}) {
        eprintln!("{} -> {backend}: client errors {}", case.name, v["errors"]);
    }
    let rate = f64::from(CONNECTIONS) / secs;
    for (prog, (c1, t1)) in &after {
        let (c0, t0) = before.get(prog).copied().unwrap_or_default();
        let (runs, ns) = (c1 - c0, t1 - t0);
        let per_run = ns.checked_div(runs).unwrap_or(0);
        let _ = writeln!(
            table,
            "| {} | {backend} | {rate:.0} | {prog} | {:.1} | {per_run} | {:.0} |",
            case.name,
            runs as f64 / f64::from(CONNECTIONS),
            ns as f64 / f64::from(CONNECTIONS),
        );
    }
    Ok(())
}
