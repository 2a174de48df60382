//! The proxy under test as a separate process, so its memory is its own.
//!
//! By default the bench re-executes its own binary with `ZAI_BENCH_ROLE=proxy`; that child
//! calls [`run_proxy_role`], which is `zai-proxy`'s `main` (config from the environment,
//! logs, serve until SIGTERM) through the library. With `ZAI_PROXY_BIN=/path/to/zai-proxy`
//! the real binary is started instead. Either way the child gets its configuration from
//! the environment: token counting on, the limiter and `MAX_WORKERS` far above the offered
//! load, no state file, no quota polling.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::machine::Memory;

/// Env var that turns the bench binary into the proxy.
pub const ROLE_ENV: &str = "ZAI_BENCH_ROLE";
/// Env var naming a `zai-proxy` binary to bench instead of the in-tree library.
pub const PROXY_BIN_ENV: &str = "ZAI_PROXY_BIN";

/// Whether this process was started as the proxy child.
pub fn is_proxy_role() -> bool {
    std::env::var(ROLE_ENV).is_ok_and(|role| role == "proxy")
}

/// The proxy child's `main`: exactly what the `zai-proxy` binary does.
pub fn run_proxy_role() -> ExitCode {
    let config = match zai_proxy::Config::from_env_and_args() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("zai-proxy (bench child): {e}");
            return ExitCode::from(2);
        }
    };
    zai_proxy::logging::init(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("zai-proxy (bench child): cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
        zai_proxy::serve(config, listener, zai_proxy::shutdown::signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zai-proxy (bench child) stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Env var that overrides the child's `TOKEN_COUNTING_ENABLED` (default `true`), to measure
/// what counting costs.
pub const TOKEN_COUNTING_ENV: &str = "ZAI_BENCH_TOKEN_COUNTING";

/// The environment the proxy child runs with (besides the inherited one).
pub fn proxy_env(upstream_url: &str, listen: SocketAddr) -> Vec<(&'static str, String)> {
    let counting = std::env::var(TOKEN_COUNTING_ENV).unwrap_or_else(|_| "true".to_owned());
    vec![
        ("ZAI_API_KEY", "bench-key-not-secret".to_owned()),
        ("ZAI_TARGET_URL", upstream_url.to_owned()),
        ("LISTEN_ADDR", listen.to_string()),
        ("DEPLOYMENT_VARIANT", "bench".to_owned()),
        ("TOKEN_COUNTING_ENABLED", counting),
        ("RATE_LIMIT_INITIAL", "1000000".to_owned()),
        ("RATE_LIMIT_MIN", "1000000".to_owned()),
        ("RATE_LIMIT_MAX", "1000000".to_owned()),
        ("RATE_LIMIT_STATE_FILE", String::new()),
        ("MAX_WORKERS", "100000".to_owned()),
        ("QUOTA_POLL_ENABLED", "false".to_owned()),
        ("SHUTDOWN_READINESS_DELAY", "0s".to_owned()),
        ("SHUTDOWN_GRACE_PERIOD", "1s".to_owned()),
    ]
}

/// A running proxy child; killed when dropped.
#[derive(Debug)]
pub struct ProxyProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// What was started (for the report).
    pub program: String,
    /// Its stderr (logs).
    pub log: PathBuf,
}

impl ProxyProcess {
    /// Starts the proxy in front of `upstream_url`, logs to `log`, and waits until `/readyz`
    /// answers 200 (the tokenizer is loaded).
    pub fn spawn(upstream_url: &str, log: &Path) -> anyhow::Result<Self> {
        let listen = free_port()?;
        let (program, mut command) = match std::env::var_os(PROXY_BIN_ENV) {
            Some(bin) => {
                let command = Command::new(&bin);
                (PathBuf::from(bin).display().to_string(), command)
            }
            None => {
                let exe = std::env::current_exe().context("locating the bench binary")?;
                let mut command = Command::new(&exe);
                command.env(ROLE_ENV, "proxy");
                (format!("{} ({ROLE_ENV}=proxy)", exe.display()), command)
            }
        };
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("creating the proxy log {}", log.display()))?;
        command
            .envs(proxy_env(upstream_url, listen))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = command
            .spawn()
            .with_context(|| format!("starting the proxy {program}"))?;
        let mut proxy = Self {
            child,
            addr: listen,
            program,
            log: log.to_owned(),
        };
        proxy.wait_ready(Duration::from_secs(60))?;
        Ok(proxy)
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The child's current and peak RSS.
    pub fn memory(&self) -> Option<Memory> {
        Memory::of(self.pid())
    }

    fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the proxy exited during start-up ({status}); see {}",
                    self.log.display()
                );
            }
            if readyz(self.addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the proxy was not ready within {limit:?}; see {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.local_addr()
}

/// `GET /readyz` answered 200.
fn readyz(addr: SocketAddr) -> bool {
    let Ok(mut tcp) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(1)));
    if tcp
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_env_keeps_the_limiter_out_of_the_way() {
        let env = proxy_env("http://127.0.0.1:1", SocketAddr::from(([127, 0, 0, 1], 2)));
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("TOKEN_COUNTING_ENABLED"), Some("true"));
        assert_eq!(get("RATE_LIMIT_STATE_FILE"), Some(""));
        assert_eq!(get("LISTEN_ADDR"), Some("127.0.0.1:2"));
        let min: f64 = get("RATE_LIMIT_MIN")
            .and_then(|v| v.parse().ok())
            .expect("min");
        assert!(min >= 100_000.0);
    }
}
