//! report.md: the seed checklist with ✓/✗/… and values, and the sign-off block filled in.

use std::fmt::Write;

use super::Report;
use crate::engine::Status;

/// Renders report.md.
pub fn render_markdown(r: &Report) -> String {
    let mut out = String::new();
    let versions = match (&r.from_version, &r.to_version) {
        (Some(f), Some(t)) => format!(" — zai-proxy {f} → {t}"),
        (None, Some(t)) => format!(" — zai-proxy → {t}"),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "# Canary to Production Promotion Checklist{versions}\n"
    );
    let _ = writeln!(out, "- **Outcome:** {} — {}", r.outcome.as_str(), r.verdict);
    if let Some(reason) = &r.reason {
        let _ = writeln!(out, "- **Reason:** {reason}");
    }
    let _ = writeln!(
        out,
        "- **Mode:** {}{} · **Platform:** {} · **Signals:** {}",
        r.mode,
        if r.dry_run { " (dry run)" } else { "" },
        r.sign_off.platform,
        r.signals
    );
    let _ = writeln!(
        out,
        "- **Started:** {} · **Decided:** {}",
        r.started_at.to_rfc3339(),
        r.decided_at.to_rfc3339()
    );
    let _ = writeln!(
        out,
        "\nLegend: ✓ pass · ✗ fail · … no data · ! error · – skipped · (blank) not reached\n"
    );
    for p in &r.phases {
        let _ = writeln!(out, "## {}\n", p.title);
        for c in &p.checks {
            let mut line = format!("- [{}] {}", c.status.mark(), c.title);
            if !c.observed.is_empty() {
                let _ = write!(line, " — {}", c.observed);
            }
            if !c.threshold.is_empty() {
                let _ = write!(line, " (expected {})", c.threshold);
            }
            let _ = writeln!(out, "{line} `{}`", c.id);
            if c.status != Status::Pass {
                for e in c.evidence.iter().take(5) {
                    let _ = writeln!(out, "  - {e}");
                }
            }
        }
        out.push('\n');
    }
    let _ = writeln!(out, "## Rollback Triggers\n");
    for t in &r.triggers {
        let mark = t.status.mark();
        let mut line = format!("- [{mark}] {} — {}", t.title, t.status);
        if !t.observed.is_empty() {
            let _ = write!(line, ", last {}", t.observed);
        }
        if let (Some(first), Some(fired)) = (t.first_seen, t.fired_at) {
            let _ = write!(
                line,
                ", first seen {}, fired {}",
                first.format("%H:%M:%S"),
                fired.format("%H:%M:%S")
            );
        }
        let _ = writeln!(out, "{line} `{}`", t.id);
    }
    if let Some(fh) = &r.first_hour {
        let _ = writeln!(
            out,
            "\n## Post-Promotion Monitoring (First Hour)\n\n{} after {} of {}\n",
            fh.status,
            crate::duration_serde::human(fh.watched),
            crate::duration_serde::human(fh.duration)
        );
        for t in &fh.triggers {
            let mark = t.status.mark();
            let last = if t.observed.is_empty() {
                String::new()
            } else {
                format!(", last {}", t.observed)
            };
            let _ = writeln!(
                out,
                "- [{mark}] {} — {}{last} `{}`",
                t.title, t.status, t.id
            );
        }
    }
    if let Some(rb) = &r.rollback {
        let _ = writeln!(out, "\n## Rollback\n");
        let _ = writeln!(out, "- Reason: {}", rb.reason);
        let _ = writeln!(
            out,
            "- Production ready and healthy again: {}",
            if rb.production_ready { "yes" } else { "NO" }
        );
        if let Some(img) = &rb.production_image {
            let _ = writeln!(out, "- Production image: {img}");
        }
        let _ = writeln!(
            out,
            "- Canary scaled down: {}",
            if rb.canary_scaled_down { "yes" } else { "no" }
        );
        for s in &rb.steps {
            let _ = writeln!(out, "  - {s}");
        }
    }
    if !r.actions.is_empty() {
        let _ = writeln!(out, "\n## Actions\n");
        for a in &r.actions {
            let _ = writeln!(out, "- {} {}", a.at.format("%H:%M:%S"), a.message);
        }
    }
    if !r.signal_gaps.is_empty() {
        let _ = writeln!(
            out,
            "\n## Signal gaps\n\nWhat could not be collected; the ticks listed judged without it.\n"
        );
        for g in &r.signal_gaps {
            let _ = writeln!(
                out,
                "- {} ({} ticks, {}–{})",
                g.message,
                g.ticks,
                g.first_at.format("%H:%M:%S"),
                g.last_at.format("%H:%M:%S")
            );
        }
    }
    let date = r.sign_off.at.format("%Y-%m-%d %H:%M UTC");
    let _ = writeln!(out, "\n## Sign-off\n");
    let who = format!("{}@{} (zai-promoter)", r.sign_off.by, r.sign_off.host);
    match r.outcome {
        super::Outcome::Promoted => {
            let _ = writeln!(out, "Promotion completed by: {who} Date: {date}\n");
        }
        _ => {
            let _ = writeln!(
                out,
                "Promotion completed by: — ({}) Date: {date}\n",
                r.outcome.as_str()
            );
        }
    }
    let _ = writeln!(
        out,
        "Verification completed by: {who} on {} Date: {date}\n",
        r.sign_off.platform
    );
    let _ = writeln!(
        out,
        "Notes/Issues: {}",
        r.reason.as_deref().unwrap_or("none")
    );
    out
}
