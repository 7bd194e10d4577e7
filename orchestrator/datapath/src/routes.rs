//! Routes to other nodes' pod ranges over the underlay (rtnetlink).

use std::net::Ipv4Addr;

use rtnetlink::RouteMessageBuilder;

use crate::{model::PeerNode, Error, Result};

/// Runs `f` on a fresh current-thread runtime in a scoped thread, so it works
/// both from plain threads and from inside another tokio runtime. The thread
/// inherits the caller's network namespace.
fn with_handle<T: Send>(
    f: impl FnOnce(rtnetlink::Handle) -> futures::future::BoxFuture<'static, Result<T>> + Send,
) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Netlink(format!("runtime: {e}")))?;
            rt.block_on(async {
                let (conn, handle, _) = rtnetlink::new_connection()
                    .map_err(|e| Error::Netlink(format!("connecting: {e}")))?;
                let task = tokio::spawn(conn);
                let r = f(handle).await;
                task.abort();
                r
            })
        })
        .join()
        .map_err(|_| Error::Netlink("netlink thread panicked".into()))?
    })
}

fn message(peer: &PeerNode, ifindex: u32) -> rtnetlink::packet_route::route::RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(peer.pod_cidr.network(), peer.pod_cidr.prefix_len)
        .gateway(peer.node_addr)
        .output_interface(ifindex)
        .build()
}

/// Adds (or replaces) the route `pod_cidr via node_addr dev <ifindex>`.
pub fn replace(peer: PeerNode, ifindex: u32) -> Result<()> {
    with_handle(move |h| {
        Box::pin(async move {
            h.route()
                .add(message(&peer, ifindex))
                .replace()
                .execute()
                .await
                .map_err(|e| {
                    Error::Netlink(format!(
                        "route {} via {}: {e}",
                        peer.pod_cidr, peer.node_addr
                    ))
                })
        })
    })
}

/// Deletes the route for `peer`; a missing route is not an error.
pub fn delete(peer: PeerNode, ifindex: u32) -> Result<()> {
    with_handle(move |h| {
        Box::pin(async move {
            match h.route().del(message(&peer, ifindex)).execute().await {
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
        })
    })
}
