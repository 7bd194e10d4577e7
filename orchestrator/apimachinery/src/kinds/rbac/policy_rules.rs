//! What the four RBAC kinds share: the validation of `rules` and of a binding's `roleRef`
//! and `subjects`, and the columns kubectl prints for them.

use crate::kinds::prelude::*;

/// The RBAC API group.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// `rules[]` of a Role (`namespaced`: no non-resource URLs) or a ClusterRole.
pub fn validate_rules(obj: &Value, namespaced: bool, errs: &mut Errors) {
    for (i, rule) in arr(obj, "rules").iter().enumerate() {
        let path = Path::new("rules").index(i);
        if arr(rule, "verbs").is_empty() {
            errs.push(FieldError::required(&path.child("verbs"), "verbs must contain at least one value"));
        }
        let urls = !arr(rule, "nonResourceURLs").is_empty();
        let resources = !arr(rule, "resources").is_empty();
        if urls && namespaced {
            let detail = "namespaced rules cannot apply to non-resource URLs";
            errs.push(FieldError::invalid(&path.child("nonResourceURLs"), rule["nonResourceURLs"].clone(), detail));
        } else if urls && (resources || !arr(rule, "apiGroups").is_empty()) {
            let detail = "rules cannot apply to both regular resources and non-resource URLs";
            errs.push(FieldError::invalid(&path.child("nonResourceURLs"), rule["nonResourceURLs"].clone(), detail));
        } else if !urls {
            if arr(rule, "apiGroups").is_empty() {
                errs.push(FieldError::required(&path.child("apiGroups"), "resource rules must supply at least one api group"));
            }
            if !resources {
                errs.push(FieldError::required(&path.child("resources"), "resource rules must supply at least one resource"));
            }
        }
    }
}

/// `roleRef` (kinds `allowed`, the RBAC group, a name) and `subjects` of a binding.
pub fn validate_binding(obj: &Value, allowed: &[&str], namespaced: bool, errs: &mut Errors) {
    let role_ref = obj.get("roleRef").unwrap_or(&Value::Null);
    let path = Path::new("roleRef");
    if !role_ref.is_object() {
        errs.push(FieldError::required(&path, ""));
    } else {
        check_enum(errs, &path, role_ref, "kind", allowed);
        if s(role_ref, "kind").is_none() {
            errs.push(FieldError::not_supported(&path.child("kind"), json!(""), allowed));
        }
        if s(role_ref, "apiGroup") != Some(GROUP) {
            let got = role_ref.get("apiGroup").cloned().unwrap_or(json!(""));
            errs.push(FieldError::not_supported(&path.child("apiGroup"), got, &[GROUP]));
        }
        match s(role_ref, "name") {
            None | Some("") => errs.push(FieldError::required(&path.child("name"), "")),
            Some(name) => push_msgs(errs, &path.child("name"), name, names::path_segment(name)),
        }
    }
    for (i, subject) in arr(obj, "subjects").iter().enumerate() {
        validate_subject(subject, &Path::new("subjects").index(i), namespaced, errs);
    }
}

fn validate_subject(subject: &Value, path: &Path, namespaced: bool, errs: &mut Errors) {
    if s(subject, "name").is_none_or(str::is_empty) {
        errs.push(FieldError::required(&path.child("name"), ""));
    }
    let group = s(subject, "apiGroup").unwrap_or("");
    match s(subject, "kind").unwrap_or("") {
        "ServiceAccount" => {
            if !group.is_empty() {
                errs.push(FieldError::not_supported(&path.child("apiGroup"), json!(group), &[""]));
            }
            if !namespaced && s(subject, "namespace").is_none_or(str::is_empty) {
                errs.push(FieldError::required(&path.child("namespace"), ""));
            }
        }
        "User" | "Group" => {
            if group != GROUP {
                errs.push(FieldError::not_supported(&path.child("apiGroup"), json!(group), &[GROUP]));
            }
        }
        other => errs.push(FieldError::not_supported(
            &path.child("kind"),
            json!(other),
            &["ServiceAccount", "User", "Group"],
        )),
    }
}

/// Kubernetes' subject defaulting: `apiGroup` is the RBAC group for users and groups and
/// empty for ServiceAccounts.
pub fn default_subjects(obj: &mut Value) {
    let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) else {
        return;
    };
    for subject in subjects.iter_mut().filter_map(Value::as_object_mut) {
        let group = match subject.get("kind").and_then(Value::as_str) {
            Some("User" | "Group") => GROUP,
            Some("ServiceAccount") => "",
            _ => continue,
        };
        subject.entry("apiGroup").or_insert_with(|| json!(group));
    }
}

/// `roleRef` may not change.
pub fn validate_role_ref_unchanged(new: &Value, old: &Value, errs: &mut Errors) {
    if new.get("roleRef") != old.get("roleRef") {
        let value = new.get("roleRef").cloned().unwrap_or(Value::Null);
        errs.push(FieldError::invalid(&Path::new("roleRef"), value, "cannot change roleRef"));
    }
}

/// The `CREATED AT` column of roles.
pub fn created_at_columns() -> Vec<Column> {
    vec![NAME, col("Created At", "date", "Time when this role was created", 0)]
}

pub fn created_at_cells(obj: &Value, row: RowContext) -> Vec<Value> {
    vec![row.name, json!(str_at(obj, "/metadata/creationTimestamp"))]
}

/// `ROLE`, `AGE`, and the wide `USERS`, `GROUPS`, `SERVICEACCOUNTS` of bindings.
pub fn binding_columns() -> Vec<Column> {
    vec![
        NAME,
        col("Role", "string", "RoleRef is the reference to the role", 0),
        AGE,
        col("Users", "string", "Users in the binding", 1),
        col("Groups", "string", "Groups in the binding", 1),
        col("ServiceAccounts", "string", "ServiceAccounts in the binding", 1),
    ]
}

pub fn binding_cells(obj: &Value, row: RowContext) -> Vec<Value> {
    let role = format!("{}/{}", str_at(obj, "/roleRef/kind"), str_at(obj, "/roleRef/name"));
    let of_kind = |kind: &str| {
        let names: Vec<String> = list_at(obj, "/subjects")
            .iter()
            .filter(|s| str_at(s, "/kind") == kind)
            .map(|s| match (kind, str_at(s, "/namespace")) {
                ("ServiceAccount", ns) => format!("{ns}/{}", str_at(s, "/name")),
                _ => str_at(s, "/name").to_string(),
            })
            .collect();
        json!(names.join(", "))
    };
    vec![row.name, json!(role), row.age, of_kind("User"), of_kind("Group"), of_kind("ServiceAccount")]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(errs: &Errors) -> Vec<String> {
        errs.iter().map(|e| format!("{}: {}", e.field, e.message_without_field())).collect()
    }

    #[test]
    fn rules_need_verbs_groups_and_resources() {
        let mut errs = Vec::new();
        let role = json!({"rules": [
            {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
            {"apiGroups": [""]},
            {"verbs": ["get"], "nonResourceURLs": ["/healthz"]},
        ]});
        validate_rules(&role, true, &mut errs);
        let m = messages(&errs);
        assert!(m.iter().any(|e| e.starts_with("rules[1].verbs: Required")), "{m:?}");
        assert!(m.iter().any(|e| e.starts_with("rules[1].resources: Required")), "{m:?}");
        assert!(m.iter().any(|e| e.starts_with("rules[2].nonResourceURLs: Invalid")), "{m:?}");
        let mut errs = Vec::new();
        validate_rules(&json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/x"]}]}), false, &mut errs);
        assert!(errs.is_empty(), "{:?}", messages(&errs));
    }

    #[test]
    fn bindings_name_a_role_and_valid_subjects() {
        let mut b = json!({
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "ci"},
                         {"kind": "Robot", "name": "x"}],
        });
        default_subjects(&mut b);
        assert_eq!(b["subjects"][0]["apiGroup"], GROUP);
        let mut errs = Vec::new();
        validate_binding(&b, &["ClusterRole"], false, &mut errs);
        let m = messages(&errs);
        assert!(m.iter().any(|e| e.starts_with("roleRef.kind: Unsupported value: \"Role\"")), "{m:?}");
        assert!(m.iter().any(|e| e.starts_with("subjects[1].namespace: Required")), "{m:?}");
        assert!(m.iter().any(|e| e.starts_with("subjects[2].kind: Unsupported")), "{m:?}");
        assert_eq!(errs.len(), 3, "{m:?}");
    }
}
