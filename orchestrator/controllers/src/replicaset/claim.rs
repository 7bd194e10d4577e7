//! claimPods: the pods a ReplicaSet controls, after adopting matching orphans and releasing
//! the pods its selector stopped matching.

use bpfk_apimachinery::selectors::Selector;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::ResourceExt;

use crate::claim::{adopt_patch, decide, patch_owners, release_patch, Claim};
use crate::error::Result;
use crate::util::{is_pod_active, key, labels, owner_ref};

/// The claim of `rs` (uid `uid`, selector `sel`) on `pod`: active orphans only are adopted.
pub fn pod_claim(pod: &Pod, uid: &str, sel: &Selector) -> Claim {
    let selected = sel.matches(labels(&pod.metadata));
    decide(&pod.metadata, uid, selected, is_pod_active(pod))
}

/// Claims `pods` (those of the ReplicaSet's namespace) and returns the ones it controls now.
pub async fn claim_pods(
    api: &Api<Pod>,
    rs: &ReplicaSet,
    sel: &Selector,
    pods: impl IntoIterator<Item = impl AsRef<Pod>>,
) -> Result<Vec<Pod>> {
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    let mut owned = Vec::new();
    for pod in pods {
        let pod = pod.as_ref();
        match pod_claim(pod, uid, sel) {
            Claim::Keep => owned.push(pod.clone()),
            Claim::Adopt => {
                let patch = adopt_patch(&pod.metadata, owner_ref(rs));
                if let Some(adopted) = patch_owners(api, &pod.name_any(), &patch).await? {
                    tracing::info!(pod = %key(&pod.metadata), replicaset = %rs.name_any(), "adopted pod");
                    owned.push(adopted);
                }
            }
            Claim::Release => {
                let patch = release_patch(&pod.metadata, uid);
                if patch_owners(api, &pod.name_any(), &patch).await?.is_some() {
                    tracing::info!(pod = %key(&pod.metadata), replicaset = %rs.name_any(), "released pod");
                }
            }
            Claim::Ignore => {}
        }
    }
    Ok(owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: serde_json::Value, owner: Option<&str>, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "labels": labels,
                "ownerReferences": owner.map(|uid| vec![json!({"apiVersion": "apps/v1",
                    "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true})])},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn finished_orphans_are_not_adopted() {
        let sel = Selector::parse("app=web").unwrap();
        let web = json!({"app": "web"});
        assert_eq!(
            pod_claim(&pod(web.clone(), None, "Running"), "u", &sel),
            Claim::Adopt
        );
        assert_eq!(
            pod_claim(&pod(web.clone(), None, "Succeeded"), "u", &sel),
            Claim::Ignore
        );
        assert_eq!(
            pod_claim(&pod(web, Some("u"), "Failed"), "u", &sel),
            Claim::Keep
        );
        let db = json!({"app": "db"});
        assert_eq!(
            pod_claim(&pod(db, Some("u"), "Running"), "u", &sel),
            Claim::Release
        );
    }
}
