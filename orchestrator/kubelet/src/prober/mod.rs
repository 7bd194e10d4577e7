//! Container probes as the Kubernetes kubelet runs them: one worker task per container
//! probe ([`worker`]), each running its handler ([`handler`]: exec through CRI ExecSync,
//! httpGet, tcpSocket, grpc) every `periodSeconds` and turning outcomes into a result
//! through the thresholds ([`tracker`]). The pod worker owns a [`PodProber`]
//! ([`manager`]): it starts workers for running containers, reads readiness and startup
//! into the pod status, and kills a container whose liveness or startup probe failed.

pub mod handler;
pub mod manager;
pub mod tracker;
pub mod worker;

pub use manager::{PodProber, ProbeTarget};
pub use tracker::{Timing, Tracker};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    /// As events name it (`Liveness probe failed: …`).
    pub fn title(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }

    /// The kind's probe in a container spec.
    pub fn of(
        self,
        c: &k8s_openapi::api::core::v1::Container,
    ) -> Option<&k8s_openapi::api::core::v1::Probe> {
        match self {
            Kind::Liveness => c.liveness_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
            Kind::Startup => c.startup_probe.as_ref(),
        }
    }

    pub const ALL: [Kind; 3] = [Kind::Startup, Kind::Liveness, Kind::Readiness];
}

/// What one run of a handler found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Why it failed (command output, status code, connection error).
    Failure(String),
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }
}
