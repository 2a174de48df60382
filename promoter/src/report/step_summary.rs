//! The compact Markdown verdict for a CI job summary (`--summary`, `$GITHUB_STEP_SUMMARY`):
//! the outcome, what decided it with its evidence, a table of phases and triggers, every
//! check in a collapsible table, and links to the full reports. A pure function of the
//! [`Report`]; it reads the report through the small accessors at the bottom of this file.

use std::fmt::Write as _;
use std::path::Path;

use super::{CheckReport, Outcome, PhaseReport, Report, TriggerReport, TriggerStatus};
use crate::ci::{ReportLinks, Table, code, could_not_run, details};
use crate::engine::Status;

/// Evidence lines shown per deciding check (the rest are in report.md).
const EVIDENCE_LINES: usize = 3;

/// The files of one report directory, as `write_to` names them.
pub const REPORT_FILES: [&str; 3] = ["report.md", "report.json", "junit.xml"];

/// Renders the summary. `report_dir` is where report.md/json and junit.xml were written
/// (`None`: no report files to link).
pub fn render_step_summary(r: &Report, report_dir: Option<&Path>, links: &ReportLinks) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### {} zai-promoter {}: {}{}\n",
        outcome_icon(r),
        r.mode,
        r.outcome.as_str().replace('_', " "),
        versions(r)
    );
    let _ = writeln!(out, "{}\n", r.verdict);
    let deciders = deciders(r);
    if let Some(reason) = &r.reason {
        let _ = writeln!(out, "**Reason:** {reason}\n");
    }
    if !deciders.is_empty() {
        let _ = writeln!(out, "**Decided by:**\n");
        for d in &deciders {
            let _ = write!(
                out,
                "- {} {} — {}",
                code(d.id),
                d.title,
                d.observed_or_nothing()
            );
            if !d.threshold.is_empty() {
                let _ = write!(out, " (expected {})", d.threshold);
            }
            out.push('\n');
            for e in d.evidence.iter().take(EVIDENCE_LINES) {
                let _ = writeln!(out, "  - {e}");
            }
            if d.evidence.len() > EVIDENCE_LINES {
                let _ = writeln!(
                    out,
                    "  - … {} more in report.md",
                    d.evidence.len() - EVIDENCE_LINES
                );
            }
        }
        out.push('\n');
    }
    out.push_str(&phase_table(r).render());
    out.push('\n');
    let _ = writeln!(
        out,
        "{} · platform {} · signals {}{}\n",
        run_window(r),
        r.sign_off.platform,
        r.signals,
        if r.dry_run { " · dry run" } else { "" }
    );
    out.push_str(&details(
        "All checks and triggers",
        &check_table(r).render(),
    ));
    out.push('\n');
    match report_dir {
        Some(dir) => {
            let files: Vec<String> = REPORT_FILES
                .iter()
                .map(|f| links.file(&dir.join(f)))
                .collect();
            let _ = writeln!(out, "Reports: {}", files.join(" · "));
        }
        None => {
            let _ = writeln!(out, "No report files written (give `--report-dir`).");
        }
    }
    if let Some(line) = links.artifacts_line() {
        let _ = writeln!(out, "\n{line}");
    }
    out
}

/// The summary of a run that could not start (configuration, cluster unreachable).
pub fn render_error_summary(mode: &str, message: &str) -> String {
    could_not_run(&format!("zai-promoter {mode}"), message)
}

fn phase_table(r: &Report) -> Table {
    let mut table = Table::new(&["", "Phase", "Checks passed", "Not passing"]);
    for p in &r.phases {
        let checks = &p.checks;
        let reached = checks
            .iter()
            .filter(|c| c.status != Status::Pending)
            .count();
        let passed = checks.iter().filter(|c| c.status == Status::Pass).count();
        let not_passing: Vec<String> = checks
            .iter()
            .filter(|c| !matches!(c.status, Status::Pass | Status::Pending))
            .map(|c| format!("{} {}", code(&c.id), c.status.as_str()))
            .collect();
        let count = if reached == 0 {
            "not reached".to_owned()
        } else {
            format!("{passed}/{}", checks.len())
        };
        table.row_markdown(&[
            phase_mark(p).to_owned(),
            p.title.clone(),
            count,
            not_passing.join(", "),
        ]);
    }
    let clear = r
        .triggers
        .iter()
        .filter(|t| t.status == TriggerStatus::Clear)
        .count();
    let not_clear: Vec<String> = r
        .triggers
        .iter()
        .filter(|t| !matches!(t.status, TriggerStatus::Clear | TriggerStatus::Disabled))
        .map(|t| format!("{} {}", code(&t.id), t.status))
        .collect();
    table.row_markdown(&[
        trigger_mark(r.triggers.iter().map(|t| t.status)).to_owned(),
        "Rollback triggers".to_owned(),
        format!("{clear}/{} clear", r.triggers.len()),
        not_clear.join(", "),
    ]);
    table
}

fn check_table(r: &Report) -> Table {
    let mut table = Table::new(&["", "Check", "Observed", "Expected"]);
    for (_, c) in r.all_checks() {
        table.row_markdown(&[
            c.status.mark().trim().to_owned(),
            format!("{} {}", code(&c.id), crate::ci::cell(&c.title)),
            crate::ci::cell(&c.observed),
            crate::ci::cell(&c.threshold),
        ]);
    }
    for t in &r.triggers {
        table.row_markdown(&[
            trigger_mark(std::iter::once(t.status)).to_owned(),
            format!("{} {}", code(&t.id), crate::ci::cell(&t.title)),
            crate::ci::cell(&format!("{}: {}", t.status, t.observed)),
            crate::ci::cell(&t.threshold),
        ]);
    }
    table
}

// ---- accessors: what the summary reads from the report ----

/// What decided a run: a failed check or a fired trigger, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decider<'a> {
    /// Check or trigger id.
    pub id: &'a str,
    /// Checklist wording.
    pub title: &'a str,
    /// Last observed value.
    pub observed: &'a str,
    /// Threshold, as text.
    pub threshold: &'a str,
    /// Evidence lines.
    pub evidence: Vec<String>,
}

impl Decider<'_> {
    fn observed_or_nothing(&self) -> &str {
        if self.observed.is_empty() {
            "nothing observed"
        } else {
            self.observed
        }
    }
}

/// Failed checks and fired triggers, in report order; when there are none and the run did
/// not succeed, the checks without a verdict (no data, error) that ended it.
pub fn deciders(r: &Report) -> Vec<Decider<'_>> {
    let mut found: Vec<Decider<'_>> = r
        .all_checks()
        .filter(|(_, c)| c.status == Status::Fail)
        .map(|(_, c)| check_decider(c))
        .chain(r.triggers.iter().filter(|t| fired(t)).map(trigger_decider))
        .collect();
    if found.is_empty() && !succeeded(r) {
        found = r
            .all_checks()
            .filter(|(_, c)| matches!(c.status, Status::NoData | Status::Error))
            .map(|(_, c)| check_decider(c))
            .collect();
    }
    found
}

fn check_decider(c: &CheckReport) -> Decider<'_> {
    Decider {
        id: &c.id,
        title: &c.title,
        observed: &c.observed,
        threshold: &c.threshold,
        evidence: check_evidence(c),
    }
}

fn trigger_decider(t: &TriggerReport) -> Decider<'_> {
    Decider {
        id: &t.id,
        title: &t.title,
        observed: &t.observed,
        threshold: &t.threshold,
        evidence: trigger_evidence(t),
    }
}

/// A check's evidence lines.
fn check_evidence(c: &CheckReport) -> Vec<String> {
    c.evidence.clone()
}

/// A fired trigger's evidence: how long its condition held and when it fired.
fn trigger_evidence(t: &TriggerReport) -> Vec<String> {
    let mut held = format!(
        "condition held in {} sample{}",
        t.held_samples,
        if t.held_samples == 1 { "" } else { "s" }
    );
    if !t.hold_for.is_zero() {
        let _ = write!(
            held,
            ", required for {}",
            humantime::format_duration(t.hold_for)
        );
    }
    if !t.window.is_zero() {
        let _ = write!(held, ", {} window", humantime::format_duration(t.window));
    }
    let mut lines = vec![held];
    if let (Some(first), Some(fired)) = (t.first_seen, t.fired_at) {
        lines.push(format!(
            "first seen {}, fired {}",
            first.format("%H:%M:%S"),
            fired.format("%H:%M:%S")
        ));
    }
    lines
}

fn fired(t: &TriggerReport) -> bool {
    t.status == TriggerStatus::Fired
}

fn succeeded(r: &Report) -> bool {
    r.exit_code() == 0
}

fn outcome_icon(r: &Report) -> &'static str {
    match r.outcome {
        Outcome::Promoted | Outcome::Passed => "✅",
        Outcome::DryRun if r.exit_code() == 0 => "✅",
        Outcome::Error => "⚠️",
        _ => "❌",
    }
}

fn phase_mark(p: &PhaseReport) -> &'static str {
    match p.status {
        Status::Pending => "",
        s => s.mark(),
    }
}

fn trigger_mark(mut statuses: impl Iterator<Item = TriggerStatus> + Clone) -> &'static str {
    if statuses.clone().any(|s| s == TriggerStatus::Fired) {
        "✗"
    } else if statuses.any(|s| s == TriggerStatus::Holding) {
        "…"
    } else {
        "✓"
    }
}

fn versions(r: &Report) -> String {
    match (&r.from_version, &r.to_version) {
        (Some(f), Some(t)) => format!(" — zai-proxy {f} → {t}"),
        (None, Some(t)) => format!(" — zai-proxy → {t}"),
        _ => String::new(),
    }
}

fn run_window(r: &Report) -> String {
    let secs = (r.decided_at - r.started_at).num_seconds().max(0);
    format!(
        "Started {} · decided after {}",
        r.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        humantime::format_duration(std::time::Duration::from_secs(secs as u64))
    )
}
