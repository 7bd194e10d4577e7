//! Watch events decoded and encoded once for every watch they go to.
//!
//! The watch cache hands the same `Arc<Event>` to every watch of a resource. Without this
//! memo each of them parsed the stored JSON (and the previous version's), set the
//! resourceVersion and serialized the object again: with the scheduler, the controllers and
//! a few clients watching pods, that fan-out cost more than the write itself.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use bpfk_apimachinery::registry::ResourceInfo;
use bpfk_store::{Event, KeyValue};
use bytes::Bytes;
use serde_json::Value;

use crate::state;

/// Events remembered; a watch that lags further behind renders its events again.
const CAPACITY: usize = 4096;

/// One event's object, decoded (with its resourceVersion, in its resource's version) and as
/// JSON.
pub struct Rendered {
    pub object: Value,
    pub json: Bytes,
    res: &'static ResourceInfo,
    prev: Option<KeyValue>,
    prev_object: OnceLock<Option<Value>>,
}

impl Rendered {
    /// Decode and encode the object of `event` as `res` shows it; None when the stored value
    /// is not JSON.
    pub fn of(res: &'static ResourceInfo, event: &Event) -> Option<Rendered> {
        let (kv, prev) = match event {
            Event::Added { kv } | Event::Deleted { kv } => (kv, None),
            Event::Modified { kv, prev } => (kv, prev.clone()),
        };
        let object = state::decode(res, kv).ok()?;
        let json = Bytes::from(serde_json::to_vec(&object).ok()?);
        Some(Rendered {
            object,
            json,
            res,
            prev,
            prev_object: OnceLock::new(),
        })
    }

    /// The version before a modification, decoded on first use (only watches with selectors
    /// need it).
    pub fn prev_object(&self) -> Option<&Value> {
        self.prev_object
            .get_or_init(|| {
                self.prev
                    .as_ref()
                    .and_then(|kv| state::decode(self.res, kv).ok())
            })
            .as_ref()
    }

    /// A watch event line: `{"type":KIND,"object":...}` and a newline.
    pub fn line(&self, kind: &str) -> Bytes {
        let mut v = Vec::with_capacity(self.json.len() + kind.len() + 24);
        v.extend_from_slice(b"{\"type\":\"");
        v.extend_from_slice(kind.as_bytes());
        v.extend_from_slice(b"\",\"object\":");
        v.extend_from_slice(&self.json);
        v.extend_from_slice(b"}\n");
        Bytes::from(v)
    }
}

/// The memo: recent events by identity and the group they are shown in (one stored Event
/// is rendered for core/v1 and for events.k8s.io/v1 watches). An entry holds its `Arc<Event>`, so the address it
/// is keyed by cannot be reused while the entry lives.
#[derive(Default)]
pub struct RenderMemo {
    inner: Mutex<Inner>,
}

/// An event's address and the group of the watches it is rendered for.
type MemoKey = (usize, &'static str);

#[derive(Default)]
struct Inner {
    entries: HashMap<MemoKey, (Arc<Event>, Arc<Rendered>)>,
    order: VecDeque<MemoKey>,
}

impl RenderMemo {
    /// The rendering of `event` for watches of `res`, made by the first watch that asks.
    pub fn get(&self, res: &'static ResourceInfo, event: &Arc<Event>) -> Option<Arc<Rendered>> {
        let id = (Arc::as_ptr(event) as usize, res.group);
        if let Some((_, r)) = self
            .lock()
            .entries
            .get(&id)
            .filter(|(e, _)| Arc::ptr_eq(e, event))
        {
            return Some(r.clone());
        }
        let rendered = Arc::new(Rendered::of(res, event)?);
        let mut inner = self.lock();
        if inner
            .entries
            .insert(id, (event.clone(), rendered.clone()))
            .is_none()
        {
            inner.order.push_back(id);
        }
        while inner.order.len() > CAPACITY {
            if let Some(old) = inner.order.pop_front() {
                inner.entries.remove(&old);
            }
        }
        Some(rendered)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> &'static ResourceInfo {
        bpfk_apimachinery::registry::find("", "v1", "pods").unwrap()
    }

    fn kv(rev: i64, value: Value) -> KeyValue {
        KeyValue {
            key: "/registry/pods/default/a".into(),
            value: serde_json::to_vec(&value).unwrap(),
            mod_revision: rev,
            create_revision: 1,
        }
    }

    #[test]
    fn renders_once_per_event_with_the_resource_version() {
        let memo = RenderMemo::default();
        let event = Arc::new(Event::Modified {
            kv: kv(
                7,
                json!({"kind": "Pod", "metadata": {"name": "a", "labels": {"x": "2"}}}),
            ),
            prev: Some(kv(
                5,
                json!({"kind": "Pod", "metadata": {"name": "a", "labels": {"x": "1"}}}),
            )),
        });
        let a = memo.get(pods(), &event).unwrap();
        let b = memo.get(pods(), &event).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.object["metadata"]["resourceVersion"], "7");
        assert_eq!(a.prev_object().unwrap()["metadata"]["labels"]["x"], "1");
        let line: Value = serde_json::from_slice(&a.line("MODIFIED")).unwrap();
        assert_eq!(line["type"], "MODIFIED");
        assert_eq!(line["object"], a.object);
        assert!(a.line("ADDED").ends_with(b"}\n"));
    }

    #[test]
    fn an_event_is_rendered_in_each_version_that_watches_it() {
        let memo = RenderMemo::default();
        let event = Arc::new(Event::Added {
            kv: kv(
                3,
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
                       "involvedObject": {"kind": "Pod", "name": "a"}, "message": "hi"}),
            ),
        });
        let core = bpfk_apimachinery::registry::find("", "v1", "events").unwrap();
        let structured =
            bpfk_apimachinery::registry::find("events.k8s.io", "v1", "events").unwrap();
        let c = memo.get(core, &event).unwrap();
        let s = memo.get(structured, &event).unwrap();
        assert_eq!(
            (&c.object["message"], &c.object["apiVersion"]),
            (&json!("hi"), &json!("v1"))
        );
        assert_eq!(s.object["note"], "hi");
        assert_eq!(s.object["regarding"]["name"], "a");
        assert_eq!(s.object["apiVersion"], "events.k8s.io/v1");
        assert!(Arc::ptr_eq(&s, &memo.get(structured, &event).unwrap()));
    }

    #[test]
    fn a_different_event_is_rendered_anew_and_the_memo_stays_bounded() {
        let memo = RenderMemo::default();
        for rev in 0..(CAPACITY as i64 + 10) {
            let event = Arc::new(Event::Added {
                kv: kv(rev, json!({"metadata": {"name": "a"}})),
            });
            let r = memo.get(pods(), &event).unwrap();
            assert_eq!(r.object["metadata"]["resourceVersion"], rev.to_string());
        }
        assert_eq!(memo.len(), CAPACITY);
        let bad = Arc::new(Event::Added {
            kv: KeyValue {
                key: "k".into(),
                value: b"not json".to_vec(),
                mod_revision: 1,
                create_revision: 1,
            },
        });
        assert!(memo.get(pods(), &bad).is_none());
    }
}
