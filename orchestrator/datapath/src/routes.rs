//! Routes to other nodes' pod ranges over the underlay, all through one long-lived
//! rtnetlink connection.

use std::{collections::BTreeMap, net::Ipv4Addr};

use rtnetlink::{packet_route::route::RouteMessage, RouteMessageBuilder};
use tracing::warn;

use crate::{model::PeerNode, sys, Error, Ipv4Cidr, Result};

/// The routes `pod_cidr via node_addr dev <underlay>` to other nodes' pods, kept over one
/// rtnetlink connection that every change reuses. Dropping it closes the connection and
/// leaves the routes in place.
pub struct PeerRoutes {
    handle: rtnetlink::Handle,
    connection: tokio::task::JoinHandle<()>,
    underlay_ifindex: u32,
    /// Routes this value installed, by destination.
    installed: BTreeMap<Ipv4Cidr, PeerNode>,
}

impl Drop for PeerRoutes {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl PeerRoutes {
    /// Opens the rtnetlink socket in the calling thread's network namespace and spawns
    /// its connection on the current tokio runtime (an error outside one). Routes leave
    /// through `underlay_iface`.
    pub fn connect(underlay_iface: &str) -> Result<Self> {
        let underlay_ifindex = sys::ifindex(underlay_iface)?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::Netlink(format!("the connection needs a tokio runtime: {e}")))?;
        let (connection, handle, _) = {
            let _in_runtime = runtime.enter();
            rtnetlink::new_connection().map_err(|e| Error::Netlink(format!("connecting: {e}")))?
        };
        Ok(Self {
            handle,
            connection: runtime.spawn(connection),
            underlay_ifindex,
            installed: BTreeMap::new(),
        })
    }

    /// Routes every peer's pod range via its node address, removing the routes of peers
    /// no longer listed.
    pub async fn sync(&mut self, peers: &[PeerNode]) -> Result<()> {
        let wanted: BTreeMap<Ipv4Cidr, PeerNode> = peers.iter().map(|p| (p.pod_cidr, *p)).collect();
        for (cidr, peer) in &wanted {
            if self.installed.get(cidr) != Some(peer) {
                self.replace(peer).await?;
            }
        }
        let stale: Vec<PeerNode> = self
            .installed
            .iter()
            .filter(|(c, _)| !wanted.contains_key(c))
            .map(|(_, p)| *p)
            .collect();
        for peer in &stale {
            self.delete(peer).await?;
        }
        self.installed = wanted;
        Ok(())
    }

    /// Removes every route this value installed, logging the ones that fail.
    pub async fn remove_all(&mut self) {
        for peer in std::mem::take(&mut self.installed).values() {
            if let Err(e) = self.delete(peer).await {
                warn!("removing peer route: {e}");
            }
        }
    }

    fn message(&self, peer: &PeerNode) -> RouteMessage {
        RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(peer.pod_cidr.network(), peer.pod_cidr.prefix_len)
            .gateway(peer.node_addr)
            .output_interface(self.underlay_ifindex)
            .build()
    }

    /// Adds (or replaces) the route to `peer`'s pods.
    async fn replace(&self, peer: &PeerNode) -> Result<()> {
        let request = self.handle.route().add(self.message(peer)).replace();
        request.execute().await.map_err(|e| {
            Error::Netlink(format!(
                "route {} via {}: {e}",
                peer.pod_cidr, peer.node_addr
            ))
        })
    }

    /// Deletes the route to `peer`'s pods; a missing route is not an error.
    async fn delete(&self, peer: &PeerNode) -> Result<()> {
        match self.handle.route().del(self.message(peer)).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e))
                if e.code.map(|c| c.get()) == Some(-libc::ESRCH) =>
            {
                Ok(())
            }
            Err(e) => Err(Error::Netlink(format!(
                "deleting route {} via {}: {e}",
                peer.pod_cidr, peer.node_addr
            ))),
        }
    }
}

/// [`PeerRoutes`] for callers without a tokio runtime: the connection lives on a
/// current-thread runtime of its own, driven while a call blocks on it.
pub(crate) struct BlockingPeerRoutes {
    // Declared first: its connection task is aborted before the runtime goes.
    routes: PeerRoutes,
    runtime: tokio::runtime::Runtime,
}

impl BlockingPeerRoutes {
    /// Connects in the calling thread's network namespace; an error inside async code
    /// (blocking there would stall its runtime: use [`PeerRoutes`]).
    pub(crate) fn connect(underlay_iface: &str) -> Result<Self> {
        not_in_async_code()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Netlink(format!("runtime: {e}")))?;
        let routes = {
            let _in_runtime = runtime.enter();
            PeerRoutes::connect(underlay_iface)?
        };
        Ok(Self { routes, runtime })
    }

    /// [`PeerRoutes::sync`], blocking.
    pub(crate) fn sync(&mut self, peers: &[PeerNode]) -> Result<()> {
        not_in_async_code()?;
        self.runtime.block_on(self.routes.sync(peers))
    }

    /// [`PeerRoutes::remove_all`], blocking.
    pub(crate) fn remove_all(&mut self) -> Result<()> {
        not_in_async_code()?;
        self.runtime.block_on(self.routes.remove_all());
        Ok(())
    }
}

fn not_in_async_code() -> Result<()> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Err(Error::Netlink(
            "blocking route calls from async code: use PeerRoutes on its runtime".into(),
        )),
        Err(_) => Ok(()),
    }
}
