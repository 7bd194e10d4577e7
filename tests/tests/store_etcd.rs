//! `EtcdStore` against a real temporary etcd server.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bpfk_lab::etcd::{EtcdOptions, EtcdProcess};
use bpfk_store::etcd::{EtcdConfig, EtcdStore, EtcdTls};
use bpfk_store::{Event, ListOptions, Store, StoreError};
use futures::StreamExt;

/// Generous bound that only catches hangs (not a performance assertion).
const HANG: Duration = Duration::from_secs(30);

async fn connect(etcd: &EtcdProcess) -> EtcdStore {
    EtcdStore::connect(&[etcd.endpoint()])
        .await
        .expect("connect to etcd")
}

async fn next_event(stream: &mut bpfk_store::EventStream) -> Result<Event, StoreError> {
    tokio::time::timeout(HANG, stream.next())
        .await
        .expect("watch produced nothing (hang)")
        .expect("watch stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_and_already_exists() {
    let etcd = EtcdProcess::start();
    let store = connect(&etcd).await;
    let key = "/registry/pods/default/nginx";

    assert_eq!(store.get(key).await.unwrap(), None);
    let rev = store.create(key, b"v1".to_vec()).await.unwrap();
    let kv = store.get(key).await.unwrap().expect("created key");
    assert_eq!(kv.key, key);
    assert_eq!(kv.value, b"v1");
    assert_eq!(kv.mod_revision, rev);
    assert_eq!(kv.create_revision, rev);

    let again = store.create(key, b"v2".to_vec()).await;
    assert_eq!(again, Err(StoreError::AlreadyExists(key.to_string())));
    let kv = store.get(key).await.unwrap().unwrap();
    assert_eq!(kv.value, b"v1", "a refused create must not write");
    assert_eq!(kv.mod_revision, rev);
    assert_eq!(store.current_revision().await.unwrap(), rev);
    store.health().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_and_delete_check_revision_preconditions() {
    let etcd = EtcdProcess::start();
    let store = connect(&etcd).await;
    let key = "/registry/services/default/web";

    let r1 = store.create(key, b"a".to_vec()).await.unwrap();
    let r2 = store.update(key, b"b".to_vec(), Some(r1)).await.unwrap();
    assert!(r2 > r1);

    // Stale resourceVersion: refused, nothing written.
    let stale = store.update(key, b"stale".to_vec(), Some(r1)).await;
    assert_eq!(
        stale,
        Err(StoreError::Conflict {
            key: key.to_string(),
            expected: r1,
            current: r2
        })
    );
    assert_eq!(store.get(key).await.unwrap().unwrap().value, b"b");

    // Unconditional update of an existing key.
    let r3 = store.update(key, b"c".to_vec(), None).await.unwrap();
    let kv = store.get(key).await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.mod_revision, kv.create_revision),
        (&b"c"[..], r3, r1)
    );

    // Updates of a missing key.
    let missing = "/registry/services/default/missing";
    assert_eq!(
        store.update(missing, b"x".to_vec(), None).await,
        Err(StoreError::NotFound(missing.to_string()))
    );
    assert_eq!(
        store.update(missing, b"x".to_vec(), Some(r1)).await,
        Err(StoreError::NotFound(missing.to_string()))
    );
    assert_eq!(
        store.get(missing).await.unwrap(),
        None,
        "update must not create"
    );

    // Delete with a stale revision: refused, key kept.
    assert_eq!(
        store.delete(key, Some(r2)).await,
        Err(StoreError::Conflict {
            key: key.to_string(),
            expected: r2,
            current: r3
        })
    );
    assert!(store.get(key).await.unwrap().is_some());

    // Delete with the current revision returns the last value at the delete's revision.
    let deleted = store.delete(key, Some(r3)).await.unwrap();
    assert_eq!(deleted.key, key);
    assert_eq!(deleted.value, b"c");
    assert_eq!(deleted.create_revision, r1);
    assert!(deleted.mod_revision > r3);
    assert_eq!(
        store.current_revision().await.unwrap(),
        deleted.mod_revision
    );
    assert_eq!(store.get(key).await.unwrap(), None);
    assert_eq!(
        store.delete(key, None).await,
        Err(StoreError::NotFound(key.to_string()))
    );

    // Unconditional delete.
    store.create(key, b"d".to_vec()).await.unwrap();
    assert_eq!(store.delete(key, None).await.unwrap().value, b"d");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_with_limit_and_start_after_at_a_fixed_revision() {
    let etcd = EtcdProcess::start();
    let store = connect(&etcd).await;
    let prefix = "/registry/pods/";
    let mut expected = Vec::new();
    for i in 0..25 {
        let key = format!("{prefix}ns{}/pod-{i:02}", i % 3);
        store
            .create(&key, format!("v{i}").into_bytes())
            .await
            .unwrap();
        expected.push(key);
    }
    expected.sort();
    // Neighbours of the prefix that must never be listed.
    store.create("/registry/pods", b"x".to_vec()).await.unwrap();
    store
        .create("/registry/podsx/a", b"x".to_vec())
        .await
        .unwrap();
    store
        .create("/registry/pod/a", b"x".to_vec())
        .await
        .unwrap();

    let first = store
        .list(
            prefix,
            ListOptions {
                limit: Some(10),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.items.len(), 10);
    assert!(first.more);
    assert_eq!(first.remaining, Some(15));
    let revision = first.revision;

    // Changes after the first page must not show in the following pages.
    store
        .create(&format!("{prefix}ns9/late"), b"late".to_vec())
        .await
        .unwrap();
    store.delete(&expected[20], None).await.unwrap();
    store
        .update(&expected[15], b"new".to_vec(), None)
        .await
        .unwrap();

    let mut keys: Vec<String> = first.items.iter().map(|kv| kv.key.clone()).collect();
    let mut last = first;
    let mut pages = 1;
    while last.more {
        let next = store
            .list(
                prefix,
                ListOptions {
                    limit: Some(10),
                    start_after: last.items.last().map(|kv| kv.key.clone()),
                    revision: Some(revision),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            next.revision, revision,
            "pages are read at the first page's revision"
        );
        keys.extend(next.items.iter().map(|kv| kv.key.clone()));
        for kv in &next.items {
            assert!(kv.mod_revision <= revision);
            assert_ne!(kv.value, b"new");
        }
        last = next;
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(last.remaining, Some(0));
    assert_eq!(
        keys, expected,
        "pages cover the prefix exactly once, in key order"
    );

    // The latest list sees the changes.
    let now = store.list(prefix, ListOptions::default()).await.unwrap();
    assert!(now.revision > revision);
    assert!(!now.more);
    assert_eq!(now.items.len(), 25);
    assert!(now.items.iter().any(|kv| kv.key.ends_with("/late")));
    assert!(!now.items.iter().any(|kv| kv.key == expected[20]));

    // A list at a compacted revision is refused with Compacted.
    store.compact(now.revision).await.unwrap();
    let gone = store
        .list(
            prefix,
            ListOptions {
                revision: Some(revision),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(
        gone.unwrap_err(),
        StoreError::Compacted {
            requested: revision,
            compacted: now.revision
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reports_added_modified_deleted_with_revisions_and_prev_values() {
    let etcd = EtcdProcess::start();
    let store = connect(&etcd).await;
    let prefix = "/registry/configmaps/";
    let key = "/registry/configmaps/default/cfg";
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch(prefix, start).await.unwrap();

    let r1 = store.create(key, b"one".to_vec()).await.unwrap();
    store
        .create("/registry/secrets/default/other", b"x".to_vec())
        .await
        .unwrap();
    let r2 = store.update(key, b"two".to_vec(), Some(r1)).await.unwrap();
    let deleted = store.delete(key, Some(r2)).await.unwrap();

    match next_event(&mut watch).await.unwrap() {
        Event::Added { kv } => {
            assert_eq!((kv.key.as_str(), kv.value.as_slice()), (key, &b"one"[..]));
            assert_eq!((kv.mod_revision, kv.create_revision), (r1, r1));
        }
        other => panic!("expected Added, got {other:?}"),
    }
    match next_event(&mut watch).await.unwrap() {
        Event::Modified { kv, prev } => {
            assert_eq!(kv.value, b"two");
            assert_eq!((kv.mod_revision, kv.create_revision), (r2, r1));
            let prev = prev.expect("prev value");
            assert_eq!(
                (prev.value.as_slice(), prev.mod_revision),
                (&b"one"[..], r1)
            );
        }
        other => panic!("expected Modified, got {other:?}"),
    }
    match next_event(&mut watch).await.unwrap() {
        Event::Deleted { kv } => {
            assert_eq!(kv.key, key);
            assert_eq!(kv.value, b"two", "a delete carries the last value");
            assert_eq!(kv.mod_revision, deleted.mod_revision);
            assert_eq!(kv.create_revision, r1);
        }
        other => panic!("expected Deleted, got {other:?}"),
    }

    // A watch started later from an old revision replays history.
    let mut replay = store.watch(prefix, r1).await.unwrap();
    let event = next_event(&mut replay).await.unwrap();
    assert!(matches!(&event, Event::Modified { .. }), "{event:?}");
    assert_eq!(event.revision(), r2);
    let event = next_event(&mut replay).await.unwrap();
    assert!(matches!(&event, Event::Deleted { .. }), "{event:?}");
    assert_eq!(event.revision(), deleted.mod_revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_revision_reports_compacted() {
    let etcd = EtcdProcess::start();
    let store = connect(&etcd).await;
    let prefix = "/registry/leases/";
    let first = store
        .create("/registry/leases/kube-system/a", b"1".to_vec())
        .await
        .unwrap();
    let mut last = first;
    for i in 0..5 {
        last = store
            .update(
                "/registry/leases/kube-system/a",
                format!("{i}").into_bytes(),
                None,
            )
            .await
            .unwrap();
    }
    store.compact(last).await.unwrap();

    let outcome = match store.watch(prefix, first).await {
        Err(e) => e,
        Ok(mut stream) => next_event(&mut stream)
            .await
            .expect_err("a watch from a compacted revision must not deliver events"),
    };
    match outcome {
        StoreError::Compacted {
            requested,
            compacted,
        } => {
            assert_eq!(requested, first);
            assert_eq!(compacted, last);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }

    // Compacting an already compacted revision is reported too.
    assert_eq!(
        store.compact(first).await,
        Err(StoreError::Compacted {
            requested: first,
            compacted: last
        })
    );
    // Watching from the compaction point itself still works.
    let mut ok = store.watch(prefix, last).await.unwrap();
    let rev = store
        .update("/registry/leases/kube-system/a", b"after".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(next_event(&mut ok).await.unwrap().revision(), rev);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_down_gives_unavailable_and_recovers() {
    let mut etcd = EtcdProcess::start();
    let store = connect(&etcd).await;
    let key = "/registry/nodes/n1";
    let rev = store.create(key, b"up".to_vec()).await.unwrap();
    let mut watch = store
        .watch("/registry/nodes/", rev)
        .await
        .expect("watch while up");

    etcd.stop();

    // A running watch ends with an error instead of hanging.
    let ended = tokio::time::timeout(HANG, watch.next())
        .await
        .expect("watch hung after etcd stopped");
    assert!(
        matches!(ended, Some(Err(StoreError::Unavailable(_)))),
        "{ended:?}"
    );

    // Every operation fails with Unavailable (bounded by the request timeout), no panic.
    macro_rules! unavailable {
        ($op:expr) => {{
            let result = tokio::time::timeout(HANG, $op)
                .await
                .expect(concat!(stringify!($op), " hung while etcd was down"));
            assert!(
                matches!(result, Err(StoreError::Unavailable(_))),
                "{}: {:?}",
                stringify!($op),
                result
            );
        }};
    }
    unavailable!(store.get(key));
    unavailable!(store.create("/registry/nodes/n2", b"x".to_vec()));
    unavailable!(store.update(key, b"x".to_vec(), Some(rev)));
    unavailable!(store.delete(key, None));
    unavailable!(store.list("/registry/nodes/", ListOptions::default()));
    unavailable!(store.current_revision());
    unavailable!(store.health());
    unavailable!(async { store.watch("/registry/nodes/", rev).await.map(|_| ()) });

    // A client can be created while etcd is down (the server starts before etcd).
    let late = tokio::time::timeout(HANG, EtcdStore::connect(&[etcd.endpoint()]))
        .await
        .expect("connect hung")
        .expect("connect must not need etcd");
    unavailable!(late.health());

    etcd.start_again();

    // Both clients reconnect; nothing half-written happened while etcd was down.
    for client in [&store, &late] {
        let mut healthy = false;
        for _ in 0..60 {
            if client.health().await.is_ok() {
                healthy = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(healthy, "store did not reconnect after etcd came back");
    }
    let kv = store.get(key).await.unwrap().unwrap();
    assert_eq!((kv.value.as_slice(), kv.mod_revision), (&b"up"[..], rev));
    assert_eq!(store.get("/registry/nodes/n2").await.unwrap(), None);
    let r2 = late.update(key, b"back".to_vec(), Some(rev)).await.unwrap();
    let mut watch = store.watch("/registry/nodes/", rev).await.unwrap();
    assert_eq!(next_event(&mut watch).await.unwrap().revision(), r2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_store_each_key_once() {
    let etcd = EtcdProcess::start();
    let store = Arc::new(connect(&etcd).await);

    // 100 distinct keys at once: all succeed, each at its own revision.
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create(
                        &format!("/registry/pods/load/p-{i:03}"),
                        format!("{i}").into_bytes(),
                    )
                    .await
            })
        })
        .collect();
    let mut revisions = BTreeSet::new();
    for task in tasks {
        revisions.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(revisions.len(), 100, "each create is its own write");
    let list = store
        .list("/registry/pods/load/", ListOptions::default())
        .await
        .unwrap();
    assert_eq!(list.items.len(), 100);
    for (i, kv) in list.items.iter().enumerate() {
        assert_eq!(kv.key, format!("/registry/pods/load/p-{i:03}"));
        assert_eq!(kv.value, format!("{i}").into_bytes());
        assert!(revisions.contains(&kv.mod_revision));
    }

    // 20 creates of the same key at once: exactly one wins.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create("/registry/pods/load/same", format!("{i}").into_bytes())
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(won, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_read_modify_write_loses_no_update() {
    let etcd = EtcdProcess::start();
    let store = Arc::new(connect(&etcd).await);
    let key = "/registry/deployments/default/counter";
    store.create(key, b"0".to_vec()).await.unwrap();

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut conflicts = 0u32;
                loop {
                    let kv = store.get(key).await.unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                    match store
                        .update(key, (n + 1).to_string().into_bytes(), Some(kv.mod_revision))
                        .await
                    {
                        Ok(_) => return conflicts,
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let kv = store.get(key).await.unwrap().unwrap();
    assert_eq!(kv.value, b"20", "every increment survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_etcd_gives_unavailable_after_the_request_timeout() {
    let mut etcd = EtcdProcess::start();
    let config = EtcdConfig {
        request_timeout: Duration::from_secs(1),
        ..EtcdConfig::default()
    };
    let store = EtcdStore::connect_with(&[etcd.endpoint()], config)
        .await
        .unwrap();
    let key = "/registry/pods/default/hung";
    let rev = store.create(key, b"v".to_vec()).await.unwrap();

    // A frozen etcd accepts connections but never answers: the timeout must end each call.
    etcd.freeze();
    // a timed-out write has an unknown outcome and says so (Timeout); reads are Unavailable
    let update = tokio::time::timeout(HANG, store.update(key, b"x".to_vec(), Some(rev)))
        .await
        .expect("an update hung on a frozen etcd");
    assert!(matches!(update, Err(StoreError::Timeout(_))), "{update:?}");
    for result in [
        tokio::time::timeout(HANG, store.get(key))
            .await
            .map(|r| r.map(|_| ())),
        tokio::time::timeout(HANG, store.health()).await,
        tokio::time::timeout(HANG, async {
            store.watch("/registry/pods/", rev).await.map(|_| ())
        })
        .await,
    ] {
        let result = result.expect("a call hung on a frozen etcd");
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
    }
    etcd.thaw();

    // etcd may still apply the update it had received before freezing (a timed-out write
    // has an unknown outcome), but only as a whole: the old value at the old revision or
    // the new value at a newer one.
    // The pending write may land just after our read, so a conflict is retried once with
    // the value read again, which must then be the whole new value.
    for attempt in 0..2 {
        let kv = store.get(key).await.unwrap().unwrap();
        match kv.value.as_slice() {
            b"v" => assert_eq!(kv.mod_revision, rev),
            b"x" => assert!(kv.mod_revision > rev),
            other => panic!("unexpected value {other:?}"),
        }
        match store
            .update(key, b"w".to_vec(), Some(kv.mod_revision))
            .await
        {
            Ok(_) => return,
            Err(StoreError::Conflict { .. }) if attempt == 0 && kv.value == b"v" => continue,
            Err(e) => panic!("update after thaw failed: {e:?}"),
        }
    }
    panic!("the update after thaw never succeeded");
}

#[tokio::test]
async fn bad_endpoints_are_refused_with_a_clear_error() {
    for endpoints in [vec![], vec!["unix:///run/etcd.sock".to_string()]] {
        match EtcdStore::connect(&endpoints).await {
            Err(StoreError::Internal(message)) => {
                assert!(message.contains("endpoint"), "{message}")
            }
            other => panic!("expected an error for {endpoints:?}, got {other:?}"),
        }
    }
}

fn tls_config(etcd: &EtcdProcess, with_client_cert: bool) -> EtcdConfig {
    let files = etcd.tls().expect("a TLS etcd");
    let read = |p: &std::path::Path| std::fs::read(p).expect("etcd certificate file");
    EtcdConfig {
        request_timeout: Duration::from_secs(3),
        tls: Some(EtcdTls {
            ca_pem: read(&files.ca),
            client: with_client_cert.then(|| (read(&files.client_cert), read(&files.client_key))),
        }),
        ..EtcdConfig::default()
    }
}

/// etcd serving TLS with `--client-cert-auth`: the store works with the CA and a client
/// certificate, and gets nothing without the certificate or over plain HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_etcd_answers_only_clients_with_a_certificate() {
    let etcd = EtcdProcess::start_with(EtcdOptions {
        tls: true,
        ..Default::default()
    });
    assert!(etcd.endpoint().starts_with("https://127.0.0.1:"));
    let store = EtcdStore::connect_with(&[etcd.endpoint()], tls_config(&etcd, true))
        .await
        .expect("connect over TLS");
    let rev = store
        .create("/registry/tls/a", b"x".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store
            .get("/registry/tls/a")
            .await
            .unwrap()
            .unwrap()
            .mod_revision,
        rev
    );

    let anonymous = EtcdStore::connect_with(&[etcd.endpoint()], tls_config(&etcd, false)).await;
    let refused = match anonymous {
        Ok(store) => store.get("/registry/tls/a").await.err(),
        Err(e) => Some(e),
    };
    assert!(
        refused.is_some(),
        "etcd answered a client without a certificate"
    );

    let plain = format!("http://127.0.0.1:{}", etcd.client_port());
    let plain_store = EtcdStore::connect_with(
        &[plain],
        EtcdConfig {
            request_timeout: Duration::from_secs(3),
            ..EtcdConfig::default()
        },
    )
    .await;
    let refused = match plain_store {
        Ok(store) => store.get("/registry/tls/a").await.err(),
        Err(e) => Some(e),
    };
    assert!(refused.is_some(), "etcd answered plain HTTP");
}

#[tokio::test]
async fn tls_settings_and_endpoint_schemes_must_agree() {
    let https = ["https://127.0.0.1:2379".to_string()];
    match EtcdStore::connect(&https).await {
        Err(StoreError::Internal(message)) => {
            assert!(message.contains("--etcd-cafile"), "{message}")
        }
        other => panic!("https without a CA: {other:?}"),
    }
    let config = EtcdConfig {
        tls: Some(EtcdTls {
            ca_pem: Vec::new(),
            client: None,
        }),
        ..EtcdConfig::default()
    };
    match EtcdStore::connect_with(&["http://127.0.0.1:2379".to_string()], config).await {
        Err(StoreError::Internal(message)) => {
            assert!(message.contains("must be https://"), "{message}")
        }
        other => panic!("http with TLS configured: {other:?}"),
    }
}
