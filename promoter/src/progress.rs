//! Progress display for the CLI: a live block redrawn in place on a terminal, plain lines
//! otherwise.

use std::io::Write;
use std::sync::Mutex;

use crate::driver::Event;
use crate::duration_serde::human;

/// Renders events to stderr.
pub struct Progress {
    tty: bool,
    drawn_lines: Mutex<usize>,
}

impl Progress {
    /// `tty`: redraw a live block; otherwise one line per event/check change.
    pub fn new(tty: bool) -> Self {
        Progress {
            tty,
            drawn_lines: Mutex::new(0),
        }
    }

    /// Renders one event as text lines (pure, for tests).
    pub fn lines(event: &Event) -> Vec<String> {
        match event {
            Event::Phase { phase, at } => {
                vec![format!("== {} ({})", phase.title(), at.format("%H:%M:%S"))]
            }
            Event::Tick {
                phase,
                elapsed,
                checks,
                triggers,
                waiting,
                time_left,
                ..
            } => {
                let mut out = Vec::new();
                let name = phase.map(|p| p.key()).unwrap_or("watch");
                let left = time_left
                    .map(|d| format!(", {} left", human(d)))
                    .unwrap_or_default();
                out.push(format!("[T+{}] {name}{left}", human(*elapsed)));
                for (id, s) in checks {
                    out.push(format!("  {id:<34} {}", s.summary()));
                }
                for (id, s) in triggers {
                    out.push(format!("  {id:<34} {}", s.summary()));
                }
                if checks.is_empty() {
                    for w in waiting {
                        out.push(format!("  waiting: {w}"));
                    }
                }
                out
            }
            Event::Action { at, message } => {
                vec![format!("-> {} {message}", at.format("%H:%M:%S"))]
            }
            Event::Run { run_id, at, note } => {
                vec![format!("-> {} run {run_id}: {note}", at.format("%H:%M:%S"))]
            }
            Event::Finished { outcome, verdict } => {
                vec![format!("== {}: {verdict}", outcome.as_str())]
            }
        }
    }

    /// Shows one event.
    pub fn show(&self, event: &Event) {
        let lines = Self::lines(event);
        let mut err = std::io::stderr().lock();
        let mut drawn = self.drawn_lines.lock().unwrap_or_else(|p| p.into_inner());
        let is_tick = matches!(event, Event::Tick { .. });
        if self.tty && *drawn > 0 {
            // Move up over the previous live block and clear it.
            let _ = write!(err, "\x1b[{}A\x1b[J", *drawn);
        }
        for l in &lines {
            let _ = writeln!(err, "{l}");
        }
        *drawn = if self.tty && is_tick { lines.len() } else { 0 };
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;

    use crate::catalog::{CheckId, RolloutCheck};

    use super::*;
    use crate::catalog::Phase;
    use crate::engine::{Sample, Status};

    #[test]
    fn a_tick_shows_phase_checks_and_time_left() {
        let mut s = Sample::new(Status::NoData, Utc::now());
        s.observed = "12 requests".into();
        s.threshold = ">= 50".into();
        s.evidence
            .push("12 test requests in 5m < min_requests 50".into());
        let lines = Progress::lines(&Event::Tick {
            phase: Some(Phase::Rollout),
            at: Utc::now(),
            elapsed: Duration::from_secs(150),
            checks: vec![(CheckId::Rollout(RolloutCheck::ErrorRate), s)],
            triggers: Vec::new(),
            waiting: Vec::new(),
            time_left: Some(Duration::from_secs(450)),
        });
        assert_eq!(lines[0], "[T+2m 30s] rollout, 7m 30s left");
        assert!(lines[1].contains("rollout.error_rate"));
        assert!(
            lines[1].contains("… no_data 12 requests (>= 50) — 12 test requests"),
            "{}",
            lines[1]
        );
    }
}
