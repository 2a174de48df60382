//! The rehearsal's own junit.xml: one testcase per scenario, failed when the scenario missed
//! its expectation. (Each scenario's promoter junit.xml lists checks, and a bad canary's
//! failed checks are what a rehearsal expects, so those files are not a rehearsal verdict.)

use std::fmt::Write as _;

use zai_promoter::report::xml_escape as esc;

use super::summary::Summary;

/// Renders junit.xml for a rehearsal run.
pub fn render_junit(s: &Summary) -> String {
    let failures = s.scenarios.iter().filter(|r| !r.passed).count();
    let mut cases = String::new();
    for r in &s.scenarios {
        let _ = write!(
            cases,
            "    <testcase classname=\"zai-rehearse.{}\" name=\"{}\" time=\"{:.3}\">",
            esc(&s.platform),
            esc(&r.name),
            r.wall_seconds
        );
        if !r.passed {
            let message = r
                .problems
                .first()
                .cloned()
                .unwrap_or_else(|| format!("expected {}, got {}", r.expected, r.outcome));
            let _ = write!(
                cases,
                "<failure message=\"{}\" type=\"missed_expectation\">{}</failure>",
                esc(&message),
                esc(&r.problems.join("\n"))
            );
        }
        let _ = writeln!(
            cases,
            "<system-out>{}</system-out></testcase>",
            esc(&format!(
                "expected {}, outcome {} after {:.1}s; decided by [{}]; {}{}",
                r.expected,
                r.outcome,
                r.decision_seconds,
                r.decided_by.join(", "),
                r.verdict,
                r.reason
                    .as_deref()
                    .map(|x| format!(" — {x}"))
                    .unwrap_or_default()
            ))
        );
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"zai-rehearse\">\n  <testsuite name=\"zai-rehearse {} {}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{:.3}\">\n{cases}  </testsuite>\n</testsuites>\n",
        esc(&s.platform),
        esc(&s.signals),
        s.scenarios.len(),
        s.suite_seconds
    )
}
