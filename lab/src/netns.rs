//! Network namespaces and what runs inside them: the [`Netns`] guard for namespaces a lab
//! creates, threads that entered one ([`in_netns`]), and processes started inside one with
//! setns(2) before exec ([`spawn_in`]: unlike `ip netns exec` this keeps /sys, so
//! /sys/fs/bpf and the cgroup mounts stay visible), optionally inside a cgroup.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::host::{require_tool, run};

/// Where `ip netns add` puts a namespace's handle.
pub const NETNS_DIR: &str = "/var/run/netns";

/// Runs `f` on a thread that entered the network namespace `ns`: sockets it opens live there.
/// Panics when the namespace cannot be entered; a panic of `f` is passed on.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = Path::new(NETNS_DIR).join(ns);
    let file = fs::File::open(&path)
        .unwrap_or_else(|e| panic!("cannot open network namespace {}: {e}", path.display()));
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a valid namespace fd affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "setns into {} failed: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// A network namespace created by the test (`ip netns add`), loopback up, no other links
/// and no routes: nothing in it can reach outside. Deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create `bpfk-<pid>-<n>`-style namespace `name` with loopback up.
    pub fn create(name: &str) -> Netns {
        require_tool("ip", &["-V"], "iproute2");
        run(Command::new("ip").args(["netns", "add", name]));
        let ns = Netns { name: name.into() };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run `f` on a thread that entered this network namespace ([`in_netns`]).
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.name, f)
    }

    /// One HTTP/1.0 GET to `addr` (`10.244.1.2:80`) from inside the namespace: the status
    /// line and body, or the I/O error.
    pub fn http_get(&self, addr: &str, path: &str) -> std::io::Result<(String, String)> {
        let addr: std::net::SocketAddr = addr.parse().map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
        })?;
        let path = path.to_string();
        self.run_in(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.set_write_timeout(Some(Duration::from_secs(5)))?;
            write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
            let mut raw = Vec::new();
            s.read_to_end(&mut raw)?;
            let raw = String::from_utf8_lossy(&raw).to_string();
            let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
            Ok((
                head.lines().next().unwrap_or_default().to_string(),
                body.to_string(),
            ))
        })
    }

    /// Run `args` inside the namespace; returns its output whatever the exit status.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run ip netns exec {} {args:?}: {e}", self.name))
    }

    /// Run `args` inside the namespace; panics unless it succeeds. Returns stdout.
    pub fn exec_ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        assert!(
            out.status.success(),
            "ip netns exec {} {args:?} failed ({}): {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Makes `cmd` start inside network namespace `netns` (setns(2) before exec: unlike `ip netns
/// exec` this keeps /sys, so /sys/fs/bpf and the cgroup mounts stay visible) and, first, in
/// the cgroup v2 directory `cgroup`, each when given; the child gets SIGKILL when the spawning
/// thread exits and starts with no signal blocked (whatever its parent blocks).
pub fn enter_before_exec(
    cmd: &mut Command,
    netns: Option<&str>,
    cgroup: Option<&Path>,
) -> std::io::Result<()> {
    let with_path = |path: &Path, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("opening {}: {e}", path.display()))
    };
    let ns_file = match netns {
        Some(ns) => {
            let path = Path::new(NETNS_DIR).join(ns);
            Some(fs::File::open(&path).map_err(|e| with_path(&path, e))?)
        }
        None => None,
    };
    let procs_file = match cgroup {
        Some(c) => {
            let path = c.join("cgroup.procs");
            let file = fs::OpenOptions::new().write(true).open(&path);
            Some(file.map_err(|e| with_path(&path, e))?)
        }
        None => None,
    };
    let ns_fd = ns_file.as_ref().map(AsRawFd::as_raw_fd);
    let procs_fd = procs_file.as_ref().map(AsRawFd::as_raw_fd);
    // The files move into the closure, which the Command owns: the fds stay open until spawn.
    let keep_open = (ns_file, procs_file);
    // SAFETY: prctl, sigprocmask, write and setns are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let _ = &keep_open;
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if let Some(fd) = procs_fd {
                // "0" moves the writing process.
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(fd) = ns_fd {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(())
}

/// Starts `cmd` as [`enter_before_exec`] prepares it; panics with the reason when it cannot.
pub fn spawn_in(cmd: &mut Command, netns: Option<&str>, cgroup: Option<&Path>) -> Child {
    enter_before_exec(cmd, netns, cgroup).unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

/// Run `args` to completion like [`spawn_in`]; returns its output whatever the status.
pub fn output_in(args: &[&str], netns: Option<&str>, cgroup: Option<&Path>) -> Output {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn_in(&mut cmd, netns, cgroup)
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {args:?}: {e}"))
}
