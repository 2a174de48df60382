//! The kubeconfig of a simulated cluster: one cluster (`server: http://127.0.0.1:PORT`), one
//! user without credentials, one context with the namespace — what `KubePlatform` and kubectl
//! are pointed at.

use std::path::Path;

/// The context's name.
pub const CONTEXT: &str = "zai-rehearsal";

/// The kubeconfig text.
pub fn render(server: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
  - name: {CONTEXT}
    cluster:
      server: {server}
users:
  - name: {CONTEXT}
    user: {{}}
contexts:
  - name: {CONTEXT}
    context:
      cluster: {CONTEXT}
      user: {CONTEXT}
      namespace: {namespace}
current-context: {CONTEXT}
"
    )
}

/// Writes it to `path` (parent directories created).
pub fn write(path: &Path, server: &str, namespace: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, render(server, namespace))
}
