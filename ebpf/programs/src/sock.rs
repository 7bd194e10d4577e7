//! Socket-level load balancing (cgroup sock_addr hooks).
//!
//! `connect4`/`sendmsg4` translate a service frontend into a backend before
//! the kernel routes anything, so a connected socket talks to the backend
//! with no per-packet NAT. The translation is remembered per socket cookie in
//! `SOCK_REVNAT` so that `recvmsg4` (UDP replies) and `getpeername4` report
//! the service address the application asked for. `sock_release` removes the entry of a
//! connected socket when it closes (entries of unconnected UDP sockets, one per
//! destination, age out of the LRU).

use aya_ebpf::{
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_set_retval},
    macros::{cgroup_sock, cgroup_sock_addr},
    programs::{SockAddrContext, SockContext},
    EbpfContext,
};
use aya_log_ebpf::debug;
use bpfk_ebpf_common::{
    flow_hash, SockRevKey, SockRevValue, AFFINITY_KIND_NETNS, DROP_NO_BACKEND_SOCK, DROP_SOCK_REVNAT_INSERT,
};

use crate::{
    lb::{select, Lookup},
    maps::{count_drop, count_traffic, SOCK_REVNAT},
};

/// Allow the operation.
const ALLOW: i32 = 1;
/// Reject the operation (errno from `bpf_set_retval`, EPERM otherwise).
const REJECT: i32 = 0;
const ECONNREFUSED: i32 = 111;

#[cgroup_sock_addr(connect4)]
pub fn bpfk_connect4(ctx: SockAddrContext) -> i32 {
    translate(&ctx)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn bpfk_sendmsg4(ctx: SockAddrContext) -> i32 {
    translate(&ctx)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn bpfk_recvmsg4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx);
    ALLOW
}

#[cgroup_sock_addr(getpeername4)]
pub fn bpfk_getpeername4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx);
    ALLOW
}

/// A socket of the cgroup closes: forget its reverse-NAT entry (connected sockets know
/// the backend they were sent to).
#[cgroup_sock(sock_release)]
pub fn bpfk_sock_release(ctx: SockContext) -> i32 {
    // SAFETY: the kernel hands us a valid bpf_sock.
    let sk = unsafe { &*ctx.sock };
    let addr = sk.dst_ip4;
    if addr != 0 {
        // SAFETY: helper valid for cgroup sock programs.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
        let key = SockRevKey {
            cookie,
            addr,
            port: sk.dst_port,
            pad: [0; 2],
        };
        // Most sockets were never translated: look (lock-free) before deleting.
        // SAFETY: only tested for presence.
        if unsafe { SOCK_REVNAT.get(&key) }.is_some() {
            let _ = SOCK_REVNAT.remove(&key);
        }
    }
    ALLOW
}

#[inline(always)]
fn translate(ctx: &SockAddrContext) -> i32 {
    // SAFETY: the kernel hands us a valid bpf_sock_addr.
    let sa = unsafe { &mut *ctx.sock_addr };
    let addr = sa.user_ip4;
    let port = sa.user_port as u16;
    let proto = sa.protocol as u8;
    // The client identity only matters for session affinity: asked for lazily.
    let netns = || unsafe {
        // SAFETY: helper valid for sock_addr programs.
        bpf_get_netns_cookie(ctx.as_ptr())
    };
    // Maglev frontends place each socket by its cookie (its source port is not bound yet).
    let flow = || {
        // SAFETY: helper valid for sock_addr programs.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
        flow_hash(cookie as u32, (cookie >> 32) as u16, port, proto)
    };
    match select(addr, port, proto, netns, AFFINITY_KIND_NETNS, flow) {
        Lookup::NotService => ALLOW,
        Lookup::NoBackends => {
            debug!(
                ctx,
                "bpfk: service {:i}:{} has no backends, refusing",
                u32::from_be(addr),
                u16::from_be(port)
            );
            count_drop(DROP_NO_BACKEND_SOCK);
            // SAFETY: helper valid for connect4/sendmsg4; it only sets the errno.
            unsafe { bpf_set_retval(-ECONNREFUSED) };
            REJECT
        }
        Lookup::Backend {
            id,
            backend,
            master,
        } => {
            // SAFETY: helper valid for sock_addr programs.
            let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
            let key = SockRevKey {
                cookie,
                addr: backend.addr,
                port: backend.port,
                pad: [0; 2],
            };
            let value = SockRevValue {
                addr,
                port,
                rev_nat_index: master.rev_nat_index,
            };
            if SOCK_REVNAT.insert(&key, &value, 0).is_err() {
                count_drop(DROP_SOCK_REVNAT_INSERT);
            }
            count_traffic(master.rev_nat_index, id, 0, 0, 1);
            sa.user_ip4 = backend.addr;
            sa.user_port = backend.port as u32;
            ALLOW
        }
    }
}

#[inline(always)]
fn reverse(ctx: &SockAddrContext) {
    // SAFETY: the kernel hands us a valid bpf_sock_addr.
    let sa = unsafe { &mut *ctx.sock_addr };
    // SAFETY: helper valid for sock_addr programs.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let key = SockRevKey {
        cookie,
        addr: sa.user_ip4,
        port: sa.user_port as u16,
        pad: [0; 2],
    };
    // SAFETY: value copied out immediately.
    if let Some(v) = unsafe { SOCK_REVNAT.get(&key) }.copied() {
        sa.user_ip4 = v.addr;
        sa.user_port = v.port as u32;
    }
}
