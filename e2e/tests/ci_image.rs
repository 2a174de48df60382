//! The CI image (deploy/docker/Dockerfile, target `ci`) built from this workspace's binaries
//! like the proxy's image, `FROM scratch`, and one rehearsal scenario run from it with
//! `docker run` as a pipeline would: the verdict, rehearsal.json, junit.xml and the Markdown
//! summary land in a mounted directory. canary-errors is the quickest scenario (aborted in
//! phase 1) that still runs the proxy, the fake upstream, the workers and the promoter.
//! Skipped with a one-line reason without a Docker daemon; with `CI` set a missing daemon
//! fails the suite.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use zai_e2e::ci_image::{CI_IMAGE, build_ci_image, ci_binaries};
use zai_e2e::platform::docker::docker_available;
use zai_e2e::rehearsal::suite::{dependency_gate, slot};
use zai_e2e::rehearsal::summary::Summary;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ci_image_rehearses_a_scenario_into_a_mounted_directory() {
    if !dependency_gate("ci_image", docker_available().await) {
        return;
    }
    let _slot = slot().await;
    let binaries = ci_binaries().unwrap_or_else(|e| panic!("{e}"));
    tokio::task::spawn_blocking(move || build_ci_image(&binaries, CI_IMAGE))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("building the CI image: {e}"));

    let out = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let meta = std::fs::metadata(out.path()).unwrap_or_else(|e| panic!("{e}"));
    let run = tokio::task::spawn_blocking({
        let mount = format!("{}:/reports", out.path().display());
        let user = format!("{}:{}", meta.uid(), meta.gid());
        move || {
            Command::new("docker")
                .args([
                    "run",
                    "--rm",
                    "--network",
                    "host",
                    "--user",
                    &user,
                    "-v",
                    &mount,
                ])
                .args([CI_IMAGE, "--scenario", "canary-errors", "--json"])
                .args([
                    "--report-dir",
                    "/reports",
                    "--summary",
                    "/reports/summary.md",
                ])
                .output()
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|e| panic!("docker run: {e}"));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        run.status.code(),
        Some(0),
        "zai-rehearse in the CI image:\n{stderr}"
    );

    let read = |name: &str| {
        std::fs::read_to_string(out.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}\n{stderr}"))
    };
    let summary: Summary =
        serde_json::from_str(&read("rehearsal.json")).unwrap_or_else(|e| panic!("{e}"));
    assert!(summary.passed, "{summary:#?}");
    assert_eq!(summary.platform, "local");
    let scenario = &summary.scenarios[0];
    assert_eq!(
        (scenario.name.as_str(), scenario.outcome.as_str()),
        ("canary-errors", "aborted")
    );
    assert!(!scenario.decided_by.is_empty(), "{scenario:#?}");
    // stdout is rehearsal.json (--json).
    let stdout: Summary =
        serde_json::from_slice(&run.stdout).unwrap_or_else(|e| panic!("stdout: {e}"));
    assert_eq!(stdout.scenarios.len(), 1);

    let md = read("summary.md");
    assert!(
        md.starts_with("### ✅ zai-rehearse: 1/1 scenarios met their expectation"),
        "{md}"
    );
    assert!(
        md.contains("| ✓ | canary-errors | aborted | aborted |"),
        "{md}"
    );
    let junit = read("junit.xml");
    assert!(
        junit.contains("name=\"canary-errors\"") && !junit.contains("<failure"),
        "{junit}"
    );
    // The promoter's own report of the scenario, written by the promoter engine in the image.
    assert!(read("canary-errors/report.md").contains("Canary to Production Promotion Checklist"));
}
