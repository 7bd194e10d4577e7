//! ConfigMaps end to end (the kind added as one file in `apimachinery/src/kinds/core`): kube-rs
//! CRUD, watch, label and field selectors, key validation and `immutable`; the real kubectl's
//! apply, get (table, yaml, watch), describe and delete.

use std::time::Duration;

use bpfk_lab::server::{failure, success, Cluster, Streaming};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

fn config_map(name: &str, app: &str, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": app}},
        "data": data,
    }))
    .expect("a ConfigMap")
}

fn api_only() -> Cluster {
    Cluster::start_with(&["--disable-scheduler", "--controllers=serviceaccount"])
}

/// The `Status` of a refused request (panics on anything else).
fn status(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn names(list: &[ConfigMap]) -> Vec<String> {
    list.iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_map_crud_selectors_and_watch() {
    let cluster = api_only();
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client().await, "default");
    let pp = PostParams::default();
    let created = cms
        .create(&pp, &config_map("game", "web", json!({"lives": "3"})))
        .await
        .unwrap();
    assert_eq!(created.data.unwrap()["lives"], "3");
    cms.create(&pp, &config_map("ui", "other", json!({"color": "blue"})))
        .await
        .unwrap();

    let by_label = cms
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(names(&by_label.items), ["game"]);
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=ui"))
        .await
        .unwrap();
    assert_eq!(names(&by_name.items), ["ui"]);
    let by_ns = cms
        .list(&ListParams::default().fields("metadata.namespace=kube-system"))
        .await
        .unwrap();
    assert!(by_ns.items.is_empty());
    let bad_field = cms
        .list(&ListParams::default().fields("data.lives=3"))
        .await
        .unwrap_err();
    assert_eq!(status(bad_field).code, 400);

    let mut changes = watcher(cms.clone(), watcher::Config::default().labels("app=web")).boxed();
    // the watcher lists first: wait for its initial list, then change the object
    let listed = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = changes.try_next().await.unwrap() {
            if let watcher::Event::InitDone = event {
                return;
            }
        }
    });
    assert!(listed.await.is_ok(), "the watcher listed");
    let mut game = cms.get("game").await.unwrap();
    game.data = Some([("lives".to_string(), "5".to_string())].into());
    cms.replace("game", &pp, &game).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = changes.try_next().await.unwrap() {
            if let watcher::Event::Apply(cm) = event {
                if cm.data.as_ref().is_some_and(|d| d["lives"] == "5") {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(seen, Ok(true), "the watch saw the update");

    cms.delete("game", &DeleteParams::default()).await.unwrap();
    assert_eq!(status(cms.get("game").await.unwrap_err()).code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_map_keys_and_immutable_are_validated() {
    let cluster = api_only();
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client().await, "default");
    let pp = PostParams::default();
    let err = cms
        .create(&pp, &config_map("bad", "web", json!({"no spaces": "x"})))
        .await
        .unwrap_err();
    let refused = status(err);
    assert_eq!((refused.code, refused.reason.as_str()), (422, "Invalid"));
    assert!(
        refused.message.contains("data[no spaces]: Invalid value"),
        "{}",
        refused.message
    );
    assert!(
        cms.get_opt("bad").await.unwrap().is_none(),
        "nothing stored"
    );

    let mut frozen = config_map("frozen", "web", json!({"k": "v"}));
    frozen.immutable = Some(true);
    cms.create(&pp, &frozen).await.unwrap();
    let mut changed = cms.get("frozen").await.unwrap();
    changed.data = Some([("k".to_string(), "w".to_string())].into());
    let refused = status(cms.replace("frozen", &pp, &changed).await.unwrap_err());
    assert_eq!(refused.code, 422);
    assert!(
        refused
            .message
            .contains("data: Forbidden: field is immutable when `immutable` is set"),
        "{}",
        refused.message
    );
    // metadata stays writable
    let mut labelled = cms.get("frozen").await.unwrap();
    labelled.metadata.labels = Some([("tier".to_string(), "a".to_string())].into());
    cms.replace("frozen", &pp, &labelled).await.unwrap();
}

const MANIFEST: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: game-config
  labels:
    app: game
data:
  game.properties: |
    lives=3
  ui.properties: color=blue
binaryData:
  logo.bin: AAEC
";

#[test]
fn kubectl_apply_get_describe_delete_config_map() {
    let c = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cm.yaml");
    std::fs::write(&file, MANIFEST).unwrap();
    let file = file.to_string_lossy().into_owned();
    let watch = Streaming::start(&c, &["get", "cm", "-w", "--no-headers"]);

    let applied = success(&c.kubectl(&["apply", "-f", &file]));
    assert_eq!(applied.trim(), "configmap/game-config created");
    let again = success(&c.kubectl(&["apply", "-f", &file]));
    assert_eq!(again.trim(), "configmap/game-config unchanged");

    let table = success(&c.kubectl(&["get", "configmaps"]));
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DATA", "AGE"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("game-config"))
        .unwrap();
    assert_eq!(row.split_whitespace().nth(1), Some("3"), "{table}");

    let yaml = success(&c.kubectl(&["get", "cm", "game-config", "-o", "yaml"]));
    assert!(yaml.contains("ui.properties: color=blue"), "{yaml}");
    assert!(yaml.contains("logo.bin: AAEC"), "{yaml}");
    let described = success(&c.kubectl(&["describe", "configmap", "game-config"]));
    assert!(
        described.contains("Name:         game-config"),
        "{described}"
    );
    assert!(described.contains("lives=3"), "{described}");

    let err = failure(&c.kubectl_stdin(
        &["apply", "-f", "-"],
        &MANIFEST.replace("ui.properties", "ui properties"),
    ));
    assert!(err.contains("data[ui properties]"), "{err}");

    let deleted = success(&c.kubectl(&["delete", "-f", &file]));
    assert_eq!(deleted.trim(), "configmap \"game-config\" deleted");
    let err = failure(&c.kubectl(&["get", "cm", "game-config"]));
    assert!(err.contains("NotFound"), "{err}");
    wait_for(&watch, |lines| {
        lines.iter().any(|l| l.starts_with("game-config"))
    });
}

/// Waits until the lines `stream` printed satisfy `seen`.
fn wait_for(stream: &Streaming, seen: impl Fn(&[String]) -> bool) {
    for _ in 0..100 {
        if seen(&stream.lines()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("kubectl get -w printed {:?}", stream.lines());
}
