//! The kubelet's streaming endpoints for the API server's `pods/exec`:
//! `GET|POST /exec/{namespace}/{pod}/{container}?command=…&stdout=1&stderr=1` upgraded to
//! a WebSocket speaking the Kubernetes channel protocol ([`channel`]: `v5.channel.k8s.io`
//! or `v4.channel.k8s.io`, one byte of channel before each message: 1 stdout, 2 stderr,
//! 3 the final `Status`). The command runs through CRI ExecSync ([`exec`]), so its output
//! arrives when it ends; stdin and TTYs need the runtime's streaming server (CRI Exec) and
//! are refused with a Status saying so.

pub mod channel;
pub mod exec;

pub use exec::router;
