//! Who may talk to the cluster and how they prove it: the cluster PKI ([`pki`]), TLS
//! configuration ([`tls`]), the user model ([`user`]), the token authenticators
//! ([`token_file`]) and the Pod Security Standards evaluator ([`pod_security`]), shared by
//! the API server, the agent and the CLI.

pub mod authz;
pub mod bootstrap_token;
pub mod discovery;
pub mod kubeconfig;
pub mod node;
pub mod pki;
pub mod pod_security;
pub mod rbac;
pub mod service_account;
pub mod tls;
pub mod token_file;
pub mod user;

pub use user::UserInfo;
