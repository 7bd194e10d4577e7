//! Who a request comes from, as Kubernetes' `user.Info`.

use std::collections::BTreeMap;

/// Every authenticated request carries this group.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Anonymous requests (health checks) are this user in this group.
pub const ANONYMOUS_USER: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The group every authorizer allows everything.
pub const SYSTEM_MASTERS: &str = "system:masters";
/// Nodes: `system:node:<name>` in `system:nodes`.
pub const NODES_GROUP: &str = "system:nodes";
pub const NODE_USER_PREFIX: &str = "system:node:";
/// ServiceAccounts: `system:serviceaccount:<ns>:<name>` in `system:serviceaccounts` and
/// `system:serviceaccounts:<ns>`.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// Bootstrap tokens: `system:bootstrap:<id>` in `system:bootstrappers`.
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers";
pub const BOOTSTRAP_USER_PREFIX: &str = "system:bootstrap:";

/// An authenticated (or anonymous) user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The node name when this is a node's identity (`system:node:<name>` in
    /// `system:nodes`).
    pub fn node_name(&self) -> Option<&str> {
        if !self.in_group(NODES_GROUP) {
            return None;
        }
        self.name
            .strip_prefix(NODE_USER_PREFIX)
            .filter(|n| !n.is_empty())
    }

    /// (namespace, name) when this is a ServiceAccount's identity.
    pub fn service_account(&self) -> Option<(&str, &str)> {
        let rest = self.name.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
        rest.split_once(':')
    }
}

/// `name` as an authenticated user: `system:authenticated` is added to its groups.
pub fn authenticated(name: String, uid: String, mut groups: Vec<String>) -> UserInfo {
    if !groups.iter().any(|g| g == AUTHENTICATED) {
        groups.push(AUTHENTICATED.to_string());
    }
    UserInfo {
        name,
        uid,
        groups,
        extra: BTreeMap::new(),
    }
}

/// The anonymous user.
pub fn anonymous() -> UserInfo {
    UserInfo {
        name: ANONYMOUS_USER.to_string(),
        groups: vec![UNAUTHENTICATED.to_string()],
        ..Default::default()
    }
}

/// The user of ServiceAccount `namespace/name` with `uid`.
pub fn service_account(namespace: &str, name: &str, uid: &str) -> UserInfo {
    authenticated(
        format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"),
        uid.to_string(),
        vec![
            SERVICE_ACCOUNTS_GROUP.to_string(),
            format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}"),
        ],
    )
}
