//! `cargo xtask demo`: the main job. A local control plane (etcd + bpfk-server), the design
//! notes' nginx Pod and Deployment plus a Service, driven by `bpfk` and `kubectl`.
//! Everything it starts is stopped and removed at the end, also on failure.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{system_deps, util};

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Keep the cluster running until Ctrl-C instead of tearing it down at the end.
    #[arg(long)]
    pub keep: bool,
}

/// A child process killed (by its PID) when dropped.
struct Guard {
    name: &'static str,
    child: Child,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("demo: stopped {} (pid {})", self.name, self.child.id());
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_http(port: u16, path: &str, what: &str) -> Result<()> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = (|| -> std::io::Result<bool> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )?;
            let mut buf = String::new();
            s.read_to_string(&mut buf)?;
            Ok(buf.starts_with("HTTP/1.1 200"))
        })()
        .unwrap_or(false);
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not become ready on 127.0.0.1:{port}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn step(title: &str) {
    println!("\n=== {title}");
}

fn show(cmd: &mut Command) -> Result<()> {
    let shown = format!("{:?}", cmd).replace('"', "");
    println!("$ {shown}");
    let status = cmd.status().with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("command failed: {shown}");
    }
    Ok(())
}

pub fn run(opts: &Options) -> Result<()> {
    system_deps::ensure()?;
    let root = util::repo_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    util::run(Command::new(&cargo).current_dir(&root).args([
        "build",
        "--quiet",
        "-p",
        "bpfk-server",
        "-p",
        "bpfk-cli",
    ]))?;
    let bin = |name: &str| root.join("target/debug").join(name);

    let dir = tempfile::Builder::new().prefix("bpfk-demo-").tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");

    step("etcd");
    let (client_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
    let etcd = Guard {
        name: "etcd",
        child: Command::new("etcd")
            .args(["--name", "demo", "--data-dir"])
            .arg(dir.path().join("etcd"))
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client_port}"),
            ])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client_port}"),
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-cluster",
                &format!("demo=http://127.0.0.1:{peer_port}"),
            ])
            .stdout(Stdio::null())
            .stderr(log_file(dir.path(), "etcd.log")?)
            .spawn()
            .context("starting etcd")?,
    };
    wait_http(client_port, "/health", "etcd")?;
    println!("etcd on 127.0.0.1:{client_port} (pid {})", etcd.child.id());

    step("bpfk-server");
    let server = Guard {
        name: "bpfk-server",
        child: Command::new(bin("bpfk-server"))
            .args(["--etcd-servers", &format!("http://127.0.0.1:{client_port}")])
            .args(["--listen", &format!("127.0.0.1:{api_port}")])
            .arg("--write-kubeconfig")
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .stderr(log_file(dir.path(), "bpfk-server.log")?)
            .spawn()
            .context("starting bpfk-server")?,
    };
    wait_http(api_port, "/readyz", "bpfk-server")?;
    println!(
        "bpfk-server on http://127.0.0.1:{api_port} (pid {}), kubeconfig {}",
        server.child.id(),
        kubeconfig.display()
    );

    let bpfk = |args: &[&str]| {
        let mut c = Command::new(bin("bpfk"));
        c.arg("--kubeconfig").arg(&kubeconfig).args(args);
        c
    };
    let kubectl = |args: &[&str]| {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig").arg(&kubeconfig).args(args);
        c
    };
    let manifests = root.join("tests/manifests");
    let m = |name: &str| manifests.join(name).to_string_lossy().into_owned();

    step("apply the nginx Pod, Deployment and Service with bpfk");
    show(&mut bpfk(&["apply", "-f", &m("nginx-pod.yaml")]))?;
    show(&mut bpfk(&["apply", "-f", &m("nginx-deployment.yaml")]))?;
    show(&mut bpfk(&["apply", "-f", &m("nginx-service.yaml")]))?;
    step("apply again: unchanged, with bpfk and with kubectl");
    show(&mut bpfk(&["apply", "-f", &m("nginx-deployment.yaml")]))?;
    show(&mut kubectl(&["apply", "-f", &m("nginx-deployment.yaml")]))?;
    step("read back");
    show(&mut bpfk(&[
        "get",
        "pods,deployments,services",
        "-o",
        "wide",
    ]))?;
    show(&mut kubectl(&["get", "deploy", "nginx-deployment"]))?;
    show(&mut kubectl(&["describe", "service", "nginx"]))?;
    step("scale");
    show(&mut bpfk(&[
        "scale",
        "deployment",
        "nginx-deployment",
        "--replicas",
        "3",
    ]))?;
    show(&mut kubectl(&[
        "get",
        "deployment",
        "nginx-deployment",
        "-o",
        "jsonpath={.spec.replicas}{\"\\n\"}",
    ]))?;

    if opts.keep {
        println!(
            "\ncluster kept running: export KUBECONFIG={} ; Ctrl-C stops and removes it",
            kubeconfig.display()
        );
        wait_for_ctrl_c();
    }
    step("tear down");
    drop(server);
    drop(etcd);
    Ok(())
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File> {
    let path: PathBuf = dir.join(name);
    Ok(std::fs::File::create(path)?)
}

fn wait_for_ctrl_c() {
    let (tx, rx) = std::sync::mpsc::channel();
    if ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .is_ok()
    {
        let _ = rx.recv();
    }
}
