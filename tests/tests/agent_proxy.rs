//! bpfk-agent against a real bpfk-server (and etcd): Services and
//! EndpointSlices created through the API end up in the eBPF maps, and a
//! socket in the agent's cgroup reaches the backend through the ClusterIP.
//! Runs as root. The client and backend live in a network namespace the test
//! creates (loopback only), so no packet can leave it.

use std::{
    fs,
    net::{Ipv4Addr, TcpListener},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{
        core::v1::{Service, ServicePort, ServiceSpec},
        discovery::v1::{Endpoint, EndpointPort, EndpointSlice},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{api::PostParams, Api};

const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 244, 9, 10);

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Namespace, cgroup, agent process and pins of one test, removed on drop.
struct Env {
    ns: String,
    cgroup: PathBuf,
    node: String,
    agent: Option<Child>,
    stop: Arc<AtomicBool>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
        let _ = Command::new(bpfk_lab::server::binary("bpfk-agent"))
            .args([
                "--node-name",
                &self.node,
                "--kubeconfig",
                "/dev/null",
                "--teardown",
            ])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.cgroup.exists()
            && fs::remove_dir(&self.cgroup).is_err()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `connect()` from a shell in the namespace and the agent's cgroup; returns
/// the first line received or the shell's error.
fn connect(env: &Env, vip: &str) -> String {
    // Join the cgroup before `ip netns exec`, which remounts /sys.
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec ip netns exec {} bash -c 'exec 3<>/dev/tcp/{vip}/80 && head -1 <&3'",
        env.cgroup.display(),
        env.ns
    );
    let out = Command::new("timeout")
        .args(["5", "bash", "-c", &script])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// `GET /metrics` from the agent's loopback endpoint.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).expect("metrics response");
    assert!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{body}"
    );
    body
}

/// The value of the first sample line starting with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn poll(what: &str, mut f: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_programs_services_from_the_api() {
    // SAFETY: plain getter.
    assert_eq!(
        unsafe { libc_geteuid() },
        0,
        "the agent e2e test needs root"
    );
    let cluster = bpfk_lab::server::Cluster::start();
    let client = cluster.client().await;

    let id = format!("{:x}", std::process::id());
    let cg2 = bpfk_datapath::sys::cgroup2_mount().expect("cgroup2 mount");
    let mut env = Env {
        ns: format!("bpfk-agent-{id}"),
        cgroup: cg2.join(format!("bpfk-agent-{id}")),
        node: format!("agent-e2e-{id}"),
        agent: None,
        stop: Arc::new(AtomicBool::new(false)),
    };
    sh(&["ip", "netns", "add", &env.ns]);
    sh(&["ip", "-n", &env.ns, "link", "set", "lo", "up"]);
    sh(&[
        "ip",
        "-n",
        &env.ns,
        "addr",
        "add",
        &format!("{BACKEND}/32"),
        "dev",
        "lo",
    ]);
    fs::create_dir_all(&env.cgroup).unwrap();

    // The backend: a thread inside the namespace.
    let ns_file = fs::File::open(format!("/run/netns/{}", env.ns)).unwrap();
    let stop = env.stop.clone();
    std::thread::spawn(move || {
        // SAFETY: valid netns fd, affects this thread only.
        assert_eq!(unsafe { setns(ns_file.as_raw_fd(), 0x4000_0000) }, 0);
        let l = TcpListener::bind((BACKEND, 8080)).unwrap();
        l.set_nonblocking(true).unwrap();
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    use std::io::Write;
                    let _ = s.write_all(b"hello from backend\n");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });

    let log_path = std::env::temp_dir().join(format!("bpfk-agent-{id}.log"));
    let log = fs::File::create(&log_path).unwrap();
    let metrics_port = TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    env.agent = Some(
        Command::new(bpfk_lab::server::binary("bpfk-agent"))
            .args(["--node-name", &env.node, "--kubeconfig"])
            .arg(cluster.server.kubeconfig())
            .arg("--cgroup")
            .arg(&env.cgroup)
            .args([
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
                "--bpf-stats",
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = services
        .create(
            &PostParams::default(),
            &Service {
                metadata: ObjectMeta {
                    name: Some("e2e".into()),
                    ..Default::default()
                },
                spec: Some(ServiceSpec {
                    ports: Some(vec![ServicePort {
                        name: Some("http".into()),
                        port: 80,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create service");
    let vip = svc.spec.unwrap().cluster_ip.expect("cluster IP allocated");
    let service_range: bpfk_datapath::Ipv4Cidr = "10.96.0.0/12".parse().unwrap();
    assert!(
        service_range.contains(vip.parse().expect("IPv4 cluster IP")),
        "{vip} outside the service range"
    );

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    slices
        .create(
            &PostParams::default(),
            &EndpointSlice {
                metadata: ObjectMeta {
                    name: Some("e2e-1".into()),
                    labels: Some(
                        [("kubernetes.io/service-name".to_string(), "e2e".to_string())].into(),
                    ),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints: vec![Endpoint {
                    addresses: vec![BACKEND.to_string()],
                    ..Default::default()
                }],
                ports: Some(vec![EndpointPort {
                    name: Some("http".into()),
                    port: Some(8080),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
            },
        )
        .await
        .expect("create endpointslice");

    // API → agent → maps → a real connect() through the ClusterIP.
    let got = poll("the ClusterIP to reach the backend", || {
        let r = connect(&env, &vip);
        r.contains("hello from backend").then_some(r)
    });
    assert_eq!(got, "hello from backend");
    let logged = fs::read_to_string(&log_path).unwrap();
    assert!(
        logged.contains("service synced") && logged.contains("micros"),
        "agent must log watch-to-maps timing: {logged}"
    );
    // The connection is counted for the service, connect4's runs too, and the sync timed.
    let text = scrape(metrics_port);
    let conns = sample(
        &text,
        r#"bpfk_datapath_frontend_connections_total{namespace="default",service="e2e","#,
    );
    assert!(conns.is_some_and(|n| n >= 1.0), "{text}");
    let runs = sample(
        &text,
        r#"bpfk_datapath_program_runs_total{program="bpfk_connect4"}"#,
    );
    assert!(runs.is_some_and(|n| n >= 1.0), "{text}");
    let syncs = sample(&text, "bpfk_proxy_sync_duration_seconds_count");
    assert!(syncs.is_some_and(|n| n >= 1.0), "{text}");
    assert!(
        text.contains(r#"bpfk_datapath_map_max_entries{map="BPFK_CT_V1"} 131072"#),
        "{text}"
    );

    // Endpoints gone → refused at once.
    slices
        .delete("e2e-1", &Default::default())
        .await
        .expect("delete slice");
    poll("the service to refuse", || {
        let r = connect(&env, &vip);
        r.contains("refused").then_some(r)
    });

    // Service gone → its frontend leaves the maps (no rewrite: the namespace
    // has no route to the ClusterIP at all).
    services
        .delete("e2e", &Default::default())
        .await
        .expect("delete service");
    poll("the service to leave the maps", || {
        let r = connect(&env, &vip);
        r.contains("unreachable").then_some(r)
    });

    let pins = Path::new(bpfk_datapath::DEFAULT_PIN_ROOT).join(&env.node);
    assert!(pins.exists());
    drop(env);
    assert!(!pins.exists(), "teardown left {}", pins.display());
    let _ = fs::remove_file(&log_path);
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
    fn setns(fd: i32, nstype: i32) -> i32;
}
