//! The API server's `/metrics` against a real etcd: requests counted by verb, resource and
//! code, open watches, etcd latency by operation and resource, watch cache sizes, all in the
//! Prometheus text format that a Prometheus scrape parses.

use bpfk_lab::server::Cluster;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchParams};
use serde_json::json;

fn scrape(cluster: &Cluster) -> String {
    let (code, text) = cluster
        .server
        .request("GET", "/metrics", None)
        .expect("GET /metrics");
    assert_eq!(code, 200, "{text}");
    text
}

/// The value of the sample line starting with `series` (name and labels as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|rest| rest.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_watches_and_etcd_calls() {
    let cluster = Cluster::start_with(&["--disable-scheduler", "--controllers=serviceaccount"]);
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client().await, "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "m"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let err = cms.create(&PostParams::default(), &cm).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );
    for _ in 0..3 {
        cms.list(&ListParams::default()).await.unwrap();
    }
    let watch = cms.watch(&WatchParams::default(), "0").await.unwrap();
    let mut watch = Box::pin(watch);
    watch
        .next()
        .await
        .expect("the watch's first event")
        .unwrap();

    let text = scrape(&cluster);
    let request = |verb: &str, scope: &str, code: u16| {
        format!("apiserver_request_total{{verb=\"{verb}\",group=\"\",version=\"v1\",resource=\"configmaps\",subresource=\"\",scope=\"{scope}\",code=\"{code}\"}}")
    };
    assert_eq!(
        sample(&text, &request("POST", "namespace", 201)),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &request("POST", "namespace", 409)),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &request("LIST", "namespace", 200)),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "apiserver_longrunning_requests{resource=\"configmaps\"}"
        ),
        Some(1.0)
    );
    let creates = sample(
        &text,
        "etcd_request_duration_seconds_count{operation=\"create\",type=\"configmaps\"}",
    );
    assert!(creates.is_some_and(|n| n >= 1.0), "{text}");
    let stored = sample(&text, "apiserver_storage_objects{resource=\"configmaps\"}");
    assert_eq!(stored, Some(1.0), "{text}");
    assert!(
        text.contains("# TYPE apiserver_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );

    drop(watch);
    let mut closed = false;
    for _ in 0..50 {
        let text = scrape(&cluster);
        if sample(
            &text,
            "apiserver_longrunning_requests{resource=\"configmaps\"}",
        ) == Some(0.0)
        {
            closed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(closed, "the closed watch is still counted as open");
}

/// Scrapes until `series` has a value of at most `max`.
async fn wait_at_most(cluster: &Cluster, series: &str, max: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = scrape(cluster);
        if sample(&text, series).is_some_and(|v| v <= max) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} never came down to {max}:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// Scrapes until `series` has a value of at least `min` (the components run asynchronously).
async fn wait_sample(cluster: &Cluster, series: &str, min: f64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = scrape(cluster);
        if sample(&text, series).is_some_and(|v| v >= min) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} never reached {min}:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// The scheduler's and the controllers' metrics (in-process) on the API server's /metrics,
/// under kube-scheduler's and the work queues' names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_the_scheduler_and_controllers_are_served_beside_the_apiservers() {
    let cluster = Cluster::start();
    let client = cluster.client().await;
    let deploy = bpfk_lab::server::manifest("nginx-deployment.yaml");
    bpfk_lab::server::success(&cluster.kubectl(&["apply", "-f", &deploy.to_string_lossy()]));
    // no node exists: the deployment's pod and this one are unschedulable
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, "default");
    let pod = serde_json::from_value(json!({"metadata": {"name": "lonely"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let attempts =
        "scheduler_schedule_attempts_total{result=\"unschedulable\",profile=\"default-scheduler\"}";
    wait_sample(&cluster, attempts, 2.0).await;
    let durations = "scheduler_scheduling_attempt_duration_seconds_count{result=\"unschedulable\",profile=\"default-scheduler\"}";
    wait_sample(&cluster, durations, 2.0).await;
    wait_sample(
        &cluster,
        "scheduler_pending_pods{queue=\"unschedulable\"}",
        2.0,
    )
    .await;
    for name in ["deployment", "replicaset"] {
        let work = format!("workqueue_work_duration_seconds_count{{name=\"{name}\"}}");
        wait_sample(&cluster, &work, 1.0).await;
        let adds = format!("workqueue_adds_total{{name=\"{name}\"}}");
        wait_sample(&cluster, &adds, 1.0).await;
        // every object asked for has been reconciled: nothing waits
        let depth = format!("workqueue_depth{{name=\"{name}\"}}");
        wait_at_most(&cluster, &depth, 0.0).await;
    }
    let text = scrape(&cluster);
    for family in [
        "# TYPE scheduler_schedule_attempts counter",
        "# TYPE scheduler_scheduling_attempt_duration_seconds histogram",
        "# TYPE scheduler_pending_pods gauge",
        "# TYPE workqueue_work_duration_seconds histogram",
        "# TYPE workqueue_depth gauge",
        "# TYPE workqueue_adds counter",
        "# TYPE apiserver_request_duration_seconds histogram",
    ] {
        assert_eq!(text.matches(family).count(), 1, "{family} once in:\n{text}");
    }
    assert!(text.trim_end().ends_with("# EOF"), "one # EOF at the end");
    assert_eq!(text.matches("# EOF").count(), 1, "{text}");
}
