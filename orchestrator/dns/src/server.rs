//! The DNS server: hickory's UDP and TCP server with a handler that answers the cluster zone
//! from the shared [`Cluster`] and forwards other names to the node's own resolvers, or
//! refuses them at once when forwarding is off.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use hickory_proto::{
    op::{Edns, Message, Metadata, OpCode, ResponseCode},
    rr::Record,
};
use hickory_server::{
    net::runtime::Time,
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
    Server,
};
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, warn};

use crate::{lookup, Cluster, Lookup, Zone};

/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;
/// How long one upstream server gets to answer a forwarded query.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Where names outside the cluster zone go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forwarding {
    /// Nowhere: they are REFUSED at once (no packet leaves the node).
    Refuse,
    /// To these servers, in order (the node's own resolv.conf nameservers).
    To(Vec<SocketAddr>),
}

impl Forwarding {
    /// To the nameservers of the resolv.conf at `path` (port 53), leaving out `own` (this
    /// server: forwarding to itself would loop). Refuse when it names none.
    pub fn from_resolv_conf(path: &std::path::Path, own: SocketAddr) -> std::io::Result<Self> {
        let conf = bpfk_common::resolv_conf::ResolvConf::read(path)?;
        let servers: Vec<SocketAddr> = conf
            .nameservers
            .into_iter()
            .map(|ip| SocketAddr::new(ip, 53))
            .filter(|s| *s != own)
            .collect();
        Ok(if servers.is_empty() {
            Self::Refuse
        } else {
            Self::To(servers)
        })
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr} ({proto}): {source}")]
    Listen {
        addr: SocketAddr,
        proto: &'static str,
        source: std::io::Error,
    },
    #[error("DNS server on {addr} stopped: {reason}")]
    Stopped { addr: SocketAddr, reason: String },
}

/// The shared view of the cluster the watches write and the server reads.
pub type SharedCluster = Arc<RwLock<Cluster>>;

/// Answers queries: the cluster zone from `cluster`, the rest by `forwarding`.
pub struct ClusterDns {
    pub cluster: SharedCluster,
    pub zone: Zone,
    pub forwarding: Forwarding,
}

/// A response: its metadata and sections.
struct Reply {
    metadata: Metadata,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Reply {
    fn error(request: &Metadata, rcode: ResponseCode) -> Self {
        let mut metadata = Metadata::response_from_request(request);
        metadata.response_code = rcode;
        metadata.recursion_available = true;
        Self {
            metadata,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

impl ClusterDns {
    /// The reply to `request` (one query; anything else is refused as CoreDNS does).
    async fn reply(&self, request: &Request) -> Reply {
        let meta = &request.metadata;
        if meta.op_code != OpCode::Query {
            return Reply::error(meta, ResponseCode::NotImp);
        }
        let Ok(info) = request.request_info() else {
            return Reply::error(meta, ResponseCode::FormErr);
        };
        let qname = info.query.name().into();
        let qtype = info.query.query_type();
        let found = match self.cluster.read() {
            Ok(cluster) => lookup(&cluster, &self.zone, &qname, qtype),
            Err(_) => return Reply::error(meta, ResponseCode::ServFail),
        };
        match found {
            Lookup::Answer(a) => {
                let mut reply = Reply::error(meta, a.rcode);
                reply.metadata.authoritative = true;
                reply.answers = a.answers;
                reply.authorities = a.authority;
                reply.additionals = a.additionals;
                reply
            }
            Lookup::Outside => match &self.forwarding {
                Forwarding::Refuse => {
                    debug!(%qname, ?qtype, "outside the cluster zone, forwarding off: refused");
                    Reply::error(meta, ResponseCode::Refused)
                }
                Forwarding::To(servers) => forward(request, servers).await,
            },
        }
    }
}

/// Sends the raw query to each server in turn; the first answer is the reply, SERVFAIL if
/// none answers.
async fn forward(request: &Request, servers: &[SocketAddr]) -> Reply {
    for server in servers {
        match exchange(request.as_slice(), *server).await {
            Ok(msg) if msg.metadata.id == request.metadata.id => {
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = msg.metadata.response_code;
                metadata.recursion_available = msg.metadata.recursion_available;
                metadata.truncation = msg.metadata.truncation;
                return Reply {
                    metadata,
                    answers: msg.answers,
                    authorities: msg.authorities,
                    additionals: msg.additionals,
                };
            }
            Ok(_) => warn!(%server, "upstream DNS answered with another message id"),
            Err(e) => warn!(%server, "upstream DNS: {e}"),
        }
    }
    Reply::error(&request.metadata, ResponseCode::ServFail)
}

/// One UDP exchange with an upstream server.
async fn exchange(query: &[u8], server: SocketAddr) -> std::io::Result<Message> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(UPSTREAM_TIMEOUT, socket.recv(&mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    Message::from_vec(&buf[..n])
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

#[async_trait::async_trait]
impl RequestHandler for ClusterDns {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let reply = self.reply(request).await;
        let edns = request.edns.as_ref().map(|req| {
            let mut edns = Edns::new();
            edns.set_max_payload(req.max_payload().max(512));
            edns
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let response = builder.build(
            reply.metadata,
            reply.answers.iter(),
            std::iter::empty(),
            reply.authorities.iter(),
            reply.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                warn!("sending a DNS response: {e}");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(hickory_proto::op::Header {
                    metadata,
                    counts: Default::default(),
                })
            }
        }
    }
}

/// A server bound to its UDP and TCP sockets.
pub struct Bound {
    addr: SocketAddr,
    server: Server<ClusterDns>,
}

impl Bound {
    /// Binds UDP and TCP on `addr` for `handler`.
    pub async fn bind(addr: SocketAddr, handler: ClusterDns) -> Result<Self, Error> {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|source| Error::Listen {
                addr,
                proto: "udp",
                source,
            })?;
        // The same port for TCP when `addr` asked for any port.
        let addr = udp.local_addr().unwrap_or(addr);
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Listen {
                addr,
                proto: "tcp",
                source,
            })?;
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE, TCP_RESPONSE_BUFFER);
        Ok(Self { addr, server })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until the server fails.
    pub async fn serve(mut self) -> Result<(), Error> {
        let addr = self.addr;
        self.server
            .block_until_done()
            .await
            .map_err(|e| Error::Stopped {
                addr,
                reason: e.to_string(),
            })?;
        Err(Error::Stopped {
            addr,
            reason: "all listeners ended".into(),
        })
    }
}
