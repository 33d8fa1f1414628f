//! A port of the host's loopback, opened on the loopback of a network namespace.
//!
//! The admission webhook runs inside the namespace the cluster made for it (the API server refuses to call a
//! loopback address), and from there it must reach the API server and the registry, which listen on the host's
//! 127.0.0.1 only. A thread enters the namespace just long enough to open the listening socket there (a socket
//! stays in the namespace it was made in); every connection accepted on it is joined to the same port on the
//! host's loopback. No address outside loopback is involved on either side.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd as _, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{bail, Context as _, Result};

pub struct Forward {
    port: u16,
    listener: RawFd,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Forward {
    /// Opens 127.0.0.1:`port` inside the network namespace `netns` (made with `ip netns add`) and forwards it to
    /// 127.0.0.1:`port` on the host.
    pub fn into_netns(netns: &str, port: u16) -> Result<Forward> {
        let namespace = File::open(format!("/run/netns/{netns}"))
            .with_context(|| format!("opening the network namespace {netns}"))?;
        // The thread that enters the namespace ends right after: no other work ever runs inside it.
        let listener = std::thread::spawn(move || -> Result<TcpListener> {
            // SAFETY: setns(2) on a file descriptor that stays open for the call; it only changes this thread.
            if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("entering the network namespace: {}", std::io::Error::last_os_error());
            }
            TcpListener::bind(("127.0.0.1", port)).context("listening on 127.0.0.1 inside the namespace")
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread entering the network namespace panicked"))?
        .with_context(|| format!("forwarding port {port} into the network namespace {netns}"))?;
        let raw = listener.as_raw_fd();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let acceptor = std::thread::spawn(move || {
            for incoming in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(inside) = incoming else { continue };
                // This thread is on the host's network: the connection it makes reaches the host's loopback.
                let Ok(outside) = TcpStream::connect(("127.0.0.1", port)) else { continue };
                join(inside, outside);
            }
        });
        Ok(Forward { port, listener: raw, stopping, acceptor: Some(acceptor) })
    }
}

/// Copies each direction on a thread of its own until either side closes.
fn join(inside: TcpStream, outside: TcpStream) {
    let pairs = [(inside.try_clone(), outside.try_clone()), (outside.try_clone(), inside.try_clone())];
    for pair in pairs {
        let (Ok(mut from), Ok(mut to)) = pair else { return };
        std::thread::spawn(move || {
            let mut buffer = [0u8; 16 * 1024];
            while let Ok(read) = from.read(&mut buffer) {
                if read == 0 || to.write_all(&buffer[..read]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Shutting the listening socket down wakes the thread blocked in accept(2).
        // SAFETY: the descriptor belongs to the listener the acceptor thread owns until it returns below.
        unsafe { libc::shutdown(self.listener, libc::SHUT_RDWR) };
        if let Some(acceptor) = self.acceptor.take() {
            if acceptor.join().is_err() {
                eprintln!("kube: the forwarder of port {} panicked", self.port);
            }
        }
    }
}
