//! Free loopback ports for containers, never handing out the same port twice in a row.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Mutex, PoisonError};

use crate::Error;

/// Ports handed out recently (the OS may offer a just-released port again).
static RECENT: Mutex<VecDeque<u16>> = Mutex::new(VecDeque::new());
const REMEMBERED: usize = 512;

/// A port on 127.0.0.1 that was free a moment ago and has not been handed out recently.
pub fn free_port() -> Result<u16, Error> {
    let mut last_error = None;
    for _ in 0..64 {
        match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))) {
            Ok(listener) => {
                let port = listener.local_addr().map_err(Error::Port)?.port();
                let mut recent = RECENT.lock().unwrap_or_else(PoisonError::into_inner);
                if recent.contains(&port) {
                    continue;
                }
                if recent.len() == REMEMBERED {
                    recent.pop_front();
                }
                recent.push_back(port);
                return Ok(port);
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
    fn ports_are_not_repeated() {
        let a = free_port().expect("port");
        let b = free_port().expect("port");
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn closed_port_refuses_connections() {
        let closed = ClosedPort::reserve().expect("reserve");
        let result = tokio::net::TcpStream::connect(("127.0.0.1", closed.port())).await;
        assert!(result.is_err());
    }
}
