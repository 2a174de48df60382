//! The CI image: deploy/docker/Dockerfile's `ci` target, `zai-rehearse` with the binaries a
//! rehearsal runs (`zai-proxy`, `fake-zai`, `zai-workers`, `zai-promoter`) and `git` (the
//! release repository of a rehearsal), so a pipeline rehearses without compiling Rust.
//! Built like the proxy's image: deploy/docker/build-context.sh packs binaries built on this
//! host with their shared libraries, and the image is `FROM scratch` where nothing can be
//! pulled. Its entry point is `zai-rehearse` (docs/CI.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;
use crate::platform::docker::{run, workspace_root};
use crate::platform::local::binary::workspace_binary;

/// The image's tag when built by the tests.
pub const CI_IMAGE: &str = "zai-proxy-ci:local";

/// (package, binary) of every workspace binary the image holds; `zai-rehearse` is its entry point.
pub const CI_BINARIES: [(&str, &str); 5] = [
    ("zai-e2e", "zai-rehearse"),
    ("zai-proxy", "zai-proxy"),
    ("zai-e2e", "fake-zai"),
    ("zai-e2e", "zai-workers"),
    ("zai-promoter", "zai-promoter"),
];

/// The workspace binaries for the image, found (or built under cargo) in this profile.
pub fn ci_binaries() -> Result<Vec<PathBuf>, Error> {
    CI_BINARIES
        .iter()
        .map(|(package, name)| workspace_binary(package, name, None, false))
        .collect()
}

/// `git` on the PATH (a rehearsal commits and tags its release repository).
pub fn git_binary() -> Result<PathBuf, Error> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("git"))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Docker("git not found on the PATH (the CI image packs it)".into()))
}

/// Builds `tag` from `binaries` (+ git): build-context.sh, then `docker build --target ci`
/// with `BASE=scratch LIBS=libs`. Blocking.
pub fn build_ci_image(binaries: &[PathBuf], tag: &str) -> Result<(), Error> {
    let root = workspace_root();
    let context = tempfile::Builder::new()
        .prefix("zai-ci-image-")
        .tempdir()
        .map_err(|e| Error::Docker(format!("temp dir: {e}")))?;
    let out = context.path().join("ctx");
    let git = git_binary()?;
    run(Command::new(root.join("deploy/docker/build-context.sh"))
        .arg("--out")
        .arg(&out)
        .args(binaries)
        .arg(&git))
    .map_err(Error::Docker)?;
    run(&mut docker_build(&root, &out, tag)).map_err(Error::Docker)
}

fn docker_build(root: &Path, context: &Path, tag: &str) -> Command {
    let mut command = Command::new("docker");
    command
        .args(["build", "-q", "--target", "ci", "-f"])
        .arg(root.join("deploy/docker/Dockerfile"))
        .args([
            "--build-arg",
            "BASE=scratch",
            "--build-arg",
            "LIBS=libs",
            "-t",
            tag,
        ])
        .arg(context);
    command
}
