//! Compiles Kubernetes' own message definitions (`proto/kubernetes`: the `generated.proto`
//! files of k8s.io/api and k8s.io/apimachinery, as released with Kubernetes 1.33) into one
//! FileDescriptorSet, which the protobuf codec reads every kind's fields from. protoc must be
//! installed (Debian: protobuf-compiler).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    // read at run time: a build script compiled for one checkout is reused by another
    // sharing the target directory, and env! would keep the first checkout's path
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default();
    let root = Path::new(&manifest).join("../../proto/kubernetes");
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    let protoc = std::env::var_os("PROTOC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/protoc"));
    if !protoc.exists() {
        panic!(
            "protoc not found at {} (set PROTOC or install Debian package protobuf-compiler): \
             it is needed to compile Kubernetes' message definitions in {}",
            protoc.display(),
            root.display()
        );
    }
    let mut protos = Vec::new();
    collect_protos(&root, &root, &mut protos);
    protos.sort();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let status = Command::new(&protoc)
        .arg("--include_imports")
        .arg(format!(
            "--descriptor_set_out={}",
            out.join("kubernetes.fds").display()
        ))
        .arg(format!("--proto_path={}", root.display()))
        .args(&protos)
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", protoc.display()));
    if !status.success() {
        panic!("protoc failed ({status}) on {}", root.display());
    }
}

/// Every `.proto` under `dir`, relative to `root` (as their imports name them).
fn collect_protos(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect_protos(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path.strip_prefix(root).expect("under root").to_path_buf());
        }
    }
}
