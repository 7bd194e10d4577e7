//! The datapath process is killed and started again while long TCP streams
//! run through a service (per-packet and socket-level paths): the pinned maps
//! and links keep traffic flowing, the restarted process adopts them.

mod netlab;

use std::{net::Ipv4Addr, time::Duration};

use bpfk_datapath::{Endpoint, EndpointPort, Protocol, ServiceName, ServicePort, ServiceSpec};
use bpfk_lab::netlab::PIN_ROOT;
use netlab::{run_client, Lab, Proc};
use serde_json::json;

#[test]
fn streams_survive_datapath_restart_and_teardown_cleans_up() {
    let lab = Lab::new(2);
    let a = lab.node(0);
    let b = lab.node(1);
    let mut sa = Proc::spawn(
        &a.pods[0].ns,
        None,
        &["tcp-server", "--port", "8080", "--name", "a1"],
    );
    sa.wait_ready();
    let mut sb = Proc::spawn(
        &b.pods[0].ns,
        None,
        &["tcp-server", "--port", "8080", "--name", "b1"],
    );
    sb.wait_ready();

    let vip = Ipv4Addr::new(10, 96, 0, 40);
    let svc = ServiceSpec {
        name: ServiceName::new("default", "stream"),
        cluster_ip: Some(vip),
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: None,
        }],
        affinity_timeout_s: None,
        lb_algorithm: Default::default(),
    };
    let eps: Vec<Endpoint> = [a.pods[0].addr, b.pods[0].addr]
        .iter()
        .map(|addr| Endpoint {
            addr: *addr,
            ports: vec![EndpointPort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 8080,
            }],
        })
        .collect();
    let mut dpb = lab.load_datapath(1);
    dpb.sync_service(&svc, &eps).unwrap();

    // Node A's datapath runs as its own process.
    let plan = json!({
        "config": lab.config(0),
        "interfaces": a.pods.iter().map(|p| p.host_if.clone()).collect::<Vec<_>>(),
        "peers": lab.peers(0),
        "services": [[svc, eps]],
    });
    let plan_path = std::env::temp_dir().join(format!("bpfk-plan-{}.json", lab.id));
    std::fs::write(&plan_path, plan.to_string()).unwrap();
    let plan_arg = plan_path.to_str().unwrap().to_string();
    let dp_args = ["datapath", "--node", &a.name, "--plan", &plan_arg];
    let mut dpa = Proc::spawn(&a.ns, None, &dp_args);
    dpa.wait_ready();

    let addr = format!("{vip}:80");
    let client = &a.pods[1].ns;
    let stream = ["tcp-stream", "--addr", addr.as_str(), "--seconds", "6"];
    // Per-packet path (socket outside the node cgroup) and socket-level path.
    let mut tc_stream = Proc::spawn(client, None, &stream);
    let mut sock_stream = Proc::spawn(client, Some(&a.cgroup), &stream);
    let tc_name = tc_stream.json()["name"].as_str().unwrap().to_string();
    let sock_name = sock_stream.json()["name"].as_str().unwrap().to_string();
    assert!(["a1", "b1"].contains(&tc_name.as_str()), "{tc_name}");
    assert!(["a1", "b1"].contains(&sock_name.as_str()), "{sock_name}");

    std::thread::sleep(Duration::from_secs(1));
    let pid = dpa.pid();
    dpa.kill();
    assert!(
        lab.pin_dir(0).exists(),
        "pins must outlive the process {pid}"
    );
    // Traffic keeps flowing with no process at all.
    let v = run_client(
        client,
        None,
        &["tcp-client", "--addr", &addr, "--count", "20"],
    );
    assert_eq!(
        v["errors"],
        json!({}),
        "while the datapath process was down: {v}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let mut dpa = Proc::spawn(&a.ns, None, &dp_args);
    dpa.wait_ready();

    for (what, mut p) in [("per-packet", tc_stream), ("socket-level", sock_stream)] {
        let end = p.json();
        assert!(
            end["error"].is_null(),
            "{what} stream broke across the restart: {end}"
        );
        assert!(end["echoed"].as_u64().unwrap() > 50 * 1024, "{what}: {end}");
    }
    for cgroup in [None, Some(a.cgroup.as_path())] {
        let v = run_client(
            client,
            cgroup,
            &["tcp-client", "--addr", &addr, "--count", "40"],
        );
        assert_eq!(
            v["errors"],
            json!({}),
            "after restart (cgroup {cgroup:?}): {v}"
        );
        assert_eq!(v["wrong_peer"], 0, "{v}");
    }

    // Teardown of a node whose process is gone: remove the pins.
    let att = lab.attachments(0);
    assert_eq!(att.len(), 5 + 1 + 2, "{att:?}");
    dpa.kill();
    run_teardown(&a.ns, &a.name);
    lab.assert_clean(0, &att);
    let att = lab.attachments(1);
    dpb.teardown().unwrap();
    lab.assert_clean(1, &att);
    let _ = std::fs::remove_file(&plan_path);
}

fn run_teardown(ns: &str, node: &str) {
    let mut p = Proc::spawn(
        ns,
        None,
        &["teardown", "--node", node, "--pin-root", PIN_ROOT],
    );
    let mut rest = String::new();
    use std::io::Read;
    let _ = p.stdout.read_to_string(&mut rest);
}
