//! CRI client: the `runtime.v1` RuntimeService and ImageService over a unix socket (tonic).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// Generated `runtime.v1` messages and clients (from `proto/runtime/v1/api.proto`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("runtime.v1");
}

use proto::image_service_client::ImageServiceClient;
use proto::runtime_service_client::RuntimeServiceClient;

/// How long one CRI call may take. StopContainer adds its own grace period on top.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one image pull may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// Label the kubelet puts on sandboxes and containers: the pod's UID.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
/// Label with the pod's name.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// Label with the pod's namespace.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Label with the container's name (containers only).
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// A CRI call that failed.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("cannot connect to CRI socket {socket}: {source}")]
    Connect {
        socket: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("CRI {call} failed: {status}")]
    Call {
        call: &'static str,
        status: tonic::Status,
    },
    #[error("CRI {call} answered without {field}")]
    Missing {
        call: &'static str,
        field: &'static str,
    },
}

impl CriError {
    /// Whether the runtime said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CriError::Call { status, .. } if status.code() == tonic::Code::NotFound)
    }
}

type Result<T, E = CriError> = std::result::Result<T, E>;

fn call_err(call: &'static str) -> impl FnOnce(tonic::Status) -> CriError {
    move |status| CriError::Call { call, status }
}

/// A connection to a CRI runtime (cheap to clone: clients share one HTTP/2 channel).
#[derive(Clone, Debug)]
pub struct CriClient {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    socket: PathBuf,
}

impl CriClient {
    /// Connect to the runtime's unix socket (e.g. `/run/containerd/containerd.sock`).
    pub async fn connect(socket: &Path) -> Result<CriClient> {
        let uri = format!("unix://{}", socket.display());
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|source| CriError::Connect {
                socket: socket.to_path_buf(),
                source,
            })?
            .connect_timeout(Duration::from_secs(10))
            .timeout(CALL_TIMEOUT);
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| CriError::Connect {
                socket: socket.to_path_buf(),
                source,
            })?;
        Ok(CriClient {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            socket: socket.to_path_buf(),
        })
    }

    /// A client that connects to `socket` at its first call (a runtime that is not there
    /// yet fails that call, not this one).
    pub fn connect_lazy(socket: &Path) -> Result<CriClient> {
        let uri = format!("unix://{}", socket.display());
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|source| CriError::Connect {
                socket: socket.to_path_buf(),
                source,
            })?
            .connect_timeout(Duration::from_secs(10))
            .timeout(CALL_TIMEOUT);
        let channel = endpoint.connect_lazy();
        Ok(CriClient {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            socket: socket.to_path_buf(),
        })
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runtime name, version and CRI API version.
    pub async fn version(&self) -> Result<proto::VersionResponse> {
        self.runtime
            .clone()
            .version(proto::VersionRequest {
                version: "v1".into(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(call_err("Version"))
    }

    /// Create and start a sandbox; returns its id.
    pub async fn run_pod_sandbox(&self, config: proto::PodSandboxConfig) -> Result<String> {
        self.runtime
            .clone()
            .run_pod_sandbox(proto::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .map(|r| r.into_inner().pod_sandbox_id)
            .map_err(call_err("RunPodSandbox"))
    }

    /// Stop a sandbox (idempotent).
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .stop_pod_sandbox(proto::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map(drop)
            .map_err(call_err("StopPodSandbox"))
    }

    /// Remove a sandbox (idempotent).
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .remove_pod_sandbox(proto::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map(drop)
            .map_err(call_err("RemovePodSandbox"))
    }

    /// Status of a sandbox.
    pub async fn pod_sandbox_status(&self, id: &str) -> Result<proto::PodSandboxStatus> {
        self.runtime
            .clone()
            .pod_sandbox_status(proto::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            })
            .await
            .map_err(call_err("PodSandboxStatus"))?
            .into_inner()
            .status
            .ok_or(CriError::Missing {
                call: "PodSandboxStatus",
                field: "status",
            })
    }

    /// Sandboxes matching `filter` (all when None).
    pub async fn list_pod_sandbox(
        &self,
        filter: Option<proto::PodSandboxFilter>,
    ) -> Result<Vec<proto::PodSandbox>> {
        self.runtime
            .clone()
            .list_pod_sandbox(proto::ListPodSandboxRequest { filter })
            .await
            .map(|r| r.into_inner().items)
            .map_err(call_err("ListPodSandbox"))
    }

    /// Create a container in a sandbox; returns its id.
    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: proto::ContainerConfig,
        sandbox_config: proto::PodSandboxConfig,
    ) -> Result<String> {
        self.runtime
            .clone()
            .create_container(proto::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.into(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .map(|r| r.into_inner().container_id)
            .map_err(call_err("CreateContainer"))
    }

    /// Start a created container.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .start_container(proto::StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .map(drop)
            .map_err(call_err("StartContainer"))
    }

    /// Stop a container: SIGTERM, then SIGKILL after `timeout_secs` (idempotent).
    pub async fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<()> {
        let mut request = tonic::Request::new(proto::StopContainerRequest {
            container_id: id.into(),
            timeout: timeout_secs,
        });
        request.set_timeout(CALL_TIMEOUT + Duration::from_secs(timeout_secs.max(0) as u64));
        self.runtime
            .clone()
            .stop_container(request)
            .await
            .map(drop)
            .map_err(call_err("StopContainer"))
    }

    /// Remove a container (idempotent).
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .remove_container(proto::RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .map(drop)
            .map_err(call_err("RemoveContainer"))
    }

    /// Containers matching `filter` (all when None).
    pub async fn list_containers(
        &self,
        filter: Option<proto::ContainerFilter>,
    ) -> Result<Vec<proto::Container>> {
        self.runtime
            .clone()
            .list_containers(proto::ListContainersRequest { filter })
            .await
            .map(|r| r.into_inner().containers)
            .map_err(call_err("ListContainers"))
    }

    /// Status of one container.
    pub async fn container_status(&self, id: &str) -> Result<proto::ContainerStatus> {
        self.runtime
            .clone()
            .container_status(proto::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .map_err(call_err("ContainerStatus"))?
            .into_inner()
            .status
            .ok_or(CriError::Missing {
                call: "ContainerStatus",
                field: "status",
            })
    }

    /// Runs `cmd` in container `id` and waits for it (at most `timeout`, rounded up to whole
    /// seconds): its exit code and output.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<proto::ExecSyncResponse> {
        let secs = timeout.as_secs_f64().ceil() as i64;
        let mut request = tonic::Request::new(proto::ExecSyncRequest {
            container_id: id.into(),
            cmd,
            timeout: secs,
        });
        request.set_timeout(timeout + Duration::from_secs(5));
        self.runtime
            .clone()
            .exec_sync(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(call_err("ExecSync"))
    }

    /// The URL of the runtime's streaming server for running a command in container `id`.
    pub async fn exec(&self, request: proto::ExecRequest) -> Result<String> {
        self.runtime
            .clone()
            .exec(request)
            .await
            .map(|r| r.into_inner().url)
            .map_err(call_err("Exec"))
    }

    /// The URL of the runtime's streaming server for attaching to a container's process.
    pub async fn attach(&self, request: proto::AttachRequest) -> Result<String> {
        self.runtime
            .clone()
            .attach(request)
            .await
            .map(|r| r.into_inner().url)
            .map_err(call_err("Attach"))
    }

    /// The URL of the runtime's streaming server for forwarding `ports` of sandbox `id`.
    pub async fn port_forward(&self, id: &str, ports: Vec<i32>) -> Result<String> {
        self.runtime
            .clone()
            .port_forward(proto::PortForwardRequest {
                pod_sandbox_id: id.into(),
                port: ports,
            })
            .await
            .map(|r| r.into_inner().url)
            .map_err(call_err("PortForward"))
    }

    /// Asks the runtime to reopen container `id`'s log file at its path (after the kubelet
    /// renamed it away when rotating).
    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .reopen_container_log(proto::ReopenContainerLogRequest {
                container_id: id.into(),
            })
            .await
            .map(drop)
            .map_err(call_err("ReopenContainerLog"))
    }

    /// The image `reference` names, or None when the runtime does not have it.
    pub async fn image_status(&self, reference: &str) -> Result<Option<proto::Image>> {
        self.images
            .clone()
            .image_status(proto::ImageStatusRequest {
                image: Some(proto::ImageSpec {
                    image: reference.into(),
                    annotations: Default::default(),
                }),
                verbose: false,
            })
            .await
            .map(|r| r.into_inner().image)
            .map_err(call_err("ImageStatus"))
    }

    /// All images the runtime has.
    pub async fn list_images(&self) -> Result<Vec<proto::Image>> {
        self.images
            .clone()
            .list_images(proto::ListImagesRequest { filter: None })
            .await
            .map(|r| r.into_inner().images)
            .map_err(call_err("ListImages"))
    }

    /// Pull `reference` (with `auth` for its registry) in the context of `sandbox`; returns
    /// the pulled image's reference (its id). Pulls may take long: no call timeout beyond
    /// `PULL_TIMEOUT`.
    pub async fn pull_image(
        &self,
        reference: &str,
        auth: Option<proto::AuthConfig>,
        sandbox: Option<proto::PodSandboxConfig>,
    ) -> Result<String> {
        let mut request = tonic::Request::new(proto::PullImageRequest {
            image: Some(proto::ImageSpec {
                image: reference.into(),
                annotations: Default::default(),
            }),
            auth,
            sandbox_config: sandbox,
        });
        request.set_timeout(PULL_TIMEOUT);
        self.images
            .clone()
            .pull_image(request)
            .await
            .map(|r| r.into_inner().image_ref)
            .map_err(call_err("PullImage"))
    }

    /// Remove an image (by id or reference; idempotent).
    pub async fn remove_image(&self, reference: &str) -> Result<()> {
        self.images
            .clone()
            .remove_image(proto::RemoveImageRequest {
                image: Some(proto::ImageSpec {
                    image: reference.into(),
                    annotations: Default::default(),
                }),
            })
            .await
            .map(drop)
            .map_err(call_err("RemoveImage"))
    }

    /// The filesystems the runtime keeps images on, with the bytes they use.
    pub async fn image_fs_info(&self) -> Result<Vec<proto::FilesystemUsage>> {
        self.images
            .clone()
            .image_fs_info(proto::ImageFsInfoRequest {})
            .await
            .map(|r| r.into_inner().image_filesystems)
            .map_err(call_err("ImageFsInfo"))
    }
}
