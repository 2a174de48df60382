//! Free loopback ports for pods and servers, never handing out the same port twice in a row.
//!
//! Ports are picked *below* the kernel's ephemeral range (32768–60999 by default). A port from
//! inside it (what binding port 0 returns) can be taken as the local port of an outgoing
//! connection — the load workers and scrapers open many — between the pick and the pod's own
//! bind; the pod then fails to bind, and since a pod keeps its port across restarts it
//! crash-loops until that connection closes (seen once in CI as "1 of 2 updated replicas are
//! available" for a whole minute). Outgoing connections never use ports below the range.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Mutex, PoisonError};

use crate::Error;

/// Ports handed out recently (a port released by a finished pod may be picked again).
static RECENT: Mutex<VecDeque<u16>> = Mutex::new(VecDeque::new());
const REMEMBERED: usize = 512;
/// Candidates are drawn from `PICK_FROM..PICK_BELOW`: below the ephemeral range, above the
/// ports services usually claim.
const PICK_FROM: u16 = 20_000;
const PICK_BELOW: u16 = 32_768;

/// Records `port` as handed out; false if it was handed out recently.
fn remember(port: u16) -> bool {
    let mut recent = RECENT.lock().unwrap_or_else(PoisonError::into_inner);
    if recent.contains(&port) {
        return false;
    }
    if recent.len() == REMEMBERED {
        recent.pop_front();
    }
    recent.push_back(port);
    true
}

/// A port on 127.0.0.1, below the ephemeral range, that was free a moment ago and has not
/// been handed out recently. Falls back to a kernel-chosen port if no candidate binds.
pub fn free_port() -> Result<u16, Error> {
    let mut last_error = None;
    for _ in 0..256 {
        let candidate = rand::random_range(PICK_FROM..PICK_BELOW);
        match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, candidate))) {
            Ok(_) if remember(candidate) => return Ok(candidate),
            Ok(_) => {}
            Err(e) => last_error = Some(e),
        }
    }
    for _ in 0..64 {
        match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))) {
            Ok(listener) => {
                let port = listener.local_addr().map_err(Error::Port)?.port();
                if remember(port) {
                    return Ok(port);
                }
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(Error::Port(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "every candidate was recently used",
        )
    })))
}

/// A port reserved without listening: connections to it are refused and nobody else can bind
/// it while the reservation lives. Used for a probe that targets the wrong port.
#[derive(Debug)]
pub struct ClosedPort {
    port: u16,
    _socket: tokio::net::TcpSocket,
}

impl ClosedPort {
    /// Reserves a port.
    pub fn reserve() -> Result<Self, Error> {
        let socket = tokio::net::TcpSocket::new_v4().map_err(Error::Port)?;
        socket
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .map_err(Error::Port)?;
        let port = socket.local_addr().map_err(Error::Port)?.port();
        Ok(ClosedPort {
            port,
            _socket: socket,
        })
    }

    /// The reserved port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_not_repeated_and_avoid_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().expect("port")).collect();
        for (i, p) in ports.iter().enumerate() {
            assert!((PICK_FROM..PICK_BELOW).contains(p), "{p}");
            assert!(!ports[..i].contains(p), "{p} repeated");
        }
    }

    #[tokio::test]
    async fn closed_port_refuses_connections() {
        let closed = ClosedPort::reserve().expect("reserve");
        let result = tokio::net::TcpStream::connect(("127.0.0.1", closed.port())).await;
        assert!(result.is_err());
    }
}
