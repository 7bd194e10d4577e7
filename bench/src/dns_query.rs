//! The cluster DNS benches' queries: A for `svc-<i>.bench.svc.cluster.local`, spread over
//! all Services, each answer checked.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;

/// The `i`-th query of a run over `services` Services.
pub fn query(i: usize, services: usize, id: u16) -> Result<Vec<u8>> {
    query_for((i * 7919) % services, id)
}

/// The A query for Service `svc-<n>`.
pub fn query_for(n: usize, id: u16) -> Result<Vec<u8>> {
    let name = format!("svc-{n}.bench.svc.cluster.local.");
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    Ok(msg.to_vec()?)
}

/// One query and its answer; checks the answer is one address.
pub async fn exchange(socket: &UdpSocket, q: &[u8], buf: &mut [u8]) -> Result<Duration> {
    let started = Instant::now();
    socket.send(q).await?;
    let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(buf))
        .await
        .context("no answer in 2 s")??;
    let took = started.elapsed();
    let msg = Message::from_vec(&buf[..n])?;
    if msg.metadata.response_code != ResponseCode::NoError || msg.answers.len() != 1 {
        bail!("unexpected answer: {msg:?}");
    }
    Ok(took)
}

/// A UDP socket bound to `local` (port 0) and connected to `server`.
pub async fn socket_to(local: &str, server: SocketAddr) -> Result<UdpSocket> {
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    Ok(socket)
}
