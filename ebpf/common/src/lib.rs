//! Map keys and values shared by the eBPF programs (`ebpf/programs`) and the
//! user-space datapath (`bpfk-datapath`).
//!
//! Every type is `#[repr(C)]` with explicit padding fields so that a key built
//! with zeroed padding hashes identically on both sides. Addresses and ports
//! are stored in **network byte order**, exactly as the kernel hands them to
//! the programs (`bpf_sock_addr.user_ip4`, packet headers).
//!
//! The map layout follows Cilium's service maps: a service frontend
//! `{addr, port, proto}` owns slots `0..=N` in [`SVC_MAP`]; slot 0 is the
//! master entry (backend count, reverse-NAT index, flags) and slots `1..=N`
//! each point at a backend id in [`BACKEND_MAP`]. Map names carry a layout
//! version so an upgraded agent never misreads an old pinned map.
#![no_std]

/// Service map: [`ServiceKey`] → [`ServiceValue`].
pub const SVC_MAP: &str = "BPFK_SVC_V1";
/// Backend map: backend id (`u32`) → [`Backend`].
pub const BACKEND_MAP: &str = "BPFK_BACKEND_V1";
/// Reverse-NAT map: reverse-NAT index (`u16`) → [`RevNat`].
pub const REVNAT_MAP: &str = "BPFK_REVNAT_V1";
/// Per-packet connection tracking (LRU): [`CtKey`] → [`CtValue`].
pub const CT_MAP: &str = "BPFK_CT_V1";
/// Session affinity (LRU): [`AffinityKey`] → [`AffinityValue`].
pub const AFFINITY_MAP: &str = "BPFK_AFFINITY_V1";
/// Socket-level reverse NAT (LRU): [`SockRevKey`] → [`SockRevValue`].
pub const SOCK_REVNAT_MAP: &str = "BPFK_SOCK_REVNAT_V1";
/// Node configuration (array with one [`NodeConfig`] at index 0). V2: the service range.
pub const CONFIG_MAP: &str = "BPFK_CONFIG_V2";
/// Per-frontend traffic counters (per-CPU hash): reverse-NAT index (`u32`) →
/// [`TrafficCounters`]. User space creates an entry with each frontend and removes it with
/// the frontend; the programs only add to existing entries.
pub const SVC_STATS_MAP: &str = "BPFK_SVC_STATS_V1";
/// Per-backend traffic counters (per-CPU hash): backend id (`u32`) → [`TrafficCounters`],
/// managed like [`SVC_STATS_MAP`].
pub const BACKEND_STATS_MAP: &str = "BPFK_BACKEND_STATS_V1";
/// Drops and failed map writes by reason (per-CPU array): `DROP_*` index → `u64` count.
pub const DROPS_MAP: &str = "BPFK_DROPS_V1";
/// Backends that just left a UDP frontend: [`GoneBackendKey`] → `u8`. User space fills it
/// before it runs the UDP socket iterator (which reports the sockets connected through the
/// socket load balancer to one of them) and empties it afterwards.
pub const GONE_BACKENDS_MAP: &str = "BPFK_GONE_BACKENDS_V1";
/// Maglev lookup tables of the frontends with [`SVC_F_MAGLEV`]: [`MaglevKey`] → backend id
/// (`u32`). A frontend's table has as many entries as its master entry says.
pub const MAGLEV_MAP: &str = "BPFK_MAGLEV_V1";

// Entries of each map as compiled into the object (`ebpf/programs/src/maps.rs`) and the
// datapath's default `MapSizes`; the loader may size them otherwise. (The `#[map]` macro
// takes its name as a literal: a datapath unit test checks that the object's names and
// sizes are these.)
/// Entries of [`SVC_MAP`].
pub const SVC_MAP_ENTRIES: u32 = 65536;
/// Entries of [`BACKEND_MAP`].
pub const BACKEND_MAP_ENTRIES: u32 = 65536;
/// Entries of [`REVNAT_MAP`].
pub const REVNAT_MAP_ENTRIES: u32 = 65536;
/// Entries of [`CT_MAP`].
pub const CT_MAP_ENTRIES: u32 = 131072;
/// Entries of [`AFFINITY_MAP`].
pub const AFFINITY_MAP_ENTRIES: u32 = 65536;
/// Entries of [`SOCK_REVNAT_MAP`].
pub const SOCK_REVNAT_MAP_ENTRIES: u32 = 131072;
/// Entries of [`CONFIG_MAP`] (one [`NodeConfig`]).
pub const CONFIG_MAP_ENTRIES: u32 = 1;
/// Entries of [`SVC_STATS_MAP`] (one per reverse-NAT index: as many as [`REVNAT_MAP`]).
pub const SVC_STATS_MAP_ENTRIES: u32 = REVNAT_MAP_ENTRIES;
/// Entries of [`BACKEND_STATS_MAP`] (one per backend: as many as [`BACKEND_MAP`]).
pub const BACKEND_STATS_MAP_ENTRIES: u32 = BACKEND_MAP_ENTRIES;
/// Entries of [`DROPS_MAP`]: one per `DROP_*` reason.
pub const DROPS_MAP_ENTRIES: u32 = DROP_REASONS.len() as u32;
/// Entries of [`GONE_BACKENDS_MAP`]: backends removed in one service update (user space
/// runs the iterator in batches of at most this many).
pub const GONE_BACKENDS_MAP_ENTRIES: u32 = 1024;

/// Entries of [`MAGLEV_MAP`] (allocated as used: a cap, not a reservation).
pub const MAGLEV_MAP_ENTRIES: u32 = 1 << 20;

/// Every map of the object with its compiled-in entries.
pub const MAPS: [(&str, u32); 12] = [
    (SVC_MAP, SVC_MAP_ENTRIES),
    (BACKEND_MAP, BACKEND_MAP_ENTRIES),
    (REVNAT_MAP, REVNAT_MAP_ENTRIES),
    (CT_MAP, CT_MAP_ENTRIES),
    (AFFINITY_MAP, AFFINITY_MAP_ENTRIES),
    (SOCK_REVNAT_MAP, SOCK_REVNAT_MAP_ENTRIES),
    (CONFIG_MAP, CONFIG_MAP_ENTRIES),
    (SVC_STATS_MAP, SVC_STATS_MAP_ENTRIES),
    (BACKEND_STATS_MAP, BACKEND_STATS_MAP_ENTRIES),
    (DROPS_MAP, DROPS_MAP_ENTRIES),
    (GONE_BACKENDS_MAP, GONE_BACKENDS_MAP_ENTRIES),
    (MAGLEV_MAP, MAGLEV_MAP_ENTRIES),
];

/// [`DROPS_MAP`] index: connect()/sendmsg() to a frontend without backends was refused.
pub const DROP_NO_BACKEND_SOCK: u32 = 0;
/// [`DROPS_MAP`] index: a packet to a frontend without backends was rejected (TCP RST) or
/// answered with ICMP port unreachable (UDP) by the TC program.
pub const DROP_NO_BACKEND_TC: u32 = 1;
/// [`DROPS_MAP`] index: a conntrack entry could not be written (the flow was translated
/// but its replies will not be).
pub const DROP_CT_INSERT: u32 = 2;
/// [`DROPS_MAP`] index: a socket reverse-NAT entry could not be written (getpeername and
/// UDP replies show the backend address).
pub const DROP_SOCK_REVNAT_INSERT: u32 = 3;
/// [`DROPS_MAP`] index: a session-affinity entry could not be written.
pub const DROP_AFFINITY_INSERT: u32 = 4;
/// [`DROPS_MAP`] index: a backend slot pointed at a missing slot or backend (a service
/// update in flight).
pub const DROP_BACKEND_MISSING: u32 = 5;

/// The `DROP_*` reasons by index, as the agent's metrics label them.
pub const DROP_REASONS: [&str; 6] = [
    "no_backend_socket",
    "no_backend_packet",
    "conntrack_insert_failed",
    "socket_revnat_insert_failed",
    "affinity_insert_failed",
    "backend_missing",
];

/// `IPPROTO_TCP`.
pub const PROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`.
pub const PROTO_UDP: u8 = 17;

/// [`ServiceValue::flags`]: the frontend is a NodePort (`addr` is a node address).
pub const SVC_F_NODEPORT: u8 = 1;
/// [`ServiceValue::flags`]: `sessionAffinity: ClientIP`.
pub const SVC_F_AFFINITY: u8 = 2;

/// [`ServiceValue::flags`]: new flows pick their backend from the frontend's Maglev table
/// ([`MAGLEV_MAP`]) by [`flow_hash`]; the master entry's `backend_id` holds the table size.
pub const SVC_F_MAGLEV: u8 = 4;

/// [`Backend::flags`]: the backend lives on this node (no SNAT needed for NodePort).
pub const BACKEND_F_LOCAL: u8 = 1;

/// [`CtKey::dir`]: client → service direction.
pub const CT_DIR_FORWARD: u8 = 0;
/// [`CtKey::dir`]: backend → client direction.
pub const CT_DIR_REPLY: u8 = 1;

/// [`CtValue::flags`]: the flow is source-NATed to the node address.
pub const CT_F_SNAT: u8 = 1;
/// [`CtValue::flags`]: packets are redirected out of the underlay device
/// (SNATed flows, and NodePort replies to remote clients: the kernel would
/// drop a packet with a local source address arriving from a pod).
pub const CT_F_VIA_UNDERLAY: u8 = 2;

/// [`AffinityKey::kind`]: the client is identified by its network namespace
/// cookie (socket-level load balancing).
pub const AFFINITY_KIND_NETNS: u8 = 1;
/// [`AffinityKey::kind`]: the client is identified by its IPv4 address
/// (per-packet load balancing).
pub const AFFINITY_KIND_ADDR: u8 = 2;

/// A service frontend slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// Frontend IPv4 address (ClusterIP or node address), network order.
    pub addr: u32,
    /// Frontend port, network order.
    pub port: u16,
    /// 0 = master entry, `1..=count` = backend slots.
    pub slot: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    pub pad: [u8; 3],
}

/// Value of a service slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    /// Backend id (slots `1..=count`); 0 in the master entry.
    pub backend_id: u32,
    /// Number of backends (master entry only). 0 = refuse connections.
    pub count: u16,
    /// Reverse-NAT index of this frontend.
    pub rev_nat_index: u16,
    /// `SVC_F_*`.
    pub flags: u8,
    pub pad: [u8; 3],
    /// Session affinity timeout in seconds (master entry, with `SVC_F_AFFINITY`).
    pub affinity_timeout_s: u32,
}

/// A backend (pod endpoint).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Backend {
    /// IPv4 address, network order.
    pub addr: u32,
    /// Port, network order.
    pub port: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    /// `BACKEND_F_*`.
    pub flags: u8,
}

/// The frontend a reverse-NAT index stands for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RevNat {
    /// Frontend address, network order.
    pub addr: u32,
    /// Frontend port, network order.
    pub port: u16,
    pub pad: [u8; 2],
}

/// Connection-tracking key: the packet's 5-tuple as seen on arrival.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// `CT_DIR_FORWARD` or `CT_DIR_REPLY`.
    pub dir: u8,
    pub pad: [u8; 2],
}

/// Connection-tracking value: the rewrite to apply to matching packets.
/// A zero address/port means "leave unchanged".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtValue {
    pub new_saddr: u32,
    pub new_daddr: u32,
    pub new_sport: u16,
    pub new_dport: u16,
    /// Backend chosen for the flow (forward entries).
    pub backend_id: u32,
    pub rev_nat_index: u16,
    /// `CT_F_*`.
    pub flags: u8,
    pub pad: u8,
}

/// Session-affinity key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    /// Network namespace cookie or IPv4 address, see `kind`.
    pub client: u64,
    pub rev_nat_index: u16,
    /// `AFFINITY_KIND_*`.
    pub kind: u8,
    pub pad: [u8; 5],
}

/// Session-affinity value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffinityValue {
    pub backend_id: u32,
    pub pad: u32,
    /// `bpf_ktime_get_ns()` of the last use.
    pub last_used_ns: u64,
}

/// Socket-level reverse NAT key: a socket (by cookie) and the backend it was
/// sent to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockRevKey {
    pub cookie: u64,
    pub addr: u32,
    pub port: u16,
    pub pad: [u8; 2],
}

/// Socket-level reverse NAT value: the frontend the application asked for.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockRevValue {
    pub addr: u32,
    pub port: u16,
    pub rev_nat_index: u16,
}

/// Traffic through one frontend or backend (one per CPU; user space sums them).
///
/// The socket-level path counts `connections` only (connect() and each translated
/// sendmsg()); its packets travel as plain pod-to-pod traffic that no program looks at.
/// The per-packet (TC) path counts new flows in `connections` and every translated packet,
/// both directions, in `packets`/`bytes`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounters {
    pub packets: u64,
    pub bytes: u64,
    pub connections: u64,
}

/// An entry of a frontend's Maglev table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MaglevKey {
    pub rev_nat_index: u16,
    pub pad: u16,
    /// `0..table size`.
    pub index: u32,
}

/// The hash a Maglev frontend's new flow is placed by: the client's address and port, the
/// frontend port and protocol (not the frontend address, so a NodePort flow hashes alike on
/// every node). Addresses and ports in network order, as the packet holds them. Shared by
/// the programs and the user-space measurements.
#[inline(always)]
pub fn flow_hash(saddr: u32, sport: u16, dport: u16, proto: u8) -> u32 {
    // murmur3's 32-bit finaliser over a mix of the fields.
    let mut h = saddr ^ 0x9e37_79b9;
    h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    h ^= (u32::from(sport) << 16) | u32::from(dport);
    h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    h ^= u32::from(proto);
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// A backend that left a frontend (by the frontend's reverse-NAT index).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GoneBackendKey {
    /// Backend address, network order.
    pub addr: u32,
    /// Backend port, network order.
    pub port: u16,
    pub rev_nat_index: u16,
}

/// What the UDP socket iterator (`iter/udp`) writes for each socket connected through the
/// socket load balancer to a gone backend: enough for user space to destroy it with
/// `SOCK_DESTROY` (sock_diag), which looks the socket up by its tuple and checks the cookie.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpSockRecord {
    pub cookie: u64,
    /// Remote (backend) address, network order.
    pub daddr: u32,
    /// Local address, network order.
    pub saddr: u32,
    /// Remote port, network order.
    pub dport: u16,
    /// Local port, host order (the kernel's `skc_num`).
    pub sport: u16,
    /// The device the socket is bound to (0: none).
    pub bound_dev_if: u32,
}

/// Per-node settings the programs need (array index 0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeConfig {
    /// Node address on the underlay (NodePort frontends, SNAT), network order.
    pub node_addr: u32,
    /// ifindex of the underlay device (SNATed NodePort flows are redirected there).
    pub underlay_ifindex: u32,
    /// This node's pod range (network and mask, network order).
    pub pod_net: u32,
    pub pod_mask: u32,
    /// Service (ClusterIP) range, network order. Packets to neither this range nor
    /// `node_addr` skip the service lookups (only replies of translated flows are looked
    /// for). A zero mask means every destination may be a service.
    pub svc_net: u32,
    pub svc_mask: u32,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all types are #[repr(C)], contain only integers and have explicit padding.
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for ServiceValue {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for RevNat {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtValue {}
    unsafe impl aya::Pod for AffinityKey {}
    unsafe impl aya::Pod for AffinityValue {}
    unsafe impl aya::Pod for SockRevKey {}
    unsafe impl aya::Pod for SockRevValue {}
    unsafe impl aya::Pod for NodeConfig {}
    unsafe impl aya::Pod for TrafficCounters {}
    unsafe impl aya::Pod for GoneBackendKey {}
    unsafe impl aya::Pod for MaglevKey {}
    unsafe impl aya::Pod for UdpSockRecord {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ServiceKey>(), 12);
        assert_eq!(size_of::<ServiceValue>(), 16);
        assert_eq!(size_of::<Backend>(), 8);
        assert_eq!(size_of::<RevNat>(), 8);
        assert_eq!(size_of::<CtKey>(), 16);
        assert_eq!(size_of::<CtValue>(), 20);
        assert_eq!(size_of::<AffinityKey>(), 16);
        assert_eq!(size_of::<AffinityValue>(), 16);
        assert_eq!(size_of::<SockRevKey>(), 16);
        assert_eq!(size_of::<SockRevValue>(), 8);
        assert_eq!(size_of::<NodeConfig>(), 24);
        assert_eq!(size_of::<TrafficCounters>(), 24);
        assert_eq!(size_of::<GoneBackendKey>(), 8);
        assert_eq!(size_of::<MaglevKey>(), 8);
        assert_eq!(size_of::<UdpSockRecord>(), 24);
    }
}
