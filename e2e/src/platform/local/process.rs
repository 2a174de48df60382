//! One local "container": a child process restarted on exit with exponential back-off.
//!
//! Like the kubelet with `restartPolicy: Always`: the restart count grows on every exit, the
//! waiting reason is `CrashLoopBackOff` while a restart is being delayed, and a run that lasts
//! longer than `reset_after` resets the back-off. `terminate` sends SIGTERM, waits the grace
//! period and then SIGKILLs.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use zai_promoter::LogLine;

use crate::platform::runtime::{Container, ContainerStatus, Launch, LogBuffer};
use crate::platform::spec::Backoff;

/// Log lines kept per pod: about what the kubelet keeps before it rotates a container's log
/// (`containerLogMaxSize`, 10 MiB, at ~200 bytes per proxy log line). At rehearsal rates
/// (two lines per request, a few hundred requests per second per pod) 2 000 lines were a few
/// seconds: a promotion resumed after its promoter was killed no longer found its new pods'
/// start-up lines, which a real node still has.
const LOG_CAPACITY: usize = 50_000;

#[derive(Debug, Default)]
struct State {
    running: bool,
    restarts: u32,
    waiting_reason: Option<String>,
    last_exit_code: Option<i64>,
    started_at: Option<DateTime<Utc>>,
    grace: Duration,
    finished: bool,
}

/// A supervised child process.
pub struct ProcessContainer {
    state: Arc<Mutex<State>>,
    logs: Arc<LogBuffer>,
    stop: CancellationToken,
    done: Arc<Notify>,
}

impl ProcessContainer {
    /// Starts supervising `binary` with `launch`'s environment.
    pub fn start(binary: PathBuf, launch: Launch, backoff: Backoff) -> Self {
        let state = Arc::new(Mutex::new(State {
            waiting_reason: Some("ContainerCreating".to_owned()),
            ..State::default()
        }));
        let logs = Arc::new(LogBuffer::new(&launch.pod, LOG_CAPACITY));
        let stop = CancellationToken::new();
        let done = Arc::new(Notify::new());
        tokio::spawn(supervise(
            binary,
            launch,
            backoff,
            Arc::clone(&state),
            Arc::clone(&logs),
            stop.clone(),
            Arc::clone(&done),
        ));
        ProcessContainer {
            state,
            logs,
            stop,
            done,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Container for ProcessContainer {
    async fn status(&self) -> ContainerStatus {
        let s = self.lock();
        ContainerStatus {
            running: s.running,
            restarts: s.restarts,
            waiting_reason: s.waiting_reason.clone(),
            last_exit_code: s.last_exit_code,
            started_at: s.started_at,
        }
    }

    async fn terminate(&self, grace: Duration) {
        let notified = self.done.notified();
        {
            let mut s = self.lock();
            if s.finished {
                return;
            }
            s.grace = grace;
        }
        self.stop.cancel();
        notified.await;
    }

    async fn logs_since(&self, since: DateTime<Utc>) -> Vec<LogLine> {
        self.logs.since(since)
    }
}

impl Drop for ProcessContainer {
    fn drop(&mut self) {
        // Dropping the handle stops the supervisor; `kill_on_drop` reaps the child.
        self.stop.cancel();
    }
}

async fn supervise(
    binary: PathBuf,
    launch: Launch,
    backoff: Backoff,
    state: Arc<Mutex<State>>,
    logs: Arc<LogBuffer>,
    stop: CancellationToken,
    done: Arc<Notify>,
) {
    let lock = || state.lock().unwrap_or_else(PoisonError::into_inner);
    let mut level: u32 = 0;
    loop {
        let started = Instant::now();
        match spawn(&binary, &launch, &logs) {
            Ok(mut child) => {
                {
                    let mut s = lock();
                    s.running = true;
                    s.waiting_reason = None;
                    s.started_at = Some(Utc::now());
                }
                let exit = tokio::select! {
                    status = child.wait() => status.ok().and_then(|s| s.code()).map(i64::from),
                    () = stop.cancelled() => {
                        let grace = lock().grace;
                        stop_child(&mut child, grace).await;
                        break;
                    }
                };
                let mut s = lock();
                s.running = false;
                s.last_exit_code = Some(exit.unwrap_or(137));
                logs.push(
                    format!(
                        "[platform] container exited with code {}",
                        exit.unwrap_or(137)
                    ),
                    Utc::now(),
                );
            }
            Err(e) => {
                logs.push(
                    format!("[platform] cannot start {}: {e}", binary.display()),
                    Utc::now(),
                );
                let mut s = lock();
                s.running = false;
                s.last_exit_code = Some(128);
            }
        }
        if started.elapsed() >= backoff.reset_after {
            level = 0;
        }
        let delay = backoff.delay(level);
        level = level.saturating_add(1);
        {
            let mut s = lock();
            s.restarts = s.restarts.saturating_add(1);
            s.waiting_reason = Some("CrashLoopBackOff".to_owned());
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => break,
        }
    }
    {
        let mut s = lock();
        s.running = false;
        s.finished = true;
        s.waiting_reason = None;
    }
    done.notify_waiters();
}

fn spawn(binary: &PathBuf, launch: &Launch, logs: &Arc<LogBuffer>) -> std::io::Result<Child> {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .envs(&launch.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    let mut child = command.spawn()?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(pump(out, Arc::clone(logs)));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(err, Arc::clone(logs)));
    }
    Ok(child)
}

async fn pump(stream: impl AsyncRead + Unpin, logs: Arc<LogBuffer>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        logs.push(line, Utc::now());
    }
}

/// SIGTERM, then SIGKILL after `grace`.
async fn stop_child(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}
