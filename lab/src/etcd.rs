//! A real, temporary `etcd` server (Debian `etcd-server` 3.4, binary `etcd` on PATH).
//!
//! [`EtcdProcess::start`] launches etcd on free 127.0.0.1 client and peer ports with a
//! temporary data directory and waits until `/health` answers. [`EtcdProcess::stop`] and
//! [`EtcdProcess::start_again`] simulate an outage: the restarted server keeps the same
//! ports and data. Dropping the guard kills the process and removes the data directory.
//!
//! etcd runs under a small `sh` watchdog that holds a pipe from this process: when the pipe
//! closes (the guard is dropped, or the test process dies, even by SIGKILL) the watchdog
//! kills etcd, so no etcd outlives its test.
//!
//! Everything here panics with a clear message when etcd is missing or does not come up:
//! tests that need etcd must fail loudly, never skip.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// How long etcd may take to become healthy after being launched.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How many fresh port pairs to try when the first ones were taken by someone else.
const PORT_ATTEMPTS: usize = 5;
/// Runs etcd in the background, prints its pid, and kills it when stdin says `keep` (a
/// deliberate stop: the data stays) or reaches EOF (the guard or the whole test process is
/// gone: the temporary directory goes too).
const WATCHDOG: &str = r#"etcd "$@" >>"$BPFK_ETCD_LOG" 2>&1 </dev/null &
pid=$!
echo "$pid"
read -r command
kill -9 "$pid" 2>/dev/null
wait "$pid"
[ "$command" = keep ] || rm -rf "$BPFK_ETCD_DIR"
"#;

/// A launched etcd: the watchdog shell, the pipe keeping it waiting, and etcd's pid.
struct Running {
    watchdog: Child,
    lifeline: Option<ChildStdin>,
    pid: u32,
}

impl Running {
    /// Whether etcd itself has exited (gone, or a zombie waiting for the watchdog).
    fn exited(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
            Err(_) => true,
        }
    }

    /// Tell the watchdog to kill etcd (keeping its data when `keep_data`), reap it and exit.
    fn kill(mut self, keep_data: bool) {
        if let Some(mut lifeline) = self.lifeline.take() {
            if keep_data {
                let _ = lifeline.write_all(b"keep\n");
            }
        }
        let _ = self.watchdog.wait();
    }
}

/// Options for [`EtcdProcess::start_with`].
#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    /// `--experimental-watch-progress-notify-interval` (etcd's default is 10 minutes).
    pub progress_notify_interval: Option<Duration>,
    /// Serve clients over TLS only, asking for client certificates (`--client-cert-auth`)
    /// signed by a CA made for this etcd; health and metrics stay on a plain loopback port.
    pub tls: bool,
}

/// The PEM files of an etcd started with [`EtcdOptions::tls`].
#[derive(Debug, Clone)]
pub struct EtcdTlsFiles {
    /// The CA of etcd's serving certificate and of its clients' certificates.
    pub ca: PathBuf,
    /// A client certificate and key etcd accepts.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
}

impl EtcdTlsFiles {
    /// A CA, a serving certificate for 127.0.0.1 and a client certificate, written to `dir`.
    fn create(dir: &Path) -> Result<EtcdTlsFiles, String> {
        let year = Duration::from_secs(365 * 24 * 3600);
        let (ca, _) = bpfk_auth::pki::ClusterCa::generate("etcd-ca").map_err(|e| e.to_string())?;
        let serving = ca
            .issue_serving(
                "etcd",
                &["127.0.0.1".to_string(), "localhost".to_string()],
                year,
            )
            .map_err(|e| e.to_string())?;
        let client = ca
            .issue_client("kube-apiserver-etcd-client", &[], year)
            .map_err(|e| e.to_string())?;
        let files = EtcdTlsFiles {
            ca: dir.join("ca.crt"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            serving_cert: dir.join("server.crt"),
            serving_key: dir.join("server.key"),
        };
        let write = |path: &Path, text: &str| {
            bpfk_auth::pki::write_private(path, text, 0o600).map_err(|e| e.to_string())
        };
        write(&files.ca, &ca.cert_pem)?;
        write(&files.client_cert, &client.cert_pem)?;
        write(&files.client_key, &client.key_pem)?;
        write(&files.serving_cert, &serving.cert_pem)?;
        write(&files.serving_key, &serving.key_pem)?;
        Ok(files)
    }

    /// bpfk-server's flags for this etcd: `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`.
    pub fn server_flags(&self) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        vec![
            "--etcd-cafile".into(),
            path(&self.ca),
            "--etcd-certfile".into(),
            path(&self.client_cert),
            "--etcd-keyfile".into(),
            path(&self.client_key),
        ]
    }
}

/// A running (or deliberately stopped) temporary etcd server.
pub struct EtcdProcess {
    child: Option<Running>,
    client_port: u16,
    peer_port: u16,
    /// Plain-HTTP `/health` and `/metrics` when clients are served over TLS.
    metrics_port: u16,
    options: EtcdOptions,
    tls: Option<EtcdTlsFiles>,
    /// Holds the data directory and the log file; removed on drop (after the kill).
    dir: tempfile::TempDir,
}

impl EtcdProcess {
    /// Start etcd with default options. Panics when etcd is missing or unhealthy.
    pub fn start() -> EtcdProcess {
        Self::start_with(EtcdOptions::default())
    }

    /// Start etcd with `options`. Panics when etcd is missing or unhealthy.
    pub fn start_with(options: EtcdOptions) -> EtcdProcess {
        check_binary();
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("bpfk-etcd-")
                .tempdir_in(data_root())
                .unwrap_or_else(|e| panic!("cannot create a temporary directory for etcd: {e}"));
            let [client_port, peer_port, metrics_port] = free_ports();
            let tls = if options.tls {
                Some(
                    EtcdTlsFiles::create(dir.path())
                        .unwrap_or_else(|e| panic!("cannot make etcd's certificates: {e}")),
                )
            } else {
                None
            };
            let mut etcd = EtcdProcess {
                child: None,
                client_port,
                peer_port,
                metrics_port,
                options: options.clone(),
                tls,
                dir,
            };
            match etcd.launch() {
                Ok(()) => return etcd,
                // Most likely another process took one of the probed ports before etcd
                // bound it: try another pair (dropping `etcd` kills it and removes its dir).
                Err(e) => last_error = e,
            }
        }
        panic!("etcd did not start after {PORT_ATTEMPTS} attempts: {last_error}");
    }

    /// The client URL, `http://127.0.0.1:PORT` (`https://` with [`EtcdOptions::tls`]).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// `etcdctl` (API v3) pointed at this etcd, with the client certificate when it asks for
    /// one.
    pub fn etcdctl(&self) -> Command {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.endpoint());
        if let Some(tls) = &self.tls {
            cmd.arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.client_cert)
                .arg("--key")
                .arg(&tls.client_key);
        }
        cmd
    }

    /// The certificates of a TLS etcd.
    pub fn tls(&self) -> Option<&EtcdTlsFiles> {
        self.tls.as_ref()
    }

    /// Where `/health` and `/metrics` answer over plain HTTP.
    fn plain_addr(&self) -> SocketAddr {
        let port = if self.tls.is_some() {
            self.metrics_port
        } else {
            self.client_port
        };
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// The client port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The data directory (kept across [`stop`](Self::stop) / [`start_again`](Self::start_again)).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Process id of the running etcd, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|running| running.pid)
    }

    /// Whether the etcd process is running (started and not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kill etcd (SIGKILL, like a crash) and wait for it to exit. Data is kept.
    pub fn stop(&mut self) {
        self.kill(true);
    }

    /// Freeze etcd (SIGSTOP): it keeps its sockets open but answers nothing, like a hung
    /// or partitioned server. [`thaw`](Self::thaw) resumes it; drop kills it either way.
    pub fn freeze(&mut self) {
        self.signal("STOP");
    }

    /// Resume a frozen etcd (SIGCONT).
    pub fn thaw(&mut self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("cannot send SIG{signal}: etcd is not running"));
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill -{signal} {pid}: {e}"));
        assert!(
            status.success(),
            "kill -{signal} {pid} failed with {status}"
        );
    }

    /// Start etcd again on the same ports with the same data directory and wait until
    /// healthy. Panics if it does not come back.
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "start_again called while etcd is running"
        );
        if let Err(e) = self.launch() {
            self.kill(true);
            panic!("etcd did not come back on {}: {e}", self.endpoint());
        }
    }

    /// Sum of the samples of Prometheus metric `name` from etcd's `/metrics` (e.g.
    /// `etcd_debugging_mvcc_watcher_total`, the number of watchers etcd serves).
    /// Panics when etcd does not answer or does not export the metric.
    pub fn metric(&self, name: &str) -> f64 {
        let addr = self.plain_addr();
        let (status, body) = http_get(addr, "/metrics")
            .unwrap_or_else(|| panic!("etcd on {addr} did not answer GET /metrics"));
        assert_eq!(status, 200, "GET /metrics on {addr} answered {status}");
        let samples: Vec<f64> = body
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let metric = series.split('{').next()?;
                (metric == name).then(|| value.parse::<f64>().ok())?
            })
            .collect();
        assert!(!samples.is_empty(), "etcd does not export metric {name}");
        samples.iter().sum()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn launch(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open etcd log {}: {e}", self.log_path().display()))?;
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let name = "bpfk-test";
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(WATCHDOG).arg("bpfk-etcd-watchdog");
        cmd.arg("--name")
            .arg(name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("{name}={peer}"))
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--logger")
            .arg("zap")
            .arg("--log-outputs")
            .arg("stderr")
            .arg("--log-level")
            .arg("warn");
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.serving_cert)
                .arg("--key-file")
                .arg(&tls.serving_key)
                .arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--listen-metrics-urls")
                .arg(format!("http://{}", self.plain_addr()));
        }
        if let Some(interval) = self.options.progress_notify_interval {
            cmd.arg("--experimental-watch-progress-notify-interval")
                .arg(format!("{}ms", interval.as_millis()));
        }
        cmd.env("BPFK_ETCD_LOG", self.log_path())
            .env("BPFK_ETCD_DIR", self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut watchdog = cmd
            .spawn()
            .map_err(|e| format!("cannot spawn sh to run etcd: {e}"))?;
        let lifeline = watchdog.stdin.take();
        let mut pid_line = String::new();
        let read = watchdog
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut pid_line));
        let pid = match (read, pid_line.trim().parse::<u32>()) {
            (Some(Ok(_)), Ok(pid)) => pid,
            _ => {
                drop(lifeline);
                let _ = watchdog.wait();
                return Err(format!(
                    "the etcd watchdog did not report a pid (got {pid_line:?}); log:\n{}",
                    log_tail(&self.log_path())
                ));
            }
        };
        self.child = Some(Running {
            watchdog,
            lifeline,
            pid,
        });
        self.wait_healthy()
    }

    fn wait_healthy(&mut self) -> Result<(), String> {
        let addr = self.plain_addr();
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if self.child.as_ref().is_some_and(Running::exited) {
                self.kill(true);
                return Err(format!(
                    "etcd exited during start-up; log:\n{}",
                    log_tail(&self.log_path())
                ));
            }
            if health_ok(addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "etcd on {addr} not healthy after {START_DEADLINE:?}; log:\n{}",
                    log_tail(&self.log_path())
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self, keep_data: bool) {
        if let Some(running) = self.child.take() {
            running.kill(keep_data);
        }
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.kill(false);
        // The watchdog removed the directory; `dir` (TempDir) would otherwise.
    }
}

impl std::fmt::Debug for EtcdProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdProcess")
            .field("endpoint", &self.endpoint())
            .field("pid", &self.pid())
            .field("data_dir", &self.data_dir())
            .finish()
    }
}

fn check_binary() {
    match Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("`etcd --version` failed with {s}: install Debian package etcd-server"),
        Err(e) => panic!(
            "etcd binary not found on PATH ({e}): install Debian package etcd-server \
             (apt-get install etcd-server)"
        ),
    }
}

/// Three distinct free loopback ports (probed by binding port 0, all held at once).
fn free_ports() -> [u16; 3] {
    let bind = || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"))
    };
    let held = [bind(), bind(), bind()];
    let ports = held
        .each_ref()
        .map(|l| l.local_addr().map(|a| a.port()).unwrap_or_default());
    assert!(!ports.contains(&0), "cannot read probed port numbers");
    ports
}

/// `GET /health` answered with `"health":"true"`.
fn health_ok(addr: SocketAddr) -> bool {
    http_get(addr, "/health")
        .is_some_and(|(status, body)| status == 200 && body.contains("\"health\":\"true\""))
}

/// A plain HTTP/1.1 GET on loopback: (status, body), or None when unreachable.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

/// Decode an HTTP/1.1 chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size_line, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size_line.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Where test etcds keep their data: a tmpfs when the machine has one (`/dev/shm`), so a
/// busy disk (parallel builds) does not turn every fsync of a write into seconds; else the
/// temporary directory.
fn data_root() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}
