//! A real `redis-server` (Debian package `redis-server`) on a loopback port, for the suites
//! of the shared budget: started, killed (SIGKILL, no goodbye) and restarted on the same
//! port, with no persistence (a restart comes back empty, as a replaced pod would).

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;
use crate::platform::ports::free_port;

/// The binary started.
pub const REDIS_SERVER: &str = "redis-server";

/// Whether `redis-server` can run here (for the suites' dependency gate).
pub fn available() -> Result<(), String> {
    match Command::new(REDIS_SERVER)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("`{REDIS_SERVER} --version` exited with {status}")),
        Err(e) => Err(format!(
            "{REDIS_SERVER} not found ({e}); apt-get install redis-server"
        )),
    }
}

/// A running (or killed) redis-server.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free loopback port and waits until it answers PING.
    pub fn start() -> Result<Self, Error> {
        let mut server = RedisServer {
            port: free_port()?,
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn spawn(&mut self) -> Result<(), Error> {
        let port = self.port.to_string();
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--protected-mode", "yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Redis(format!("cannot start: {e}")))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return Ok(());
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(Error::Redis(format!("exited at start-up with {status}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(Error::Redis(format!(
            "no PONG on port {} within 10 s",
            self.port
        )))
    }

    /// Kills it at once (SIGKILL): clients see their connections reset.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: nothing was persisted).
    pub fn restart(&mut self) -> Result<(), Error> {
        self.kill();
        self.spawn()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a redis answers PING on `port`.
pub fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
