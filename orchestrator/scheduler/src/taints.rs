//! Taints and tolerations.

use k8s_openapi::api::core::v1::{Taint, Toleration};

/// Whether a toleration tolerates a taint (key, operator Equal/Exists, value, effect).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref() {
        if !effect.is_empty() && effect != taint.effect {
            return false;
        }
    }
    let key = t.key.as_deref().unwrap_or("");
    let op = t.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        // an empty key with Exists tolerates everything
        return op == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match op {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Whether any of the tolerations tolerates the taint.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first taint with effect NoSchedule or NoExecute not tolerated, if any.
pub fn first_untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerated(tolerations, t))
}

/// How many PreferNoSchedule taints are not tolerated.
pub fn untolerated_prefer_no_schedule(taints: &[Taint], tolerations: &[Toleration]) -> i64 {
    taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerated(tolerations, t))
        .count() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn tol(
        key: Option<&str>,
        op: Option<&str>,
        value: Option<&str>,
        effect: Option<&str>,
    ) -> Toleration {
        Toleration {
            key: key.map(Into::into),
            operator: op.map(Into::into),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            toleration_seconds: None,
        }
    }

    #[test]
    fn matching_rules() {
        let t = taint("dedicated", Some("gpu"), "NoSchedule");
        assert!(tolerates(
            &tol(Some("dedicated"), None, Some("gpu"), None),
            &t
        ));
        assert!(tolerates(
            &tol(
                Some("dedicated"),
                Some("Equal"),
                Some("gpu"),
                Some("NoSchedule")
            ),
            &t
        ));
        assert!(!tolerates(
            &tol(Some("dedicated"), Some("Equal"), Some("cpu"), None),
            &t
        ));
        assert!(tolerates(
            &tol(Some("dedicated"), Some("Exists"), None, None),
            &t
        ));
        assert!(!tolerates(
            &tol(Some("dedicated"), Some("Exists"), None, Some("NoExecute")),
            &t
        ));
        assert!(tolerates(&tol(None, Some("Exists"), None, None), &t));
        assert!(!tolerates(
            &tol(Some("other"), Some("Exists"), None, None),
            &t
        ));
    }

    #[test]
    fn effects() {
        let taints = vec![
            taint("soft", None, "PreferNoSchedule"),
            taint("node.kubernetes.io/unreachable", None, "NoExecute"),
        ];
        assert_eq!(
            first_untolerated(&taints, &[]).map(|t| t.key.as_str()),
            Some("node.kubernetes.io/unreachable")
        );
        let tols = vec![tol(
            Some("node.kubernetes.io/unreachable"),
            Some("Exists"),
            None,
            Some("NoExecute"),
        )];
        assert!(first_untolerated(&taints, &tols).is_none());
        assert_eq!(untolerated_prefer_no_schedule(&taints, &tols), 1);
    }
}
