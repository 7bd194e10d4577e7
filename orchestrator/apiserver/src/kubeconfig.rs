//! Writing a kubeconfig that points clients at this server.

use std::path::Path;

/// A kubeconfig for `server` (plain HTTP, no credentials) with context `bpfk`.
pub fn render(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: bpfk\n  cluster:\n    server: {server}\ncontexts:\n- name: bpfk\n  context:\n    cluster: bpfk\n    user: bpfk\n    namespace: default\ncurrent-context: bpfk\nusers:\n- name: bpfk\n  user: {{}}\npreferences: {{}}\n"
    )
}

/// Write the kubeconfig atomically (temp file + rename).
pub fn write(path: &Path, server: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, render(server))?;
    std::fs::rename(&tmp, path)
}
