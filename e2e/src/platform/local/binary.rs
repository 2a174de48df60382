//! Finding (or building) the real `zai-proxy` binary (and the workspace's other binaries).
//!
//! Order: `ZAI_PROXY_BIN`; then `zai-proxy` in the current executable's target directory
//! (`target/<profile>/` — test binaries live one level deeper in `deps/`); if it is missing
//! and we run under cargo (`CARGO` is set), `cargo build -p zai-proxy --bin zai-proxy` with
//! the same profile and target directory, so `cargo run -p zai-e2e --bin zai-rehearse` works
//! on a fresh checkout. [`workspace_binary`] does the same for any package's binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

const NAME: &str = "zai-proxy";

/// The proxy binary to run; `rebuild` forces a `cargo build` when cargo is available (the
/// rehearsal binary uses it so a stale proxy is never rehearsed).
pub fn proxy_binary(rebuild: bool) -> Result<PathBuf, Error> {
    workspace_binary(NAME, NAME, Some("ZAI_PROXY_BIN"), rebuild)
}

/// Binary `name` of workspace package `package`: `$override_env` when given and set, else
/// `target/<profile>/name`, built with cargo when missing (or when `rebuild`) under cargo.
pub fn workspace_binary(
    package: &str,
    name: &str,
    override_env: Option<&str>,
    rebuild: bool,
) -> Result<PathBuf, Error> {
    if let Some(path) = override_env.and_then(std::env::var_os) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::Binary(format!(
                "{}={} is not a file",
                override_env.unwrap_or_default(),
                path.display()
            )))
        };
    }
    let exe =
        std::env::current_exe().map_err(|e| Error::Binary(format!("current executable: {e}")))?;
    let profile_dir = profile_dir(&exe).ok_or_else(|| {
        Error::Binary(format!(
            "cannot tell the target directory from {}; set ZAI_PROXY_BIN",
            exe.display()
        ))
    })?;
    let candidate = profile_dir.join(name);
    if candidate.is_file() && !rebuild {
        return Ok(candidate);
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        build(Path::new(&cargo), &profile_dir, package, name)?;
    }
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(Error::Binary(format!(
            "{} not found; run `cargo build --release -p {package}`{}",
            candidate.display(),
            override_env
                .map(|v| format!(" or set {v}"))
                .unwrap_or_default()
        )))
    }
}

/// `target/<profile>` for `target/<profile>/x` and `target/<profile>/deps/x`.
fn profile_dir(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    if dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        dir.parent().map(Path::to_path_buf)
    } else {
        Some(dir.to_path_buf())
    }
}

/// Variables cargo sets for the crate it runs (`cargo run`, `cargo test`) — describing *that*
/// crate, not the build we ask for.
const RUN_ENV_PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_CFG_", "CARGO_BIN_EXE_"];
const RUN_ENV: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

/// `cargo` without the variables cargo set for the running crate. Build scripts declare
/// `rerun-if-env-changed` on some of them (ring: `CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, …);
/// inherited, they made this nested build re-run those scripts and recompile ring, rustls,
/// kube and everything above them, and the next plain cargo command do it again.
fn cargo_command(cargo: &Path) -> Command {
    let mut command = Command::new(cargo);
    for (key, _) in std::env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        if RUN_ENV.contains(&k) || RUN_ENV_PREFIXES.iter().any(|p| k.starts_with(p)) {
            command.env_remove(&key);
        }
    }
    command
}

fn build(cargo: &Path, profile_dir: &Path, package: &str, name: &str) -> Result<(), Error> {
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("release");
    let target_dir = profile_dir.parent().unwrap_or(profile_dir);
    let cargo_profile = if profile == "debug" { "dev" } else { profile };
    tracing::info!(profile = cargo_profile, "building {name}");
    let status = cargo_command(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            "--bin",
            name,
            "--profile",
        ])
        .arg(cargo_profile)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .map_err(|e| Error::Binary(format!("running cargo: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Binary(format!(
            "cargo build -p {package} --bin {name} failed ({status})"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nested_cargo_does_not_inherit_the_running_crates_variables() {
        // `cargo test` sets these for this test binary, as `cargo run` does for zai-rehearse.
        assert!(
            std::env::var_os("CARGO_PKG_NAME").is_some(),
            "run me under cargo"
        );
        let command = cargo_command(Path::new("cargo"));
        let removed: Vec<_> = command
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        for key in ["CARGO_PKG_NAME", "CARGO_PKG_VERSION", "CARGO_MANIFEST_DIR"] {
            assert!(removed.iter().any(|k| k == key), "{key} kept: {removed:?}");
        }
        assert!(!removed.iter().any(|k| k == "PATH" || k == "CARGO_HOME"));
    }

    #[test]
    fn profile_dir_skips_deps() {
        assert_eq!(
            profile_dir(Path::new("/t/release/deps/x-123")),
            Some(PathBuf::from("/t/release"))
        );
        assert_eq!(
            profile_dir(Path::new("/t/release/zai-rehearse")),
            Some(PathBuf::from("/t/release"))
        );
    }
}
