//! Where a summary goes: the file given with `--summary` (replaced) and `$GITHUB_STEP_SUMMARY`
//! when it is set (appended to, as GitHub expects: every step of a job adds to one file).
//! The same file named both ways is written once, appended to.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// GitHub Actions' job-summary file.
pub const STEP_SUMMARY_ENV: &str = "GITHUB_STEP_SUMMARY";

/// One file to write the summary to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryTarget {
    /// The file.
    pub path: PathBuf,
    /// Append (job summary) or replace (`--summary`).
    pub append: bool,
}

/// The files to write: `flag` (from `--summary`) replaced, `step_summary` (the value of
/// `$GITHUB_STEP_SUMMARY`; empty means unset) appended to.
pub fn summary_targets(flag: Option<&Path>, step_summary: Option<&str>) -> Vec<SummaryTarget> {
    let step = step_summary
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let mut targets = Vec::new();
    if let Some(path) = flag
        && step.as_deref() != Some(path)
    {
        targets.push(SummaryTarget {
            path: path.to_path_buf(),
            append: false,
        });
    }
    if let Some(path) = step {
        targets.push(SummaryTarget { path, append: true });
    }
    targets
}

/// Writes `markdown` to every target (creating missing parent directories of `--summary`).
/// Every target is tried; the first failure is returned.
pub fn write_summary(markdown: &str, targets: &[SummaryTarget]) -> Result<()> {
    let mut first_error = None;
    for target in targets {
        if let Err(source) = write_one(markdown, target) {
            first_error.get_or_insert(Error::Report {
                path: target.path.clone(),
                source,
            });
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn write_one(markdown: &str, target: &SummaryTarget) -> std::io::Result<()> {
    if target.append {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&target.path)?;
        // A blank line keeps this summary apart from an earlier step's.
        file.write_all(b"\n")?;
        file.write_all(markdown.as_bytes())
    } else {
        if let Some(parent) = target.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target.path, markdown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_is_replaced_step_summary_appended_and_the_same_file_written_once() {
        assert_eq!(summary_targets(None, None), vec![]);
        assert_eq!(summary_targets(None, Some(" ")), vec![]);
        assert_eq!(
            summary_targets(Some(Path::new("s.md")), Some("/gh/step")),
            vec![
                SummaryTarget {
                    path: "s.md".into(),
                    append: false
                },
                SummaryTarget {
                    path: "/gh/step".into(),
                    append: true
                }
            ]
        );
        assert_eq!(
            summary_targets(Some(Path::new("/gh/step")), Some("/gh/step")),
            vec![SummaryTarget {
                path: "/gh/step".into(),
                append: true
            }]
        );
    }

    #[test]
    fn appends_keep_earlier_steps_and_replacing_creates_the_directory() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let step = dir.path().join("step_summary");
        std::fs::write(&step, "earlier step\n").unwrap_or_else(|e| panic!("{e}"));
        let own = dir.path().join("out/summary.md");
        let targets = summary_targets(Some(&own), step.to_str());
        write_summary("# verdict\n", &targets).unwrap_or_else(|e| panic!("{e}"));
        write_summary("# verdict\n", &targets).unwrap_or_else(|e| panic!("{e}"));
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(&own), "# verdict\n");
        assert_eq!(read(&step), "earlier step\n\n# verdict\n\n# verdict\n");
    }

    #[test]
    fn an_unwritable_target_is_reported_with_its_path_and_the_others_written() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap_or_else(|e| panic!("{e}"));
        let step = dir.path().join("step");
        let bad = blocker.join("summary.md");
        let err = write_summary("x\n", &summary_targets(Some(&bad), step.to_str()))
            .err()
            .unwrap_or_else(|| panic!("expected an error"));
        assert!(err.to_string().contains("file/summary.md"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&step).ok().as_deref(),
            Some("\nx\n")
        );
    }
}
