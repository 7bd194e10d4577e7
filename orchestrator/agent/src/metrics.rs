//! The agent's `/metrics` in the Prometheus text format: the datapath's per-frontend and
//! per-backend traffic (per-CPU kernel counters summed here), drops by reason, program run
//! counts and run time, map fill, and the service proxy's watch-event → maps latency and
//! sync failures. Served with `--metrics-addr` (meant for loopback, like kube-proxy's
//! 127.0.0.1:10249).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Router};
use bpfk_datapath::{Observer, Protocol, Snapshot};
use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};
use tracing::{info, warn};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FrontendLabels {
    namespace: String,
    service: String,
    /// `10.96.0.10:80/TCP`
    frontend: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    /// `10.244.1.12:8080/TCP`
    backend: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProgramLabels {
    program: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MapLabels {
    map: String,
}

/// What the service proxy records as it programs the maps.
#[derive(Clone)]
pub struct ProxyMetrics {
    sync_seconds: Histogram,
    sync_failures: Family<ReasonLabels, Counter>,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self {
            // 100 µs to ~3.3 s
            sync_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            sync_failures: Family::default(),
        }
    }
}

impl ProxyMetrics {
    /// One service brought into the maps `took` after its watch event.
    pub fn synced(&self, took: Duration) {
        self.sync_seconds.observe(took.as_secs_f64());
    }

    /// A service could not be programmed.
    pub fn failed(&self, e: &bpfk_datapath::Error) {
        let reason = match e {
            bpfk_datapath::Error::MapFull { .. } => "map_full",
            bpfk_datapath::Error::Exhausted(_) => "ids_exhausted",
            _ => "other",
        };
        self.sync_failures
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "bpfk_proxy_sync_duration_seconds",
            "Time from a watch event to the service's maps being updated.",
            self.sync_seconds.clone(),
        );
        r.register(
            "bpfk_proxy_sync_failures",
            "Services that could not be programmed, by reason (map_full: raise the map's --bpf-map-* size).",
            self.sync_failures.clone(),
        );
    }
}

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

type Counters<L> = [(&'static str, &'static str, Family<L, Counter>); 3];

fn traffic_families<L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug>(
) -> Counters<L> {
    [
        ("packets", "Packets translated by the per-packet path, both directions.", Family::default()),
        ("bytes", "Bytes of those packets.", Family::default()),
        ("connections", "New connections: connect()/sendmsg() translated at the socket, new flows on the per-packet path.", Family::default()),
    ]
}

fn register_traffic<L>(r: &mut Registry, prefix: &str, families: Counters<L>)
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    for (name, help, family) in families {
        r.register(format!("{prefix}_{name}"), help, family);
    }
}

/// Adds the datapath snapshot's families to `r`.
fn register_snapshot(r: &mut Registry, s: &Snapshot) {
    let fe: Counters<FrontendLabels> = traffic_families();
    for f in &s.frontends {
        let labels = FrontendLabels {
            namespace: f
                .service
                .as_ref()
                .map(|s| s.namespace.clone())
                .unwrap_or_default(),
            service: f
                .service
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            frontend: f
                .frontend
                .map(|f| format!("{}:{}/{}", f.addr, f.port, proto(f.proto)))
                .unwrap_or_else(|| format!("rev-nat-{}", f.rev_nat_index)),
        };
        let c = &f.counters;
        for ((_, _, family), v) in fe.iter().zip([c.packets, c.bytes, c.connections]) {
            family.get_or_create(&labels).inc_by(v);
        }
    }
    register_traffic(r, "bpfk_datapath_frontend", fe);
    let be: Counters<BackendLabels> = traffic_families();
    for b in &s.backends {
        let labels = BackendLabels {
            backend: b
                .backend
                .map(|b| format!("{}:{}/{}", b.addr, b.port, proto(b.proto)))
                .unwrap_or_else(|| format!("id-{}", b.id)),
        };
        let c = &b.counters;
        for ((_, _, family), v) in be.iter().zip([c.packets, c.bytes, c.connections]) {
            family.get_or_create(&labels).inc_by(v);
        }
    }
    register_traffic(r, "bpfk_datapath_backend", be);
    register_kernel(r, s);
}

/// Drops, program statistics and map fill.
fn register_kernel(r: &mut Registry, s: &Snapshot) {
    let drops: Family<ReasonLabels, Counter> = Family::default();
    for (reason, n) in &s.drops {
        let labels = ReasonLabels {
            reason: reason.to_string(),
        };
        drops.get_or_create(&labels).inc_by(*n);
    }
    r.register(
        "bpfk_datapath_drops",
        "Refused connections, dropped packets and failed map writes, by reason.",
        drops,
    );
    let runs: Family<ProgramLabels, Counter> = Family::default();
    let run_time: Family<ProgramLabels, Counter<f64>> = Family::default();
    for p in &s.programs {
        let labels = ProgramLabels {
            program: p.name.to_string(),
        };
        runs.get_or_create(&labels).inc_by(p.run_count);
        run_time
            .get_or_create(&labels)
            .inc_by(p.run_time.as_secs_f64());
    }
    r.register(
        "bpfk_datapath_program_runs",
        "Runs of each eBPF program (counted while --bpf-stats or kernel.bpf_stats_enabled is on).",
        runs,
    );
    r.register(
        "bpfk_datapath_program_run_seconds",
        "Time spent in each eBPF program (counted while --bpf-stats or kernel.bpf_stats_enabled is on).",
        run_time,
    );
    let entries: Family<MapLabels, Gauge> = Family::default();
    let max: Family<MapLabels, Gauge> = Family::default();
    for m in &s.maps {
        let labels = MapLabels {
            map: m.name.to_string(),
        };
        entries
            .get_or_create(&labels)
            .set(i64::try_from(m.entries).unwrap_or(i64::MAX));
        max.get_or_create(&labels).set(i64::from(m.max_entries));
    }
    r.register("bpfk_datapath_map_entries", "Entries in each map.", entries);
    r.register(
        "bpfk_datapath_map_max_entries",
        "Size of each map (--bpf-map-* flags).",
        max,
    );
}

/// The text exposition of `snapshot` and the proxy's metrics.
pub fn render(snapshot: &Snapshot, proxy: &ProxyMetrics) -> Result<String, std::fmt::Error> {
    let mut r = Registry::default();
    register_snapshot(&mut r, snapshot);
    proxy.register(&mut r);
    let mut out = String::new();
    encode(&mut out, &r)?;
    Ok(out)
}

struct Shared {
    observer: Mutex<Observer>,
    proxy: ProxyMetrics,
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    // Reading the maps is a few syscalls per entry: off the async workers.
    let text = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let observer = shared
            .observer
            .lock()
            .map_err(|_| "observer lock poisoned".to_string())?;
        let snapshot = observer.snapshot().map_err(|e| e.to_string())?;
        render(&snapshot, &shared.proxy).map_err(|e| e.to_string())
    })
    .await;
    match text {
        Ok(Ok(body)) => (StatusCode::OK, [("content-type", CONTENT_TYPE)], body),
        Ok(Err(e)) => {
            warn!("/metrics: {e}");
            error_response(e)
        }
        Err(e) => error_response(e.to_string()),
    }
}

fn error_response(e: String) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [("content-type", "text/plain; charset=utf-8")],
        format!("reading the datapath counters: {e}\n"),
    )
}

/// Serves `/metrics` on `listener` until the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    observer: Observer,
    proxy: ProxyMetrics,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let shared = Arc::new(Shared {
        observer: Mutex::new(observer),
        proxy,
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(shared);
    info!(?addr, "metrics listening");
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfk_datapath::{
        counters::{FrontendTraffic, MapFill, ProgramStats},
        map_mirror::Frontend,
        ServiceName,
    };
    use bpfk_ebpf_common::TrafficCounters;

    #[test]
    fn snapshot_renders_as_prometheus_text() {
        let snapshot = Snapshot {
            frontends: vec![FrontendTraffic {
                service: Some(ServiceName::new("default", "web")),
                frontend: Some(Frontend {
                    addr: "10.96.0.10".parse().unwrap(),
                    port: 80,
                    proto: Protocol::Tcp,
                }),
                rev_nat_index: 1,
                counters: TrafficCounters {
                    packets: 12,
                    bytes: 960,
                    connections: 2,
                },
            }],
            backends: Vec::new(),
            drops: vec![("no_backend_socket", 3)],
            programs: vec![ProgramStats {
                name: "bpfk_connect4",
                run_count: 5,
                run_time: Duration::from_micros(5),
            }],
            maps: vec![MapFill {
                name: "BPFK_SVC_V1",
                entries: 3,
                max_entries: 65536,
            }],
        };
        let proxy = ProxyMetrics::default();
        proxy.synced(Duration::from_millis(2));
        let text = render(&snapshot, &proxy).unwrap();
        for want in [
            r#"bpfk_datapath_frontend_connections_total{namespace="default",service="web",frontend="10.96.0.10:80/TCP"} 2"#,
            r#"bpfk_datapath_frontend_bytes_total{namespace="default",service="web",frontend="10.96.0.10:80/TCP"} 960"#,
            r#"bpfk_datapath_drops_total{reason="no_backend_socket"} 3"#,
            r#"bpfk_datapath_program_runs_total{program="bpfk_connect4"} 5"#,
            r#"bpfk_datapath_map_max_entries{map="BPFK_SVC_V1"} 65536"#,
            "bpfk_proxy_sync_duration_seconds_count 1",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
