//! Role-based access control as Kubernetes' RBAC authorizer: the rules of the Roles and
//! ClusterRoles that bindings grant a user ([`policy`]), rule matching ([`rules`]), the
//! escalation check of role and binding writes ([`covers`]) and the roles and bindings a
//! cluster starts with ([`bootstrap`]).

pub mod bootstrap;
pub mod covers;
pub mod policy;
pub mod rules;

pub use policy::RbacPolicy;

/// The RBAC API group.
pub const GROUP: &str = "rbac.authorization.k8s.io";
