//! Per-packet load balancing (TC ingress on the host side of pod veths and on
//! the underlay device).
//!
//! Every IPv4 TCP/UDP packet entering the node is checked against the
//! conntrack map first (reply direction: reverse NAT). Packets to neither the
//! service range nor the node address stop there: pod-to-pod traffic, including
//! every flow the socket-level hooks already translated, costs one lookup and
//! creates no conntrack entry. The others are checked for an established
//! forward flow (it keeps its backend), then against the service map (new
//! flow: pick a backend, DNAT, record both directions). NodePort flows whose backend lives
//! on another node are also SNATed to the node address and redirected out of
//! the underlay so that replies come back through this node.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::{bpf_redirect, bpf_redirect_neigh, bpf_skb_change_tail},
    macros::classifier,
    programs::TcContext,
};
use aya_log_ebpf::debug;
use bpfk_ebpf_common::{
    flow_hash, CtKey, CtValue, NodeConfig, AFFINITY_KIND_ADDR, BACKEND_F_LOCAL, CT_DIR_FORWARD,
    CT_DIR_REPLY, CT_F_SNAT, CT_F_VIA_UNDERLAY, DROP_CT_INSERT, DROP_NO_BACKEND_TC, PROTO_TCP,
    PROTO_UDP, SVC_F_NODEPORT,
};

use crate::{
    lb::{backend, select, Lookup},
    maps::{count_drop, count_traffic, CONFIG, CT},
};

/// TCX "continue with the next program / default action".
const TC_ACT_UNSPEC: i32 = -1;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IP_CSUM_OFF: usize = ETH_HLEN + 10;
const IP_SRC_OFF: usize = ETH_HLEN + 12;
const IP_DST_OFF: usize = ETH_HLEN + 16;
const BPF_F_PSEUDO_HDR: u64 = 0x10;
const BPF_F_MARK_MANGLED_0: u64 = 0x20;

#[classifier]
pub fn bpfk_tc_ingress(ctx: TcContext) -> i32 {
    try_ingress(&ctx).unwrap_or(TC_ACT_UNSPEC)
}

struct Packet {
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
    proto: u8,
    l4: usize,
}

/// Reads a header field straight from the packet (no helper call); `off + size_of::<T>()`
/// must be checked against `data_end` by the caller.
#[inline(always)]
fn at<T: Copy>(data: usize, off: usize) -> T {
    // SAFETY: the caller checked the bounds (the verifier does too).
    unsafe { core::ptr::read_unaligned((data + off) as *const T) }
}

/// Parses the headers by direct packet access when they are in the linear part of the
/// buffer (the usual case), with `bpf_skb_load_bytes` otherwise.
#[inline(always)]
fn parse(ctx: &TcContext) -> Result<Option<Packet>, i64> {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + ETH_HLEN + 20 > end {
        return parse_loaded(ctx);
    }
    if u16::from_be(at(data, 12)) != ETH_P_IP {
        return Ok(None);
    }
    let vihl: u8 = at(data, ETH_HLEN);
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        return Ok(None);
    }
    if u16::from_be(at(data, ETH_HLEN + 6)) & 0x3fff != 0 {
        return Ok(None);
    }
    let proto: u8 = at(data, ETH_HLEN + 9);
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Ok(None);
    }
    let l4 = ETH_HLEN + ihl;
    // Checked and read through the same pointer, so the verifier knows its range.
    let ports = data + l4;
    if ports + 4 > end {
        return parse_loaded(ctx);
    }
    Ok(Some(Packet {
        saddr: at(data, IP_SRC_OFF),
        daddr: at(data, IP_DST_OFF),
        sport: at(ports, 0),
        dport: at(ports, 2),
        proto,
        l4,
    }))
}

#[inline(always)]
fn parse_loaded(ctx: &TcContext) -> Result<Option<Packet>, i64> {
    let eth_proto: u16 = ctx.load(12)?;
    if u16::from_be(eth_proto) != ETH_P_IP {
        return Ok(None);
    }
    let vihl: u8 = ctx.load(ETH_HLEN)?;
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        return Ok(None);
    }
    let frag: u16 = ctx.load(ETH_HLEN + 6)?;
    if u16::from_be(frag) & 0x3fff != 0 {
        // Fragments carry no (or a partial) L4 header: leave them alone.
        return Ok(None);
    }
    let proto: u8 = ctx.load(ETH_HLEN + 9)?;
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Ok(None);
    }
    let l4 = ETH_HLEN + ihl;
    Ok(Some(Packet {
        saddr: ctx.load(IP_SRC_OFF)?,
        daddr: ctx.load(IP_DST_OFF)?,
        sport: ctx.load(l4)?,
        dport: ctx.load(l4 + 2)?,
        proto,
        l4,
    }))
}

#[inline(always)]
fn try_ingress(ctx: &TcContext) -> Result<i32, i64> {
    let Some(p) = parse(ctx)? else {
        return Ok(TC_ACT_UNSPEC);
    };

    // Reply of a translated flow?
    let rkey = CtKey {
        saddr: p.saddr,
        daddr: p.daddr,
        sport: p.sport,
        dport: p.dport,
        proto: p.proto,
        dir: CT_DIR_REPLY,
        pad: [0; 2],
    };
    // SAFETY: value copied out immediately.
    if let Some(ct) = unsafe { CT.get(&rkey) }.copied() {
        return translated(ctx, &p, &ct, 0);
    }

    let cfg = CONFIG.get(0).copied().unwrap_or_default();
    if !maybe_frontend(&cfg, p.daddr) {
        forget_stale_reply(ctx, &p)?;
        return Ok(TC_ACT_UNSPEC);
    }

    // Established forward flow?
    let fkey = CtKey {
        dir: CT_DIR_FORWARD,
        ..rkey
    };
    // SAFETY: as above.
    if let Some(ct) = unsafe { CT.get(&fkey) }.copied() {
        // A SYN reusing the 4-tuple is a new connection: its reply entry may be gone (a
        // socket-balanced connection on the same tuple removed it), so it is set up anew.
        if backend(ct.backend_id).is_some() && !is_syn(ctx, &p)? {
            return translated(ctx, &p, &ct, 0);
        }
        // The backend was removed, or a new connection: choose again below.
        let _ = CT.remove(&fkey);
    }

    let (id, be, master) = match select(
        p.daddr,
        p.dport,
        p.proto,
        || p.saddr as u64,
        AFFINITY_KIND_ADDR,
        || flow_hash(p.saddr, p.sport, p.dport, p.proto),
    ) {
        Lookup::NotService => {
            forget_stale_reply(ctx, &p)?;
            return Ok(TC_ACT_UNSPEC);
        }
        Lookup::NoBackends => {
            debug!(
                ctx,
                "bpfk: tc: no backends for {:i}:{}",
                u32::from_be(p.daddr),
                u16::from_be(p.dport)
            );
            count_drop(DROP_NO_BACKEND_TC);
            if p.proto == PROTO_TCP {
                return reject_tcp(ctx, &p);
            }
            // UDP: ICMP port unreachable, as the socket path's ECONNREFUSED.
            return reject_udp(ctx, &p);
        }
        Lookup::Backend {
            id,
            backend,
            master,
        } => (id, backend, master),
    };

    let nodeport = master.flags & SVC_F_NODEPORT != 0;
    let mut snat_addr = 0u32;
    if nodeport && be.flags & BACKEND_F_LOCAL == 0 {
        snat_addr = cfg.node_addr;
    }
    let client_is_local_pod = cfg.pod_mask != 0 && p.saddr & cfg.pod_mask == cfg.pod_net;
    let fwd_flags = if snat_addr != 0 {
        CT_F_SNAT | CT_F_VIA_UNDERLAY
    } else {
        0
    };
    let rev_flags = if snat_addr != 0 || (nodeport && !client_is_local_pod) {
        CT_F_VIA_UNDERLAY
    } else {
        0
    };
    let fwd = CtValue {
        new_saddr: snat_addr,
        new_daddr: be.addr,
        new_sport: 0,
        new_dport: be.port,
        backend_id: id,
        rev_nat_index: master.rev_nat_index,
        flags: fwd_flags,
        pad: 0,
    };
    let rev_key = CtKey {
        saddr: be.addr,
        daddr: if snat_addr != 0 { snat_addr } else { p.saddr },
        sport: be.port,
        dport: p.sport,
        proto: p.proto,
        dir: CT_DIR_REPLY,
        pad: [0; 2],
    };
    let rev = CtValue {
        new_saddr: p.daddr,
        new_daddr: if snat_addr != 0 { p.saddr } else { 0 },
        new_sport: p.dport,
        new_dport: 0,
        backend_id: id,
        rev_nat_index: master.rev_nat_index,
        flags: rev_flags,
        pad: 0,
    };
    if CT.insert(&rev_key, &rev, 0).is_err() || CT.insert(&fkey, &fwd, 0).is_err() {
        count_drop(DROP_CT_INSERT);
    }
    translated(ctx, &p, &fwd, 1)
}

/// Whether `daddr` may be a frontend: in the service range or the node address (NodePort).
#[inline(always)]
fn maybe_frontend(cfg: &NodeConfig, daddr: u32) -> bool {
    daddr & cfg.svc_mask == cfg.svc_net || (cfg.node_addr != 0 && daddr == cfg.node_addr)
}

/// Counts the packet (and `new_conns`) for the flow's frontend and backend, rewrites it
/// and sends it on.
#[inline(always)]
fn translated(ctx: &TcContext, p: &Packet, ct: &CtValue, new_conns: u64) -> Result<i32, i64> {
    count_traffic(
        ct.rev_nat_index,
        ct.backend_id,
        1,
        u64::from(ctx.len()),
        new_conns,
    );
    rewrite(ctx, p, ct)?;
    Ok(finish(ct))
}

/// SNATed flows and NodePort replies leave through the underlay (the kernel
/// would drop a packet with a local source address arriving from outside).
#[inline(always)]
fn finish(ct: &CtValue) -> i32 {
    if ct.flags & CT_F_VIA_UNDERLAY != 0 {
        if let Some(cfg) = CONFIG.get(0) {
            if cfg.underlay_ifindex != 0 {
                // SAFETY: NULL params ask the kernel to do the FIB lookup itself.
                return unsafe {
                    bpf_redirect_neigh(cfg.underlay_ifindex, core::ptr::null_mut(), 0, 0)
                } as i32;
            }
        }
    }
    TC_ACT_OK
}

#[inline(always)]
fn rewrite(ctx: &TcContext, p: &Packet, ct: &CtValue) -> Result<(), i64> {
    let csum_off = if p.proto == PROTO_TCP {
        p.l4 + 16
    } else {
        p.l4 + 6
    };
    // UDP may run without a checksum (0): leave it so.
    let l4_csum = if p.proto == PROTO_UDP {
        let c: u16 = ctx.load(csum_off)?;
        c != 0
    } else {
        true
    };
    let mangled = if p.proto == PROTO_UDP {
        BPF_F_MARK_MANGLED_0
    } else {
        0
    };
    if ct.new_saddr != 0 && ct.new_saddr != p.saddr {
        set_addr(
            ctx,
            IP_SRC_OFF,
            csum_off,
            l4_csum,
            mangled,
            p.saddr,
            ct.new_saddr,
        )?;
    }
    if ct.new_daddr != 0 && ct.new_daddr != p.daddr {
        set_addr(
            ctx,
            IP_DST_OFF,
            csum_off,
            l4_csum,
            mangled,
            p.daddr,
            ct.new_daddr,
        )?;
    }
    if ct.new_sport != 0 && ct.new_sport != p.sport {
        set_port(ctx, p.l4, csum_off, l4_csum, mangled, p.sport, ct.new_sport)?;
    }
    if ct.new_dport != 0 && ct.new_dport != p.dport {
        set_port(
            ctx,
            p.l4 + 2,
            csum_off,
            l4_csum,
            mangled,
            p.dport,
            ct.new_dport,
        )?;
    }
    Ok(())
}

#[inline(always)]
fn set_addr(
    ctx: &TcContext,
    off: usize,
    csum_off: usize,
    l4_csum: bool,
    mangled: u64,
    old: u32,
    new: u32,
) -> Result<(), i64> {
    if l4_csum {
        ctx.l4_csum_replace(
            csum_off,
            old as u64,
            new as u64,
            BPF_F_PSEUDO_HDR | mangled | 4,
        )?;
    }
    ctx.l3_csum_replace(IP_CSUM_OFF, old as u64, new as u64, 4)?;
    ctx.store(off, &new, 0)?;
    Ok(())
}

#[inline(always)]
fn set_port(
    ctx: &TcContext,
    off: usize,
    csum_off: usize,
    l4_csum: bool,
    mangled: u64,
    old: u16,
    new: u16,
) -> Result<(), i64> {
    if l4_csum {
        ctx.l4_csum_replace(csum_off, old as u64, new as u64, mangled | 2)?;
    }
    ctx.store(off, &new, 0)?;
    Ok(())
}

const TCP_FIN_SYN: u8 = 0x03;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// Answers a TCP segment to a service without backends with a RST, turned
/// around in place and sent back out of the interface it came in on, so the
/// client's connect() fails at once with ECONNREFUSED.
#[inline(always)]
fn reject_tcp(ctx: &TcContext, p: &Packet) -> Result<i32, i64> {
    let flags: u8 = ctx.load(p.l4 + 13)?;
    if flags & TCP_RST != 0 {
        return Ok(TC_ACT_SHOT);
    }
    let seq = u32::from_be(ctx.load::<u32>(p.l4 + 4)?);
    let ack = u32::from_be(ctx.load::<u32>(p.l4 + 8)?);
    let tot_len = u16::from_be(ctx.load::<u16>(ETH_HLEN + 2)?) as u32;
    let doff: u8 = ctx.load(p.l4 + 12)?;
    let hdrs = (p.l4 - ETH_HLEN) as u32 + ((doff >> 4) as u32) * 4;
    let payload = tot_len.saturating_sub(hdrs);
    let consumed = payload + if flags & TCP_FIN_SYN != 0 { 1 } else { 0 };
    let (new_seq, new_ack, new_flags) = if flags & TCP_ACK != 0 {
        (ack, 0u32, TCP_RST)
    } else {
        (0u32, seq.wrapping_add(consumed), TCP_RST | TCP_ACK)
    };

    // Swap MACs, addresses and ports (swaps leave every checksum intact).
    let dmac: [u8; 6] = ctx.load(0)?;
    let smac: [u8; 6] = ctx.load(6)?;
    ctx.store(0, &smac, 0)?;
    ctx.store(6, &dmac, 0)?;
    ctx.store(IP_SRC_OFF, &p.daddr, 0)?;
    ctx.store(IP_DST_OFF, &p.saddr, 0)?;
    ctx.store(p.l4, &p.dport, 0)?;
    ctx.store(p.l4 + 2, &p.sport, 0)?;

    let csum_off = p.l4 + 16;
    let old_seq: u32 = ctx.load(p.l4 + 4)?;
    let new_seq = new_seq.to_be();
    ctx.l4_csum_replace(csum_off, old_seq as u64, new_seq as u64, 4)?;
    ctx.store(p.l4 + 4, &new_seq, 0)?;
    let old_ack: u32 = ctx.load(p.l4 + 8)?;
    let new_ack = new_ack.to_be();
    ctx.l4_csum_replace(csum_off, old_ack as u64, new_ack as u64, 4)?;
    ctx.store(p.l4 + 8, &new_ack, 0)?;
    // Data offset + flags word, then the window.
    let old_word: u16 = ctx.load(p.l4 + 12)?;
    let new_word = u16::from_ne_bytes([doff, new_flags]);
    ctx.l4_csum_replace(csum_off, old_word as u64, new_word as u64, 2)?;
    ctx.store(p.l4 + 12, &new_word, 0)?;
    let old_win: u16 = ctx.load(p.l4 + 14)?;
    ctx.l4_csum_replace(csum_off, old_win as u64, 0, 2)?;
    ctx.store(p.l4 + 14, &0u16, 0)?;

    // SAFETY: the context wraps a valid __sk_buff.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: plain helper call.
    Ok(unsafe { bpf_redirect(ifindex, 0) } as i32)
}

const IPV4_HLEN: usize = 20;
const ICMP_HLEN: usize = 8;
/// The original IP header (without options) and the first 8 bytes of its datagram.
const ICMP_QUOTE: usize = IPV4_HLEN + 8;
/// IP + ICMP headers + quote.
const ICMP_REPLY_L3: usize = IPV4_HLEN + ICMP_HLEN + ICMP_QUOTE;
const IPPROTO_ICMP: u8 = 1;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;
const BPF_F_RECOMPUTE_CSUM: u64 = 1;

/// The ones'-complement checksum of `bytes` (an even number of them).
#[inline(always)]
fn csum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut i = 0;
    while i + 1 < bytes.len() {
        sum += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Answers a UDP datagram to a service without backends with ICMP port unreachable from
/// the service address (quoting the datagram's IP header and first 8 bytes, RFC 792),
/// turned into that reply in place and sent back out of the interface it came in on, so a
/// connected client's next receive fails with ECONNREFUSED. Datagrams with IP options are
/// dropped.
#[inline(always)]
fn reject_udp(ctx: &TcContext, p: &Packet) -> Result<i32, i64> {
    if p.l4 != ETH_HLEN + IPV4_HLEN {
        return Ok(TC_ACT_SHOT);
    }
    let quote: [u8; ICMP_QUOTE] = ctx.load(ETH_HLEN)?;
    let dmac: [u8; 6] = ctx.load(0)?;
    let smac: [u8; 6] = ctx.load(6)?;
    let mut l3 = [0u8; ICMP_REPLY_L3];
    l3[0] = 0x45;
    l3[2..4].copy_from_slice(&(ICMP_REPLY_L3 as u16).to_be_bytes());
    l3[6] = 0x40; // DF
    l3[8] = 64; // TTL
    l3[9] = IPPROTO_ICMP;
    l3[12..16].copy_from_slice(&p.daddr.to_ne_bytes());
    l3[16..20].copy_from_slice(&p.saddr.to_ne_bytes());
    let ip_csum = csum(&l3[..IPV4_HLEN]);
    l3[10..12].copy_from_slice(&ip_csum.to_be_bytes());
    l3[IPV4_HLEN] = ICMP_DEST_UNREACH;
    l3[IPV4_HLEN + 1] = ICMP_PORT_UNREACH;
    l3[IPV4_HLEN + ICMP_HLEN..].copy_from_slice(&quote);
    let icmp_csum = csum(&l3[IPV4_HLEN..]);
    l3[IPV4_HLEN + 2..IPV4_HLEN + 4].copy_from_slice(&icmp_csum.to_be_bytes());

    // SAFETY: the context wraps a valid __sk_buff.
    let r = unsafe { bpf_skb_change_tail(ctx.skb.skb, (ETH_HLEN + ICMP_REPLY_L3) as u32, 0) };
    if r != 0 {
        return Ok(TC_ACT_SHOT);
    }
    ctx.store(0, &smac, 0)?;
    ctx.store(6, &dmac, 0)?;
    ctx.store(ETH_HLEN, &l3, BPF_F_RECOMPUTE_CSUM)?;
    // SAFETY: the context wraps a valid __sk_buff.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: plain helper call.
    Ok(unsafe { bpf_redirect(ifindex, 0) } as i32)
}

/// Whether the packet opens a TCP connection (SYN without ACK).
#[inline(always)]
fn is_syn(ctx: &TcContext, p: &Packet) -> Result<bool, i64> {
    if p.proto != PROTO_TCP {
        return Ok(false);
    }
    let flags: u8 = ctx.load(p.l4 + 13)?;
    Ok(flags & (TCP_FIN_SYN | TCP_ACK | TCP_RST) == 0x02)
}

/// A new TCP connection that is not translated (a direct pod connection, or
/// one balanced at the socket level) may reuse the 4-tuple of an earlier
/// translated flow: drop that flow's reply entry, or it would rewrite this
/// connection's replies.
#[inline(always)]
fn forget_stale_reply(ctx: &TcContext, p: &Packet) -> Result<(), i64> {
    if is_syn(ctx, p)? {
        let key = CtKey {
            saddr: p.daddr,
            daddr: p.saddr,
            sport: p.dport,
            dport: p.sport,
            proto: p.proto,
            dir: CT_DIR_REPLY,
            pad: [0; 2],
        };
        // A lookup is lock-free (and inlined); the delete takes the bucket lock.
        // SAFETY: only tested for presence.
        if unsafe { CT.get(&key) }.is_some() {
            let _ = CT.remove(&key);
        }
    }
    Ok(())
}
