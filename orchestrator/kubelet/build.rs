//! Compiles the CRI subset in `proto/runtime/v1/api.proto` (client side only) with
//! tonic-prost-build. protoc must be installed (Debian: protobuf-compiler).

use std::path::{Path, PathBuf};

fn main() {
    // read at run time: a build script compiled for one checkout is reused by another
    // sharing the target directory, and env! would keep the first checkout's path
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default();
    let root = Path::new(&manifest).join("../../proto");
    let proto = root.join("runtime/v1/api.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    let protoc = std::env::var_os("PROTOC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/protoc"));
    if !protoc.exists() {
        panic!(
            "protoc not found at {} (set PROTOC or install Debian package protobuf-compiler): \
             it is needed to compile the CRI protocol in {}",
            protoc.display(),
            proto.display()
        );
    }
    // prost-build runs the compiler named by PROTOC.
    std::env::set_var("PROTOC", &protoc);
    if let Err(e) = tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&[&proto], &[&root])
    {
        panic!("compiling {} failed: {e}", proto.display());
    }
}
