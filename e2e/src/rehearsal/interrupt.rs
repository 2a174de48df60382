//! Rehearsals that interrupt the promoter the way CI does: the `zai-promoter` binary runs as
//! its own process against the scenario's cluster (kubeconfig, pod proxy, scraped signals),
//! is stopped with SIGTERM or killed with SIGKILL at a seeded random point after production's
//! image changed, and is run again as a retried CI job would be (`resume`, or `promote
//! --lease-wait`). Optionally a second promoter is started together with the first: exactly
//! one may act, the other must exit 5.
//!
//! Every run also notifies a local HTTP receiver (`--notify`): each run must announce itself
//! and the last message must be the final decision.
//!
//! The scenario's verdict is the last run's report; every run's exit code, and what each
//! should have been, is checked here.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use zai_promoter::{Config, Report, Variant};

use super::scenario::NEW_VERSION;
use crate::Error;
use crate::platform::PlatformEvent;
use crate::platform::local::binary::workspace_binary;

/// Which signal ends the first promoter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KillSignal {
    /// SIGTERM: the promoter stops at its next safe point.
    Term,
    /// SIGKILL: the process ends at once; its lease is left to expire.
    Kill,
}

/// How a scenario interrupts its promoter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterruptPlan {
    /// The signal.
    pub signal: KillSignal,
    /// `--on-interrupt leave` (a SIGTERM then leaves the run for `resume`); default rollback.
    #[serde(default)]
    pub leave: bool,
    /// Start a second promoter together with the first.
    #[serde(default)]
    pub concurrent: bool,
}

/// Exit codes of the promoter (docs/PROMOTER.md).
const ROLLED_BACK: i32 = 3;
const INTERRUPTED: i32 = 4;
const BUSY: i32 = 5;

/// What the runs came to.
pub struct Interrupted {
    /// The last run's report.
    pub report: Report,
    /// What went differently from the plan (empty: as planned).
    pub problems: Vec<String>,
    /// One line per run: how it was started and how it ended.
    pub runs: Vec<String>,
}

/// A local notification receiver: keeps every JSON body POSTed to it.
struct Receiver {
    url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl Receiver {
    async fn start() -> Result<Receiver, Error> {
        use axum::routing::post;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}/notify", listener.local_addr()?);
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = bodies.clone();
        let app = axum::Router::new().route(
            "/notify",
            post(move |axum::Json(v): axum::Json<serde_json::Value>| {
                let sink = sink.clone();
                async move {
                    if let Ok(mut b) = sink.lock() {
                        b.push(v);
                    }
                    "ok"
                }
            }),
        );
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
        });
        Ok(Receiver { url, bodies, stop })
    }

    fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One started promoter: its process, its output directory, its number (`runN`).
struct Started {
    child: Child,
    dir: PathBuf,
    number: usize,
}

struct Runner {
    bin: PathBuf,
    notify: String,
    config: PathBuf,
    kubeconfig: PathBuf,
    repo: PathBuf,
    dir: PathBuf,
    signals: Vec<String>,
    started: usize,
}

impl Runner {
    fn spawn(&mut self, args: &[&str]) -> Result<Started, Error> {
        self.started += 1;
        let out = self.dir.join(format!("run{}", self.started));
        std::fs::create_dir_all(&out)?;
        let log = std::fs::File::create(out.join("promoter.log"))?;
        let stdout = std::fs::File::create(out.join("stdout.txt"))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--config")
            .arg(&self.config)
            .args(&self.signals)
            .arg("--report-dir")
            .arg(&out)
            .args(["--operator", "zai-rehearse", "--notify", &self.notify])
            .args(args)
            .arg("--repo")
            .arg(&self.repo)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info")
            .env_remove("GITHUB_STEP_SUMMARY")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| Error::Setup(format!("starting {}: {e}", self.bin.display())))?;
        Ok(Started {
            child,
            dir: out,
            number: self.started,
        })
    }
}

fn code(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "ended".into(),
    }
}

async fn wait(
    child: &mut Child,
    limit: Duration,
    what: &str,
) -> Result<std::process::ExitStatus, Error> {
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => Ok(status?),
        Err(_) => {
            let _ = child.kill().await;
            Err(Error::Setup(format!("{what} did not end within {limit:?}")))
        }
    }
}

fn read_report(dir: &Path) -> Result<Report, Error> {
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Setup(format!("no report at {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Error::Setup(format!("{}: {e}", path.display())))
}

/// Runs the promoter binary under `plan`: writes its configuration next to the reports,
/// waits for production's image change, interrupts it after a seeded delay and runs it again
/// when the plan calls for it.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    plan: &InterruptPlan,
    config: &Config,
    mut events: tokio::sync::broadcast::Receiver<PlatformEvent>,
    kubeconfig: &Path,
    repo: &Path,
    dir: &Path,
    signals: Vec<String>,
    seed: u64,
) -> Result<Interrupted, Error> {
    std::fs::create_dir_all(dir)?;
    let config_path = dir.join("promoter.toml");
    let text = config
        .to_toml()
        .map_err(|e| Error::Setup(format!("promoter configuration: {e}")))?;
    std::fs::write(&config_path, text)?;
    let receiver = Receiver::start().await?;
    let mut runner = Runner {
        notify: receiver.url.clone(),
        bin: workspace_binary(
            "zai-promoter",
            "zai-promoter",
            Some("ZAI_PROMOTER_BIN"),
            false,
        )?,
        config: config_path,
        kubeconfig: kubeconfig.to_owned(),
        repo: repo.to_owned(),
        dir: dir.to_owned(),
        signals,
        started: 0,
    };
    let mut rng = crate::seed::rng(seed, "interrupt", 0);
    let mut problems = Vec::new();
    let mut runs = Vec::new();
    let leave = if plan.leave { "leave" } else { "rollback" };
    let promote = ["promote", "--on-interrupt", leave];

    let mut first = runner.spawn(&promote)?;
    if plan.concurrent {
        let mut other = runner.spawn(&promote)?;
        // One of the two claims the run; the other must refuse at once with exit 5. The one
        // still running is `first` from here on, the refused one `other`.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut refused = None;
        while refused.is_none() && Instant::now() < deadline {
            if let Some(s) = first.child.try_wait()? {
                refused = Some(s);
                std::mem::swap(&mut first, &mut other);
            } else if let Some(s) = other.child.try_wait()? {
                refused = Some(s);
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        match refused {
            None => problems.push("two promoters started together both kept running".to_owned()),
            Some(status) => {
                runs.push(format!(
                    "run{} (started together): {}",
                    other.number,
                    code(status)
                ));
                if status.code() != Some(BUSY) {
                    problems.push(format!(
                        "of two promoters started together one ended with {} instead of exit {BUSY}",
                        code(status)
                    ));
                }
                if let Ok(r) = read_report(&other.dir)
                    && r.outcome != zai_promoter::Outcome::Busy
                {
                    problems.push(format!(
                        "the refused promoter reported {}",
                        r.outcome.as_str()
                    ));
                }
            }
        }
    }

    // Wait for the rollout to begin (the image change), or for the promoter to end first.
    let image_changed = async {
        loop {
            match events.recv().await {
                Ok(PlatformEvent::SetImage {
                    variant: Variant::Production,
                    image,
                }) if image.ends_with(NEW_VERSION) => return true,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
            }
        }
    };
    let limit = config.judge.deadline + config.no_data_deadline + Duration::from_secs(60);
    let changed = tokio::select! {
        changed = image_changed => changed,
        status = first.child.wait() => {
            let status = status?;
            runs.push(format!("run: {} before the image changed", code(status)));
            problems.push(format!("the promoter ended ({}) before the rollout began", code(status)));
            false
        }
        () = tokio::time::sleep(limit) => {
            problems.push(format!("the image did not change within {limit:?}"));
            false
        }
    };
    if !changed {
        let _ = first.child.start_kill();
        let _ = first.child.wait().await;
        let report = read_report(&first.dir)?;
        return Ok(Interrupted {
            report,
            problems,
            runs,
        });
    }

    // A seeded point of the rollout and verification: rollout + post take at least
    // post_min_duration after the image change.
    let span = config.post_min_duration.as_secs_f64().max(1.0);
    let delay = Duration::from_secs_f64(rng.random_range(0.05..0.9) * span);
    tokio::time::sleep(delay).await;
    let pid = first
        .child
        .id()
        .map(|p| nix::unistd::Pid::from_raw(p as i32));
    let sig = match plan.signal {
        KillSignal::Term => nix::sys::signal::Signal::SIGTERM,
        KillSignal::Kill => nix::sys::signal::Signal::SIGKILL,
    };
    let already = first.child.try_wait()?;
    if let (None, Some(pid)) = (already, pid) {
        nix::sys::signal::kill(pid, sig)
            .map_err(|e| Error::Setup(format!("sending {sig}: {e}")))?;
    }
    let outer = config.rollback_timeout + config.post_deadline + Duration::from_secs(60);
    let status = wait(&mut first.child, outer, "the interrupted promoter").await?;
    runs.push(format!(
        "run{}: {sig} {:.1}s after the image changed → {}",
        first.number,
        delay.as_secs_f64(),
        code(status)
    ));
    if already.is_some() {
        problems.push(format!(
            "the promoter had already ended ({}) when the {sig} was due; nothing was interrupted",
            code(status)
        ));
    }
    let rerun: Option<Vec<String>> = match (plan.signal, plan.leave) {
        (KillSignal::Term, false) => {
            if status.code() != Some(ROLLED_BACK) {
                problems.push(format!(
                    "SIGTERM with --on-interrupt rollback ended with {}, expected exit {ROLLED_BACK}",
                    code(status)
                ));
            }
            None
        }
        (KillSignal::Term, true) => {
            if status.code() != Some(INTERRUPTED) {
                problems.push(format!(
                    "SIGTERM with --on-interrupt leave ended with {}, expected exit {INTERRUPTED}",
                    code(status)
                ));
            }
            Some(vec!["resume".into()])
        }
        (KillSignal::Kill, _) => {
            // The retried job: waits for the dead promoter's lease, then takes the run over.
            let wait = config.run.lease * 3;
            Some(vec![
                "promote".into(),
                "--lease-wait".into(),
                format!("{}s", wait.as_secs()),
            ])
        }
    };
    let mut last_dir = first.dir.clone();
    if let Some(args) = rerun {
        if plan.signal == KillSignal::Term
            && let Err(e) = read_report(&last_dir)
        {
            problems.push(format!("the interrupted promoter wrote no report: {e}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut again = runner.spawn(&args)?;
        let limit = config.run.lease * 3
            + config.rollout_deadline
            + config.post_deadline
            + config.rollback_timeout
            + Duration::from_secs(60);
        let status = wait(&mut again.child, limit, "the re-run promoter").await?;
        runs.push(format!(
            "run{} ({}): {}",
            runner.started,
            args.join(" "),
            code(status)
        ));
        last_dir = again.dir;
    }
    let report = read_report(&last_dir)?;
    problems.extend(check_notifications(
        &receiver.bodies(),
        runner.started,
        &report,
    ));
    if plan.signal == KillSignal::Kill || plan.leave {
        let resumed = report
            .actions
            .iter()
            .any(|a| a.message.starts_with("resumed run"));
        if !resumed {
            problems.push("the re-run did not carry the recorded run on".to_owned());
        }
    }
    Ok(Interrupted {
        report,
        problems,
        runs,
    })
}

/// Every run announced itself (`run`), and the last message is the final decision.
fn check_notifications(bodies: &[serde_json::Value], runs: usize, last: &Report) -> Vec<String> {
    let mut problems = Vec::new();
    let announced = bodies.iter().filter(|b| b["event"] == "run").count();
    // A run refused as busy never claims the run, so it does not announce one.
    let refused = bodies
        .iter()
        .filter(|b| b["event"] == "finished" && b["outcome"] == "busy")
        .count();
    if announced + refused < runs {
        problems.push(format!(
            "notifications: {announced} runs announced (+{refused} refused) for {runs} promoter runs"
        ));
    }
    match bodies.iter().rev().find(|b| b["event"] == "finished") {
        Some(b) if b["outcome"] == last.outcome.as_str() => {}
        Some(b) => problems.push(format!(
            "notifications: the last decision sent was {}, the report says {}",
            b["outcome"],
            last.outcome.as_str()
        )),
        None => problems.push("notifications: no decision was sent".to_owned()),
    }
    problems
}
