//! `WatchCache` over a real temporary etcd server.

use std::sync::Arc;
use std::time::Duration;

use bpfk_lab::etcd::{EtcdOptions, EtcdProcess};
use bpfk_lab::store_faults::{FaultyWatchStore, Partition};
use bpfk_store::etcd::EtcdStore;
use bpfk_store::watch_cache::{CacheWatch, WatchCache};
use bpfk_store::{Event, ListOptions, ListResult, Result, Revision, Store, StoreError};
use futures::StreamExt;

/// Generous bound that only catches hangs (not a performance assertion).
const HANG: Duration = Duration::from_secs(30);

async fn connect(etcd: &EtcdProcess) -> Arc<EtcdStore> {
    Arc::new(
        EtcdStore::connect(&[etcd.endpoint()])
            .await
            .expect("connect to etcd"),
    )
}

async fn ready_cache(store: Arc<dyn Store>, prefix: &str, history: usize) -> Arc<WatchCache> {
    let cache = WatchCache::start(store, prefix.to_string(), history);
    tokio::time::timeout(HANG, cache.wait_ready())
        .await
        .expect("watch cache did not load");
    cache
}

/// (kind, key, revision) of an event, for comparisons.
fn summary(event: &Event) -> (&'static str, String, Revision) {
    let kind = match event {
        Event::Added { .. } => "ADDED",
        Event::Modified { .. } => "MODIFIED",
        Event::Deleted { .. } => "DELETED",
    };
    (kind, event.key().to_string(), event.revision())
}

async fn next(watch: &mut CacheWatch) -> Result<Arc<Event>> {
    tokio::time::timeout(HANG, watch.next())
        .await
        .expect("cache watch produced nothing (hang)")
        .expect("cache watch ended")
}

async fn take(watch: &mut CacheWatch, n: usize) -> Vec<(&'static str, String, Revision)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let event = next(watch).await.expect("cache watch error");
        out.push(summary(&event));
    }
    out
}

async fn store_list(store: &dyn Store, prefix: &str) -> ListResult {
    store
        .list(prefix, ListOptions::default())
        .await
        .expect("list from etcd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_get_from_memory_match_the_store() {
    let etcd = EtcdProcess::start();
    let store = connect(&etcd).await;
    let prefix = "/registry/pods/";
    for i in 0..20 {
        store
            .create(
                &format!("{prefix}ns{}/p{i:02}", i % 2),
                format!("{i}").into_bytes(),
            )
            .await
            .unwrap();
    }
    store
        .create("/registry/podsx/outside", b"no".to_vec())
        .await
        .unwrap();
    let cache = ready_cache(store.clone(), prefix, 100).await;

    let (items, revision) = cache.list().await;
    let expected = store_list(store.as_ref(), prefix).await;
    assert_eq!(items, expected.items);
    assert!(
        revision
            >= expected
                .items
                .iter()
                .map(|kv| kv.mod_revision)
                .max()
                .unwrap()
    );

    // Writes reach the cache through its watch.
    let r1 = store
        .update(&format!("{prefix}ns0/p00"), b"changed".to_vec(), None)
        .await
        .unwrap();
    let deleted = store
        .delete(&format!("{prefix}ns1/p01"), None)
        .await
        .unwrap();
    let r3 = store
        .create(&format!("{prefix}ns1/new"), b"new".to_vec())
        .await
        .unwrap();
    assert!(r1 < deleted.mod_revision && deleted.mod_revision < r3);
    cache.wait_for_revision(r3, HANG).await.unwrap();
    let (items, revision) = cache.list().await;
    assert!(revision >= r3);
    assert_eq!(items, store_list(store.as_ref(), prefix).await.items);
    assert_eq!(
        cache.get(&format!("{prefix}ns0/p00")).await.unwrap().value,
        b"changed"
    );
    assert_eq!(cache.get(&format!("{prefix}ns1/p01")).await, None);

    // One namespace from memory.
    let (ns1, _) = cache.list_prefix(&format!("{prefix}ns1/")).await;
    let expected_ns1 = store_list(store.as_ref(), &format!("{prefix}ns1/")).await;
    assert_eq!(ns1, expected_ns1.items);
    assert_eq!(ns1.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_client_watches_share_one_etcd_watch() {
    let etcd = EtcdProcess::start();
    let store = connect(&etcd).await;
    let prefix = "/registry/endpoints/";
    for i in 0..5 {
        store
            .create(&format!("{prefix}default/pre{i}"), b"pre".to_vec())
            .await
            .unwrap();
    }
    let cache = ready_cache(store.clone(), prefix, 1000).await;

    let mut watches = Vec::new();
    for _ in 0..1000 {
        watches.push(cache.watch(None).await.unwrap());
    }
    assert_eq!(cache.stats().live_watchers, 1000);

    let mut expected = Vec::new();
    for i in 0..5 {
        let kv = cache.get(&format!("{prefix}default/pre{i}")).await.unwrap();
        expected.push(("ADDED", kv.key, kv.mod_revision));
    }
    for i in 0..10 {
        let key = format!("{prefix}default/e{i}");
        let rev = store.create(&key, b"a".to_vec()).await.unwrap();
        expected.push(("ADDED", key, rev));
    }
    for i in 0..10 {
        let key = format!("{prefix}default/e{i}");
        let rev = store.update(&key, b"b".to_vec(), None).await.unwrap();
        expected.push(("MODIFIED", key, rev));
    }
    for i in 0..10 {
        let key = format!("{prefix}default/e{i}");
        let rev = store.delete(&key, None).await.unwrap().mod_revision;
        expected.push(("DELETED", key, rev));
    }

    let expected = Arc::new(expected);
    let tasks: Vec<_> = watches
        .into_iter()
        .map(|mut watch| {
            let expected = expected.clone();
            tokio::spawn(async move {
                let seen = take(&mut watch, expected.len()).await;
                assert_eq!(&seen, expected.as_ref());
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a client watch saw wrong events");
    }

    // One backend watch for all of them, as etcd itself reports.
    assert_eq!(cache.stats().backend_watches, 1);
    assert_eq!(etcd.metric("etcd_debugging_mvcc_watcher_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replays_from_a_buffered_revision() {
    let etcd = EtcdProcess::start();
    let store = connect(&etcd).await;
    let prefix = "/registry/services/";
    let cache = ready_cache(store.clone(), prefix, 100).await;
    let key = format!("{prefix}default/web");
    let mut revisions = vec![store.create(&key, b"0".to_vec()).await.unwrap()];
    for i in 1..10 {
        revisions.push(
            store
                .update(&key, format!("{i}").into_bytes(), None)
                .await
                .unwrap(),
        );
    }
    cache.wait_for_revision(revisions[9], HANG).await.unwrap();

    let mut watch = cache.watch(Some(revisions[4])).await.unwrap();
    assert!(!watch.is_direct());
    let seen = take(&mut watch, 5).await;
    let expected: Vec<_> = revisions[5..]
        .iter()
        .map(|rev| ("MODIFIED", key.clone(), *rev))
        .collect();
    assert_eq!(seen, expected);
    // Replayed events carry the previous value.
    let mut again = cache.watch(Some(revisions[8])).await.unwrap();
    match next(&mut again).await.unwrap().as_ref() {
        Event::Modified { kv, prev } => {
            assert_eq!(kv.value, b"9");
            assert_eq!(prev.as_ref().unwrap().value, b"8");
        }
        other => panic!("expected Modified, got {other:?}"),
    }
    assert_eq!(watch.bookmark_revision(), Some(cache.revision()));

    // Then live events, in order.
    let live = store.delete(&key, None).await.unwrap().mod_revision;
    assert_eq!(
        take(&mut watch, 1).await,
        vec![("DELETED", key.clone(), live)]
    );
    assert_eq!(watch.last_revision(), live);

    // Watching from the current revision replays nothing and gets the next change.
    let mut current = cache.watch(Some(live)).await.unwrap();
    let created = store.create(&key, b"again".to_vec()).await.unwrap();
    assert_eq!(take(&mut current, 1).await, vec![("ADDED", key, created)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_older_than_the_history_falls_back_to_etcd_or_compacted() {
    let etcd = EtcdProcess::start();
    let store = connect(&etcd).await;
    let prefix = "/registry/replicasets/";
    let cache = ready_cache(store.clone(), prefix, 5).await;
    let key = format!("{prefix}default/rs");
    let mut revisions = vec![store.create(&key, b"0".to_vec()).await.unwrap()];
    for i in 1..20 {
        revisions.push(
            store
                .update(&key, format!("{i}").into_bytes(), None)
                .await
                .unwrap(),
        );
    }
    cache.wait_for_revision(revisions[19], HANG).await.unwrap();
    assert_eq!(cache.stats().buffered_events, 5);

    // Too old for the cache's 5 buffered events: served by etcd directly.
    let mut old = cache.watch(Some(revisions[2])).await.unwrap();
    assert!(old.is_direct());
    let seen = take(&mut old, 17).await;
    let expected: Vec<_> = revisions[3..]
        .iter()
        .map(|rev| ("MODIFIED", key.clone(), *rev))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(old.bookmark_revision(), Some(revisions[19]));

    // Once etcd compacted it, the client is told to relist (HTTP 410 Gone).
    store.compact(revisions[19]).await.unwrap();
    let mut gone = cache.watch(Some(revisions[2])).await.unwrap();
    match next(&mut gone).await {
        Err(StoreError::Compacted { requested, .. }) => assert_eq!(requested, revisions[2]),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(gone.next().await.is_none(), "a compacted watch ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_survives_an_etcd_restart_and_catches_up() {
    let mut etcd = EtcdProcess::start();
    let store = connect(&etcd).await;
    let prefix = "/registry/nodes/";
    let cache = ready_cache(store.clone(), prefix, 100).await;
    let mut watch = cache.watch(None).await.unwrap();
    let r1 = store
        .create(&format!("{prefix}n1"), b"1".to_vec())
        .await
        .unwrap();
    assert_eq!(
        take(&mut watch, 1).await,
        vec![("ADDED", format!("{prefix}n1"), r1)]
    );

    etcd.stop();
    // While etcd is down the cache keeps serving what it has.
    let (items, revision) = cache.list().await;
    assert_eq!(items.len(), 1);
    assert_eq!(revision, r1);
    // refused: Unavailable when the connection is refused at once, Timeout when the client's
    // deadline runs out first (a loaded machine) — never stored, never another error
    let down = store.create(&format!("{prefix}n2"), b"2".to_vec()).await;
    assert!(
        matches!(
            down,
            Err(StoreError::Unavailable(_) | StoreError::Timeout(_))
        ),
        "{down:?}"
    );
    etcd.start_again();

    let mut r2 = None;
    for _ in 0..60 {
        match store.create(&format!("{prefix}n2"), b"2".to_vec()).await {
            Ok(rev) => {
                r2 = Some(rev);
                break;
            }
            Err(StoreError::Unavailable(_) | StoreError::Timeout(_)) => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            // a timed-out attempt after the restart may have landed after all
            Err(StoreError::AlreadyExists(_)) => {
                let kv = store.get(&format!("{prefix}n2")).await.unwrap().unwrap();
                r2 = Some(kv.mod_revision);
                break;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    let r2 = r2.expect("etcd did not come back for the store");
    let r3 = store
        .update(&format!("{prefix}n1"), b"1b".to_vec(), Some(r1))
        .await
        .unwrap();
    assert_eq!(
        take(&mut watch, 2).await,
        vec![
            ("ADDED", format!("{prefix}n2"), r2),
            ("MODIFIED", format!("{prefix}n1"), r3)
        ]
    );
    cache.wait_for_revision(r3, HANG).await.unwrap();
    assert_eq!(
        cache.list().await.0,
        store_list(store.as_ref(), prefix).await.items
    );
    assert!(cache.stats().backend_watches >= 2, "the cache re-watched");
    assert_eq!(
        cache.stats().relists,
        0,
        "no relist needed without compaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_compaction_the_cache_relists_and_watchers_get_the_difference() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("bpfk_store=debug")
        .with_test_writer()
        .try_init();
    let etcd = EtcdProcess::start();
    let etcd_store = connect(&etcd).await;
    // the cache's watches cut on command, standing in for a network partition between the
    // cache and etcd (every call still goes to etcd)
    let store = Arc::new(FaultyWatchStore {
        inner: etcd_store.clone(),
        fault: Partition(tokio::sync::watch::Sender::new(true)),
    });
    let prefix = "/registry/deployments/";
    let key = |name: &str| format!("{prefix}default/{name}");
    let ra = store.create(&key("a"), b"a1".to_vec()).await.unwrap();
    store.create(&key("b"), b"b1".to_vec()).await.unwrap();
    store.create(&key("c"), b"c1".to_vec()).await.unwrap();
    let cache = ready_cache(store.clone(), prefix, 100).await;
    let mut watch = cache.watch(None).await.unwrap();
    assert_eq!(take(&mut watch, 3).await.len(), 3);
    let before = cache.revision();

    // Cut the cache off, change things and compact them away meanwhile.
    store.fault.0.send_replace(false);
    let ra2 = store
        .update(&key("a"), b"a2".to_vec(), Some(ra))
        .await
        .unwrap();
    store.delete(&key("b"), None).await.unwrap();
    let rd = store.create(&key("d"), b"d1".to_vec()).await.unwrap();
    store.compact(rd).await.unwrap();
    store.fault.0.send_replace(true);

    // The cache's re-watch finds its revision compacted: it relists and its watchers get
    // the difference.
    let mut diff = Vec::new();
    for _ in 0..3 {
        diff.push(next(&mut watch).await.unwrap());
    }
    let revisions: Vec<Revision> = diff.iter().map(|e| e.revision()).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] <= w[1]),
        "in revision order"
    );
    let mut kinds: Vec<_> = diff.iter().map(|e| summary(e)).collect();
    kinds.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(
        kinds,
        vec![
            ("MODIFIED", key("a"), ra2),
            ("DELETED", key("b"), rd),
            ("ADDED", key("d"), rd),
        ]
    );
    for event in &diff {
        match event.as_ref() {
            Event::Modified { kv, prev } => {
                assert_eq!(kv.value, b"a2");
                assert_eq!(prev.as_ref().unwrap().value, b"a1");
            }
            Event::Deleted { kv } => assert_eq!(kv.value, b"b1"),
            Event::Added { kv } => assert_eq!(kv.value, b"d1"),
        }
    }
    assert_eq!(cache.stats().relists, 1);
    assert_eq!(
        cache.list().await.0,
        store_list(store.as_ref(), prefix).await.items
    );

    // Live events continue after the relist.
    let re = store.create(&key("e"), b"e1".to_vec()).await.unwrap();
    assert_eq!(take(&mut watch, 1).await, vec![("ADDED", key("e"), re)]);

    // A client resuming from before the relist must relist too.
    let mut stale = cache.watch(Some(before)).await.unwrap();
    assert!(matches!(
        next(&mut stale).await,
        Err(StoreError::Compacted { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_catches_up_from_history_or_is_told_it_is_too_old() {
    let etcd = EtcdProcess::start();
    let store = connect(&etcd).await;
    // History larger than the live queue (4096 events): a watcher that falls behind the
    // queue resynchronises from the history.
    let big = ready_cache(store.clone(), "/registry/events/", 5000).await;
    // History of 64 events: a watcher 100 events behind cannot be served any more.
    let small = ready_cache(store.clone(), "/registry/leases/", 64).await;
    let mut slow_big = big.watch(None).await.unwrap();
    let mut slow_small = small.watch(None).await.unwrap();

    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..540 {
                    store
                        .create(&format!("/registry/events/default/e{w}-{i}"), b"e".to_vec())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut last = 0;
    for i in 0..100 {
        last = store
            .create(&format!("/registry/leases/default/l{i}"), b"l".to_vec())
            .await
            .unwrap();
    }
    small.wait_for_revision(last, HANG).await.unwrap();
    big.wait_for_revision(last, HANG).await.unwrap();

    let seen = take(&mut slow_big, 8 * 540).await;
    assert!(
        seen.windows(2).all(|w| w[0].2 < w[1].2),
        "in revision order"
    );
    let mut keys: Vec<_> = seen.iter().map(|(_, key, _)| key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 8 * 540, "every event exactly once");
    assert_eq!(
        big.stats().lagged_watchers,
        1,
        "the watcher fell behind the live queue"
    );

    match next(&mut slow_small).await {
        Err(StoreError::Compacted { .. }) => {}
        other => panic!("expected Compacted for a watcher past the history, got {other:?}"),
    }
    assert_eq!(small.stats().lagged_watchers, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_revision_of_a_write_elsewhere_checks_etcd() {
    let etcd = EtcdProcess::start();
    let store = connect(&etcd).await;
    let prefix = "/registry/namespaces/";
    store
        .create(&format!("{prefix}default"), b"ns".to_vec())
        .await
        .unwrap();
    let cache = ready_cache(store.clone(), prefix, 100).await;
    let elsewhere = store
        .create("/registry/pods/default/x", b"x".to_vec())
        .await
        .unwrap();
    assert!(cache.revision() < elsewhere);
    cache.wait_for_revision(elsewhere, HANG).await.unwrap();
    assert!(cache.revision() >= elsewhere);
    let (items, revision) = cache.list().await;
    assert!(revision >= elsewhere);
    assert_eq!(items, store_list(store.as_ref(), prefix).await.items);

    // A future revision is not reached: bounded wait, then Unavailable.
    let future = store.current_revision().await.unwrap() + 1000;
    assert!(matches!(
        cache
            .wait_for_revision(future, Duration::from_millis(300))
            .await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_progress_notifications_advance_the_cache_revision() {
    let etcd = EtcdProcess::start_with(EtcdOptions {
        progress_notify_interval: Some(Duration::from_millis(200)),
        ..Default::default()
    });
    let store = connect(&etcd).await;
    let cache = ready_cache(store.clone(), "/registry/nodes/", 100).await;
    let mut watch = cache.watch(None).await.unwrap();
    let elsewhere = store
        .create("/registry/pods/default/x", b"x".to_vec())
        .await
        .unwrap();
    let mut reached = false;
    for _ in 0..300 {
        if cache.revision() >= elsewhere {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        reached,
        "no progress notification moved the cache to {elsewhere}"
    );
    assert_eq!(watch.bookmark_revision(), Some(cache.revision()));
    assert_eq!(
        cache.stats().backend_watches,
        1,
        "progress kept the watch alive"
    );
    // The watcher got nothing spurious.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), watch.next())
            .await
            .is_err()
    );
}
