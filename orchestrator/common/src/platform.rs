//! Facts about the machine that Kubernetes names its own way.

/// This machine's architecture as Kubernetes and OCI name it (`GOARCH`: amd64, arm64, …).
pub fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}
