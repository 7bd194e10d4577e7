//! The streaming side of pods/exec, pods/attach and pods/portforward, shared by the API
//! server and the kubelet:
//!
//! - [`spdy`]: SPDY/3.1 frames and header compression ([`spdy_dictionary`]);
//! - [`channel`]: the remote command streams and the `channel.k8s.io` WebSocket framing;
//! - [`upgrade`]: HTTP/1.1 upgrade requests to an upstream, plain or over TLS, and splicing a
//!   switched client connection onto it (the kubelet → runtime and API server → kubelet
//!   paths);
//! - [`tls_server`]: the TLS listener both the API server and the kubelet endpoint serve on;
//! - [`translate`]: WebSocket `v5.channel.k8s.io` ↔ SPDY, and the port-forward tunnel of
//!   SPDY in WebSocket messages (the API server's side toward kubectl 1.30+).

pub mod channel;
pub mod spdy;
pub mod spdy_dictionary;
pub mod tls_server;
pub mod translate;
pub mod upgrade;
