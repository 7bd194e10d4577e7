//! Destroying the connected UDP sockets of a backend that went away.
//!
//! The socket load balancer connects a UDP socket straight to a backend, so a resolver or
//! any other connected-UDP client would keep sending to a backend that left the service.
//! When backends leave a UDP frontend the datapath lists them in `GONE_BACKENDS`, and in
//! each network namespace of the processes under the socket-balanced cgroup it runs the
//! `iter/udp` program, which reports the sockets connected through the socket LB to one of
//! them. Each is destroyed with sock_diag's `SOCK_DESTROY` (matched by tuple and cookie):
//! the kernel's `udp_abort` disconnects it and its owner gets `ECONNABORTED`, reconnects,
//! and the socket LB picks a live backend.

use std::{
    collections::BTreeSet,
    fs::{self, File},
    io::{self, Read},
    mem::size_of,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::fs::MetadataExt,
    },
    path::{Path, PathBuf},
};

use aya::programs::iter::IterLink;
use bpfk_ebpf_common::UdpSockRecord;

/// sock_diag's "destroy this socket" message type.
const SOCK_DESTROY: u16 = 21;
const IPPROTO_UDP: u8 = 17;

/// The network namespaces (as `/proc/<pid>/ns/net` paths, one per namespace) of the
/// processes in `cgroup` and its descendants.
pub(crate) fn netns_of_cgroup(cgroup: &Path) -> Vec<PathBuf> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut dirs = vec![cgroup.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                dirs.push(entry.path());
            }
        }
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines() {
            let ns = PathBuf::from(format!("/proc/{pid}/ns/net"));
            // A process may exit meanwhile: skip it.
            if let Ok(meta) = fs::metadata(&ns) {
                if seen.insert((meta.dev(), meta.ino())) {
                    out.push(ns);
                }
            }
        }
    }
    out
}

/// In a thread of its own that enters `netns`: runs the iterator `link` there and destroys
/// every socket it reports. Returns how many were destroyed.
pub(crate) fn destroy_in(netns: &Path, link: IterLink) -> io::Result<usize> {
    let netns = netns.to_path_buf();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let ns = File::open(&netns)?;
                // SAFETY: setns on this thread only (a thread of our own, ending here).
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                let records = run_iterator(link)?;
                let diag = SockDiag::open()?;
                let mut destroyed = 0;
                for rec in &records {
                    if diag.destroy(rec)? {
                        destroyed += 1;
                    }
                }
                Ok(destroyed)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("socket destroy thread panicked")))
    })
}

/// Creates the iterator in the calling thread's network namespace and reads its records.
fn run_iterator(link: IterLink) -> io::Result<Vec<UdpSockRecord>> {
    let mut file = link.into_file().map_err(io::Error::other)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes
        .chunks_exact(size_of::<UdpSockRecord>())
        .map(|c| {
            // SAFETY: UdpSockRecord is plain integers; the chunk has its size.
            unsafe { std::ptr::read_unaligned(c.as_ptr() as *const UdpSockRecord) }
        })
        .collect())
}

/// `struct inet_diag_sockid`.
#[repr(C)]
#[derive(Default)]
struct InetDiagSockId {
    sport: u16,
    dport: u16,
    src: [u32; 4],
    dst: [u32; 4],
    ifindex: u32,
    cookie: [u32; 2],
}

/// `struct nlmsghdr` + `struct inet_diag_req_v2`.
#[repr(C)]
#[derive(Default)]
struct DestroyRequest {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: InetDiagSockId,
}

/// A NETLINK_SOCK_DIAG socket of the calling thread's network namespace.
struct SockDiag {
    fd: OwnedFd,
}

impl SockDiag {
    fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Destroys the socket of `rec`; false when it is already gone (ENOENT).
    fn destroy(&self, rec: &UdpSockRecord) -> io::Result<bool> {
        let req = DestroyRequest {
            len: size_of::<DestroyRequest>() as u32,
            kind: SOCK_DESTROY,
            flags: (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
            family: libc::AF_INET as u8,
            protocol: IPPROTO_UDP,
            states: u32::MAX,
            id: InetDiagSockId {
                sport: rec.sport.to_be(),
                dport: rec.dport,
                src: [rec.saddr, 0, 0, 0],
                dst: [rec.daddr, 0, 0, 0],
                ifindex: rec.bound_dev_if,
                cookie: [rec.cookie as u32, (rec.cookie >> 32) as u32],
            },
            ..Default::default()
        };
        // SAFETY: sending a plain repr(C) struct of its own size.
        let sent = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                &req as *const DestroyRequest as *const libc::c_void,
                size_of::<DestroyRequest>(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        self.ack()
    }

    /// Reads the kernel's acknowledgement (an `NLMSG_ERROR` with error 0 on success).
    fn ack(&self) -> io::Result<bool> {
        let mut buf = [0u8; 512];
        // SAFETY: receiving into a buffer of its length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // nlmsghdr (16 bytes), then the nlmsgerr's error code.
        if n < 20 || u16::from_ne_bytes([buf[4], buf[5]]) != libc::NLMSG_ERROR as u16 {
            return Err(io::Error::other("SOCK_DESTROY: unexpected netlink answer"));
        }
        match -i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]) {
            0 => Ok(true),
            libc::ENOENT => Ok(false),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}
