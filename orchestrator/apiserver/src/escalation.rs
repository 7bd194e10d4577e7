//! RBAC's escalation check on writes of roles and bindings (Kubernetes' RBAC storage
//! `ConfirmNoEscalation`): a user may write a Role or ClusterRole only with rules it holds
//! itself, or with the `escalate` verb on it; a binding only of a role whose rules it holds,
//! or with the `bind` verb on that role. An aggregated ClusterRole can gather anything, so
//! writing one takes every permission. `system:masters` and the server's own writes pass.

use bpfk_apimachinery::registry::ResourceInfo;
use bpfk_auth::authz::{Attributes, ResourceAttributes};
use bpfk_auth::rbac::covers::uncovered;
use bpfk_auth::rbac::rules::{rule, url_rule};
use bpfk_auth::rbac::GROUP;
use bpfk_auth::user::{UserInfo, SYSTEM_MASTERS};
use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef};
use serde_json::Value;

use crate::authz::requester;
use crate::error::{ApiError, Result};
use crate::state::AppState;

/// Refuses a write of `obj` (a role or binding of `res` in `ns`) that would grant its
/// requester permissions it does not hold.
pub async fn check(
    state: &AppState,
    res: &ResourceInfo,
    ns: Option<&str>,
    obj: &Value,
) -> Result<()> {
    if res.group != GROUP {
        return Ok(());
    }
    let Some(user) = requester().filter(|u| !u.in_group(SYSTEM_MASTERS)) else {
        return Ok(());
    };
    let ns = ns.unwrap_or_default();
    let name = crate::object::name(obj).unwrap_or_default();
    let (granted, verb, target) = match res.plural {
        "roles" | "clusterroles" => (role_rules(obj)?, "escalate", (res.plural, name.to_string())),
        "rolebindings" | "clusterrolebindings" => {
            let role_ref: RoleRef = field(obj, "roleRef")?;
            let policy = state.authz.rbac_policy(state).await?;
            let rules = policy.role_rules(&role_ref, ns).map(<[PolicyRule]>::to_vec);
            let plural = if role_ref.kind == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            let rules = rules.ok_or_else(|| role_not_found(plural, &role_ref.name))?;
            (rules, "bind", (plural, role_ref.name))
        }
        _ => return Ok(()),
    };
    if may(state, &user, verb, ns, target).await? {
        return Ok(());
    }
    let held = state.authz.rbac_policy(state).await?.rules_for(&user, ns);
    let missing = uncovered(&held, &granted);
    if missing.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = missing.iter().map(ToString::to_string).collect();
    Err(ApiError::Forbidden {
        group: res.group.into(),
        kind: res.plural.into(),
        name: name.into(),
        message: format!(
            "user {:?} (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{}",
            user.name, user.groups, listed.join("\n")
        ),
    })
}

/// The rules a role grants; every permission for an aggregated ClusterRole.
fn role_rules(obj: &Value) -> Result<Vec<PolicyRule>> {
    if obj.get("aggregationRule").is_some_and(|a| !a.is_null()) {
        return Ok(vec![rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])]);
    }
    match obj.get("rules") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(_) => field(obj, "rules"),
    }
}

fn field<T: serde::de::DeserializeOwned>(obj: &Value, key: &str) -> Result<T> {
    let value = obj.get(key).cloned().unwrap_or(Value::Null);
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("{key}: {e}")))
}

fn role_not_found(plural: &str, name: &str) -> ApiError {
    ApiError::NotFound {
        group: GROUP.into(),
        kind: plural.into(),
        name: name.into(),
    }
}

/// Whether RBAC gives `user` `verb` on the role `target` (`escalate`, `bind`).
async fn may(
    state: &AppState,
    user: &UserInfo,
    verb: &str,
    ns: &str,
    (plural, name): (&str, String),
) -> Result<bool> {
    let namespace = if plural == "roles" {
        ns.to_string()
    } else {
        String::new()
    };
    let target = ResourceAttributes {
        namespace,
        api_group: GROUP.into(),
        resource: plural.into(),
        subresource: String::new(),
        name,
    };
    let attrs = Attributes {
        user,
        verb,
        resource: Some(&target),
        path: "",
    };
    Ok(state.authz.decide(state, &attrs).await?.allowed())
}
