//! The service proxy loop: reflectors on Services, EndpointSlices
//! (discovery.k8s.io/v1) and Nodes drive the datapath. Every change is
//! logged with the time it took from the watch event to the updated maps.

use std::{
    collections::{BTreeSet, HashSet},
    time::Instant,
};

use bpfk_datapath::{Datapath, PeerNode, PeerRoutes, ServiceName};
use futures::{stream::BoxStream, StreamExt};
use k8s_openapi::api::{
    core::v1::{Node, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    runtime::{
        reflector::{self, ObjectRef, Store},
        watcher, WatchStreamExt,
    },
    Api, Client,
};
use tracing::{debug, info, warn};

use crate::{
    convert,
    slice_index::{SliceChange, SliceIndex},
};

/// Errors that stop the proxy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("datapath: {0}")]
    Datapath(#[from] bpfk_datapath::Error),
    #[error("all watch streams ended")]
    StreamsEnded,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Service,
    Slice,
    Node,
}

enum Msg {
    /// Something about these services changed.
    Changed(Vec<ServiceName>, Kind),
    /// An EndpointSlice changed.
    Slice(SliceChange),
    /// A (re)list finished: resynchronise everything of this kind.
    Listed(Kind),
    Error(Kind, watcher::Error),
}

fn service_events(
    api: Api<Service>,
    writer: reflector::store::Writer<Service>,
) -> BoxStream<'static, Msg> {
    watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .map(|ev| match ev {
            Ok(watcher::Event::Apply(s)) | Ok(watcher::Event::Delete(s)) => Msg::Changed(
                convert::service_name(&s).into_iter().collect(),
                Kind::Service,
            ),
            Ok(watcher::Event::InitDone) => Msg::Listed(Kind::Service),
            Ok(_) => Msg::Changed(Vec::new(), Kind::Service),
            Err(e) => Msg::Error(Kind::Service, e),
        })
        .boxed()
}

fn slice_events(
    api: Api<EndpointSlice>,
    writer: reflector::store::Writer<EndpointSlice>,
) -> BoxStream<'static, Msg> {
    watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .map(|ev| match ev {
            Ok(watcher::Event::Apply(s)) => Msg::Slice(SliceChange::applied(&s)),
            Ok(watcher::Event::Delete(s)) => Msg::Slice(SliceChange::deleted(&s)),
            Ok(watcher::Event::InitDone) => Msg::Listed(Kind::Slice),
            Ok(_) => Msg::Changed(Vec::new(), Kind::Slice),
            Err(e) => Msg::Error(Kind::Slice, e),
        })
        .boxed()
}

fn node_events(api: Api<Node>, writer: reflector::store::Writer<Node>) -> BoxStream<'static, Msg> {
    watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .map(|ev| match ev {
            Ok(watcher::Event::Apply(_)) | Ok(watcher::Event::Delete(_)) => {
                Msg::Changed(Vec::new(), Kind::Node)
            }
            Ok(watcher::Event::InitDone) => Msg::Listed(Kind::Node),
            Ok(_) => Msg::Changed(Vec::new(), Kind::Node),
            Err(e) => Msg::Error(Kind::Node, e),
        })
        .boxed()
}

struct Proxy {
    dp: Datapath,
    node: String,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    /// The slices of each service in `slices`.
    slice_index: SliceIndex,
    nodes: Store<Node>,
    /// Services currently programmed.
    synced: HashSet<ServiceName>,
    peers: Vec<PeerNode>,
    /// None: peer routes are not this agent's job (no underlay device).
    peer_routes: Option<PeerRoutes>,
    /// Kinds whose initial list is done.
    listed: HashSet<Kind>,
    /// Whether frontends of an earlier run were pruned after the first full sync.
    pruned: bool,
    /// The node-local DNS server, fed from these watches (and steering kube-dns to it).
    dns: Option<crate::dns::Feed>,
    metrics: crate::metrics::ProxyMetrics,
}

impl Proxy {
    /// Programs (or removes) one service from the reflector stores.
    fn sync(&mut self, name: &ServiceName, since: Instant) {
        let obj = self
            .services
            .get(&ObjectRef::new(&name.name).within(&name.namespace));
        let slices: Vec<_> = self
            .slice_index
            .slices_of(name)
            .filter_map(|slice| self.slices.get(slice))
            .collect();
        if let Some(dns) = &self.dns {
            let slices: Vec<&EndpointSlice> = slices.iter().map(|s| s.as_ref()).collect();
            dns.sync(name, obj.as_deref(), &slices);
        }
        let spec = match obj.as_deref().map(convert::service_spec) {
            Some(Ok(Some(spec))) => spec,
            Some(Err(e)) => {
                warn!("service not programmed: {e}");
                return;
            }
            Some(Ok(None)) | None => {
                if self.synced.remove(name) {
                    match self.dp.delete_service(name) {
                        Ok(ops) => info!(
                            service = %name,
                            map_ops = ops,
                            micros = since.elapsed().as_micros() as u64,
                            "service removed from the datapath"
                        ),
                        Err(e) => {
                            self.metrics.failed(&e);
                            warn!(service = %name, "deleting service: {e}")
                        }
                    }
                }
                return;
            }
        };
        let eps = match convert::endpoints(slices.iter().map(|s| s.as_ref())) {
            Ok(e) => e,
            Err(e) => {
                warn!("endpoints not programmed: {e}");
                return;
            }
        };
        let eps = match self.dns.as_ref().and_then(|d| d.local_endpoints(&spec)) {
            Some(local) => local,
            None => eps,
        };
        match self.dp.sync_service(&spec, &eps) {
            Ok(ops) => {
                self.synced.insert(name.clone());
                self.metrics.synced(since.elapsed());
                let micros = since.elapsed().as_micros() as u64;
                if ops > 0 {
                    info!(service = %name, endpoints = eps.len(), map_ops = ops, micros,
                        "service synced: watch event to maps");
                } else {
                    debug!(service = %name, micros, "service unchanged");
                }
            }
            Err(e) => {
                self.metrics.failed(&e);
                warn!(service = %name, "syncing service: {e}")
            }
        }
    }

    fn sync_all(&mut self, since: Instant) {
        let mut names: BTreeSet<ServiceName> = self
            .services
            .state()
            .iter()
            .filter_map(|s| convert::service_name(s))
            .collect();
        names.extend(self.synced.iter().cloned());
        names.extend(self.dns.iter().flat_map(|d| d.known()));
        for name in &names {
            self.sync(name, since);
        }
    }

    async fn sync_peers(&mut self) {
        let Some(routes) = self.peer_routes.as_mut() else {
            return;
        };
        let mut peers: Vec<PeerNode> = self
            .nodes
            .state()
            .iter()
            .filter(|n| n.metadata.name.as_deref() != Some(self.node.as_str()))
            .filter_map(|n| convert::peer(n))
            .collect();
        peers.sort_by_key(|p| (p.pod_cidr, p.node_addr));
        if peers == self.peers {
            return;
        }
        match routes.sync(&peers).await {
            Ok(()) => {
                info!(peers = peers.len(), "routes to other nodes' pods updated");
                self.peers = peers;
            }
            Err(e) => warn!("updating peer routes: {e}"),
        }
    }

    fn services_listed(&self) -> bool {
        self.listed.contains(&Kind::Service) && self.listed.contains(&Kind::Slice)
    }

    async fn on_listed(&mut self, kind: Kind, since: Instant) {
        self.listed.insert(kind);
        if kind == Kind::Slice {
            self.slice_index = SliceIndex::of(self.slices.state().iter().map(|s| s.as_ref()));
        }
        if self.services_listed() {
            self.sync_all(since);
            self.prune_once();
        }
        if kind == Kind::Node {
            self.sync_peers().await;
        }
    }

    /// After the first full sync: removes the frontends an earlier run left in the pinned
    /// maps for services that no longer exist.
    fn prune_once(&mut self) {
        if self.pruned {
            return;
        }
        match self.dp.prune_unowned() {
            Ok(n) => info!(map_ops = n, "initial sync done, stale frontends pruned"),
            Err(e) => warn!("pruning stale frontends: {e}"),
        }
        self.pruned = true;
    }

    async fn on_changed(&mut self, names: Vec<ServiceName>, kind: Kind, since: Instant) {
        if kind == Kind::Node {
            if self.listed.contains(&Kind::Node) {
                self.sync_peers().await;
            }
            return;
        }
        if !self.services_listed() {
            return;
        }
        for name in names {
            self.sync(&name, since);
        }
    }
}

/// Runs the proxy until the watch streams end. With `peer_routes` it also routes other
/// nodes' pod ranges.
pub async fn run(
    client: Client,
    dp: Datapath,
    node: &str,
    peer_routes: Option<PeerRoutes>,
    dns: Option<crate::dns::Feed>,
    metrics: crate::metrics::ProxyMetrics,
) -> Result<(), Error> {
    let (services, svc_writer) = reflector::store();
    let (slices, slice_writer) = reflector::store();
    let (nodes, node_writer) = reflector::store();
    let mut events = futures::stream::select_all([
        service_events(Api::all(client.clone()), svc_writer),
        slice_events(Api::all(client.clone()), slice_writer),
        node_events(Api::all(client), node_writer),
    ]);
    let mut proxy = Proxy {
        dp,
        node: node.to_string(),
        services,
        slices,
        slice_index: SliceIndex::default(),
        nodes,
        synced: HashSet::new(),
        peers: Vec::new(),
        peer_routes,
        listed: HashSet::new(),
        pruned: false,
        dns,
        metrics,
    };
    info!(
        node,
        "service proxy watching Services, EndpointSlices and Nodes"
    );
    while let Some(msg) = events.next().await {
        let since = Instant::now();
        match msg {
            Msg::Error(kind, e) => warn!(?kind, "watch error (retrying): {e}"),
            Msg::Listed(kind) => proxy.on_listed(kind, since).await,
            Msg::Changed(names, kind) => proxy.on_changed(names, kind, since).await,
            Msg::Slice(change) => {
                let names = proxy.slice_index.record(change);
                proxy.on_changed(names, Kind::Slice, since).await;
            }
        }
    }
    Err(Error::StreamsEnded)
}
