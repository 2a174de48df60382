//! junit.xml: one testcase per check (and per trigger), failures with the reason.

use std::fmt::Write;

use super::{Report, TriggerStatus};
use crate::engine::Status;

/// XML text and attribute escaping (control characters other than tab and newline become spaces).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// Renders junit.xml.
pub fn render_junit(r: &Report) -> String {
    let mut cases = String::new();
    let (mut tests, mut failures, mut errors, mut skipped) = (0, 0, 0, 0);
    for (phase, c) in r.all_checks() {
        tests += 1;
        let _ = write!(
            cases,
            "    <testcase classname=\"zai-promoter.{}\" name=\"{}\">",
            phase.phase.key(),
            esc(&c.id)
        );
        let detail = format!(
            "{} — observed {} (expected {}); {}",
            c.title,
            if c.observed.is_empty() {
                "nothing"
            } else {
                &c.observed
            },
            c.threshold,
            c.evidence.join("; ")
        );
        match c.status {
            Status::Pass => {}
            Status::Fail | Status::NoData | Status::Inconclusive => {
                failures += 1;
                let _ = write!(
                    cases,
                    "<failure message=\"{}\" type=\"{}\">{}</failure>",
                    esc(&format!(
                        "{}: {}",
                        c.status.as_str(),
                        c.evidence
                            .first()
                            .map(String::as_str)
                            .unwrap_or(&c.observed)
                    )),
                    c.status.as_str(),
                    esc(&detail)
                );
            }
            Status::Error => {
                errors += 1;
                let _ = write!(
                    cases,
                    "<error message=\"{}\">{}</error>",
                    esc(c.evidence.first().map(String::as_str).unwrap_or("error")),
                    esc(&detail)
                );
            }
            Status::Skipped | Status::Pending => {
                skipped += 1;
                let _ = write!(
                    cases,
                    "<skipped message=\"{}\"/>",
                    esc(c
                        .evidence
                        .first()
                        .map(String::as_str)
                        .unwrap_or(c.status.as_str()))
                );
            }
        }
        cases.push_str("</testcase>\n");
    }
    for t in &r.triggers {
        tests += 1;
        let _ = write!(
            cases,
            "    <testcase classname=\"zai-promoter.trigger\" name=\"{}\">",
            esc(&t.id)
        );
        match t.status {
            TriggerStatus::Fired => {
                failures += 1;
                let _ = write!(
                    cases,
                    "<failure message=\"{}\" type=\"fired\">{} — last {} ({})</failure>",
                    esc(&format!("{} fired", t.id)),
                    esc(&t.title),
                    esc(&t.observed),
                    esc(&t.threshold)
                );
            }
            TriggerStatus::Clear | TriggerStatus::Holding => {}
            other @ (TriggerStatus::NotEvaluated | TriggerStatus::Disabled) => {
                skipped += 1;
                let _ = write!(cases, "<skipped message=\"{}\"/>", esc(other.as_str()));
            }
        }
        cases.push_str("</testcase>\n");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"zai-promoter\">\n  <testsuite name=\"zai-promoter {}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" timestamp=\"{}\">\n{cases}  </testsuite>\n</testsuites>\n",
        esc(&r.mode),
        r.started_at.format("%Y-%m-%dT%H:%M:%S")
    )
}
