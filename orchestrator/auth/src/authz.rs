//! What a request asks to do, and an authorizer's answer, as Kubernetes'
//! `authorizer.Attributes` and `authorizer.Decision`.

use crate::user::UserInfo;

/// The resource a resource request acts on (`/api/v1/namespaces/ns/pods/name/log`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    /// `""` for cluster-scoped resources (and for requests across all namespaces).
    pub namespace: String,
    /// `""` for the core group.
    pub api_group: String,
    pub resource: String,
    /// `""` when the request is on the resource itself.
    pub subresource: String,
    /// `""` for collection requests.
    pub name: String,
}

/// What a request asks: its user, its verb, and either a resource or a non-resource path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes<'a> {
    pub user: &'a UserInfo,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`
    /// (or `bind`, `escalate`, `impersonate`, ...); the lower-case HTTP method for
    /// non-resource requests.
    pub verb: &'a str,
    /// `None` for a non-resource request (`/healthz`, `/metrics`, `/api`).
    pub resource: Option<&'a ResourceAttributes>,
    /// The request path of a non-resource request.
    pub path: &'a str,
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, and why (the role and binding that allow it).
    Allow(String),
    /// Refused outright: no later authorizer is asked.
    Deny(String),
    /// This authorizer neither allows nor refuses; the next one decides.
    NoOpinion,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

impl Attributes<'_> {
    /// `resource` or `resource/subresource`, as RBAC rules name it.
    pub fn combined_resource(&self) -> String {
        match self.resource {
            Some(r) if !r.subresource.is_empty() => format!("{}/{}", r.resource, r.subresource),
            Some(r) => r.resource.clone(),
            None => String::new(),
        }
    }

    /// What the request was refused, worded as kube-apiserver's forbidden message
    /// (`User "alice" cannot list resource "pods" in API group "" in the namespace "dev"`).
    pub fn forbidden_message(&self) -> String {
        let who = &self.user.name;
        let Some(r) = self.resource else {
            return format!("User {who:?} cannot {} path {:?}", self.verb, self.path);
        };
        let mut msg = format!(
            "User {who:?} cannot {} resource {:?} in API group {:?}",
            self.verb,
            self.combined_resource(),
            r.api_group
        );
        if r.namespace.is_empty() {
            msg.push_str(" at the cluster scope");
        } else {
            msg.push_str(&format!(" in the namespace {:?}", r.namespace));
        }
        msg
    }
}
