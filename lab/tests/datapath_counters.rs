//! The datapath's counters after real traffic through the kernel (run as root, after
//! `cargo xtask build-ebpf`): per-frontend and per-backend connections for the socket-level
//! path, packets and bytes too for the per-packet path, drops by reason, program run
//! counts, and the socket reverse-NAT entries that closed sockets leave behind (none).

mod netlab;

use std::net::Ipv4Addr;

use bpfk_datapath::{
    counters::{BackendTraffic, FrontendTraffic},
    Endpoint, EndpointPort, Observer, Protocol, ServiceName, ServicePort, ServiceSpec,
};
use netlab::{run_client, Lab, Proc};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 60);
const EMPTY_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 61);

fn spec(name: &str, ip: Ipv4Addr) -> ServiceSpec {
    ServiceSpec {
        name: ServiceName::new("default", name),
        cluster_ip: Some(ip),
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: None,
        }],
        affinity_timeout_s: None,
        lb_algorithm: Default::default(),
    }
}

fn endpoint(addr: Ipv4Addr) -> Endpoint {
    Endpoint {
        addr,
        ports: vec![EndpointPort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 8080,
        }],
    }
}

fn web(obs: &Observer) -> FrontendTraffic {
    let all = obs.frontends().expect("frontend counters");
    all.into_iter()
        .find(|f| f.service == Some(ServiceName::new("default", "web")))
        .expect("the web frontend has counters")
}

fn backends(obs: &Observer) -> Vec<BackendTraffic> {
    obs.backends().expect("backend counters")
}

fn drop_count(obs: &Observer, reason: &str) -> u64 {
    let drops = obs.drops().expect("drop counters");
    drops
        .iter()
        .find(|(r, _)| *r == reason)
        .map(|(_, n)| *n)
        .unwrap_or_else(|| panic!("no drop reason {reason} in {drops:?}"))
}

fn sock_revnat_entries(obs: &Observer) -> usize {
    let fill = obs.map_fill().expect("map fill");
    fill.iter()
        .find(|m| m.name == bpfk_ebpf_common::SOCK_REVNAT_MAP)
        .map(|m| m.entries)
        .expect("socket reverse-NAT map in the fill")
}

fn serve(ns: &str, name: &str) -> Proc {
    let mut p = Proc::spawn(ns, None, &["tcp-server", "--port", "8080", "--name", name]);
    p.wait_ready();
    p
}

fn tcp_clients(ns: &str, cgroup: Option<&std::path::Path>, addr: &str, count: u32) {
    let v = run_client(
        ns,
        cgroup,
        &["tcp-client", "--addr", addr, "--count", &count.to_string()],
    );
    assert_eq!(v["errors"], serde_json::json!({}), "client errors: {v}");
}

#[test]
fn counters_follow_socket_and_packet_traffic() {
    let lab = Lab::new(2);
    let a = lab.node(0);
    let b = lab.node(1);
    let _ta = serve(&a.pods[0].ns, "a1");
    let _tb = serve(&b.pods[0].ns, "b1");
    let mut dpa = lab.load_datapath(0);
    let mut dpb = lab.load_datapath(1);
    let eps = [endpoint(a.pods[0].addr), endpoint(b.pods[0].addr)];
    for dp in [&mut dpa, &mut dpb] {
        dp.sync_service(&spec("web", VIP), &eps).unwrap();
        dp.sync_service(&spec("empty", EMPTY_VIP), &[]).unwrap();
    }
    let _stats = bpfk_datapath::enable_run_stats().expect("bpf run statistics");
    let obs = dpa.observer().expect("observer");
    let start = web(&obs);
    assert_eq!(
        start.counters,
        Default::default(),
        "fresh counters: {start:?}"
    );
    let runs_before: u64 = obs.programs().iter().map(|p| p.run_count).sum();

    // Socket level: 60 connections counted at connect(), no packet seen.
    let client = &a.pods[1].ns;
    let vip = format!("{VIP}:80");
    tcp_clients(client, Some(&a.cgroup), &vip, 60);
    let after_sock = web(&obs);
    assert_eq!(after_sock.counters.connections, 60, "{after_sock:?}");
    assert_eq!(after_sock.counters.packets, 0, "{after_sock:?}");
    let per_backend: u64 = backends(&obs).iter().map(|b| b.counters.connections).sum();
    assert_eq!(per_backend, 60, "{:?}", backends(&obs));
    assert!(
        backends(&obs).iter().all(|b| b.backend.is_some()),
        "every counted backend is named: {:?}",
        backends(&obs)
    );
    // Every client socket closed: sock_release removed its reverse-NAT entry.
    assert_eq!(
        sock_revnat_entries(&obs),
        0,
        "entries left by closed sockets"
    );

    // Per packet (client outside the cgroup): 40 new flows, both directions counted.
    tcp_clients(client, None, &vip, 40);
    let after_tc = web(&obs);
    assert_eq!(after_tc.counters.connections, 100, "{after_tc:?}");
    // SYN, ACK, FIN, ACK and the replies: at least 6 packets a connection.
    assert!(after_tc.counters.packets >= 40 * 6, "{after_tc:?}");
    assert!(
        after_tc.counters.bytes >= after_tc.counters.packets * 40,
        "an IPv4 TCP packet is at least 40 bytes: {after_tc:?}"
    );

    // Refusals are counted by reason.
    let empty = format!("{EMPTY_VIP}:80");
    let v = run_client(client, Some(&a.cgroup), &["refused", "--addr", &empty]);
    assert_eq!(v["outcome"], "refused", "{v}");
    assert_eq!(drop_count(&obs, "no_backend_socket"), 1);
    let v = run_client(client, None, &["refused", "--addr", &empty]);
    assert_eq!(v["outcome"], "refused", "{v}");
    assert!(drop_count(&obs, "no_backend_packet") >= 1);
    assert_eq!(drop_count(&obs, "conntrack_insert_failed"), 0);

    let runs_after: u64 = obs.programs().iter().map(|p| p.run_count).sum();
    assert!(
        runs_after > runs_before,
        "program run counts did not move: {:?}",
        obs.programs()
    );
    let fill = obs.map_fill().expect("map fill");
    let svc = fill
        .iter()
        .find(|m| m.name == bpfk_ebpf_common::SVC_MAP)
        .unwrap();
    // web: master + 2 slots, empty: master.
    assert_eq!(svc.entries, 4, "{fill:?}");

    // A removed service takes its counters along.
    dpa.delete_service(&ServiceName::new("default", "web"))
        .unwrap();
    let left = obs.frontends().unwrap();
    assert!(
        left.iter()
            .all(|f| f.service != Some(ServiceName::new("default", "web"))),
        "{left:?}"
    );
    drop(obs);
    let (att_a, att_b) = (lab.attachments(0), lab.attachments(1));
    dpa.teardown().unwrap();
    dpb.teardown().unwrap();
    lab.assert_clean(0, &att_a);
    lab.assert_clean(1, &att_b);
}
