//! Phase 5: write the stable version to the VERSION file, optionally bump the canary overlay
//! to the next development version (`--bump-canary`), commit, tag, and push (only when asked).
//! Shells out to `git`.
//!
//! [`preflight`] runs before anything is changed, so a dirty work tree or an existing tag stops
//! the run while production is still untouched.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::catalog::{CheckId, FinalCheck};
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
    /// The canary overlay's kustomization directory (relative to `repo`) whose image tag and
    /// `version` label are set to the next development version in the release commit.
    pub bump_canary: Option<PathBuf>,
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

/// The next development version after a release: `1.2.1` → `1.2.2-canary`.
pub fn next_development_version(version: &str) -> Option<String> {
    let mut parts: Vec<u64> = version
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if parts.len() != 3 {
        return None;
    }
    parts[2] = parts[2].checked_add(1)?;
    Some(format!("{}.{}.{}-canary", parts[0], parts[1], parts[2]))
}

/// A kustomization with its `newTag:` (exactly one) and its `version:` label values set to
/// `tag`, everything else (comments, order, quoting style) kept.
pub fn bump_kustomization(text: &str, tag: &str) -> std::result::Result<String, String> {
    let mut tags = 0;
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let ending = &line[body.len()..];
        let indent = &body[..body.len() - body.trim_start().len()];
        let trimmed = body.trim_start();
        let key = ["newTag:", "version:"]
            .into_iter()
            .find(|k| trimmed.starts_with(k));
        match key {
            Some(k) => {
                if k == "newTag:" {
                    tags += 1;
                }
                out.push_str(&format!("{indent}{k} \"{tag}\"{ending}"));
            }
            None => out.push_str(line),
        }
    }
    match tags {
        1 => Ok(out),
        0 => Err("no `newTag:` in it (an `images:` entry for zai-proxy is needed)".into()),
        n => Err(format!("{n} `newTag:` lines in it; expected exactly one")),
    }
}

fn kustomization_path(f: &Finalise, dir: &Path) -> PathBuf {
    f.repo.join(dir).join("kustomization.yaml")
}

/// Refuses a dirty work tree or an existing tag, with a clear message.
pub async fn preflight(f: &Finalise) -> Result<()> {
    if let Some(dir) = &f.bump_canary {
        let path = kustomization_path(f, dir);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::Finalise(format!(
                "--bump-canary: cannot read {}: {e}",
                path.display()
            ))
        })?;
        let next = next_development_version(&f.version).ok_or_else(|| {
            Error::Finalise(format!(
                "--bump-canary: {} is not X.Y.Z; cannot tell the next development version",
                f.version
            ))
        })?;
        bump_kustomization(&text, &next)
            .map_err(|e| Error::Finalise(format!("--bump-canary: {}: {e}", path.display())))?;
    }
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
pub async fn run(f: &Finalise, at: DateTime<Utc>) -> Vec<(CheckId, Sample)> {
    let mut out = Vec::new();
    let tag = f.tag();
    let skip_rest = |out: &mut Vec<(CheckId, Sample)>, from: usize| {
        for id in &[
            CheckId::Final(FinalCheck::VersionFile),
            CheckId::Final(FinalCheck::Commit),
            CheckId::Final(FinalCheck::Tag),
            CheckId::Final(FinalCheck::Push),
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
            CheckId::Final(FinalCheck::VersionFile),
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
        out.push((
            CheckId::Final(FinalCheck::VersionFile),
            failed(at, &e, "write VERSION"),
        ));
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
    let mut files = Vec::new();
    if changed {
        files.push(f.version_file.to_string_lossy().into_owned());
    }
    let mut bumped = None;
    if let Some(dir) = &f.bump_canary {
        let kpath = kustomization_path(f, dir);
        let next = next_development_version(&f.version).unwrap_or_default();
        let r = std::fs::read_to_string(&kpath)
            .map_err(|e| e.to_string())
            .and_then(|t| bump_kustomization(&t, &next).map(|n| (t, n)))
            .and_then(|(old, new)| {
                if old != new {
                    std::fs::write(&kpath, &new).map_err(|e| e.to_string())?;
                }
                Ok(old != new)
            });
        match r {
            Ok(edited) => {
                let rel = dir
                    .join("kustomization.yaml")
                    .to_string_lossy()
                    .into_owned();
                s.evidence
                    .push(format!("canary overlay {rel} set to {next}"));
                if edited {
                    files.push(rel);
                }
                bumped = Some(next);
            }
            Err(e) => {
                let e = Error::Finalise(format!("--bump-canary {}: {e}", kpath.display()));
                out.push((
                    CheckId::Final(FinalCheck::VersionFile),
                    failed(at, &e, "bump the canary overlay"),
                ));
                skip_rest(&mut out, 1);
                return out;
            }
        }
    }
    out.push((CheckId::Final(FinalCheck::VersionFile), s));

    let message = match &bumped {
        Some(next) => format!("chore: release zai-proxy {tag}; canary {next}"),
        None => format!("chore: release zai-proxy {tag}"),
    };
    if !files.is_empty() {
        let r = async {
            let mut add = vec!["add", "--"];
            add.extend(files.iter().map(String::as_str));
            git(&f.repo, &add).await?;
            let mut commit = vec!["commit", "-q", "-m", &message, "--"];
            commit.extend(files.iter().map(String::as_str));
            git(&f.repo, &commit).await?;
            git(&f.repo, &["rev-parse", "--short", "HEAD"]).await
        }
        .await;
        match r {
            Ok(sha) => out.push((
                CheckId::Final(FinalCheck::Commit),
                sample(
                    Status::Pass,
                    at,
                    format!("{} {message}", sha.trim()),
                    "git commit",
                ),
            )),
            Err(e) => {
                out.push((
                    CheckId::Final(FinalCheck::Commit),
                    failed(at, &e, "git commit"),
                ));
                skip_rest(&mut out, 2);
                return out;
            }
        }
    } else {
        out.push((
            CheckId::Final(FinalCheck::Commit),
            Sample::skipped(
                at,
                "nothing to commit: VERSION (and the canary overlay) unchanged",
            ),
        ));
    }

    let tag_message = format!("Release zai-proxy {tag}");
    match git(&f.repo, &["tag", "-a", &tag, "-m", &tag_message]).await {
        Ok(_) => out.push((
            CheckId::Final(FinalCheck::Tag),
            sample(Status::Pass, at, tag.clone(), "git tag -a"),
        )),
        Err(e) => {
            out.push((
                CheckId::Final(FinalCheck::Tag),
                failed(at, &e, "git tag -a"),
            ));
            skip_rest(&mut out, 3);
            return out;
        }
    }

    if f.push {
        match git(&f.repo, &["push", &f.remote, &tag]).await {
            Ok(_) => out.push((
                CheckId::Final(FinalCheck::Push),
                sample(
                    Status::Pass,
                    at,
                    format!("{tag} → {}", f.remote),
                    "git push",
                ),
            )),
            Err(e) => out.push((CheckId::Final(FinalCheck::Push), failed(at, &e, "git push"))),
        }
    } else {
        out.push((
            CheckId::Final(FinalCheck::Push),
            Sample::skipped(at, "not pushed: run with --push"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_development_versions() {
        assert_eq!(
            next_development_version("1.2.1").as_deref(),
            Some("1.2.2-canary")
        );
        assert_eq!(
            next_development_version("0.9.99").as_deref(),
            Some("0.9.100-canary")
        );
        assert_eq!(next_development_version("1.2"), None);
        assert_eq!(next_development_version("1.2.x"), None);
        assert_eq!(next_development_version("1.2.1-rc1"), None);
    }

    #[test]
    fn the_overlay_tag_and_version_label_are_set_and_the_rest_kept() {
        let text = "# canary\nlabels:\n  - pairs:\n      version: \"0.2.0-canary\"\n    includeSelectors: false\nimages:\n  - name: zai-proxy\n    newName: zai-proxy\n    newTag: 0.2.0-canary\n";
        let out = bump_kustomization(text, "1.2.2-canary").unwrap();
        assert_eq!(
            out,
            "# canary\nlabels:\n  - pairs:\n      version: \"1.2.2-canary\"\n    includeSelectors: false\nimages:\n  - name: zai-proxy\n    newName: zai-proxy\n    newTag: \"1.2.2-canary\"\n"
        );
        assert!(bump_kustomization("images: []\n", "x").is_err());
        assert!(bump_kustomization("  newTag: a\n  newTag: b\n", "x").is_err());
        // The shipped overlay is bumpable.
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/k8s/overlays/canary/kustomization.yaml"
        ))
        .unwrap();
        let bumped = bump_kustomization(&shipped, "9.9.9-canary").unwrap();
        assert!(
            bumped.contains("newTag: \"9.9.9-canary\"")
                && bumped.contains("version: \"9.9.9-canary\"")
        );
    }
}
