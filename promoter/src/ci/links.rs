//! Links from a job summary to the full reports. A summary cannot embed report.md or
//! junit.xml, so it points at them: on GitLab at the job's artifact files
//! (`$CI_JOB_URL/artifacts/file/<path>`), on GitHub at the run page whose Artifacts section
//! holds the uploaded reports (GitHub offers no link to a file inside an artifact), elsewhere
//! at the paths as written.

use std::path::{Path, PathBuf};

/// How the summary names a report file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportLinks {
    /// Prefix of a link to one file (ends with `/`); the file's path relative to `root` follows.
    pub file_base: Option<String>,
    /// The page listing every uploaded report (GitHub: the run; GitLab: the job's artifacts).
    pub artifacts: Option<String>,
    /// Paths under this directory are shown relative to it (the checkout).
    pub root: Option<PathBuf>,
}

impl ReportLinks {
    /// From the CI's environment, read through `var` (`std::env::var` at the edge, a map in
    /// tests). GitLab: `GITLAB_CI`, `CI_JOB_URL`, `CI_PROJECT_DIR`. GitHub: `GITHUB_ACTIONS`,
    /// `GITHUB_SERVER_URL`, `GITHUB_REPOSITORY`, `GITHUB_RUN_ID`, `GITHUB_WORKSPACE`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if set("GITLAB_CI").is_some()
            && let Some(job) = set("CI_JOB_URL")
        {
            let job = job.trim_end_matches('/');
            return ReportLinks {
                file_base: Some(format!("{job}/artifacts/file/")),
                artifacts: Some(format!("{job}/artifacts/browse")),
                root: set("CI_PROJECT_DIR").map(PathBuf::from),
            };
        }
        if set("GITHUB_ACTIONS").is_some()
            && let (Some(server), Some(repo), Some(run)) = (
                set("GITHUB_SERVER_URL"),
                set("GITHUB_REPOSITORY"),
                set("GITHUB_RUN_ID"),
            )
        {
            return ReportLinks {
                file_base: None,
                artifacts: Some(format!(
                    "{}/{repo}/actions/runs/{run}#artifacts",
                    server.trim_end_matches('/')
                )),
                root: set("GITHUB_WORKSPACE").map(PathBuf::from),
            };
        }
        ReportLinks::default()
    }

    /// The path as shown: relative to `root` when under it.
    pub fn shown_path(&self, path: &Path) -> String {
        let rel = self
            .root
            .as_deref()
            .and_then(|root| path.strip_prefix(root).ok())
            .unwrap_or(path);
        rel.display().to_string()
    }

    /// Markdown for one report file: a link with the file name when a file link can be made,
    /// else the path as a code span.
    pub fn file(&self, path: &Path) -> String {
        let shown = self.shown_path(path);
        match &self.file_base {
            Some(base) if Path::new(&shown).is_relative() => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| shown.clone());
                format!(
                    "[{}]({base}{})",
                    name.replace(['[', ']'], ""),
                    url_path(&shown)
                )
            }
            _ => super::markdown::code(&shown),
        }
    }

    /// A sentence pointing at every uploaded report, if the CI has such a page.
    pub fn artifacts_line(&self) -> Option<String> {
        self.artifacts
            .as_ref()
            .map(|url| format!("Full reports: [artifacts of this run]({url})."))
    }
}

/// Percent-encodes what cannot stand in a URL path (keeps `/`).
fn url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn gitlab_links_point_at_job_artifact_files() {
        let links = ReportLinks::from_env(env(&[
            ("GITLAB_CI", "true"),
            ("CI_JOB_URL", "https://gitlab.example/g/p/-/jobs/42"),
            ("CI_PROJECT_DIR", "/builds/g/p"),
        ]));
        assert_eq!(
            links.file(Path::new("/builds/g/p/reports/rehearsal/a b/report.md")),
            "[report.md](https://gitlab.example/g/p/-/jobs/42/artifacts/file/reports/rehearsal/a%20b/report.md)"
        );
        assert_eq!(
            links.artifacts_line().as_deref(),
            Some(
                "Full reports: [artifacts of this run](https://gitlab.example/g/p/-/jobs/42/artifacts/browse)."
            )
        );
    }

    #[test]
    fn github_links_point_at_the_run_and_show_relative_paths() {
        let links = ReportLinks::from_env(env(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "o/r"),
            ("GITHUB_RUN_ID", "7"),
            ("GITHUB_WORKSPACE", "/home/runner/work/r/r"),
        ]));
        assert_eq!(
            links.file(Path::new("/home/runner/work/r/r/reports/report.md")),
            "`reports/report.md`"
        );
        assert_eq!(
            links.artifacts.as_deref(),
            Some("https://github.com/o/r/actions/runs/7#artifacts")
        );
    }

    #[test]
    fn without_ci_paths_are_shown_as_given() {
        let links = ReportLinks::from_env(env(&[("GITHUB_ACTIONS", "true")]));
        assert_eq!(links, ReportLinks::default());
        assert_eq!(links.file(Path::new("out/junit.xml")), "`out/junit.xml`");
        assert_eq!(links.artifacts_line(), None);
    }
}
