//! Service throughput benchmark: bpfk's eBPF datapath against direct
//! pod-to-pod traffic and against kube-proxy's iptables and nftables rule
//! layouts, on one two-node network-namespace topology (see
//! `bpfk_lab::netlab`). Run as root:
//! `cargo run --release -p bpfk-bench --bin datapath_bench`.
//! Writes `bench/results/datapath.md`.

use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use bpfk_bench::results_path;
use bpfk_datapath::{
    Datapath, Endpoint, EndpointPort, Protocol, ServiceName, ServicePort, ServiceSpec,
};
use bpfk_lab::netlab::{
    check_aborted, install_signal_guard, run_in, sh, sh_in, Lab, NetlabOptions, Proc,
};
use bpfk_lab::netns::in_netns;

/// ClusterIP whose only backend is the server pod on the client's node.
const VIP_LOCAL: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// ClusterIP whose only backend is the server pod on the other node.
const VIP_REMOTE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);
const IPERF_PORT: u16 = 5201;
const HTTP_PORT: u16 = 8080;
const SVC_HTTP_PORT: u16 = 80;
/// Services added to every implementation besides the two measured ones.
const DUMMY_SERVICES: usize = 1000;
const DUMMY_ENDPOINTS: usize = 2;
const SECONDS: u32 = 5;
const WRK_CONNECTIONS: u32 = 16;
const POD_CIDR: &str = "10.244.0.0/16";
/// Port of the bench's own connect/1-byte-echo/close server.
const RR_PORT: u16 = 7000;
const RR_SVC_PORT: u16 = 70;
const RR_CONNECTIONS: u32 = 16;
const RR_SECONDS: u32 = 3;
const RR_ROUNDS: usize = 3;
const IPERF_SECONDS: u32 = 3;
const IPERF_ROUNDS: usize = 3;

/// One service port as every implementation sees it.
struct Svc {
    name: String,
    vip: Ipv4Addr,
    /// (port name, service port, endpoint port)
    ports: Vec<(&'static str, u16, u16)>,
    endpoints: Vec<Ipv4Addr>,
}

fn services(local: Ipv4Addr, remote: Ipv4Addr) -> Vec<Svc> {
    let mut all: Vec<Svc> = (0..DUMMY_SERVICES)
        .map(|i| Svc {
            name: format!("dummy-{i:04}"),
            vip: Ipv4Addr::new(10, 96, 1 + (i / 250) as u8, 1 + (i % 250) as u8),
            ports: vec![("http", 80, 8080)],
            endpoints: (0..DUMMY_ENDPOINTS)
                .map(|e| Ipv4Addr::new(10, 244, 1 + e as u8, 100 + (i % 100) as u8))
                .collect(),
        })
        .collect();
    let measured = |name: &str, vip, ep| Svc {
        name: name.to_string(),
        vip,
        ports: vec![
            ("iperf", IPERF_PORT, IPERF_PORT),
            ("http", SVC_HTTP_PORT, HTTP_PORT),
            ("rr", RR_SVC_PORT, RR_PORT),
        ],
        endpoints: vec![ep],
    };
    // After the dummies: the worst place for iptables' linear walk.
    all.push(measured("bench-local", VIP_LOCAL, local));
    all.push(measured("bench-remote", VIP_REMOTE, remote));
    all
}

/// 16 upper-case hex digits of FNV-1a: stands in for kube-proxy's chain hash.
fn chain_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016X}")
}

/// kube-proxy's iptables-mode layout (`iptables-restore` input).
fn iptables_rules(svcs: &[Svc]) -> String {
    let mut chains = String::new();
    let mut rules = String::new();
    let mut svc_rules = String::new();
    for s in svcs {
        for (pname, port, target) in &s.ports {
            let id = format!("default/{}:{pname}", s.name);
            let svc_chain = format!("KUBE-SVC-{}", chain_hash(&format!("{id}/tcp")));
            let _ = writeln!(chains, ":{svc_chain} - [0:0]");
            let _ = writeln!(
                svc_rules,
                "-A KUBE-SERVICES -m comment --comment \"{id} cluster IP\" -d {}/32 -p tcp -m tcp --dport {port} -j {svc_chain}",
                s.vip
            );
            let _ = writeln!(
                rules,
                "-A {svc_chain} -m comment --comment \"{id} cluster IP\" ! -s {POD_CIDR} -d {}/32 -p tcp -m tcp --dport {port} -j KUBE-MARK-MASQ",
                s.vip
            );
            let n = s.endpoints.len();
            for (k, ep) in s.endpoints.iter().enumerate() {
                let sep = format!(
                    "KUBE-SEP-{}",
                    chain_hash(&format!("{id}/tcp/{ep}:{target}"))
                );
                let _ = writeln!(chains, ":{sep} - [0:0]");
                if k + 1 < n {
                    let p = 1.0 / (n - k) as f64;
                    let _ = writeln!(
                        rules,
                        "-A {svc_chain} -m comment --comment \"{id} -> {ep}:{target}\" -m statistic --mode random --probability {p:.10} -j {sep}"
                    );
                } else {
                    let _ = writeln!(
                        rules,
                        "-A {svc_chain} -m comment --comment \"{id} -> {ep}:{target}\" -j {sep}"
                    );
                }
                let _ = writeln!(
                    rules,
                    "-A {sep} -m comment --comment \"{id}\" -s {ep}/32 -j KUBE-MARK-MASQ"
                );
                let _ = writeln!(
                    rules,
                    "-A {sep} -m comment --comment \"{id}\" -p tcp -m tcp -j DNAT --to-destination {ep}:{target}"
                );
            }
        }
    }
    format!(
        "*filter\n\
         :INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         :KUBE-FORWARD - [0:0]\n\
         -A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n\
         -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         COMMIT\n\
         *nat\n\
         :PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         :KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n\
         {chains}\
         -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n\
         {svc_rules}\
         -A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n\
         {rules}\
         COMMIT\n"
    )
}

/// kube-proxy's nftables-mode layout (`nft -f` input).
fn nft_rules(svcs: &[Svc]) -> String {
    let mut endpoint_chains = String::new();
    let mut service_chains = String::new();
    let mut elements = Vec::new();
    for s in svcs {
        for (pname, port, target) in &s.ports {
            let id = format!("default/{}/tcp/{pname}", s.name);
            let svc_chain = format!("service-{}", chain_hash(&id));
            let mut vmap = Vec::new();
            for (k, ep) in s.endpoints.iter().enumerate() {
                let chain = format!("endpoint-{}", chain_hash(&format!("{id}__{ep}/{target}")));
                let _ = writeln!(
                    endpoint_chains,
                    "\tchain {chain} {{\n\
                     \t\tip saddr {ep} jump mark-for-masquerade\n\
                     \t\tmeta l4proto tcp dnat to {ep}:{target}\n\t}}"
                );
                vmap.push(format!("{k} : goto {chain}"));
            }
            let _ = writeln!(
                service_chains,
                "\tchain {svc_chain} {{\n\
                 \t\tip daddr {} tcp dport {port} ip saddr != {POD_CIDR} jump mark-for-masquerade\n\
                 \t\tnumgen random mod {} vmap {{ {} }}\n\t}}",
                s.vip,
                s.endpoints.len(),
                vmap.join(", ")
            );
            elements.push(format!("{} . tcp . {port} : goto {svc_chain}", s.vip));
        }
    }
    format!(
        "table ip kube-proxy {{\n\
         \tchain mark-for-masquerade {{\n\t\tmeta mark set meta mark | 0x4000\n\t}}\n\
         \tchain masquerading {{\n\
         \t\tmeta mark & 0x4000 == 0 return\n\
         \t\tmeta mark set meta mark ^ 0x4000\n\
         \t\tmasquerade fully-random\n\t}}\n\
         {endpoint_chains}\
         {service_chains}\
         \tmap service-ips {{\n\
         \t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\
         \t\telements = {{ {} }}\n\t}}\n\
         \tchain services {{\n\
         \t\tip daddr . meta l4proto . th dport vmap @service-ips\n\t}}\n\
         \tchain nat-prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat-output {{\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n\t}}\n\
         \tchain nat-postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tjump masquerading\n\t}}\n\
         \tchain filter-forward {{\n\t\ttype filter hook forward priority -110; policy accept;\n\
         \t\tct state related,established accept\n\t}}\n\
         }}\n",
        elements.join(",\n\t\t\t")
    )
}

fn bpfk_services(svcs: &[Svc]) -> Vec<(ServiceSpec, Vec<Endpoint>)> {
    svcs.iter()
        .map(|s| {
            let spec = ServiceSpec {
                name: ServiceName::new("default", s.name.clone()),
                cluster_ip: Some(s.vip),
                ports: s
                    .ports
                    .iter()
                    .map(|(n, p, _)| ServicePort {
                        name: n.to_string(),
                        protocol: Protocol::Tcp,
                        port: *p,
                        node_port: None,
                    })
                    .collect(),
                affinity_timeout_s: None,
            };
            let eps = s
                .endpoints
                .iter()
                .map(|a| Endpoint {
                    addr: *a,
                    ports: s
                        .ports
                        .iter()
                        .map(|(n, _, t)| EndpointPort {
                            name: n.to_string(),
                            protocol: Protocol::Tcp,
                            port: *t,
                        })
                        .collect(),
                })
                .collect();
            (spec, eps)
        })
        .collect()
}

/// A loaded datapath, torn down on drop.
struct DatapathGuard(Option<Datapath>);

impl DatapathGuard {
    fn load(lab: &Lab, i: usize) -> Result<Self> {
        let n = lab.nodes[i].clone();
        let cfg = lab.config(i);
        let dp = in_netns(&n.ns, move || -> Result<Datapath> {
            let mut dp = Datapath::load(&n.name, cfg)
                .with_context(|| format!("loading the datapath of {}", n.name))?;
            for p in &n.pods {
                dp.attach_interface(&p.host_if)
                    .with_context(|| format!("attaching TC to {}", p.host_if))?;
            }
            Ok(dp)
        })?;
        Ok(Self(Some(dp)))
    }

    fn get(&mut self) -> Result<&mut Datapath> {
        self.0.as_mut().context("datapath already torn down")
    }

    fn teardown(mut self) -> Result<()> {
        if let Some(dp) = self.0.take() {
            dp.teardown().context("datapath teardown")?;
        }
        Ok(())
    }
}

impl Drop for DatapathGuard {
    fn drop(&mut self) {
        if let Some(dp) = self.0.take() {
            if let Err(e) = dp.teardown() {
                eprintln!("datapath teardown: {e}");
            }
        }
    }
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One measured path.
struct Row {
    case: String,
    backend: &'static str,
    gbps: Option<f64>,
    cpu_client: Option<f64>,
    cpu_server: Option<f64>,
    conn_per_s: Option<f64>,
    wrk_cpu: Option<Duration>,
    rr_per_s: Option<f64>,
    rr_runs: Vec<f64>,
    /// (Gbit/s, client CPU %, server CPU %) per round
    iperf_runs: Vec<(f64, f64, f64)>,
    rr_cpu: Option<Duration>,
    notes: Vec<String>,
}

struct Client<'a> {
    ns: &'a str,
    cgroup: Option<&'a Path>,
}

fn iperf(client: &Client, addr: Ipv4Addr, row: &mut Row) -> Result<()> {
    let (out, _) = run_in(
        client.ns,
        client.cgroup,
        &[
            "iperf3",
            "-c",
            &addr.to_string(),
            "-p",
            &IPERF_PORT.to_string(),
            "-t",
            &IPERF_SECONDS.to_string(),
            "-O",
            "1",
            "-J",
        ],
        Duration::from_secs(u64::from(IPERF_SECONDS) + 20),
    )?;
    let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => {
            row.notes.push(format!("iperf3: no JSON ({e})"));
            return Ok(());
        }
    };
    if let Some(err) = v["error"].as_str() {
        row.notes.push(format!("iperf3: {err}"));
        return Ok(());
    }
    let cpu = &v["end"]["cpu_utilization_percent"];
    match v["end"]["sum_received"]["bits_per_second"].as_f64() {
        Some(b) => row.iperf_runs.push((
            b / 1e9,
            cpu["host_total"].as_f64().unwrap_or(f64::NAN),
            cpu["remote_total"].as_f64().unwrap_or(f64::NAN),
        )),
        None => row.notes.push("iperf3: no received rate".into()),
    }
    Ok(())
}

fn wrk(client: &Client, addr: Ipv4Addr, port: u16, row: &mut Row) -> Result<()> {
    let (out, cpu) = run_in(
        client.ns,
        client.cgroup,
        &[
            "wrk",
            "-t1",
            &format!("-c{WRK_CONNECTIONS}"),
            &format!("-d{SECONDS}s"),
            "--timeout",
            "2s",
            "-H",
            "Connection: close",
            &format!("http://{addr}:{port}/"),
        ],
        Duration::from_secs(u64::from(SECONDS) + 20),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    row.conn_per_s = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok());
    row.wrk_cpu = Some(cpu);
    for l in text.lines() {
        let l = l.trim();
        if l.starts_with("Socket errors") || l.starts_with("Non-2xx") {
            row.notes.push(format!("wrk: {l}"));
        }
    }
    if row.conn_per_s.is_none() {
        row.notes.push(format!(
            "wrk failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn rr(client: &Client, addr: Ipv4Addr, port: u16, row: &mut Row) -> Result<()> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let exe = exe.to_string_lossy().into_owned();
    let (out, cpu) = run_in(
        client.ns,
        client.cgroup,
        &[
            &exe,
            "rr-client",
            &format!("{addr}:{port}"),
            &RR_SECONDS.to_string(),
            &RR_CONNECTIONS.to_string(),
        ],
        Duration::from_secs(u64::from(SECONDS) + 20),
    )?;
    let v: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => {
            row.notes.push(format!(
                "rr-client: no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return Ok(());
        }
    };
    let (done, errors, secs) = (
        v["done"].as_u64().unwrap_or(0),
        v["errors"].as_u64().unwrap_or(0),
        v["seconds"].as_f64().unwrap_or(0.0),
    );
    if secs > 0.0 {
        row.rr_runs.push(done as f64 / secs);
    }
    row.rr_cpu = Some(row.rr_cpu.unwrap_or_default() + cpu);
    if errors > 0 {
        row.notes.push(format!("rr: {errors} failed connections"));
    }
    Ok(())
}

/// `rr-server <port>`: accepts, answers the 1-byte request with 1 byte and
/// closes, on a few threads. Runs until killed (by PID, or with its parent).
fn rr_server(port: &str) -> Result<()> {
    use std::io::{Read, Write};
    let port: u16 = port.parse().context("rr-server port")?;
    let listener = std::net::TcpListener::bind(("0.0.0.0", port))
        .with_context(|| format!("binding port {port}"))?;
    let mut threads = Vec::new();
    for _ in 0..4 {
        let l = listener.try_clone().context("cloning the listener")?;
        threads.push(std::thread::spawn(move || loop {
            if let Ok((mut c, _)) = l.accept() {
                let mut b = [0u8; 1];
                if c.read_exact(&mut b).is_ok() {
                    let _ = c.write_all(&b);
                }
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// `rr-client <addr:port> <seconds> <connections>`: that many threads each
/// connect, send 1 byte, read the answer and the close, in a loop for the
/// given time. Prints `{"done":N,"errors":E,"seconds":S}`.
fn rr_client(addr: &str, seconds: &str, conns: &str) -> Result<()> {
    use std::{
        io::{Read, Write},
        sync::atomic::{AtomicU64, Ordering},
        time::Instant,
    };
    let addr: std::net::SocketAddr = addr.parse().context("rr-client address")?;
    let seconds: u64 = seconds.parse().context("rr-client seconds")?;
    let conns: u32 = conns.parse().context("rr-client connections")?;
    if seconds == 0 || seconds > 60 || conns == 0 || conns > 256 {
        bail!("rr-client: seconds must be 1..=60 and connections 1..=256");
    }
    let done = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    std::thread::scope(|s| {
        for _ in 0..conns {
            s.spawn(|| {
                while Instant::now() < deadline {
                    let ok = (|| -> std::io::Result<()> {
                        let mut c =
                            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
                        c.set_read_timeout(Some(Duration::from_secs(1)))?;
                        c.write_all(b"x")?;
                        let mut b = [0u8; 2];
                        c.read_exact(&mut b[..1])?;
                        // then the server's close
                        let _ = c.read(&mut b)?;
                        Ok(())
                    })();
                    match ok {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
    });
    println!(
        "{}",
        serde_json::json!({
            "done": done.load(Ordering::Relaxed),
            "errors": errors.load(Ordering::Relaxed),
            "seconds": start.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

/// Measures both backends (same node, other node) through `targets`.
fn measure(
    rows: &mut Vec<Row>,
    case: &str,
    client: &Client,
    targets: [(Ipv4Addr, u16, u16); 2],
) -> Result<()> {
    for ((addr, http_port, rr_port), backend) in
        targets.into_iter().zip(["same node", "other node"])
    {
        check_aborted()?;
        eprintln!("measuring {case} -> {backend} ({addr})");
        let mut row = Row {
            case: case.to_string(),
            backend,
            gbps: None,
            cpu_client: None,
            cpu_server: None,
            conn_per_s: None,
            wrk_cpu: None,
            rr_per_s: None,
            rr_runs: Vec::new(),
            iperf_runs: Vec::new(),
            rr_cpu: None,
            notes: Vec::new(),
        };
        for _ in 0..IPERF_ROUNDS {
            iperf(client, addr, &mut row)?;
        }
        row.iperf_runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        if let Some(m) = row.iperf_runs.get(row.iperf_runs.len() / 2) {
            row.gbps = Some(m.0);
            row.cpu_client = Some(m.1);
            row.cpu_server = Some(m.2);
        }
        wrk(client, addr, http_port, &mut row)?;
        for _ in 0..RR_ROUNDS {
            rr(client, addr, rr_port, &mut row)?;
        }
        row.rr_runs.sort_by(f64::total_cmp);
        row.rr_per_s = row.rr_runs.get(row.rr_runs.len() / 2).copied();
        eprintln!(
            "  {:?} Gbit/s, {:?} http conn/s, {:?} rr conn/s {:?}",
            row.gbps, row.conn_per_s, row.rr_per_s, row.notes
        );
        rows.push(row);
    }
    Ok(())
}

fn require_root_and_tools() -> Result<()> {
    // SAFETY: plain getter.
    if unsafe { libc::geteuid() } != 0 {
        bail!("datapath_bench needs root (network namespaces, eBPF, cgroups, netfilter)");
    }
    for tool in [
        &["ip", "-V"][..],
        &["iperf3", "--version"],
        &["wrk", "--version"],
        &["busybox", "--help"],
        &["iptables-restore", "--version"],
        &["iptables-legacy-restore", "--version"],
        &["nft", "--version"],
    ] {
        let ok = std::process::Command::new(tool[0])
            .args(&tool[1..])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok();
        if !ok {
            bail!("datapath_bench needs `{}` on PATH", tool[0]);
        }
    }
    Ok(())
}

/// Writes `text` to a file and feeds it to `cmd` in both node namespaces.
fn load_rules(lab: &Lab, dir: &Path, file: &str, text: &str, cmd: &[&str]) -> Result<()> {
    let path = dir.join(file);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let path = path.to_string_lossy().into_owned();
    for n in &lab.nodes {
        let mut args = cmd.to_vec();
        args.push(&path);
        sh_in(&n.ns, &args)?;
    }
    Ok(())
}

fn flush_iptables(lab: &Lab, tool: &str) -> Result<()> {
    for n in &lab.nodes {
        for table in ["nat", "filter"] {
            sh_in(&n.ns, &[tool, "-t", table, "-F"])?;
            sh_in(&n.ns, &[tool, "-t", table, "-X"])?;
        }
    }
    Ok(())
}

fn run() -> Result<()> {
    install_signal_guard()?;
    require_root_and_tools()?;
    let date = sh(&["date", "-u", "+%Y-%m-%d %H:%M UTC"])?;
    let kernel = sh(&["uname", "-r"])?;
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let nproc = sh(&["nproc"])?;

    let work = TempDir(std::env::temp_dir().join(format!("bpfk-bench-{}", std::process::id())));
    let www = work.0.join("www");
    std::fs::create_dir_all(&www).context("creating the web root")?;
    std::fs::write(www.join("index.html"), "bpfk datapath bench\n".repeat(4))
        .context("writing index.html")?;

    let lab = Lab::new(NetlabOptions {
        pods: [2, 1],
        owner: "bench",
        static_peer_routes: true,
    })?;
    let client_pod = lab.nodes[0].pods[0].clone();
    let local = lab.nodes[0].pods[1].clone();
    let remote = lab.nodes[1].pods[0].clone();
    let www_s = www.to_string_lossy().into_owned();
    let mut servers: Vec<Proc> = Vec::new();
    for pod in [&local, &remote] {
        // No TIME_WAIT on the servers: the client's TCP timestamp offset
        // depends on the address it dialled (pod or ClusterIP), so a
        // TIME_WAIT left by one case would stall SYNs of the next.
        sh_in(&pod.ns, &["sysctl", "-qw", "net.ipv4.tcp_max_tw_buckets=0"])?;
        servers.push(Proc::spawn(
            &pod.ns,
            None,
            &["iperf3", "-s", "-p", &IPERF_PORT.to_string()],
        )?);
        servers.push(Proc::spawn(
            &pod.ns,
            None,
            &[
                "busybox",
                "httpd",
                "-f",
                "-p",
                &HTTP_PORT.to_string(),
                "-h",
                &www_s,
            ],
        )?);
    }
    let exe = std::env::current_exe().context("locating this binary")?;
    let exe = exe.to_string_lossy().into_owned();
    for pod in [&local, &remote] {
        servers.push(Proc::spawn(
            &pod.ns,
            None,
            &[&exe, "rr-server", &RR_PORT.to_string()],
        )?);
    }
    std::thread::sleep(Duration::from_secs(1));

    let svcs = services(local.addr, remote.addr);
    let plain = Client {
        ns: &client_pod.ns,
        cgroup: None,
    };
    let vips = [
        (VIP_LOCAL, SVC_HTTP_PORT, RR_SVC_PORT),
        (VIP_REMOTE, SVC_HTTP_PORT, RR_SVC_PORT),
    ];
    let mut rows = Vec::new();

    measure(
        &mut rows,
        "direct pod → pod (no service)",
        &plain,
        [
            (local.addr, HTTP_PORT, RR_PORT),
            (remote.addr, HTTP_PORT, RR_PORT),
        ],
    )?;

    let direct_in_cgroup = Client {
        ns: &client_pod.ns,
        cgroup: Some(&lab.nodes[0].cgroup),
    };
    measure(
        &mut rows,
        "direct pod → pod, client in the node cgroup (no BPF loaded; control)",
        &direct_in_cgroup,
        [
            (local.addr, HTTP_PORT, RR_PORT),
            (remote.addr, HTTP_PORT, RR_PORT),
        ],
    )?;

    let ipt = iptables_rules(&svcs);
    let ipt_rules = ipt.lines().filter(|l| l.starts_with("-A")).count();
    load_rules(&lab, &work.0, "iptables.rules", &ipt, &["iptables-restore"])?;
    measure(
        &mut rows,
        "kube-proxy iptables layout (iptables-nft)",
        &plain,
        vips,
    )?;
    flush_iptables(&lab, "iptables")?;
    for n in &lab.nodes {
        sh_in(&n.ns, &["nft", "flush", "ruleset"])?;
    }

    load_rules(
        &lab,
        &work.0,
        "iptables.rules",
        &ipt,
        &["iptables-legacy-restore"],
    )?;
    measure(
        &mut rows,
        "kube-proxy iptables layout (iptables-legacy)",
        &plain,
        vips,
    )?;
    flush_iptables(&lab, "iptables-legacy")?;

    let nft = nft_rules(&svcs);
    load_rules(&lab, &work.0, "kube-proxy.nft", &nft, &["nft", "-f"])?;
    measure(&mut rows, "kube-proxy nftables layout", &plain, vips)?;
    for n in &lab.nodes {
        sh_in(&n.ns, &["nft", "delete", "table", "ip", "kube-proxy"])?;
    }

    let mut dps = vec![DatapathGuard::load(&lab, 0)?, DatapathGuard::load(&lab, 1)?];
    let specs = bpfk_services(&svcs);
    for dp in &mut dps {
        for (spec, eps) in &specs {
            check_aborted()?;
            dp.get()?
                .sync_service(spec, eps)
                .with_context(|| format!("syncing {}", spec.name))?;
        }
    }
    let stats = dps[0].get()?.stats();
    measure(
        &mut rows,
        "bpfk eBPF, per-packet TC on the pod veth",
        &plain,
        vips,
    )?;
    let in_cgroup = Client {
        ns: &client_pod.ns,
        cgroup: Some(&lab.nodes[0].cgroup),
    };
    measure(
        &mut rows,
        "bpfk eBPF, socket LB (client in the node cgroup)",
        &in_cgroup,
        vips,
    )?;
    for dp in dps {
        dp.teardown()?;
    }
    drop(servers);
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let md = report(
        &rows,
        &Facts {
            date: date.trim(),
            kernel: kernel.trim(),
            nproc: nproc.trim(),
            load_before: load_before.trim(),
            load_after: load_after.trim(),
            ipt_rules,
            nft_elements: svcs.iter().map(|s| s.ports.len()).sum(),
            bpf_frontends: stats.frontends,
            bpf_backends: stats.backends,
        },
    );
    let path = results_path("datapath.md");
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

struct Facts<'a> {
    date: &'a str,
    kernel: &'a str,
    nproc: &'a str,
    load_before: &'a str,
    load_after: &'a str,
    ipt_rules: usize,
    nft_elements: usize,
    bpf_frontends: usize,
    bpf_backends: usize,
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "—".into())
}

fn report(rows: &[Row], f: &Facts) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Service datapath throughput\n\n\
         Written by `cargo run --release -p bpfk-bench --bin datapath_bench` (as root) on {date}: \
         {nproc}-core VM, kernel {kernel}; load average before: `{lb}`, after: `{la}` (the \
         benchmark's own load included: a shared VM, so absolute figures are noisy); the cases \
         ran one after the other (not interleaved) in the same topology.\n",
        date = f.date,
        nproc = f.nproc,
        kernel = f.kernel,
        lb = f.load_before,
        la = f.load_after,
    );
    let _ = writeln!(
        s,
        "## Topology\n\n\
         Network namespaces built by the benchmark (`lab/src/netlab.rs`): two node namespaces \
         joined by veths to a bridge in an underlay namespace (10.250.0.1 and 10.250.0.2/24), each \
         routing the other's pod range (10.244.N.0/24) over the underlay. Pods are namespaces with a \
         /32 on `eth0` and a veth to their node (default route via 169.254.1.1). Node 1 holds the \
         client pod (10.244.1.11) and a server pod (10.244.1.12); node 2 holds a server pod \
         (10.244.2.11). Servers: `iperf3 -s` (port {IPERF_PORT}) and `busybox httpd` (port \
         {HTTP_PORT}, a {size}-byte page). Nothing routes out of the lab; all of it is removed at \
         exit (also on error and SIGINT/SIGTERM).\n\n\
         Two ClusterIPs: {VIP_LOCAL} (backend: the server on node 1, *same node*) and {VIP_REMOTE} \
         (backend: the server on node 2, *other node*), ports {IPERF_PORT}→{IPERF_PORT}, \
         {SVC_HTTP_PORT}→{HTTP_PORT} and {RR_SVC_PORT}→{RR_PORT}. Each implementation also holds **{DUMMY_SERVICES} dummy \
         services** (10.96.1.1–10.96.4.250, port 80, {DUMMY_ENDPOINTS} endpoints each, never hit) so \
         lookups see a realistic rule count; the measured services come *after* the dummies.\n",
        size = "bpfk datapath bench\n".len() * 4,
    );
    let _ = writeln!(
        s,
        "## Cases\n\n\
         - **direct**: the client targets the server pod's address; no service rules at all.\n\
         - **kube-proxy iptables layout** (written for this benchmark from kube-proxy's documented \
         layout, not kube-proxy itself), loaded with `iptables-restore` on both nodes: nat \
         `PREROUTING`/`OUTPUT` → `KUBE-SERVICES` (one rule per service port, matched linearly) → \
         `KUBE-SVC-<hash>` (masquerade mark for sources outside {POD_CIDR}, then \
         `-m statistic --mode random --probability 1/n` per endpoint) → `KUBE-SEP-<hash>` (hairpin \
         mark, `DNAT`); `KUBE-POSTROUTING` masquerades marked packets (`--random-fully`); filter \
         `FORWARD` → `KUBE-FORWARD` (mark and conntrack `RELATED,ESTABLISHED` accept). {ipt} rules \
         in all. Run once with the nf_tables backend (`iptables`) and once with the legacy \
         x_tables backend (`iptables-legacy`).\n\
         - **kube-proxy nftables layout**, loaded with `nft -f`: `table ip kube-proxy`, nat \
         prerouting/output chains jump to `services`, which looks up `ip daddr . meta l4proto . th \
         dport` in the verdict map `service-ips` ({nft} elements) → per-service chain (masquerade \
         mark for outside sources, `numgen random mod n vmap` over endpoints) → per-endpoint chain \
         (`dnat to`); `masquerading` in postrouting; `ct state related,established accept` in a \
         forward filter chain.\n\
         - **bpfk eBPF** (`bpfk-datapath` `Datapath::load` on both nodes, TC attached to the \
         underlay and pod veths, services written with `sync_service`; maps hold {bf} frontends and \
         {bb} backends per node, the dummies' endpoints sharing 200 addresses; no netfilter rules loaded): once with the client outside the node \
         cgroup (every packet is translated by the TC program on the client pod's veth, replies \
         reverse-translated), once with the client inside node 1's cgroup (the socket-level \
         `connect4` hook picks the backend once per connection; packets then flow as direct \
         pod-to-pod traffic).\n",
        ipt = f.ipt_rules,
        nft = f.nft_elements,
        bf = f.bpf_frontends,
        bb = f.bpf_backends,
    );
    let _ = writeln!(
        s,
        "## Method\n\n\
         - **Gbit/s**: `iperf3 -c <addr> -t {IPERF_SECONDS} -O 1 -J`, one TCP stream from the client pod, \
         received rate, {IPERF_ROUNDS} rounds (median and range shown). CPU % are iperf3's own figures for its client and server processes \
         (user+system, of one core).\n\
         - **conn/s**: `wrk -t1 -c{WRK_CONNECTIONS} -d{SECONDS}s -H 'Connection: close'` against \
         `busybox httpd`: every request is a new TCP connection, so every request pays the \
         service lookup and NAT setup (conntrack entry creation for the netfilter cases). \
         busybox httpd forks per connection, so the server side bounds this figure on 2 cores; \
         compare the cases with each other, not with other HTTP benchmarks. `wrk CPU` is the CPU \
         time (user+system) wrk used, from `wait4`.\n\
         - **1-byte conn/s (rr)**: the benchmark's own client (`datapath_bench rr-client`, \
         {RR_CONNECTIONS} threads, {RR_ROUNDS} rounds of {RR_SECONDS} s) against its own server (`datapath_bench \
         rr-server`, port {RR_PORT}, service port {RR_SVC_PORT}): connect, send 1 byte, read 1 \
         byte and the server's close, repeat. Much lighter than HTTP with a forking server, so \
         per-connection service cost (lookup, NAT/conntrack setup) weighs more. `rr client CPU` \
         from `wait4`.\n\
         - Server pods run with `net.ipv4.tcp_max_tw_buckets=0` (no TIME_WAIT sockets): the \
         client's TCP timestamp offset depends on the address it dialled (pod or ClusterIP), so \
         TIME_WAIT sockets left by one case would stall the SYNs of the next case on the same \
         4-tuples (seen in a first run: a 3× drop that followed the case order, not the datapath).\n\
         - The control case runs the direct client inside node 1's cgroup with no BPF loaded, to \
         separate the cost of the socket-LB hooks from the cgroup placement.\n\
         - No figure here is asserted anywhere; this is a measurement, not a test.\n"
    );
    let _ = writeln!(
        s,
        "## Results\n\n\
         | Case | Backend | TCP Gbit/s, median [min–max] of {IPERF_ROUNDS} | iperf3 CPU client / server % (median run) | HTTP conn/s (wrk) | wrk CPU s | 1-byte conn/s (rr), median [min–max] of {RR_ROUNDS} | rr client CPU s (all rounds) | Notes |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---|"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} / {} | {} | {} | {} | {} | {} |",
            r.case,
            r.backend,
            match (r.iperf_runs.first(), r.iperf_runs.last()) {
                (Some(lo), Some(hi)) => {
                    format!("{} [{:.2}–{:.2}]", opt(r.gbps, 2), lo.0, hi.0)
                }
                _ => "—".into(),
            },
            opt(r.cpu_client, 0),
            opt(r.cpu_server, 0),
            opt(r.conn_per_s, 0),
            opt(r.wrk_cpu.map(|d| d.as_secs_f64()), 2),
            match (r.rr_runs.first(), r.rr_runs.last()) {
                (Some(lo), Some(hi)) => format!("{} [{lo:.0}–{hi:.0}]", opt(r.rr_per_s, 0)),
                _ => "—".into(),
            },
            opt(r.rr_cpu.map(|d| d.as_secs_f64()), 2),
            r.notes.join("; ")
        );
    }
    let _ = writeln!(
        s,
        "\n## Relative to direct pod → pod\n\n\
         Medians divided by the first case's medians for the same backend (1.00 = as fast as \
         no service at all). The control case takes the same path as the first one: its distance \
         from 1.00 shows this shared machine's run-to-run noise, which is large.\n\n\
         | Case | Gbit/s same / other node | 1-byte conn/s same / other node |\n|---|---:|---:|"
    );
    let base = |backend: &str| rows.iter().find(|r| r.backend == backend);
    let ratio = |v: Option<f64>, b: Option<f64>| match (v, b) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}", v / b),
        _ => "—".into(),
    };
    for pair in rows.chunks(2) {
        let cells: Vec<(String, String)> = pair
            .iter()
            .map(|r| {
                let b = base(r.backend);
                (
                    ratio(r.gbps, b.and_then(|b| b.gbps)),
                    ratio(r.rr_per_s, b.and_then(|b| b.rr_per_s)),
                )
            })
            .collect();
        if let [(g1, r1), (g2, r2)] = cells.as_slice() {
            let _ = writeln!(s, "| {} | {g1} / {g2} | {r1} / {r2} |", pair[0].case);
        }
    }
    s
}

const HELP: &str = "\
datapath_bench: service throughput (iperf3 Gbit/s, wrk HTTP conn/s, 1-byte connection rate)
through bpfk's eBPF datapath (TC and socket LB) against direct pod traffic and kube-proxy's
iptables and nftables layouts, on a 2-node netns lab it builds and removes. Needs root.
Writes bench/results/datapath.md. Takes no arguments (rr-server and rr-client are its own
helpers, run inside the lab).

usage: datapath_bench [-h|--help]
  (from the repository: cargo run --release -p bpfk-bench --bin datapath_bench)
";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("rr-server") if args.len() == 3 => rr_server(&args[2]),
        Some("rr-client") if args.len() == 5 => rr_client(&args[2], &args[3], &args[4]),
        _ => {
            bpfk_bench::no_arguments("datapath_bench", HELP);
            run()
        }
    };
    bpfk_common::exit::report("datapath_bench", result)
}
