//! Interrupted, killed, concurrent and gated runs against the in-memory platform (which keeps
//! the run record with a version, like a Deployment's resourceVersion), a scripted signal
//! source and a manual clock; and notifications to local HTTP receivers.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use zai_promoter::notify::{Notifier, Receiver};
use zai_promoter::platform::Variant::{Production as P, Test as T};
use zai_promoter::runstate::{Lease, RunRecord, Stage};
use zai_promoter::{
    Config, Gate, Interrupt, ManualClock, Mode, OnInterrupt, Outcome, Platform, Promoter,
};

const NEW_IMAGE: &str = "ronaldraygun/zai-proxy:1.2.1";
const OLD_IMAGE: &str = "ronaldraygun/zai-proxy:1.2.0";

fn config() -> Config {
    Config::from_toml("interval = \"10s\"\npost_min_duration = \"30s\"\n").unwrap()
}

fn setup() -> (FakePlatform, Script) {
    let script = Script::default();
    script.healthy(P, 0.2);
    script.healthy(T, 0.2);
    (FakePlatform::new("1.2.0", "1.2.1-canary"), script)
}

fn promoter(platform: &FakePlatform, script: &Script, clock: ManualClock) -> Promoter {
    Promoter::new(
        config(),
        Arc::new(platform.clone()),
        Box::new(ScriptedSignals(script.clone())),
        Arc::new(clock),
    )
    .operator("tester")
}

fn set_images(platform: &FakePlatform) -> usize {
    platform
        .calls()
        .iter()
        .filter(|c| c.starts_with("set_image"))
        .count()
}

/// Triggers `interrupt` when production's image is set (the rollout has begun).
fn interrupt_on_set_image(platform: &FakePlatform, interrupt: &Interrupt) {
    let i = interrupt.clone();
    *platform.on_set_image.lock().unwrap() =
        Some(Box::new(move || i.trigger("interrupted by SIGTERM")));
}

#[tokio::test]
async fn sigterm_during_the_rollout_rolls_back_by_default() {
    let (platform, script) = setup();
    let interrupt = Interrupt::new();
    interrupt_on_set_image(&platform, &interrupt);
    let report = promoter(&platform, &script, ManualClock::new(t0()))
        .interrupt(interrupt, OnInterrupt::Rollback)
        .run(Mode::Promote)
        .await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:#?}");
    assert_eq!(report.exit_code(), 3);
    assert!(
        report.reason.as_deref().unwrap().contains("SIGTERM"),
        "{:?}",
        report.reason
    );
    assert_eq!(platform.get(P).image, OLD_IMAGE);
    let record = platform.run_record().unwrap();
    assert_eq!(record.stage, Stage::Done);
    assert_eq!(record.outcome.as_deref(), Some("rolled_back"));
    assert!(record.lease.is_none(), "the lease is released at the end");
}

#[tokio::test]
async fn leave_records_the_run_and_resume_carries_it_on_with_the_recorded_baseline() {
    let (platform, script) = setup();
    let interrupt = Interrupt::new();
    interrupt_on_set_image(&platform, &interrupt);
    let first = promoter(&platform, &script, ManualClock::new(t0()))
        .interrupt(interrupt, OnInterrupt::Leave)
        .run(Mode::Promote)
        .await;
    assert_eq!(first.outcome, Outcome::Interrupted, "{first:#?}");
    assert_eq!(first.exit_code(), 4);
    assert_eq!(platform.get(P).image, NEW_IMAGE, "production left as it is");
    let record = platform.run_record().unwrap();
    assert_eq!(record.stage, Stage::Rollout);
    assert!(record.lease.is_none());
    assert_eq!(record.from_image.as_deref(), Some(OLD_IMAGE));
    assert_eq!(record.target_image.as_deref(), Some(NEW_IMAGE));
    assert!(record.baseline.captured_at.is_some());

    // Production now runs 1.2.1: a fresh run would read the wrong baseline and versions.
    // Production's latency changes; the resumed run must keep the recorded baseline.
    script.healthy(P, 0.25);
    platform.on_set_image.lock().unwrap().take();
    let second = promoter(&platform, &script, ManualClock::new(at(3600)))
        .run(Mode::Resume)
        .await;
    assert_eq!(second.outcome, Outcome::Promoted, "{second:#?}");
    assert_eq!(second.from_version.as_deref(), Some("1.2.0"));
    assert_eq!(second.to_version.as_deref(), Some("1.2.1"));
    assert_eq!(second.baseline, record.baseline);
    assert_eq!(set_images(&platform), 1, "{:?}", platform.calls());
    assert!(
        second
            .actions
            .iter()
            .any(|a| a.message.contains("resumed run") && a.message.contains("rollout")),
        "{:?}",
        second.actions
    );
    let done = platform.run_record().unwrap();
    assert_eq!((done.stage, done.resumes), (Stage::Done, 1));
    assert_eq!(done.run_id, record.run_id, "a resumed run keeps its id");

    // Nothing left to resume.
    let third = promoter(&platform, &script, ManualClock::new(at(7200)))
        .run(Mode::Resume)
        .await;
    assert_eq!(third.outcome, Outcome::Error);
    assert_eq!(third.verdict, "nothing to resume");
}

#[tokio::test]
async fn an_interrupt_before_the_image_changed_aborts_and_touches_nothing() {
    let (platform, script) = setup();
    let interrupt = Interrupt::new();
    interrupt.trigger("interrupted by SIGINT");
    let report = promoter(&platform, &script, ManualClock::new(t0()))
        .interrupt(interrupt, OnInterrupt::Rollback)
        .run(Mode::Promote)
        .await;
    assert_eq!(report.outcome, Outcome::Aborted, "{report:#?}");
    assert_eq!(report.exit_code(), 2);
    assert_eq!(set_images(&platform), 0);
    assert_eq!(platform.run_record().unwrap().stage, Stage::Done);
}

fn stored(platform: &FakePlatform, record: &RunRecord) {
    let mut r = platform.record.lock().unwrap();
    r.0 = Some(record.to_text());
    r.1 += 1;
}

fn held_by_another(stage: Stage, renewed_at: i64) -> RunRecord {
    let mut r = RunRecord::new(
        "other-run".into(),
        Lease {
            holder: "ci-runner-7/4242/other-run".into(),
            renewed_at: at(renewed_at),
            duration: Duration::from_secs(120),
        },
        at(renewed_at),
    );
    r.stage = stage;
    r.from_version = Some("1.2.0".into());
    r.to_version = Some("1.2.1".into());
    r.from_image = Some(OLD_IMAGE.into());
    r.target_image = Some(NEW_IMAGE.into());
    r
}

#[tokio::test]
async fn a_live_lease_refuses_a_second_promoter_and_an_expired_one_is_taken_over() {
    let (platform, script) = setup();
    stored(&platform, &held_by_another(Stage::Pre, 0));
    let report = promoter(&platform, &script, ManualClock::new(at(60)))
        .run(Mode::Promote)
        .await;
    assert_eq!(report.outcome, Outcome::Busy, "{report:#?}");
    assert_eq!(report.exit_code(), 5);
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("ci-runner-7/4242"),
        "{:?}",
        report.reason
    );
    assert!(platform.calls().is_empty(), "{:?}", platform.calls());
    assert_eq!(
        platform.run_record().unwrap().lease.unwrap().holder,
        "ci-runner-7/4242/other-run",
        "the holder's record is left alone"
    );

    // With --lease-wait the second promoter waits for the lease to end; the holder stopped
    // in phase 1, so the run starts again from phase 1.
    let mut waiting = config();
    waiting.run.lease_wait = Duration::from_secs(300);
    let report = Promoter::new(
        waiting,
        Arc::new(platform.clone()),
        Box::new(ScriptedSignals(script.clone())),
        Arc::new(ManualClock::new(at(60))),
    )
    .run(Mode::Promote)
    .await;
    assert_eq!(report.outcome, Outcome::Promoted, "{report:#?}");
    assert_eq!(set_images(&platform), 1);
}

#[tokio::test]
async fn of_two_promoters_that_read_together_the_one_that_writes_second_refuses() {
    let (platform, script) = setup();
    // Another promoter writes its record between this one's read and write.
    *platform.record_race.lock().unwrap() = Some(held_by_another(Stage::Pre, 0).to_text());
    let report = promoter(&platform, &script, ManualClock::new(at(1)))
        .run(Mode::Promote)
        .await;
    assert_eq!(report.outcome, Outcome::Busy, "{report:#?}");
    assert!(platform.calls().is_empty(), "{:?}", platform.calls());
    assert_eq!(platform.run_record().unwrap().run_id, "other-run");
}

#[tokio::test]
async fn a_killed_promoter_is_taken_over_where_it_stood() {
    let (platform, script) = setup();
    // The holder died after setting the image (its process was killed: nothing released).
    platform.set_image(P, NEW_IMAGE, "1.2.1").await.unwrap();
    let mut record = held_by_another(Stage::Rollout, 0);
    record.baseline.captured_at = Some(at(0));
    record.baseline.request_rate = Some(3.3);
    for q in zai_promoter::engine::baseline_queries(&config()) {
        record
            .baseline
            .p95_by_window_secs
            .insert(q.window.as_secs(), Some(0.2));
    }
    record.rollout_started = Some(at(0));
    stored(&platform, &record);
    let report = promoter(&platform, &script, ManualClock::new(at(600)))
        .run(Mode::Promote)
        .await;
    assert_eq!(report.outcome, Outcome::Promoted, "{report:#?}");
    assert_eq!(set_images(&platform), 1, "the image was not set again");
    assert_eq!(platform.get(P).image, NEW_IMAGE);
    assert_eq!(report.from_version.as_deref(), Some("1.2.0"));
    let done = platform.run_record().unwrap();
    assert_eq!(done.run_id, "other-run");
    assert_eq!(done.resumes, 1);
    assert!(
        done.decisions
            .iter()
            .any(|d| d.message.contains("stopped renewing")),
        "{:?}",
        done.decisions
    );
}

#[tokio::test]
async fn a_killed_rollback_is_finished_without_undoing_twice() {
    let (platform, script) = setup();
    // Killed after the undo landed: production already runs the old image again.
    stored(&platform, &held_by_another(Stage::RollingBack, 0));
    let report = promoter(&platform, &script, ManualClock::new(at(600)))
        .run(Mode::Promote)
        .await;
    assert_eq!(report.outcome, Outcome::RolledBack, "{report:#?}");
    assert!(!platform.calls().contains(&"undo production".to_owned()));
    assert_eq!(platform.get(P).image, OLD_IMAGE);
}

#[tokio::test]
async fn the_gate_waits_for_an_approval_and_aborts_without_one() {
    // Not approved: aborted at the timeout, production untouched.
    let (platform, script) = setup();
    let gate = Gate {
        timeout: Duration::from_secs(120),
        url: None,
    };
    let report = promoter(&platform, &script, ManualClock::new(t0()))
        .gate(Some(gate.clone()))
        .run(Mode::Promote)
        .await;
    assert_eq!(report.outcome, Outcome::Aborted, "{report:#?}");
    assert!(report.verdict.contains("gate"), "{}", report.verdict);
    assert_eq!(set_images(&platform), 0);

    // Approved while waiting (what `zai-promoter approve` writes): promoted.
    let (platform, script) = setup();
    let approver = platform.clone();
    let approving = tokio::spawn(async move {
        loop {
            let slot = approver.read_record().await.unwrap();
            if let Some(mut r) = slot.text.as_deref().map(|t| RunRecord::parse(t).unwrap())
                && r.stage == Stage::Gate
            {
                r.approval = Some(zai_promoter::runstate::Approval {
                    by: "release-manager".into(),
                    at: t0(),
                });
                let w = approver
                    .write_record(Some(&r.to_text()), &slot.version)
                    .await
                    .unwrap();
                if w != zai_promoter::platform::RecordWrite::Conflict {
                    return;
                }
            }
            tokio::task::yield_now().await;
        }
    });
    let gate = Gate {
        timeout: Duration::from_secs(3600),
        url: None,
    };
    let report = promoter(&platform, &script, ManualClock::new(t0()))
        .gate(Some(gate))
        .run(Mode::Promote)
        .await;
    approving.await.unwrap();
    assert_eq!(report.outcome, Outcome::Promoted, "{report:#?}");
    assert!(
        report
            .actions
            .iter()
            .any(|a| a.message.contains("gate approved by release-manager")),
        "{:?}",
        report.actions
    );
}

#[tokio::test]
async fn a_gate_url_answering_2xx_approves() {
    let (platform, script) = setup();
    let url = http_receiver(Behaviour::Answer(204)).url;
    let report = promoter(&platform, &script, ManualClock::new(t0()))
        .gate(Some(Gate {
            timeout: Duration::from_secs(60),
            url: Some(url),
        }))
        .run(Mode::Promote)
        .await;
    assert_eq!(report.outcome, Outcome::Promoted, "{report:#?}");
    // A URL that answers 403 never approves.
    let (platform, script) = setup();
    let url = http_receiver(Behaviour::Answer(403)).url;
    let report = promoter(&platform, &script, ManualClock::new(t0()))
        .gate(Some(Gate {
            timeout: Duration::from_secs(60),
            url: Some(url),
        }))
        .run(Mode::Promote)
        .await;
    assert_eq!(report.outcome, Outcome::Aborted, "{report:#?}");
}

// === notifications ===

#[derive(Clone, Copy)]
enum Behaviour {
    Answer(u16),
    /// Reads the request and never answers.
    Hang,
}

struct Received {
    url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

/// A local HTTP receiver on a std thread: records each request's JSON body.
fn http_receiver(behaviour: Behaviour) -> Received {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let sink = bodies.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then Content-Length bytes of body.
            let body = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break Some(buf[end + 4..end + 4 + len].to_vec());
                    }
                }
            };
            if let Some(b) = body
                && let Ok(v) = serde_json::from_slice(&b)
            {
                sink.lock().unwrap().push(v);
            }
            match behaviour {
                Behaviour::Answer(code) => {
                    let _ = write!(
                        s,
                        "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                }
                Behaviour::Hang => held.push(s),
            }
        }
    });
    Received { url, bodies }
}

async fn notified_run(
    platform: &FakePlatform,
    script: &Script,
    receivers: Vec<Receiver>,
    timeout: Duration,
) -> (zai_promoter::Report, Vec<String>) {
    let notifier = Arc::new(Notifier::new(receivers, timeout).unwrap());
    let sink = notifier.clone();
    let report = promoter(platform, script, ManualClock::new(t0()))
        .on_event(move |e| sink.send(e))
        .run(Mode::Promote)
        .await;
    let notifier = Arc::try_unwrap(notifier).ok().unwrap();
    let lines = notifier.finish(timeout * 3 + Duration::from_secs(2)).await;
    (report, lines)
}

fn events(bodies: &[serde_json::Value]) -> Vec<String> {
    bodies
        .iter()
        .map(|b| {
            let e = b["event"].as_str().unwrap_or("?");
            match e {
                "phase" => format!("phase {}", b["phase"].as_str().unwrap_or("?")),
                "finished" => format!("finished {}", b["outcome"].as_str().unwrap_or("?")),
                other => other.to_owned(),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_see_the_sequence_of_a_promotion_and_of_a_rollback() {
    let (platform, script) = setup();
    let generic = http_receiver(Behaviour::Answer(200));
    let slack = http_receiver(Behaviour::Answer(200));
    let receivers = vec![
        Receiver::parse(&generic.url).unwrap(),
        Receiver::parse(&format!("slack+{}", slack.url)).unwrap(),
    ];
    let (report, lines) = notified_run(&platform, &script, receivers, Duration::from_secs(2)).await;
    assert_eq!(report.outcome, Outcome::Promoted);
    let seen = events(&generic.bodies.lock().unwrap());
    let phases: Vec<&str> = seen
        .iter()
        .filter(|e| e.starts_with("phase") || e.starts_with("finished"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        phases,
        [
            "phase pre",
            "phase exec",
            "phase rollout",
            "phase post",
            "phase final",
            "finished promoted"
        ],
        "{seen:?}"
    );
    assert_eq!(seen.first().map(String::as_str), Some("run"), "{seen:?}");
    let bodies = generic.bodies.lock().unwrap().clone();
    let run_id = bodies[0]["run_id"].as_str().unwrap().to_owned();
    assert!(bodies.iter().all(|b| b["run"] == run_id.as_str()));
    assert!(
        bodies
            .iter()
            .any(|b| b["text"].as_str().unwrap().contains("set production image")),
        "{bodies:?}"
    );
    let slack_bodies = slack.bodies.lock().unwrap().clone();
    assert_eq!(slack_bodies.len(), bodies.len());
    let last = slack_bodies.last().unwrap();
    assert!(
        last["text"].as_str().unwrap().contains("promoted"),
        "{last}"
    );
    assert_eq!(last["blocks"][0]["type"], "section");
    assert!(lines.iter().all(|l| l.contains("0 failed")), "{lines:?}");

    // A rollback.
    let (platform, script) = setup();
    platform
        .behaviour
        .lock()
        .unwrap()
        .insert("1.2.1".into(), (false, true));
    let generic = http_receiver(Behaviour::Answer(200));
    let (report, _) = notified_run(
        &platform,
        &script,
        vec![Receiver::parse(&generic.url).unwrap()],
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(report.outcome, Outcome::RolledBack);
    let bodies = generic.bodies.lock().unwrap().clone();
    let seen = events(&bodies);
    assert_eq!(
        seen.last().map(String::as_str),
        Some("finished rolled_back")
    );
    assert!(seen.contains(&"phase rollout".to_owned()));
    assert!(!seen.contains(&"phase final".to_owned()), "{seen:?}");
    assert!(
        bodies.iter().any(|b| b["text"]
            .as_str()
            .unwrap()
            .starts_with("roll back production")),
        "{bodies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_failing_receiver_does_not_hold_the_rollback_and_is_reported() {
    let (platform, script) = setup();
    platform
        .behaviour
        .lock()
        .unwrap()
        .insert("1.2.1".into(), (false, true));
    let hanging = http_receiver(Behaviour::Hang);
    let failing = http_receiver(Behaviour::Answer(500));
    let receivers = vec![
        Receiver::parse(&hanging.url).unwrap(),
        Receiver::parse(&failing.url).unwrap(),
    ];
    let notifier = Arc::new(Notifier::new(receivers, Duration::from_millis(300)).unwrap());
    let sink = notifier.clone();
    let report = promoter(&platform, &script, ManualClock::new(t0()))
        .on_event(move |e| sink.send(e))
        .run(Mode::Promote)
        .await;
    // The rollback finished while the hanging receiver had not answered a single message.
    assert_eq!(report.outcome, Outcome::RolledBack);
    assert!(report.rollback.as_ref().unwrap().production_ready);
    assert_eq!(platform.get(P).image, OLD_IMAGE);
    let lines = Arc::try_unwrap(notifier)
        .ok()
        .unwrap()
        .finish(Duration::from_secs(2))
        .await;
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].contains("0 delivered") && lines[0].contains("timeout"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("0 delivered") && lines[1].contains("HTTP 500"),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|l| !l.contains("/hook")),
        "receiver paths (webhook secrets) are not printed: {lines:?}"
    );
    // The failing receiver was tried again (3 attempts per message).
    let tried = failing.bodies.lock().unwrap().len();
    assert!(tried >= 3, "{tried}");
}
