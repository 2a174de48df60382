//! The verdict where CI users look: Markdown building blocks for job summaries, links from a
//! summary to the full reports (GitHub run artifacts, GitLab job artifacts), and where a
//! summary is written (`--summary FILE`, `$GITHUB_STEP_SUMMARY`).
//!
//! The renderings themselves are pure functions of a report: `report::step_summary` for
//! `zai-promoter`, `zai_e2e::rehearsal::step_summary` for `zai-rehearse`; both use these
//! pieces, so the table code exists once.

pub mod links;
pub mod markdown;
pub mod targets;

pub use links::ReportLinks;
pub use markdown::{Table, cell, code, could_not_run, details};
pub use targets::{STEP_SUMMARY_ENV, SummaryTarget, summary_targets, write_summary};
