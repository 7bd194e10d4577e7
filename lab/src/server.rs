//! A real `bpfk-server` process against a real etcd, plus ways to drive it with kube-rs,
//! `kubectl` and `bpfk`.
//!
//! The binaries are built on first use (`cargo build -p bpfk-server -p bpfk-cli`, a no-op when
//! up to date) so a test never runs a stale server. Dropping a guard kills its process.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::api_client::ApiCredentials;
use crate::etcd::{EtcdOptions, EtcdProcess};

const START_DEADLINE: Duration = Duration::from_secs(60);

/// `target/<profile>/` of the running test binary.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // tests live in target/<profile>/deps/, benchmark binaries in target/<profile>/
    let dir = exe.parent().expect("executable has a directory");
    if dir.file_name().and_then(|n| n.to_str()) == Some("deps") {
        dir.parent().expect("target/<profile>").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// `cargo`, as the running test's cargo, without the variables cargo sets for a test process
/// (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, `OUT_DIR`, …): build scripts such as ring's watch
/// `CARGO_MANIFEST_DIR`, and seeing the test package's value there would rebuild half the
/// workspace under the running suite.
pub fn cargo_command() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if set_by_cargo_for_tests(key) {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn set_by_cargo_for_tests(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    EXACT.contains(&key) || key.starts_with("CARGO_PKG_") || key.starts_with("CARGO_BIN_EXE_")
}

fn build_binary(name: &str) {
    let mut cmd = cargo_command();
    cmd.args(["build", "--quiet", "--workspace", "--bin", name]);
    if target_dir().file_name().and_then(|n| n.to_str()) == Some("release") {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
    assert!(status.success(), "building {name} failed");
}

/// Path of one of the workspace's binaries, built if needed.
pub fn binary(name: &str) -> PathBuf {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let mut cmd = cargo_command();
        if target_dir().file_name().and_then(|n| n.to_str()) == Some("release") {
            cmd.args([
                "build",
                "--quiet",
                "--release",
                "-p",
                "bpfk-server",
                "-p",
                "bpfk-cli",
            ]);
        } else {
            // The same build `cargo test --workspace` does (the binaries are built for the
            // packages' own integration tests), so under the test runner this is a no-op and
            // never rebuilds dependencies with another feature set.
            cmd.args(["test", "--quiet", "--workspace", "--no-run"]);
        }
        let status = cmd
            .status()
            .expect("cannot run cargo to build bpfk-server and bpfk");
        assert!(status.success(), "building the workspace binaries failed");
    });
    let path = target_dir().join(name);
    if !path.exists() {
        // a binary of a package without integration tests (bpfk-scheduler): the test build
        // above did not link it
        build_binary(name);
    }
    assert!(
        path.exists(),
        "binary {} not found: build it with `cargo build --bins`",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free port")
}

/// A plain HTTP/1.1 GET on loopback, returning (status code, body). For plain endpoints
/// (health, a test's own servers); the API server is reached with [`ServerProcess::request`].
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_request(port, "GET", path, None)
}

/// One plain HTTP/1.1 request on loopback with an optional JSON body, returning
/// (status code, body). No retries: what the server answers is what the caller sees.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    json_body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = json_body.unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// A running `bpfk-server`.
pub struct ServerProcess {
    child: Option<Child>,
    port: u16,
    etcd_endpoint: String,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Start `bpfk-server --etcd-servers <etcd>` on a free port with `extra` flags.
    pub fn start(etcd_endpoint: &str, extra: &[&str]) -> ServerProcess {
        let dir = tempfile::Builder::new()
            .prefix("bpfk-server-")
            .tempdir()
            .expect("tempdir");
        let mut s = ServerProcess {
            child: None,
            port: free_port(),
            etcd_endpoint: etcd_endpoint.to_string(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            dir,
        };
        s.start_again();
        s
    }

    /// (Re)start the process on the same port with the same flags; waits for `/readyz`.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "bpfk-server is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("server log file");
        let child = Command::new(binary("bpfk-server"))
            .arg("--etcd-servers")
            .arg(&self.etcd_endpoint)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("BPFK_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start bpfk-server");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("bpfk-server exited with {status}; log:\n{}", self.log());
                }
            }
            let answer =
                ApiCredentials::read(&self.kubeconfig()).map(|c| c.request("GET", "/readyz", None));
            if let Some(Ok((200, _))) = answer {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "bpfk-server did not become ready within {START_DEADLINE:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kill the process (the etcd data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The admin credentials of the kubeconfig the server wrote.
    pub fn credentials(&self) -> ApiCredentials {
        ApiCredentials::read(&self.kubeconfig()).expect("the server's admin kubeconfig")
    }

    /// One HTTPS request as the admin: (status code, body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        json_body: Option<&str>,
    ) -> std::io::Result<(u16, String)> {
        self.credentials().request(method, path, json_body)
    }

    /// The server's data directory (`--data-dir`: its PKI).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// A kubeconfig for `user` in `groups` (a client certificate of the server's CA), written
    /// next to the admin's; its path.
    pub fn user_kubeconfig(&self, user: &str, groups: &[&str]) -> PathBuf {
        let text = crate::api_client::user_kubeconfig(
            &self.credentials(),
            &self.data_dir().join("pki"),
            user,
            groups,
        );
        let path = self
            .dir
            .path()
            .join(format!("kubeconfig-{}", user.replace(':', "_")));
        std::fs::write(&path, text).expect("write a user kubeconfig");
        path
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// etcd + bpfk-server, the usual test fixture.
pub struct Cluster {
    pub server: ServerProcess,
    pub etcd: EtcdProcess,
}

impl Cluster {
    /// A fresh etcd (TLS, client certificates) and a server with `extra` flags.
    pub fn start_with(extra: &[&str]) -> Cluster {
        let etcd = EtcdProcess::start_with(EtcdOptions {
            tls: true,
            ..Default::default()
        });
        let mut flags = etcd.tls().map(|t| t.server_flags()).unwrap_or_default();
        flags.extend(extra.iter().map(|s| s.to_string()));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let server = ServerProcess::start(&etcd.endpoint(), &flags);
        Cluster { server, etcd }
    }

    /// A fresh etcd and a server with default flags.
    pub fn start() -> Cluster {
        Self::start_with(&[])
    }

    /// A kube-rs client for the server.
    pub async fn client(&self) -> kube::Client {
        self.server.credentials().kube_client()
    }

    /// Run the real `kubectl` against the server.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        run_tool(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(self.server.kubeconfig())
                .args(args),
            "kubectl",
        )
    }

    /// `kubectl` as `user` in `groups` (a client certificate of the cluster CA).
    pub fn kubectl_as(&self, user: &str, groups: &[&str], args: &[&str]) -> Output {
        let kubeconfig = self.server.user_kubeconfig(user, groups);
        run_tool(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(args),
            "kubectl",
        )
    }

    /// `kubectl` as `user` in `groups`, with stdin.
    pub fn kubectl_stdin_as(
        &self,
        user: &str,
        groups: &[&str],
        args: &[&str],
        stdin: &str,
    ) -> Output {
        let kubeconfig = self.server.user_kubeconfig(user, groups);
        run_with_stdin(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(args),
            stdin,
        )
    }

    /// `kubectl` with stdin.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        run_with_stdin(
            Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(self.server.kubeconfig())
                .args(args),
            stdin,
        )
    }

    /// Run our `bpfk` CLI against the server.
    pub fn bpfk(&self, args: &[&str]) -> Output {
        run_tool(
            Command::new(binary("bpfk"))
                .arg("--kubeconfig")
                .arg(self.server.kubeconfig())
                .args(args),
            "bpfk",
        )
    }

    /// `bpfk` with stdin.
    pub fn bpfk_stdin(&self, args: &[&str], stdin: &str) -> Output {
        run_with_stdin(
            Command::new(binary("bpfk"))
                .arg("--kubeconfig")
                .arg(self.server.kubeconfig())
                .args(args),
            stdin,
        )
    }
}

fn run_tool(cmd: &mut Command, name: &str) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e} (is it installed?)"))
}

fn run_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// stdout of a command that must succeed (panics with both streams otherwise).
pub fn success(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// stderr of a command that must fail (panics otherwise).
pub fn failure(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "command unexpectedly succeeded:\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// stdout of a command that succeeded, else its stderr (for checks that are retried).
pub fn ok_or_stderr(out: Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Retries `check` every 200 ms for up to `within` (controllers and the authorizer act
/// through watches); panics with `what` and the last error after that.
pub fn eventually(
    what: &str,
    within: std::time::Duration,
    mut check: impl FnMut() -> Result<(), String>,
) {
    let deadline = std::time::Instant::now() + within;
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if std::time::Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
}

/// The repo's copy of the design notes' manifests.
pub fn manifest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/manifests")
        .join(name)
}

/// A long-running kubectl (`get -w`, `logs -f`) whose stdout lines are read on a thread.
pub struct Streaming {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Streaming {
    /// Start `kubectl <args>` against `c`; its stdout lines are collected as they come.
    pub fn start(c: &Cluster, args: &[&str]) -> Streaming {
        use std::io::BufRead;
        let mut child = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(c.server.kubeconfig())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot run kubectl");
        let out = child.stdout.take().expect("stdout");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Streaming { child, lines }
    }

    /// The lines printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
