//! Images for a kind rehearsal, built locally `FROM scratch` (nothing is pulled) with the
//! host's binaries and the shared libraries `ldd` lists (deploy/docker/build-context.sh,
//! deploy/docker/Dockerfile), then copied into the cluster's nodes with
//! `kind load docker-image` — as deploy/kind/demo.sh does.
//!
//! * the tools image `zai-rehearsal-tools:local` (fake-zai, zai-workers), once per run;
//! * `zai-proxy:<tag>` for the scenario's three versions, each with its configuration built in
//!   ([`super::manifests::dockerfile`]), for every scenario.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::manifests::{VersionImage, dockerfile};
use crate::Error;
use crate::platform::docker::{run, workspace_root};
use crate::platform::local::binary::workspace_binary;

/// The tools image.
pub const TOOLS_IMAGE: &str = "zai-rehearsal-tools:local";

const DOCKERFILE: &str = include_str!("../../../../deploy/docker/Dockerfile");

/// The binaries the images are made of.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// zai-proxy.
    pub proxy: PathBuf,
    /// fake-zai.
    pub fake: PathBuf,
    /// zai-workers.
    pub workers: PathBuf,
}

impl Binaries {
    /// The proxy given, fake-zai and zai-workers next to it (or `FAKE_ZAI_BIN`,
    /// `ZAI_WORKERS_BIN`; built under cargo when missing).
    pub fn find(proxy: &Path) -> Result<Binaries, Error> {
        Ok(Binaries {
            proxy: proxy.to_path_buf(),
            fake: workspace_binary("zai-e2e", "fake-zai", Some("FAKE_ZAI_BIN"), false)?,
            workers: workspace_binary("zai-e2e", "zai-workers", Some("ZAI_WORKERS_BIN"), false)?,
        })
    }
}

/// The build contexts of one run.
pub struct Images {
    _dir: tempfile::TempDir,
    proxy_context: PathBuf,
    tools_context: PathBuf,
}

fn setup(what: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::Setup(format!("{what}: {e}"))
}

fn context(out: &Path, binaries: &[&Path]) -> Result<(), Error> {
    let mut command = Command::new(workspace_root().join("deploy/docker/build-context.sh"));
    command.arg("--out").arg(out);
    for b in binaries {
        command.arg(b);
    }
    run(&mut command).map_err(setup("build context"))
}

fn build(context: &Path, dockerfile: &Path, tag: &str, version: &str) -> Result<(), Error> {
    run(Command::new("docker")
        .args(["build", "-q", "-f"])
        .arg(dockerfile)
        .args(["--build-arg", "BASE=scratch", "--build-arg", "LIBS=libs"])
        .arg("--build-arg")
        .arg(format!("VERSION={version}"))
        .args(["-t", tag])
        .arg(context))
    .map_err(setup(&format!("docker build {tag}")))
}

impl Images {
    /// Makes the build contexts (blocking: deploy/docker/build-context.sh).
    pub fn contexts(binaries: &Binaries) -> Result<Images, Error> {
        let dir = tempfile::Builder::new()
            .prefix("zai-rehearsal-kind-")
            .tempdir()
            .map_err(|e| Error::Setup(format!("temp dir: {e}")))?;
        let proxy_context = dir.path().join("proxy");
        let tools_context = dir.path().join("tools");
        context(&proxy_context, &[&binaries.proxy])?;
        context(&tools_context, &[&binaries.fake, &binaries.workers])?;
        Ok(Images {
            _dir: dir,
            proxy_context,
            tools_context,
        })
    }

    /// Builds the tools image (blocking: docker).
    pub fn build_tools(&self) -> Result<String, Error> {
        let file = self.tools_context.join("Dockerfile.tools");
        std::fs::write(&file, DOCKERFILE)?;
        build(&self.tools_context, &file, TOOLS_IMAGE, "")?;
        Ok(TOOLS_IMAGE.to_owned())
    }

    /// Builds the versions' images (blocking: docker); their names.
    pub fn build_versions(&self, versions: &[VersionImage]) -> Result<Vec<String>, Error> {
        for version in versions {
            let file = self
                .proxy_context
                .join(format!("Dockerfile.{}", version.tag));
            std::fs::write(&file, dockerfile(DOCKERFILE, version))?;
            build(&self.proxy_context, &file, &version.image, &version.tag)?;
        }
        Ok(versions.iter().map(|v| v.image.clone()).collect())
    }

    /// Copies `images` into the nodes of kind cluster `cluster` (blocking: kind).
    pub fn load(cluster: &str, images: &[String]) -> Result<(), Error> {
        run(Command::new("kind")
            .args(["load", "docker-image", "--name", cluster])
            .args(images))
        .map_err(setup("kind load docker-image"))
    }
}
