//! Small programs the datapath lab tests run inside network namespaces:
//! echo servers, load-generating clients and a stand-alone datapath process
//! (to kill and restart). Every client is bounded in count and time and
//! prints one JSON line with what it saw.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use bpfk_datapath::{Datapath, DatapathConfig, Endpoint, PeerNode, ServiceSpec};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// TCP server: sends "<name>\n", then echoes.
    TcpServer {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        name: String,
    },
    /// UDP server: answers every datagram with "<name>".
    UdpServer {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        name: String,
    },
    /// Opens `count` TCP connections and counts the server names.
    TcpClient {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        count: u32,
        /// Connect from this source port (closing with a RST, so no TIME_WAIT keeps the
        /// 4-tuple): the next connection reuses the tuple.
        #[arg(long)]
        source_port: Option<u16>,
    },
    /// Sends `count` datagrams from fresh sockets and counts the names.
    UdpClient {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        count: u32,
    },
    /// One TCP connection echoing data for `seconds`.
    TcpStream {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        seconds: u64,
    },
    /// One connected UDP socket sending a datagram every 100 ms for `seconds`, as a
    /// resolver does: a timeout retries on the same socket, a socket error (ECONNABORTED
    /// when the datapath destroyed it) opens a new one. Prints its first peer's name, then
    /// the counts.
    UdpConnected {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        seconds: u64,
    },
    /// How a connection attempt fails.
    Refused {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        udp: bool,
        /// UDP: connect the socket first (an ICMP error then fails its next receive).
        #[arg(long)]
        connected: bool,
    },
    /// Loads a datapath, applies a plan and waits to be killed.
    Datapath {
        #[arg(long)]
        node: String,
        #[arg(long)]
        plan: PathBuf,
    },
    /// Removes a node's pinned datapath.
    Teardown {
        #[arg(long)]
        node: String,
        #[arg(long)]
        pin_root: PathBuf,
    },
}

/// What the `datapath` subcommand sets up.
#[derive(Serialize, Deserialize)]
struct Plan {
    config: DatapathConfig,
    interfaces: Vec<String>,
    peers: Vec<PeerNode>,
    services: Vec<(ServiceSpec, Vec<Endpoint>)>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // colours only on a terminal: the lab tests' log files stay plain text
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            // An unset or empty RUST_LOG means info.
            tracing_subscriber::EnvFilter::builder()
                .with_default_directive(tracing::level_filters::LevelFilter::INFO.into())
                .from_env_lossy(),
        )
        .init();
    match run(cli.cmd) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bpfk-datapath-lab: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::TcpServer { port, name } => tcp_server(port, &name),
        Cmd::UdpServer { port, name } => udp_server(port, &name),
        Cmd::TcpClient {
            addr,
            count,
            source_port,
        } => tcp_client(addr, count, source_port),
        Cmd::UdpClient { addr, count } => udp_client(addr, count),
        Cmd::TcpStream { addr, seconds } => tcp_stream(addr, seconds),
        Cmd::UdpConnected { addr, seconds } => udp_connected(addr, seconds),
        Cmd::Refused {
            addr,
            udp,
            connected,
        } => refused(addr, udp, connected),
        Cmd::Datapath { node, plan } => datapath(&node, &plan),
        Cmd::Teardown { node, pin_root } => {
            bpfk_datapath::teardown_pins(&pin_root, &node)?;
            Ok(())
        }
    }
}

fn tcp_server(port: u16, name: &str) -> Result<()> {
    let l = TcpListener::bind(("0.0.0.0", port)).context("bind")?;
    println!("ready");
    std::io::stdout().flush()?;
    for conn in l.incoming() {
        let Ok(mut s) = conn else { continue };
        let name = name.to_string();
        std::thread::spawn(move || {
            let _ = s.write_all(format!("{name}\n").as_bytes());
            let mut buf = [0u8; 16384];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    Ok(())
}

fn udp_server(port: u16, name: &str) -> Result<()> {
    let s = UdpSocket::bind(("0.0.0.0", port)).context("bind")?;
    println!("ready");
    std::io::stdout().flush()?;
    let mut buf = [0u8; 2048];
    loop {
        let (_, from) = s.recv_from(&mut buf)?;
        let _ = s.send_to(name.as_bytes(), from);
    }
}

/// A TCP connection to `addr` from `port` (any address), closed with a RST when dropped.
fn connect_from(addr: SocketAddr, port: u16) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(dst) = addr else {
        return Err(std::io::Error::other("IPv4 only"));
    };
    // SAFETY: plain socket calls on a descriptor this function owns; the sockaddr and option
    // structs are fully initialised.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        let opt = |name, v: *const libc::c_void, len: usize| {
            libc::setsockopt(fd, libc::SOL_SOCKET, name, v, len as libc::socklen_t)
        };
        // connect() gives up after SO_SNDTIMEO, as connect_timeout does.
        let timeout = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        opt(libc::SO_REUSEADDR, (&one as *const libc::c_int).cast(), 4);
        opt(
            libc::SO_SNDTIMEO,
            (&timeout as *const libc::timeval).cast(),
            size_of::<libc::timeval>(),
        );
        opt(
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            size_of::<libc::linger>(),
        );
        let sa = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(ip.octets()),
            },
            sin_zero: [0; 8],
        };
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let src = sa(std::net::Ipv4Addr::UNSPECIFIED, port);
        if libc::bind(fd, (&src as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let to = sa(*dst.ip(), dst.port());
        if libc::connect(fd, (&to as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

fn tcp_client(addr: SocketAddr, count: u32, source_port: Option<u16>) -> Result<()> {
    let mut names: BTreeMap<String, u32> = BTreeMap::new();
    let mut errors: BTreeMap<String, u32> = BTreeMap::new();
    let mut wrong_peer = 0;
    for _ in 0..count {
        let conn = match source_port {
            Some(port) => connect_from(addr, port),
            None => TcpStream::connect_timeout(&addr, Duration::from_secs(2)),
        };
        match conn {
            Ok(s) => {
                // getpeername must report the service, not the backend.
                if s.peer_addr().ok() != Some(addr) {
                    wrong_peer += 1;
                }
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                let mut line = String::new();
                match BufReader::new(&s).read_line(&mut line) {
                    Ok(_) if !line.is_empty() => {
                        *names.entry(line.trim().to_string()).or_default() += 1
                    }
                    Ok(_) => *errors.entry("eof".into()).or_default() += 1,
                    Err(e) => *errors.entry(format!("{:?}", e.kind())).or_default() += 1,
                }
            }
            Err(e) => *errors.entry(format!("{:?}", e.kind())).or_default() += 1,
        }
    }
    println!(
        "{}",
        json!({"names": names, "errors": errors, "wrong_peer": wrong_peer})
    );
    Ok(())
}

fn udp_client(addr: SocketAddr, count: u32) -> Result<()> {
    let mut names: BTreeMap<String, u32> = BTreeMap::new();
    let mut errors: BTreeMap<String, u32> = BTreeMap::new();
    let mut wrong_source = 0;
    let mut buf = [0u8; 2048];
    for i in 0..count {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        if let Err(e) = s.send_to(format!("ping {i}").as_bytes(), addr) {
            *errors.entry(format!("{:?}", e.kind())).or_default() += 1;
            continue;
        }
        match s.recv_from(&mut buf) {
            Ok((n, from)) => {
                if from != addr {
                    wrong_source += 1;
                }
                *names
                    .entry(String::from_utf8_lossy(&buf[..n]).to_string())
                    .or_default() += 1;
            }
            Err(e) => *errors.entry(format!("{:?}", e.kind())).or_default() += 1,
        }
    }
    println!(
        "{}",
        json!({"names": names, "errors": errors, "wrong_source": wrong_source})
    );
    Ok(())
}

fn tcp_stream(addr: SocketAddr, seconds: u64) -> Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).context("connect")?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut reader = BufReader::new(s.try_clone()?);
    let mut name = String::new();
    reader.read_line(&mut name)?;
    // First line: who we talk to, so the test can act while we run.
    println!("{}", json!({"name": name.trim()}));
    std::io::stdout().flush()?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let chunk = [0x5au8; 1024];
    let mut echoed = 0u64;
    let mut error = None;
    while Instant::now() < deadline {
        if let Err(e) = s.write_all(&chunk) {
            error = Some(format!("write: {e}"));
            break;
        }
        let mut got = [0u8; 1024];
        if let Err(e) = reader.read_exact(&mut got) {
            error = Some(format!("read: {e}"));
            break;
        }
        if got != chunk {
            error = Some("echo mismatch".into());
            break;
        }
        echoed += got.len() as u64;
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("{}", json!({"echoed": echoed, "error": error}));
    Ok(())
}

fn connected_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.connect(addr)?;
    Ok(s)
}

fn udp_connected(addr: SocketAddr, seconds: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut names: BTreeMap<String, u32> = BTreeMap::new();
    let mut errors: BTreeMap<String, u32> = BTreeMap::new();
    let (mut timeouts, mut reopened, mut last) = (0u32, 0u32, String::new());
    let mut sock = connected_udp(addr)?;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        let outcome = sock.send(b"ping").and_then(|_| sock.recv(&mut buf));
        match outcome {
            Ok(n) => {
                let name = String::from_utf8_lossy(&buf[..n]).to_string();
                if last.is_empty() {
                    println!("{}", json!({"name": name}));
                    std::io::stdout().flush()?;
                }
                *names.entry(name.clone()).or_default() += 1;
                last = name;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                timeouts += 1;
            }
            Err(e) => {
                // ECONNABORTED (or EDESTADDRREQ on the send of a destroyed, hence
                // disconnected, socket), by errno.
                let errno = e.raw_os_error().unwrap_or(0);
                *errors.entry(format!("errno {errno}")).or_default() += 1;
                sock = connected_udp(addr)?;
                reopened += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "{}",
        json!({"names": names, "errors": errors, "timeouts": timeouts,
            "reopened": reopened, "last": last})
    );
    Ok(())
}

fn refused(addr: SocketAddr, udp: bool, connected: bool) -> Result<()> {
    let start = Instant::now();
    let outcome = if udp && connected {
        match connected_udp(addr) {
            Err(e) => format!("connect:{:?}", e.kind()),
            Ok(s) => match s.send(b"x").and_then(|_| s.recv(&mut [0u8; 64])) {
                Ok(_) => "answered".to_string(),
                Err(e) => format!("recv:{:?}", e.kind()),
            },
        }
    } else if udp {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        match s.send_to(b"x", addr) {
            Err(e) => format!("send:{:?}", e.kind()),
            Ok(_) => {
                let mut buf = [0u8; 64];
                match s.recv_from(&mut buf) {
                    Ok(_) => "answered".to_string(),
                    Err(e) => format!("recv:{:?}", e.kind()),
                }
            }
        }
    } else {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(_) => "connected".to_string(),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => "refused".to_string(),
            Err(e) => format!("connect:{:?}", e.kind()),
        }
    };
    println!(
        "{}",
        json!({"outcome": outcome, "elapsed_ms": start.elapsed().as_millis() as u64})
    );
    Ok(())
}

fn datapath(node: &str, plan: &PathBuf) -> Result<()> {
    let plan: Plan = serde_json::from_slice(&std::fs::read(plan).context("reading plan")?)
        .context("parsing plan")?;
    let mut dp = Datapath::load(node, plan.config)?;
    for ifname in &plan.interfaces {
        dp.attach_interface(ifname)?;
    }
    if !plan.peers.is_empty() {
        dp.sync_peers(&plan.peers)?;
    }
    for (spec, eps) in &plan.services {
        dp.sync_service(spec, eps)?;
    }
    dp.prune_unowned()?;
    println!("ready");
    std::io::stdout().flush()?;
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
