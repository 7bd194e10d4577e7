//! The UDP socket iterator (`iter/udp`): reports every connected IPv4 UDP socket of the
//! iterated network namespace that the socket load balancer connected to a backend listed
//! in `GONE_BACKENDS`, so user space can destroy it and the application reconnects to a
//! live backend (a connected UDP socket would otherwise keep sending to the old one).
//!
//! aya 0.14 cannot relocate kfunc calls (no `.ksyms` support), so `bpf_sock_destroy` is not
//! called here: the records go to user space, which destroys each socket with
//! `SOCK_DESTROY` (sock_diag, the same `udp_abort` the kfunc ends in), matched by cookie.

use aya_ebpf::helpers::{bpf_get_socket_cookie, bpf_seq_write};
use bpfk_ebpf_common::{GoneBackendKey, SockRevKey, UdpSockRecord};

use crate::maps::{GONE_BACKENDS, SOCK_REVNAT};

const AF_INET: u16 = 2;
/// `TCP_ESTABLISHED`: a connected UDP socket.
const SK_ESTABLISHED: u8 = 1;

// Offsets in `struct sock_common` (the first member of `struct udp_sock`), stable kernel
// ABI; the verifier checks each load against the kernel's BTF.
const SKC_DADDR: usize = 0;
const SKC_RCV_SADDR: usize = 4;
const SKC_DPORT: usize = 12;
const SKC_NUM: usize = 14;
const SKC_FAMILY: usize = 16;
const SKC_STATE: usize = 18;
const SKC_BOUND_DEV_IF: usize = 20;

/// `struct bpf_iter__udp`.
#[repr(C)]
struct IterUdp {
    meta: *const IterMeta,
    udp_sk: *const u8,
    uid: u32,
    bucket: i32,
}

/// `struct bpf_iter_meta`.
#[repr(C)]
struct IterMeta {
    seq: *mut core::ffi::c_void,
}

#[inline(always)]
fn field<T: Copy>(sk: *const u8, off: usize) -> T {
    // SAFETY: `sk` is the kernel's socket (checked non-null); the verifier checks the
    // offset and size against BTF.
    unsafe { core::ptr::read_volatile(sk.add(off) as *const T) }
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/udp")]
pub fn bpfk_iter_udp(ctx: *mut core::ffi::c_void) -> i32 {
    // SAFETY: the kernel hands iter/udp programs a `struct bpf_iter__udp`.
    let it = unsafe { &*(ctx as *const IterUdp) };
    let sk = it.udp_sk;
    if sk.is_null() {
        return 0;
    }
    if field::<u16>(sk, SKC_FAMILY) != AF_INET || field::<u8>(sk, SKC_STATE) != SK_ESTABLISHED {
        return 0;
    }
    let daddr: u32 = field(sk, SKC_DADDR);
    let dport: u16 = field(sk, SKC_DPORT);
    // SAFETY: tracing programs take a socket pointer (bpf_get_socket_ptr_cookie).
    let cookie = unsafe { bpf_get_socket_cookie(sk as *mut _) };
    let rkey = SockRevKey {
        cookie,
        addr: daddr,
        port: dport,
        pad: [0; 2],
    };
    // SAFETY: value copied out immediately.
    let Some(rev) = (unsafe { SOCK_REVNAT.get(&rkey) }).copied() else {
        return 0;
    };
    let gone = GoneBackendKey {
        addr: daddr,
        port: dport,
        rev_nat_index: rev.rev_nat_index,
    };
    // SAFETY: only tested for presence.
    if unsafe { GONE_BACKENDS.get(&gone) }.is_none() {
        return 0;
    }
    let rec = UdpSockRecord {
        cookie,
        daddr,
        saddr: field(sk, SKC_RCV_SADDR),
        dport,
        sport: field(sk, SKC_NUM),
        bound_dev_if: field(sk, SKC_BOUND_DEV_IF),
    };
    // SAFETY: `meta` is always set; the record lives on the stack for the call.
    unsafe {
        let seq = (*it.meta).seq;
        bpf_seq_write(
            seq as *mut _,
            &rec as *const UdpSockRecord as *const _,
            core::mem::size_of::<UdpSockRecord>() as u32,
        );
    }
    0
}
