//! Claiming dependents by selector and controllerRef, as Kubernetes' `ControllerRefManager`
//! does: a controller keeps what it controls, adopts matching orphans and releases what it
//! controls but no longer selects. The decision is pure; [`patch_owners`] carries it out.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::error::{is_conflict, is_not_found, Result};
use crate::util::{controlled_by, controller_ref};

/// What a controller does with one object of its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Controlled and still selected (or being deleted): keep it.
    Keep,
    /// An orphan the selector matches: become its controller.
    Adopt,
    /// Controlled but no longer selected: drop the controllerRef.
    Release,
    /// Someone else's, or not ours to take.
    Ignore,
}

/// The claim on the object with `meta` by the owner with `owner_uid`; `selected` says whether
/// the owner's selector matches it, `adoptable` whether an orphan may be taken.
pub fn decide(meta: &ObjectMeta, owner_uid: &str, selected: bool, adoptable: bool) -> Claim {
    if controlled_by(meta, owner_uid) {
        if selected || meta.deletion_timestamp.is_some() {
            Claim::Keep
        } else {
            Claim::Release
        }
    } else if selected && adoptable && controller_ref(meta).is_none() {
        Claim::Adopt
    } else {
        Claim::Ignore
    }
}

/// The merge patch adding `owner` to the object's ownerReferences (guarded by its
/// resourceVersion, so a concurrent change makes it fail with a conflict).
pub fn adopt_patch(meta: &ObjectMeta, owner: OwnerReference) -> Value {
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    refs.push(owner);
    owners_patch(meta, refs)
}

/// The merge patch removing the owner with `owner_uid` from the object's ownerReferences.
pub fn release_patch(meta: &ObjectMeta, owner_uid: &str) -> Value {
    let refs: Vec<OwnerReference> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|o| o.uid != owner_uid)
        .cloned()
        .collect();
    owners_patch(meta, refs)
}

fn owners_patch(meta: &ObjectMeta, refs: Vec<OwnerReference>) -> Value {
    json!({"metadata": {"ownerReferences": refs, "resourceVersion": meta.resource_version}})
}

/// Applies an [`adopt_patch`] or [`release_patch`]; `None` when the object changed or
/// vanished meanwhile (the next sync sees it again).
pub async fn patch_owners<K>(api: &Api<K>, name: &str, patch: &Value) -> Result<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(obj) => Ok(Some(obj)),
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(owner: Option<(&str, bool)>, deleting: bool) -> ObjectMeta {
        serde_json::from_value(json!({
            "name": "p", "resourceVersion": "7",
            "deletionTimestamp": deleting.then_some("2026-01-01T00:00:00Z"),
            "ownerReferences": owner.map(|(uid, controller)| vec![json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid,
                "controller": controller})]),
        }))
        .unwrap()
    }

    #[test]
    fn keeps_adopts_releases_and_ignores() {
        let ours = meta(Some(("me", true)), false);
        assert_eq!(decide(&ours, "me", true, true), Claim::Keep);
        assert_eq!(decide(&ours, "me", false, true), Claim::Release);
        let ours_deleting = meta(Some(("me", true)), true);
        assert_eq!(decide(&ours_deleting, "me", false, false), Claim::Keep);
        let orphan = meta(None, false);
        assert_eq!(decide(&orphan, "me", true, true), Claim::Adopt);
        assert_eq!(decide(&orphan, "me", true, false), Claim::Ignore);
        assert_eq!(decide(&orphan, "me", false, true), Claim::Ignore);
        let theirs = meta(Some(("other", true)), false);
        assert_eq!(decide(&theirs, "me", true, true), Claim::Ignore);
        // a non-controller owner reference leaves the object an orphan
        let owned_not_controlled = meta(Some(("other", false)), false);
        assert_eq!(
            decide(&owned_not_controlled, "me", true, true),
            Claim::Adopt
        );
    }

    #[test]
    fn patches_keep_other_owners_and_guard_the_version() {
        let m = meta(Some(("other", false)), false);
        let owner = OwnerReference {
            uid: "me".into(),
            controller: Some(true),
            ..Default::default()
        };
        let adopt = adopt_patch(&m, owner);
        let uids = |v: &Value| -> Vec<String> {
            v["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o["uid"].as_str().map(String::from))
                .collect()
        };
        assert_eq!(uids(&adopt), ["other", "me"]);
        assert_eq!(adopt["metadata"]["resourceVersion"], "7");
        let released = release_patch(&meta(Some(("me", true)), false), "me");
        assert!(uids(&released).is_empty());
        assert_eq!(released["metadata"]["resourceVersion"], "7");
    }
}
