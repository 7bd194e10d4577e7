//! The server over real UDP and TCP sockets on loopback.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RecordType},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

use crate::{Bound, Cluster, ClusterDns, Forwarding, PortRecord, ServiceKind, ServiceRecord, Zone};

fn cluster_with_nginx(ip: &str) -> Arc<RwLock<Cluster>> {
    let mut c = Cluster::default();
    c.upsert(ServiceRecord {
        namespace: "default".into(),
        name: "nginx".into(),
        kind: ServiceKind::ClusterIp(vec![ip.parse().unwrap()]),
        ports: vec![PortRecord {
            name: "http".into(),
            protocol: "tcp".into(),
            port: 80,
        }],
        endpoints: Vec::new(),
    });
    Arc::new(RwLock::new(c))
}

async fn start(domain: &str, cluster: Arc<RwLock<Cluster>>, forwarding: Forwarding) -> SocketAddr {
    let handler = ClusterDns {
        cluster,
        zone: Zone::new(domain, 5, None).unwrap(),
        forwarding,
    };
    let bound = Bound::bind("127.0.0.1:0".parse().unwrap(), handler)
        .await
        .unwrap();
    let addr = bound.local_addr();
    tokio::spawn(bound.serve());
    addr
}

fn query(name: &str, qtype: RecordType, id: u16) -> Vec<u8> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    msg.to_vec().unwrap()
}

async fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&query(name, qtype, 7), server)
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("no UDP answer in 5 s")
        .unwrap();
    let msg = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(msg.metadata.id, 7);
    msg
}

async fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let q = query(name, qtype, 9);
    stream
        .write_all(&(q.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&q).await.unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addresses(msg: &Message) -> Vec<String> {
    msg.answers.iter().map(|r| r.data.to_string()).collect()
}

#[tokio::test]
async fn answers_the_cluster_zone_over_udp_and_tcp() {
    let server = start(
        "cluster.local",
        cluster_with_nginx("10.96.0.20"),
        Forwarding::Refuse,
    )
    .await;
    let name = "nginx.default.svc.cluster.local.";
    for msg in [
        ask_udp(server, name, RecordType::A).await,
        ask_tcp(server, name, RecordType::A).await,
    ] {
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
        assert!(msg.metadata.authoritative);
        assert_eq!(addresses(&msg), ["10.96.0.20"]);
    }
    let nx = ask_udp(server, "nope.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
    let nodata = ask_udp(server, name, RecordType::AAAA).await;
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
}

#[tokio::test]
async fn outside_names_are_refused_at_once_without_forwarding() {
    let server = start(
        "cluster.local",
        cluster_with_nginx("10.96.0.20"),
        Forwarding::Refuse,
    )
    .await;
    let started = Instant::now();
    let msg = ask_udp(server, "example.org.", RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::Refused);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn outside_names_go_to_the_upstream_servers() {
    // The upstream: another server, authoritative for its own zone.
    let upstream = start(
        "upstream.test",
        cluster_with_nginx("10.96.7.7"),
        Forwarding::Refuse,
    )
    .await;
    // An upstream that never answers comes first: the next one is tried.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let servers = vec![silent.local_addr().unwrap(), upstream];
    let server = start(
        "cluster.local",
        cluster_with_nginx("10.96.0.20"),
        Forwarding::To(servers),
    )
    .await;
    let msg = ask_udp(server, "nginx.default.svc.upstream.test.", RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&msg), ["10.96.7.7"]);
    // The upstream's refusal comes back as it is.
    let msg = ask_tcp(server, "example.org.", RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn forwarding_reads_the_node_resolv_conf_without_itself() {
    let dir = std::env::temp_dir().join(format!("bpfk-dns-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("resolv.conf");
    std::fs::write(&path, "nameserver 10.250.1.2\nnameserver 10.0.0.2\n").unwrap();
    let own: SocketAddr = "10.250.1.2:53".parse().unwrap();
    assert_eq!(
        Forwarding::from_resolv_conf(&path, own).unwrap(),
        Forwarding::To(vec!["10.0.0.2:53".parse().unwrap()])
    );
    std::fs::write(&path, "nameserver 10.250.1.2\n").unwrap();
    assert_eq!(
        Forwarding::from_resolv_conf(&path, own).unwrap(),
        Forwarding::Refuse
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
