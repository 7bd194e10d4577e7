//! Matching of a pod's `nodeSelector` and node affinity against a node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod};

/// Whether one requirement holds for a label map. Unknown operators never match.
pub fn requirement_matches(
    req: &NodeSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> bool {
    let values = req.values.as_deref().unwrap_or(&[]);
    let value = labels.get(&req.key);
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => !value.is_some_and(|v| values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value, values) else {
                return false;
            };
            let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a term matches a node: all its expressions (on labels) and fields (only
/// `metadata.name` is a selectable field) hold. An empty term matches no node.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let mut name_fields = BTreeMap::new();
    if let Some(name) = &node.metadata.name {
        name_fields.insert("metadata.name".to_string(), name.clone());
    }
    exprs.iter().all(|r| requirement_matches(r, labels))
        && fields.iter().all(|r| requirement_matches(r, &name_fields))
}

/// The `nodeSelector` and required node affinity filter: both must hold.
pub fn pod_matches_node(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    if let Some(sel) = spec.node_selector.as_ref() {
        let labels = node.metadata.labels.as_ref();
        let ok = sel
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        if !ok {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node)),
        None => true,
    }
}

/// Sum of the weights of the pod's preferred node affinity terms that match the node.
pub fn preferred_affinity_weight(pod: &Pod, node: &Node) -> i64 {
    let preferred = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        });
    preferred
        .into_iter()
        .flatten()
        .filter(|p| p.weight != 0 && term_matches(&p.preference, node))
        .map(|p| i64::from(p.weight))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n1", "labels": labels}})).unwrap()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn affinity(exprs: serde_json::Value) -> Pod {
        pod(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": exprs}]}
        }}}))
    }

    #[test]
    fn node_selector() {
        let ssd = node(json!({"disk": "ssd", "zone": "a"}));
        let hdd = node(json!({"disk": "hdd"}));
        let p = pod(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        assert!(pod_matches_node(&p, &ssd));
        assert!(!pod_matches_node(&p, &hdd));
    }

    #[test]
    fn operators() {
        let n = node(json!({"disk": "ssd", "cores": "8"}));
        let case = |e: serde_json::Value| pod_matches_node(&affinity(json!([e])), &n);
        assert!(case(
            json!({"key": "disk", "operator": "In", "values": ["ssd", "nvme"]})
        ));
        assert!(!case(
            json!({"key": "disk", "operator": "In", "values": ["hdd"]})
        ));
        assert!(case(
            json!({"key": "disk", "operator": "NotIn", "values": ["hdd"]})
        ));
        assert!(!case(
            json!({"key": "disk", "operator": "NotIn", "values": ["ssd"]})
        ));
        assert!(case(
            json!({"key": "missing", "operator": "NotIn", "values": ["x"]})
        ));
        assert!(case(json!({"key": "disk", "operator": "Exists"})));
        assert!(!case(json!({"key": "gpu", "operator": "Exists"})));
        assert!(case(json!({"key": "gpu", "operator": "DoesNotExist"})));
        assert!(case(
            json!({"key": "cores", "operator": "Gt", "values": ["4"]})
        ));
        assert!(!case(
            json!({"key": "cores", "operator": "Gt", "values": ["8"]})
        ));
        assert!(case(
            json!({"key": "cores", "operator": "Lt", "values": ["16"]})
        ));
        assert!(!case(
            json!({"key": "disk", "operator": "Lt", "values": ["16"]})
        ));
        assert!(!case(json!({"key": "disk", "operator": "Bogus"})));
    }

    #[test]
    fn terms_are_ored_and_match_fields_use_the_name() {
        let n = node(json!({"disk": "ssd"}));
        let p = pod(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
            ]}
        }}}));
        assert!(pod_matches_node(&p, &n));
        let empty_term = pod(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}
        }}}));
        assert!(!pod_matches_node(&empty_term, &n));
    }

    #[test]
    fn preferred_weights_add_up() {
        let n = node(json!({"disk": "ssd", "zone": "a"}));
        let p = pod(json!({"containers": [], "affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
                {"weight": 5, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}},
                {"weight": 3, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}}
            ]
        }}}));
        assert_eq!(preferred_affinity_weight(&p, &n), 13);
    }
}
