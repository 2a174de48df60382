//! Phase 5: write the stable version to the VERSION file, commit, tag, and push (only when
//! asked). Shells out to `git`.
//!
//! [`preflight`] runs before anything is changed, so a dirty work tree or an existing tag stops
//! the run while production is still untouched.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::engine::{Sample, Status};
use crate::error::{Error, Result};

/// Where and what to finalise.
#[derive(Debug, Clone)]
pub struct Finalise {
    /// Git work tree.
    pub repo: PathBuf,
    /// VERSION file relative to `repo`.
    pub version_file: PathBuf,
    /// Stable version, e.g. `1.2.1`.
    pub version: String,
    /// Remote for `--push`.
    pub remote: String,
    /// Push the tag.
    pub push: bool,
}

impl Finalise {
    /// The tag name: `v1.2.1`.
    pub fn tag(&self) -> String {
        format!("v{}", self.version)
    }
}

async fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .await
        .map_err(|e| Error::Finalise(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(Error::Finalise(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Refuses a dirty work tree or an existing tag, with a clear message.
pub async fn preflight(f: &Finalise) -> Result<()> {
    let status = git(&f.repo, &["status", "--porcelain"]).await?;
    if !status.trim().is_empty() {
        let files: Vec<_> = status.lines().take(5).map(str::trim).collect();
        return Err(Error::Finalise(format!(
            "refusing to finalise: the work tree {} is dirty ({}); commit or stash first",
            f.repo.display(),
            files.join(", ")
        )));
    }
    let tag = f.tag();
    let exists = tokio::process::Command::new("git")
        .arg("-C")
        .arg(&f.repo)
        .args(["rev-parse", "-q", "--verify", &format!("refs/tags/{tag}")])
        .output()
        .await
        .map_err(|e| Error::Finalise(format!("cannot run git: {e}")))?;
    if exists.status.success() {
        return Err(Error::Finalise(format!(
            "refusing to finalise: tag {tag} already exists in {}",
            f.repo.display()
        )));
    }
    Ok(())
}

fn sample(status: Status, at: DateTime<Utc>, observed: String, source: &str) -> Sample {
    let mut s = Sample::new(status, at);
    s.observed = observed;
    s.source = source.into();
    s
}

fn failed(at: DateTime<Utc>, e: &Error, source: &str) -> Sample {
    let mut s = sample(Status::Fail, at, String::new(), source);
    s.evidence.push(e.to_string());
    s
}

/// Performs phase 5; returns one sample per `final.*` id, in order. Stops at the first failure
/// (later steps are reported as skipped).
pub async fn run(f: &Finalise, at: DateTime<Utc>) -> Vec<(&'static str, Sample)> {
    let mut out = Vec::new();
    let tag = f.tag();
    let skip_rest = |out: &mut Vec<(&'static str, Sample)>, from: usize| {
        for id in &[
            "final.version_file",
            "final.commit",
            "final.tag",
            "final.push",
        ][from..]
        {
            out.push((
                *id,
                Sample::skipped(at, "an earlier finalisation step failed"),
            ));
        }
    };
    if let Err(e) = preflight(f).await {
        out.push((
            "final.version_file",
            failed(at, &e, "git status / git rev-parse"),
        ));
        skip_rest(&mut out, 1);
        return out;
    }
    let path = f.repo.join(&f.version_file);
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let changed = old.trim() != f.version;
    if changed && let Err(e) = std::fs::write(&path, format!("{}\n", f.version)) {
        let e = Error::Finalise(format!("cannot write {}: {e}", path.display()));
        out.push(("final.version_file", failed(at, &e, "write VERSION")));
        skip_rest(&mut out, 1);
        return out;
    }
    let mut s = sample(
        Status::Pass,
        at,
        f.version.clone(),
        &format!("{}", path.display()),
    );
    if !changed {
        s.evidence
            .push("VERSION already contained the stable version".into());
    }
    out.push(("final.version_file", s));

    let message = format!("chore: release zai-proxy {tag}");
    if changed {
        let file = f.version_file.to_string_lossy().into_owned();
        let r = async {
            git(&f.repo, &["add", "--", &file]).await?;
            git(&f.repo, &["commit", "-q", "-m", &message, "--", &file]).await?;
            git(&f.repo, &["rev-parse", "--short", "HEAD"]).await
        }
        .await;
        match r {
            Ok(sha) => out.push((
                "final.commit",
                sample(
                    Status::Pass,
                    at,
                    format!("{} {message}", sha.trim()),
                    "git commit",
                ),
            )),
            Err(e) => {
                out.push(("final.commit", failed(at, &e, "git commit")));
                skip_rest(&mut out, 2);
                return out;
            }
        }
    } else {
        out.push((
            "final.commit",
            Sample::skipped(at, "nothing to commit: VERSION unchanged"),
        ));
    }

    let tag_message = format!("Release zai-proxy {tag}");
    match git(&f.repo, &["tag", "-a", &tag, "-m", &tag_message]).await {
        Ok(_) => out.push((
            "final.tag",
            sample(Status::Pass, at, tag.clone(), "git tag -a"),
        )),
        Err(e) => {
            out.push(("final.tag", failed(at, &e, "git tag -a")));
            skip_rest(&mut out, 3);
            return out;
        }
    }

    if f.push {
        match git(&f.repo, &["push", &f.remote, &tag]).await {
            Ok(_) => out.push((
                "final.push",
                sample(
                    Status::Pass,
                    at,
                    format!("{tag} → {}", f.remote),
                    "git push",
                ),
            )),
            Err(e) => out.push(("final.push", failed(at, &e, "git push"))),
        }
    } else {
        out.push((
            "final.push",
            Sample::skipped(at, "not pushed: run with --push"),
        ));
    }
    out
}
