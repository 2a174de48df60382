//! The compact Markdown verdict of a rehearsal run for a CI job summary (`zai-rehearse
//! --summary`, `$GITHUB_STEP_SUMMARY`): how many scenarios met their expectation, what missed
//! and why, a table of scenarios, links to rehearsal.json and each scenario's promoter report.
//! A pure function of [`Summary`] (rehearsal.json), read through the accessors at the bottom;
//! the Markdown pieces and links are the promoter's (`zai_promoter::ci`).

use std::fmt::Write as _;
use std::path::Path;

use zai_promoter::ci::{ReportLinks, Table, cell, code, details};

use super::driver::ScenarioResult;
use super::summary::Summary;

/// Renders the summary; `rehearsal_json` is where rehearsal.json was written.
pub fn render_step_summary(s: &Summary, rehearsal_json: &Path, links: &ReportLinks) -> String {
    let mut out = String::new();
    let total = s.scenarios.len();
    let met_count = s.scenarios.iter().filter(|r| met(r)).count();
    let _ = writeln!(
        out,
        "### {} zai-rehearse: {met_count}/{total} scenarios met their expectation\n",
        if s.passed { "✅" } else { "❌" }
    );
    let _ = writeln!(
        out,
        "{} platform · {} signals · {} s per checklist minute · suite {:.1} s\n",
        s.platform, s.signals, s.time_scale, s.suite_seconds
    );
    let missed: Vec<&ScenarioResult> = s.scenarios.iter().filter(|r| !met(r)).collect();
    if !missed.is_empty() {
        let _ = writeln!(out, "**Missed:**\n");
        for r in &missed {
            let _ = writeln!(
                out,
                "- **{}** expected {}, got {}",
                cell(&r.name),
                r.expected,
                r.outcome
            );
            for p in problems(r) {
                let _ = writeln!(out, "  - {p}");
            }
        }
        out.push('\n');
    }
    out.push_str(&scenario_table(s, links).render());
    out.push('\n');
    let mut reasons = String::new();
    for r in &s.scenarios {
        let _ = writeln!(
            reasons,
            "- **{}**: {}{}",
            cell(&r.name),
            r.verdict,
            reason(r).map(|x| format!(" — {x}")).unwrap_or_default()
        );
    }
    out.push_str(&details("Verdicts and reasons", &reasons));
    out.push('\n');
    let _ = writeln!(out, "Reports: {}", links.file(rehearsal_json));
    if let Some(line) = links.artifacts_line() {
        let _ = writeln!(out, "\n{line}");
    }
    out
}

fn scenario_table(s: &Summary, links: &ReportLinks) -> Table {
    let mut table = Table::new(&[
        "",
        "Scenario",
        "Expected",
        "Outcome",
        "Decided by",
        "Decision",
        "Workers ok / failed / lost",
        "Report",
    ]);
    for r in &s.scenarios {
        let (ok, failed, lost) = worker_counts(r);
        table.row_markdown(&[
            if met(r) { "✓" } else { "✗" }.to_owned(),
            cell(&r.name),
            cell(&r.expected),
            cell(&r.outcome),
            deciders(r)
                .iter()
                .map(|id| code(id.as_str()))
                .collect::<Vec<_>>()
                .join(", "),
            format!("{:.1} s", decision_seconds(r)),
            format!("{ok} / {failed} / {lost}"),
            links.file(&markdown_report(r)),
        ]);
    }
    table
}

// ---- accessors: what the summary reads from rehearsal.json ----

/// The scenario met its expectation.
fn met(r: &ScenarioResult) -> bool {
    r.passed
}

/// Why it missed its expectation.
fn problems(r: &ScenarioResult) -> &[String] {
    &r.problems
}

/// Failed checks and fired triggers of the promoter's run.
fn deciders(r: &ScenarioResult) -> &[String] {
    &r.decided_by
}

/// The promoter's reason, when it did not promote.
fn reason(r: &ScenarioResult) -> Option<&str> {
    r.reason.as_deref()
}

fn decision_seconds(r: &ScenarioResult) -> f64 {
    r.decision_seconds
}

fn worker_counts(r: &ScenarioResult) -> (u64, u64, u64) {
    (r.workers.ok, r.workers.failed, r.workers.lost)
}

/// The promoter's report.md (written beside report.json).
fn markdown_report(r: &ScenarioResult) -> std::path::PathBuf {
    r.report.with_file_name("report.md")
}
