//! Service load balancing through the real kernel datapath in a two-node
//! netns lab (run as root, after `cargo xtask build-ebpf`).

mod netlab;

use std::net::Ipv4Addr;

use bpfk_datapath::{Endpoint, EndpointPort, Protocol, ServiceName, ServicePort, ServiceSpec};
use netlab::{run_client, Lab, Proc};
use serde_json::Value;

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

fn spec(name: &str, ip: Ipv4Addr, node_port: Option<u16>) -> ServiceSpec {
    ServiceSpec {
        name: ServiceName::new("default", name),
        cluster_ip: Some(ip),
        ports: vec![
            ServicePort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 80,
                node_port,
            },
            ServicePort {
                name: "dns".into(),
                protocol: Protocol::Udp,
                port: 53,
                node_port: None,
            },
        ],
        affinity_timeout_s: None,
        lb_algorithm: Default::default(),
    }
}

fn endpoint(addr: Ipv4Addr) -> Endpoint {
    Endpoint {
        addr,
        ports: vec![
            EndpointPort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 8080,
            },
            EndpointPort {
                name: "dns".into(),
                protocol: Protocol::Udp,
                port: 5353,
            },
        ],
    }
}

/// Starts TCP and UDP servers in a pod, named after the pod.
fn serve(ns: &str, name: &str) -> (Proc, Proc) {
    let mut t = Proc::spawn(ns, None, &["tcp-server", "--port", "8080", "--name", name]);
    t.wait_ready();
    let mut u = Proc::spawn(ns, None, &["udp-server", "--port", "5353", "--name", name]);
    u.wait_ready();
    (t, u)
}

fn count(v: &Value, key: &str, name: &str) -> u64 {
    v[key][name].as_u64().unwrap_or(0)
}

fn no_errors(v: &Value) {
    assert_eq!(v["errors"], serde_json::json!({}), "client errors: {v}");
}

#[test]
fn clusterip_socket_lb_tcp_udp_across_nodes_then_endpoint_removed() {
    let lab = Lab::new(2);
    let a = lab.node(0);
    let b = lab.node(1);
    let _sa = serve(&a.pods[0].ns, "a1");
    let _sb = serve(&b.pods[0].ns, "b1");
    let mut dpa = lab.load_datapath(0);
    let mut dpb = lab.load_datapath(1);
    let svc = spec("web", CLUSTER_IP, None);
    let eps = [endpoint(a.pods[0].addr), endpoint(b.pods[0].addr)];
    dpa.sync_service(&svc, &eps).unwrap();
    dpb.sync_service(&svc, &eps).unwrap();

    // A client pod on node A whose sockets live in node A's cgroup.
    let client = &a.pods[1].ns;
    let vip = format!("{CLUSTER_IP}:80");
    let v = run_client(
        client,
        Some(&a.cgroup),
        &["tcp-client", "--addr", &vip, "--count", "200"],
    );
    no_errors(&v);
    assert_eq!(v["wrong_peer"], 0, "getpeername must show the service: {v}");
    let (na, nb) = (count(&v, "names", "a1"), count(&v, "names", "b1"));
    assert_eq!(na + nb, 200, "{v}");
    assert!(
        na >= 30 && nb >= 30,
        "200 connections not spread over both backends: {v}"
    );

    let dns = format!("{CLUSTER_IP}:53");
    let v = run_client(
        client,
        Some(&a.cgroup),
        &["udp-client", "--addr", &dns, "--count", "200"],
    );
    no_errors(&v);
    assert_eq!(
        v["wrong_source"], 0,
        "UDP replies must come from the service address: {v}"
    );
    let (na, nb) = (count(&v, "names", "a1"), count(&v, "names", "b1"));
    assert_eq!(na + nb, 200, "{v}");
    assert!(na >= 30 && nb >= 30, "200 datagrams not spread: {v}");

    // Long-lived connections, until one is held on each backend.
    let mut streams: Vec<(String, Proc)> = Vec::new();
    for _ in 0..40 {
        if ["a1", "b1"]
            .iter()
            .all(|n| streams.iter().any(|(s, _)| s == n))
        {
            break;
        }
        let mut p = Proc::spawn(
            client,
            Some(&a.cgroup),
            &["tcp-stream", "--addr", &vip, "--seconds", "4"],
        );
        let name = p.json()["name"].as_str().unwrap().to_string();
        streams.push((name, p));
    }
    assert!(
        ["a1", "b1"]
            .iter()
            .all(|n| streams.iter().any(|(s, _)| s == n)),
        "could not hold a connection on each backend"
    );

    // Remove a1: no new connection may reach it, b1's flows go on.
    dpa.sync_service(&svc, &[endpoint(b.pods[0].addr)]).unwrap();
    let v = run_client(
        client,
        Some(&a.cgroup),
        &["tcp-client", "--addr", &vip, "--count", "50"],
    );
    no_errors(&v);
    assert_eq!(
        count(&v, "names", "b1"),
        50,
        "a removed endpoint still got connections: {v}"
    );
    for (name, mut p) in streams {
        let end = p.json();
        if name == "b1" {
            assert!(end["error"].is_null(), "stream to b1 broke: {end}");
            assert!(end["echoed"].as_u64().unwrap() > 0, "{end}");
        }
    }

    let (att_a, att_b) = (lab.attachments(0), lab.attachments(1));
    assert_eq!(
        att_a.len(),
        5 + 1 + 2,
        "5 cgroup hooks (4 sock_addr, sock_release), underlay, 2 pod veths: {att_a:?}"
    );
    dpa.teardown().unwrap();
    dpb.teardown().unwrap();
    lab.assert_clean(0, &att_a);
    lab.assert_clean(1, &att_b);
}

#[test]
fn service_without_endpoints_refuses_at_once() {
    let lab = Lab::new(1);
    let a = lab.node(0);
    let mut dpa = lab.load_datapath(0);
    let vip = Ipv4Addr::new(10, 96, 0, 20);
    dpa.sync_service(&spec("empty", vip, None), &[]).unwrap();
    let client = &a.pods[0].ns;
    for (addr, udp) in [(format!("{vip}:80"), false), (format!("{vip}:53"), true)] {
        let mut args = vec!["refused", "--addr", addr.as_str()];
        if udp {
            args.push("--udp");
        }
        let v = run_client(client, Some(&a.cgroup), &args);
        let outcome = v["outcome"].as_str().unwrap();
        if udp {
            assert_eq!(outcome, "send:ConnectionRefused", "{v}");
        } else {
            assert_eq!(outcome, "refused", "{v}");
        }
        // The spec's own deadline.
        assert!(
            v["elapsed_ms"].as_u64().unwrap() < 100,
            "not refused within 100 ms: {v}"
        );
    }
    let att = lab.attachments(0);
    dpa.teardown().unwrap();
    lab.assert_clean(0, &att);
}

#[test]
fn per_packet_lb_clusterip_and_nodeport_across_nodes() {
    let lab = Lab::new(2);
    let a = lab.node(0);
    let b = lab.node(1);
    let _sa = serve(&a.pods[0].ns, "a1");
    let _sb = serve(&b.pods[0].ns, "b1");
    let mut dpa = lab.load_datapath(0);
    let mut dpb = lab.load_datapath(1);
    let vip = Ipv4Addr::new(10, 96, 0, 30);
    let svc = spec("np", vip, Some(30080));
    let eps = [endpoint(a.pods[0].addr), endpoint(b.pods[0].addr)];
    dpa.sync_service(&svc, &eps).unwrap();
    dpb.sync_service(&svc, &eps).unwrap();

    // A pod whose sockets are outside the node cgroup: TC on its veth
    // balances per packet, reverse NAT makes replies come from the service.
    let client = &a.pods[1].ns;
    let http = format!("{vip}:80");
    let v = run_client(
        client,
        None,
        &["tcp-client", "--addr", &http, "--count", "200"],
    );
    no_errors(&v);
    assert_eq!(v["wrong_peer"], 0, "{v}");
    let (na, nb) = (count(&v, "names", "a1"), count(&v, "names", "b1"));
    assert!(na >= 30 && nb >= 30 && na + nb == 200, "not spread: {v}");
    let dns = format!("{vip}:53");
    let v = run_client(
        client,
        None,
        &["udp-client", "--addr", &dns, "--count", "200"],
    );
    no_errors(&v);
    assert_eq!(
        v["wrong_source"], 0,
        "UDP replies must come from the service: {v}"
    );
    let (na, nb) = (count(&v, "names", "a1"), count(&v, "names", "b1"));
    assert!(na >= 30 && nb >= 30 && na + nb == 200, "not spread: {v}");

    // NodePort on node A from node B (its own namespace, outside any
    // cgroup): local backend plainly DNATed, remote backend SNATed.
    let np = format!("{}:30080", a.addr);
    let v = run_client(
        &b.ns,
        None,
        &["tcp-client", "--addr", &np, "--count", "100"],
    );
    no_errors(&v);
    assert_eq!(v["wrong_peer"], 0, "{v}");
    let (na, nb) = (count(&v, "names", "a1"), count(&v, "names", "b1"));
    assert!(
        na >= 10 && nb >= 10 && na + nb == 100,
        "NodePort not spread: {v}"
    );
    // And from a pod on node B, through node B's forwarding.
    let v = run_client(
        &b.pods[1].ns,
        None,
        &["tcp-client", "--addr", &np, "--count", "40"],
    );
    no_errors(&v);
    assert_eq!(
        count(&v, "names", "a1") + count(&v, "names", "b1"),
        40,
        "{v}"
    );

    // No endpoints on the per-packet path: TCP is answered with a RST.
    let empty_vip = Ipv4Addr::new(10, 96, 0, 31);
    dpa.sync_service(&spec("np-empty", empty_vip, None), &[])
        .unwrap();
    let empty = format!("{empty_vip}:80");
    let v = run_client(client, None, &["refused", "--addr", &empty]);
    assert_eq!(v["outcome"], "refused", "{v}");
    assert!(
        v["elapsed_ms"].as_u64().unwrap() < 100,
        "not refused within 100 ms: {v}"
    );

    // And UDP with ICMP port unreachable from the service address: a connected client's
    // receive fails at once, as on the socket path.
    let empty_dns = format!("{empty_vip}:53");
    let v = run_client(
        client,
        None,
        &["refused", "--addr", &empty_dns, "--udp", "--connected"],
    );
    assert_eq!(v["outcome"], "recv:ConnectionRefused", "{v}");
    assert!(
        v["elapsed_ms"].as_u64().unwrap() < 100,
        "not refused within 100 ms: {v}"
    );

    // Pod to pod across nodes over the peer routes.
    let direct = format!("{}:8080", b.pods[0].addr);
    let v = run_client(
        client,
        None,
        &["tcp-client", "--addr", &direct, "--count", "5"],
    );
    no_errors(&v);
    assert_eq!(count(&v, "names", "b1"), 5, "{v}");

    let (att_a, att_b) = (lab.attachments(0), lab.attachments(1));
    assert_eq!(
        att_a.len(),
        5 + 1 + 2,
        "5 cgroup hooks (4 sock_addr, sock_release), underlay, 2 pod veths: {att_a:?}"
    );
    dpa.teardown().unwrap();
    dpb.teardown().unwrap();
    lab.assert_clean(0, &att_a);
    lab.assert_clean(1, &att_b);
}

#[test]
fn session_affinity_client_ip_sticks_to_one_backend() {
    let lab = Lab::new(2);
    let a = lab.node(0);
    let b = lab.node(1);
    let _sa = serve(&a.pods[0].ns, "a1");
    let _sb = serve(&b.pods[0].ns, "b1");
    let mut dpa = lab.load_datapath(0);
    // Node B only routes replies back to node A's pods.
    let dpb = lab.load_datapath(1);
    let vip = Ipv4Addr::new(10, 96, 0, 50);
    let mut svc = spec("sticky", vip, None);
    svc.affinity_timeout_s = Some(60);
    let eps = [endpoint(a.pods[0].addr), endpoint(b.pods[0].addr)];
    dpa.sync_service(&svc, &eps).unwrap();
    let addr = format!("{vip}:80");
    // Socket-level (client = its network namespace) and per-packet (client
    // = its address): every connection lands on one backend.
    for cgroup in [Some(a.cgroup.as_path()), None] {
        let v = run_client(
            &a.pods[1].ns,
            cgroup,
            &["tcp-client", "--addr", &addr, "--count", "50"],
        );
        no_errors(&v);
        let (na, nb) = (count(&v, "names", "a1"), count(&v, "names", "b1"));
        assert!(na == 50 || nb == 50, "affinity not kept ({cgroup:?}): {v}");
    }
    // Without affinity the same client is spread again.
    svc.affinity_timeout_s = None;
    dpa.sync_service(&svc, &eps).unwrap();
    let v = run_client(
        &a.pods[1].ns,
        Some(&a.cgroup),
        &["tcp-client", "--addr", &addr, "--count", "100"],
    );
    let (na, nb) = (count(&v, "names", "a1"), count(&v, "names", "b1"));
    assert!(na >= 10 && nb >= 10, "not spread without affinity: {v}");
    let (att_a, att_b) = (lab.attachments(0), lab.attachments(1));
    dpa.teardown().unwrap();
    dpb.teardown().unwrap();
    lab.assert_clean(0, &att_a);
    lab.assert_clean(1, &att_b);
}

/// A 4-tuple used by a per-packet (TC) connection, then by a socket-balanced one (which
/// clears the tuple's reply entry), then by a TC connection again: the last one must get a
/// fresh translation both ways (the stale forward entry alone made its SYN-ACK come from the
/// backend address, so the client reset it).
#[test]
fn per_packet_connection_reusing_a_socket_balanced_tuple() {
    let lab = Lab::new(2);
    let a = lab.node(0);
    let _sa = serve(&a.pods[0].ns, "a1");
    let mut dpa = lab.load_datapath(0);
    let dpb = lab.load_datapath(1);
    let vip = Ipv4Addr::new(10, 96, 0, 70);
    dpa.sync_service(&spec("reuse", vip, None), &[endpoint(a.pods[0].addr)])
        .unwrap();
    let addr = format!("{vip}:80");
    let client = &a.pods[1].ns;
    for cgroup in [None, Some(a.cgroup.as_path()), None] {
        let args = [
            "tcp-client",
            "--addr",
            &addr,
            "--count",
            "1",
            "--source-port",
            "40123",
        ];
        let v = run_client(client, cgroup, &args);
        no_errors(&v);
        assert_eq!(count(&v, "names", "a1"), 1, "({cgroup:?}) {v}");
        assert_eq!(v["wrong_peer"], 0, "({cgroup:?}) {v}");
    }
    let (att_a, att_b) = (lab.attachments(0), lab.attachments(1));
    dpa.teardown().unwrap();
    dpb.teardown().unwrap();
    lab.assert_clean(0, &att_a);
    lab.assert_clean(1, &att_b);
}

/// A connected UDP client (a resolver) whose backend pod goes away: the datapath destroys
/// the socket the socket LB connected to it (ECONNABORTED), the client opens a new one and
/// is answered by the live backend. Without that it would send into the void for good.
#[test]
fn connected_udp_client_moves_to_a_live_backend_when_its_backend_goes() {
    let lab = Lab::new(2);
    let a = lab.node(0);
    let b = lab.node(1);
    let mut servers = [
        ("a1", &a.pods[0], serve(&a.pods[0].ns, "a1")),
        ("b1", &b.pods[0], serve(&b.pods[0].ns, "b1")),
    ];
    let mut dpa = lab.load_datapath(0);
    let dpb = lab.load_datapath(1);
    let vip = Ipv4Addr::new(10, 96, 0, 80);
    let svc = spec("resolver", vip, None);
    let eps = [endpoint(a.pods[0].addr), endpoint(b.pods[0].addr)];
    dpa.sync_service(&svc, &eps).unwrap();

    let dns = format!("{vip}:53");
    let mut client = Proc::spawn(
        &a.pods[1].ns,
        Some(&a.cgroup),
        &["udp-connected", "--addr", &dns, "--seconds", "5"],
    );
    let first = client.json()["name"].as_str().unwrap().to_string();
    let (gone, live) = if first == "a1" { (0, 1) } else { (1, 0) };
    // The pod is deleted: its servers stop and its address goes (silence, no ICMP).
    let (_, pod, procs) = &mut servers[gone];
    procs.0.kill();
    procs.1.kill();
    netlab::sh(&["ip", "-n", &pod.ns, "addr", "flush", "dev", "eth0"]);
    let remaining = [endpoint(servers[live].1.addr)];
    dpa.sync_service(&svc, &remaining).unwrap();

    let end = client.json();
    let live_name = servers[live].0;
    assert_eq!(end["last"], live_name, "{end}");
    assert!(
        end["names"][live_name].as_u64().unwrap_or(0) >= 10,
        "the client was not answered by the live backend for most of the run: {end}"
    );
    // One error on the destroyed socket: ECONNABORTED, or EDESTADDRREQ when the send
    // comes first (the destroyed socket is disconnected).
    let errors = end["errors"].as_object().unwrap();
    assert_eq!(errors.len(), 1, "{end}");
    assert!(
        ["errno 103", "errno 89"].contains(&errors.keys().next().unwrap().as_str()),
        "{end}"
    );
    assert_eq!(end["reopened"], 1, "{end}");
    let (att_a, att_b) = (lab.attachments(0), lab.attachments(1));
    dpa.teardown().unwrap();
    dpb.teardown().unwrap();
    lab.assert_clean(0, &att_a);
    lab.assert_clean(1, &att_b);
}

/// The backend each of `ports` (a client source port, one connection each) reaches at `addr`.
fn placements(ns: &str, addr: &str, ports: &[u16]) -> Vec<String> {
    ports
        .iter()
        .map(|port| {
            let port = port.to_string();
            let args = [
                "tcp-client",
                "--addr",
                addr,
                "--count",
                "1",
                "--source-port",
                &port,
            ];
            let v = run_client(ns, None, &args);
            no_errors(&v);
            let names = v["names"].as_object().unwrap();
            assert_eq!(names.len(), 1, "{v}");
            names.keys().next().unwrap().clone()
        })
        .collect()
}

/// NodePorts place new flows by Maglev: the same client address and port reach the same
/// backend every time, and when one of three backends goes only its flows move (about 1/N;
/// Maglev may move a few more, the unit test and bench/results/maglev.md measure it).
#[test]
fn nodeport_maglev_places_flows_consistently_and_moves_only_the_gone_backends() {
    let lab = Lab::new(2);
    let a = lab.node(0);
    let b = lab.node(1);
    let _sa = serve(&a.pods[0].ns, "a1");
    let _sb = serve(&b.pods[0].ns, "b1");
    let _sc = serve(&b.pods[1].ns, "b2");
    let mut dpa = lab.load_datapath(0);
    let mut dpb = lab.load_datapath(1);
    let svc = spec("maglev", Ipv4Addr::new(10, 96, 0, 90), Some(30090));
    let all = [a.pods[0].addr, b.pods[0].addr, b.pods[1].addr].map(endpoint);
    dpa.sync_service(&svc, &all).unwrap();
    dpb.sync_service(&svc, &all).unwrap();

    let np = format!("{}:30090", a.addr);
    let ports: Vec<u16> = (0..24).map(|i| 41000 + i * 37).collect();
    let before = placements(&b.ns, &np, &ports);
    let used: std::collections::BTreeSet<_> = before.iter().collect();
    assert!(used.len() >= 2, "24 flows on one backend: {before:?}");
    assert_eq!(
        placements(&b.ns, &np, &ports),
        before,
        "the same flows must reach the same backends"
    );

    dpa.sync_service(&svc, &all[..2]).unwrap();
    let after = placements(&b.ns, &np, &ports);
    let mut moved_survivors = 0;
    for (was, is) in before.iter().zip(&after) {
        assert_ne!(
            is, "b2",
            "a flow still reaches the removed backend: {after:?}"
        );
        if was != "b2" && was != is {
            moved_survivors += 1;
        }
    }
    assert!(
        moved_survivors <= 2,
        "{moved_survivors} of the flows on live backends moved: {before:?} → {after:?}"
    );
    let (att_a, att_b) = (lab.attachments(0), lab.attachments(1));
    dpa.teardown().unwrap();
    dpb.teardown().unwrap();
    lab.assert_clean(0, &att_a);
    lab.assert_clean(1, &att_b);
}

/// The node's own processes (in the node's network namespace, under the socket-balanced
/// cgroup, as host processes and hostNetwork pods are under the agent's default cgroup2
/// root) reach ClusterIPs, TCP and UDP, and the node's own NodePorts through the socket LB.
#[test]
fn host_processes_reach_clusterip_and_nodeport() {
    let lab = Lab::new(1);
    let a = lab.node(0);
    let b = lab.node(1);
    let _sa = serve(&a.pods[0].ns, "a1");
    let _sb = serve(&b.pods[0].ns, "b1");
    let mut dpa = lab.load_datapath(0);
    let mut dpb = lab.load_datapath(1);
    let vip = Ipv4Addr::new(10, 96, 0, 100);
    let svc = spec("from-host", vip, Some(30100));
    let eps = [endpoint(a.pods[0].addr), endpoint(b.pods[0].addr)];
    dpa.sync_service(&svc, &eps).unwrap();
    dpb.sync_service(&svc, &eps).unwrap();
    let http = format!("{vip}:80");
    let np = format!("{}:30100", a.addr);
    for addr in [&http, &np] {
        let v = run_client(
            &a.ns,
            Some(&a.cgroup),
            &["tcp-client", "--addr", addr, "--count", "40"],
        );
        no_errors(&v);
        assert_eq!(v["wrong_peer"], 0, "{addr}: {v}");
        let (na, nb) = (count(&v, "names", "a1"), count(&v, "names", "b1"));
        assert!(
            na >= 5 && nb >= 5 && na + nb == 40,
            "{addr}: not spread: {v}"
        );
    }
    let dns = format!("{vip}:53");
    let v = run_client(
        &a.ns,
        Some(&a.cgroup),
        &["udp-client", "--addr", &dns, "--count", "40"],
    );
    no_errors(&v);
    assert_eq!(v["wrong_source"], 0, "{v}");
    assert_eq!(
        count(&v, "names", "a1") + count(&v, "names", "b1"),
        40,
        "{v}"
    );
    let (att_a, att_b) = (lab.attachments(0), lab.attachments(1));
    dpa.teardown().unwrap();
    dpb.teardown().unwrap();
    lab.assert_clean(0, &att_a);
    lab.assert_clean(1, &att_b);
}
