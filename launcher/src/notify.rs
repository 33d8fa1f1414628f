//! The systemd notify protocol, server side: one datagram socket per service in the abstract
//! namespace (no file, so it works with a read-only root filesystem), passed as NOTIFY_SOCKET.
//! gunicorn and redis-server (libsystemd's sd_notify) both accept an `@name` address.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct NotifySocket {
    socket: UnixDatagram,
    address: String,
}

impl NotifySocket {
    pub fn bind(service: &str) -> io::Result<NotifySocket> {
        // The pid alone is not unique: with a shared network namespace (docker --network host),
        // every container's launcher is pid 1.
        let nonce = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.subsec_nanos()).unwrap_or(0);
        let name = format!("launcher-{}-{nonce:x}-{service}", std::process::id());
        let socket = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)?;
        socket.set_nonblocking(true)?;
        Ok(NotifySocket { socket, address: format!("@{name}") })
    }

    /// The NOTIFY_SOCKET value for the service.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Reads every queued datagram; true once one holds the line `READY=1`.
    pub fn ready(&self) -> io::Result<bool> {
        let mut buffer = [0u8; 4096];
        let mut ready = false;
        loop {
            match self.socket.recv(&mut buffer) {
                Ok(length) => ready |= buffer[..length].split(|byte| *byte == b'\n').any(|line| line == b"READY=1"),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(ready),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }
}

impl AsFd for NotifySocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}
