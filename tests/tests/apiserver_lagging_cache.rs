//! Writes start from the watch cache's copy of an object (no etcd read). These tests hold the
//! cache back with a gate on its etcd watch while etcd moves on, and check that patches,
//! updates and bindings then recheck etcd instead of failing, reporting "no change" or
//! overwriting the newer version. Real etcd; the gate only delays watch events.

use std::sync::Arc;

use bpfk_apimachinery::registry::{self, ResourceInfo};
use bpfk_apiserver::error::ApiError;
use bpfk_apiserver::query::Query;
use bpfk_apiserver::rest::{subresource, write};
use bpfk_apiserver::AppState;
use bpfk_lab::etcd::EtcdProcess;
use bpfk_lab::store_faults::{FaultyWatchStore, Gate};
use bpfk_store::etcd::EtcdStore;
use bpfk_store::{Result, Revision, Store};
use serde_json::{json, Value};
use tokio::sync::watch;

struct Fixture {
    _etcd: EtcdProcess,
    etcd: EtcdStore,
    state: Arc<AppState>,
    gate: watch::Sender<bool>,
    pods: &'static ResourceInfo,
}

const KEY: &str = "/registry/pods/default/lag";

impl Fixture {
    async fn start() -> Fixture {
        let process = tokio::task::spawn_blocking(EtcdProcess::start)
            .await
            .unwrap();
        let etcd = EtcdStore::connect(&[process.endpoint()]).await.unwrap();
        let (gate, open) = watch::channel(true);
        // the real etcd store, its watch streams passing items on only while the gate is open
        let store = FaultyWatchStore {
            inner: Arc::new(etcd.clone()),
            fault: Gate(open),
        };
        let state = AppState::new(Arc::new(store));
        state.wait_caches_ready().await;
        let q = Query::default();
        let namespaces = registry::find("", "v1", "namespaces").unwrap();
        let pods = registry::find("", "v1", "pods").unwrap();
        write::create(
            &state,
            namespaces,
            None,
            json!({"metadata": {"name": "default"}}),
            &q,
        )
        .await
        .unwrap();
        // what the serviceaccount controller would make: pods run as an account that exists
        let accounts = registry::find("", "v1", "serviceaccounts").unwrap();
        let account = json!({"metadata": {"name": "default"}});
        write::create(&state, accounts, Some("default"), account, &q)
            .await
            .unwrap();
        let pod = json!({
            "metadata": {"name": "lag", "labels": {"round": "start"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}
        });
        let created = write::create(&state, pods, Some("default"), pod, &q)
            .await
            .unwrap();
        let rv: Revision = created.object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let cache = state.cache(pods).unwrap();
        cache
            .wait_for_revision(rv, std::time::Duration::from_secs(10))
            .await
            .unwrap();
        Fixture {
            _etcd: process,
            etcd,
            state,
            gate,
            pods,
        }
    }

    /// Stops the cache's watch and changes the pod in etcd behind its back; returns the new
    /// stored object.
    async fn change_in_etcd_only(&self, change: impl FnOnce(&mut Value)) -> Value {
        self.gate.send_replace(false);
        let kv = self.etcd.get(KEY).await.unwrap().unwrap();
        let mut obj: Value = serde_json::from_slice(&kv.value).unwrap();
        change(&mut obj);
        let rev = self
            .etcd
            .update(
                KEY,
                serde_json::to_vec(&obj).unwrap(),
                Some(kv.mod_revision),
            )
            .await
            .unwrap();
        obj["metadata"]["resourceVersion"] = json!(rev.to_string());
        // the cache still holds an older copy
        let cached = self.state.cache(self.pods).unwrap().get(KEY).await.unwrap();
        assert!(
            cached.mod_revision < rev,
            "the gate must hold the cache back"
        );
        obj
    }

    /// PUT of the pod.
    async fn update(&self, body: Value) -> Result<write::Written, ApiError> {
        write::update(
            &self.state,
            self.pods,
            Some("default"),
            "lag",
            write::Part::Main,
            body,
            &Query::default(),
        )
        .await
    }

    async fn stored(&self) -> Value {
        let kv = self.etcd.get(KEY).await.unwrap().unwrap();
        serde_json::from_slice(&kv.value).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_applies_to_the_stored_version() {
    let f = Fixture::start().await;
    f.change_in_etcd_only(|o| o["metadata"]["labels"]["round"] = json!("etcd"))
        .await;
    // holds only for the version in etcd
    let patch = json!([
        {"op": "test", "path": "/metadata/labels/round", "value": "etcd"},
        {"op": "add", "path": "/metadata/annotations", "value": {"patched": "yes"}}
    ]);
    let w = write::patch(
        &f.state,
        f.pods,
        Some("default"),
        "lag",
        write::Part::Main,
        write::PatchKind::Json,
        &patch,
        &Query::default(),
    )
    .await
    .unwrap();
    assert_eq!(w.object["metadata"]["annotations"]["patched"], "yes");
    let stored = f.stored().await;
    assert_eq!(stored["metadata"]["labels"]["round"], "etcd");
    assert_eq!(stored["metadata"]["annotations"]["patched"], "yes");
    f.gate.send_replace(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_checks_its_resource_version_against_etcd() {
    let f = Fixture::start().await;
    let newer = f
        .change_in_etcd_only(|o| o["metadata"]["labels"]["round"] = json!("etcd"))
        .await;
    // naming the version etcd holds succeeds although the cache has an older one
    let mut body = newer.clone();
    body["metadata"]["labels"]["put"] = json!("1");
    let w = f.update(body).await.unwrap();
    assert_eq!(w.object["metadata"]["labels"]["put"], "1");
    assert_eq!(w.object["metadata"]["labels"]["round"], "etcd");

    // a body equal to the cached copy (round=start) but not to etcd's version is a real
    // write, not "nothing changed"
    let again = f
        .change_in_etcd_only(|o| o["metadata"]["labels"]["round"] = json!("etcd-2"))
        .await;
    let mut old = newer;
    old["metadata"]["resourceVersion"] = json!(null);
    old["metadata"]["labels"] = json!({"round": "start"});
    let w = f.update(old).await.unwrap();
    assert_ne!(
        w.object["metadata"]["resourceVersion"], again["metadata"]["resourceVersion"],
        "a write equal to the cached copy but not to etcd's must be stored"
    );
    assert_eq!(f.stored().await["metadata"]["labels"]["round"], "start");

    // a resourceVersion older than etcd's is a conflict
    let mut stale = again;
    stale["metadata"]["labels"]["x"] = json!("y");
    match f.update(stale).await {
        Err(ApiError::Conflict { .. }) => {}
        Err(e) => panic!("expected a conflict, got {e:?}"),
        Ok(_) => panic!("a stale resourceVersion was accepted"),
    }
    f.gate.send_replace(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_sees_a_node_set_in_etcd() {
    let f = Fixture::start().await;
    f.change_in_etcd_only(|o| o["spec"]["nodeName"] = json!("node-x"))
        .await;
    let binding =
        json!({"metadata": {"name": "lag"}, "target": {"kind": "Node", "name": "node-y"}});
    match subresource::bind(&f.state, f.pods, "default", "lag", &binding).await {
        Err(ApiError::Conflict { message, .. }) => assert!(message.contains("node-x"), "{message}"),
        Err(e) => panic!("expected a conflict naming node-x, got {e:?}"),
        Ok(_) => panic!("the pod was bound twice"),
    }
    assert_eq!(f.stored().await["spec"]["nodeName"], "node-x");
    f.gate.send_replace(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_sets_node_and_condition_in_one_write() {
    let f = Fixture::start().await;
    let before = f.etcd.current_revision().await.unwrap();
    let binding =
        json!({"metadata": {"name": "lag"}, "target": {"kind": "Node", "name": "node-y"}});
    subresource::bind(&f.state, f.pods, "default", "lag", &binding)
        .await
        .unwrap();
    assert_eq!(
        f.etcd.current_revision().await.unwrap(),
        before + 1,
        "one etcd write"
    );
    let stored = f.stored().await;
    assert_eq!(stored["spec"]["nodeName"], "node-y");
    let conds = stored["status"]["conditions"].as_array().unwrap();
    assert!(conds
        .iter()
        .any(|c| c["type"] == "PodScheduled" && c["status"] == "True"));
}
