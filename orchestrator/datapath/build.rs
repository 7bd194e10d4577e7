//! Points the crate at the eBPF object built by `cargo xtask build-ebpf`.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=BPFK_EBPF_OBJECT");
    let path = match std::env::var_os("BPFK_EBPF_OBJECT") {
        Some(p) => PathBuf::from(p),
        None => {
            let manifest =
                PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
            manifest.join("../../ebpf/programs/target/bpfk.o")
        }
    };
    println!("cargo:rerun-if-changed={}", path.display());
    if !path.exists() {
        panic!(
            "bpfk-datapath needs the eBPF object {}: run `cargo xtask build-ebpf` first \
             (or set BPFK_EBPF_OBJECT to a built object)",
            path.display()
        );
    }
    let path = path.canonicalize().unwrap_or(path);
    println!("cargo:rustc-env=BPFK_EBPF_OBJECT_PATH={}", path.display());
}
