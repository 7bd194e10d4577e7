//! Admission around writes that is not the kind's own strategy: the namespace lifecycle
//! (objects only in an existing, non-terminating namespace) and the create-time reset the
//! kind's strategy asks for. ClusterIP/NodePort allocation is in [`crate::allocator`].

use bpfk_apimachinery::registry::{self, ResourceInfo};
use serde_json::Value;

use crate::error::{ApiError, Result};
use crate::object;
use crate::state::AppState;

pub use bpfk_apimachinery::kinds::core::namespace::SYSTEM_NAMESPACES;

/// Reset what a client may not set on create (the kind's `prepare_create`).
pub fn prepare_create(res: &ResourceInfo, obj: &mut Value) {
    if let Some(map) = obj.as_object_mut() {
        res.strategy.prepare_create(map);
    }
}

/// Refuse objects in a namespace that does not exist (404) or is terminating (403, worded
/// as Kubernetes' NamespaceLifecycle admission: `pods "x" is forbidden: unable to create new
/// content in namespace ns because it is being terminated`).
pub async fn check_namespace_accepts(
    state: &AppState,
    res: &ResourceInfo,
    name: &str,
    ns: &str,
) -> Result<()> {
    let key = format!("/registry/namespaces/{ns}");
    // the namespaces watch cache answers without an etcd round trip; a namespace it does
    // not hold (yet) is looked up in etcd, as Kubernetes' NamespaceLifecycle admission does
    let cache = registry::find("", "v1", "namespaces")
        .and_then(|r| state.cache(r).ok())
        .filter(|c| c.is_ready());
    let cached = match cache {
        Some(cache) => cache.get(&key).await,
        None => None,
    };
    let found = match cached {
        Some(kv) => Some(kv),
        None => state.store.get(&key).await.map_err(ApiError::from)?,
    };
    match found {
        None => Err(ApiError::NotFound {
            group: String::new(),
            kind: "namespaces".into(),
            name: ns.into(),
        }),
        Some(kv) => {
            let obj: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
            if object::is_deleting(&obj) {
                Err(ApiError::Forbidden {
                    group: res.group.into(),
                    kind: res.plural.into(),
                    name: name.into(),
                    message: format!("unable to create new content in namespace {ns} because it is being terminated"),
                })
            } else {
                Ok(())
            }
        }
    }
}
