//! Phase 5 in temporary git repositories: VERSION, commit, annotated tag, push to a bare
//! remote only when asked, and refusals with clear messages.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use zai_promoter::engine::Status;
use zai_promoter::finalise::{self, Finalise};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn setup(version: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let remote = root.path().join("remote.git");
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(
        root.path(),
        &["init", "-q", "--bare", remote.to_str().unwrap()],
    );
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["config", "user.name", "Test"]);
    git(&work, &["config", "user.email", "test@example.invalid"]);
    git(
        &work,
        &["remote", "add", "origin", remote.to_str().unwrap()],
    );
    std::fs::write(work.join("VERSION"), format!("{version}\n")).unwrap();
    git(&work, &["add", "VERSION"]);
    git(&work, &["commit", "-q", "-m", "start"]);
    (root, work, remote)
}

fn plan(work: &Path, push: bool) -> Finalise {
    Finalise {
        repo: work.to_owned(),
        version_file: "VERSION".into(),
        version: "1.2.1".into(),
        remote: "origin".into(),
        push,
        bump_canary: None,
    }
}

fn statuses(
    s: &[(zai_promoter::catalog::CheckId, zai_promoter::engine::Sample)],
) -> Vec<(String, Status)> {
    s.iter().map(|(id, s)| (id.to_string(), s.status)).collect()
}

#[tokio::test]
async fn writes_commits_tags_and_pushes_only_when_asked() {
    let (_root, work, remote) = setup("1.2.1-canary");
    let out = finalise::run(&plan(&work, false), chrono::Utc::now()).await;
    assert_eq!(
        statuses(&out),
        vec![
            ("final.version_file".into(), Status::Pass),
            ("final.commit".into(), Status::Pass),
            ("final.tag".into(), Status::Pass),
            ("final.push".into(), Status::Skipped),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(work.join("VERSION")).unwrap(),
        "1.2.1\n"
    );
    assert_eq!(
        git(&work, &["log", "-1", "--format=%s"]).trim(),
        "chore: release zai-proxy v1.2.1"
    );
    assert_eq!(git(&work, &["cat-file", "-t", "v1.2.1"]).trim(), "tag");
    assert!(git(&work, &["tag", "-n1", "v1.2.1"]).contains("Release zai-proxy v1.2.1"));
    assert!(
        git(&remote, &["tag"]).trim().is_empty(),
        "nothing pushed without --push"
    );

    let (_root, work, remote) = setup("1.2.1-canary");
    let out = finalise::run(&plan(&work, true), chrono::Utc::now()).await;
    assert_eq!(out[3].1.status, Status::Pass, "{:?}", out[3].1);
    assert_eq!(git(&remote, &["tag"]).trim(), "v1.2.1");
}

#[tokio::test]
async fn refuses_a_dirty_tree_or_an_existing_tag_and_reports_push_failures() {
    let (_root, work, _) = setup("1.2.1-canary");
    std::fs::write(work.join("notes.txt"), "wip").unwrap();
    let e = finalise::preflight(&plan(&work, false))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("dirty") && e.contains("notes.txt"), "{e}");
    let out = finalise::run(&plan(&work, false), chrono::Utc::now()).await;
    assert_eq!(out[0].1.status, Status::Fail);
    assert_eq!(out[1].1.status, Status::Skipped);
    assert_eq!(
        std::fs::read_to_string(work.join("VERSION")).unwrap(),
        "1.2.1-canary\n"
    );

    let (_root, work, _) = setup("1.2.1-canary");
    git(&work, &["tag", "v1.2.1"]);
    let e = finalise::preflight(&plan(&work, false))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("tag v1.2.1 already exists"), "{e}");

    let (_root, work, remote) = setup("1.2.1-canary");
    std::fs::remove_dir_all(&remote).unwrap();
    let out = finalise::run(&plan(&work, true), chrono::Utc::now()).await;
    assert_eq!(out[2].1.status, Status::Pass);
    assert_eq!(out[3].1.status, Status::Fail);
    assert!(
        out[3].1.evidence[0].contains("git push"),
        "{:?}",
        out[3].1.evidence
    );
}

#[tokio::test]
async fn an_unchanged_version_file_is_tagged_without_an_empty_commit() {
    let (_root, work, _) = setup("1.2.1");
    let before = git(&work, &["rev-parse", "HEAD"]);
    let out = finalise::run(&plan(&work, false), chrono::Utc::now()).await;
    assert_eq!(out[1].1.status, Status::Skipped);
    assert_eq!(out[2].1.status, Status::Pass);
    assert_eq!(git(&work, &["rev-parse", "HEAD"]), before);
}

#[tokio::test]
async fn the_canary_overlay_is_bumped_in_the_release_commit() {
    let (_root, work, _) = setup("1.2.1-canary");
    let overlay = work.join("deploy/k8s/overlays/canary");
    std::fs::create_dir_all(&overlay).unwrap();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/k8s/overlays/canary/kustomization.yaml"
    ))
    .unwrap();
    std::fs::write(overlay.join("kustomization.yaml"), &shipped).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "overlay"]);
    let mut p = plan(&work, false);
    p.bump_canary = Some("deploy/k8s/overlays/canary".into());
    finalise::preflight(&p).await.unwrap();
    let out = finalise::run(&p, chrono::Utc::now()).await;
    assert_eq!(out[1].1.status, Status::Pass, "{out:?}");
    assert_eq!(
        git(&work, &["log", "-1", "--format=%s"]).trim(),
        "chore: release zai-proxy v1.2.1; canary 1.2.2-canary"
    );
    let files = git(&work, &["show", "--name-only", "--format=", "HEAD"]);
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        ["VERSION", "deploy/k8s/overlays/canary/kustomization.yaml"]
    );
    let bumped = std::fs::read_to_string(overlay.join("kustomization.yaml")).unwrap();
    assert!(bumped.contains("newTag: \"1.2.2-canary\""), "{bumped}");
    assert!(bumped.contains("version: \"1.2.2-canary\""), "{bumped}");
    assert!(git(&work, &["status", "--porcelain"]).trim().is_empty());

    // A directory without a kustomization is refused before anything changes.
    let (_root, work, _) = setup("1.2.1-canary");
    let mut p = plan(&work, false);
    p.bump_canary = Some("nowhere".into());
    let e = finalise::preflight(&p).await.unwrap_err().to_string();
    assert!(e.contains("--bump-canary") && e.contains("nowhere"), "{e}");
}
