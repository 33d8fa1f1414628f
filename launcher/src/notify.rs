//! The systemd notify protocol, server side: one datagram socket per service in the abstract
//! namespace (no file, so it works with a read-only root filesystem), passed as NOTIFY_SOCKET.
//! gunicorn and redis-server (libsystemd's sd_notify) both accept an `@name` address.
//!
//! An abstract socket has no permissions: any process in the network namespace can send to it
//! (with `--network host`, any process of the host). So the socket has SO_PASSCRED, the kernel
//! attaches the sender's pid to every datagram, and `READY=1` counts only from the service's
//! main process or one of its descendants, as systemd's `NotifyAccess=all` within a unit.

use std::io;
use std::mem::{self, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{SystemTime, UNIX_EPOCH};

use libc::{c_int, pid_t};

use crate::procfs;
use crate::sys::check;

/// systemd reads at most this much of a notification; a longer one is cut, not an error.
const MESSAGE_MAX: usize = 4096;

pub struct NotifySocket {
    fd: OwnedFd,
    address: String,
    /// A message from another process is reported once per socket, not once per datagram.
    reported_stranger: bool,
}

impl NotifySocket {
    pub fn bind(service: &str) -> io::Result<NotifySocket> {
        // The pid alone is not unique: with a shared network namespace (docker --network host),
        // every container's launcher is pid 1.
        let nonce = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.subsec_nanos()).unwrap_or(0);
        let name = format!("launcher-{}-{nonce:x}-{service}", std::process::id());
        // SAFETY: socket(2) has no memory preconditions; the fd is owned right away.
        let fd = unsafe {
            let fd =
                check(libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0))?;
            OwnedFd::from_raw_fd(fd)
        };
        // Before bind: once the name exists, every datagram must carry its sender's credentials.
        let on: c_int = 1;
        // SAFETY: `on` outlives the call and its size is given.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                (&on as *const c_int).cast(),
                mem::size_of::<c_int>() as libc::socklen_t,
            )
        })?;
        // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
        let mut address: libc::sockaddr_un = unsafe { mem::zeroed() };
        address.sun_family = libc::AF_UNIX as libc::sa_family_t;
        // Abstract: a leading NUL, then the name, not NUL-terminated (the length says where it ends).
        if name.len() + 1 > address.sun_path.len() {
            return Err(io::Error::other(format!("the socket name {name} is too long")));
        }
        for (slot, byte) in address.sun_path[1..].iter_mut().zip(name.bytes()) {
            *slot = byte as libc::c_char;
        }
        let length = mem::size_of::<libc::sa_family_t>() + 1 + name.len();
        // SAFETY: `address` is a valid sockaddr_un and `length` does not exceed it.
        check(unsafe {
            libc::bind(fd.as_raw_fd(), (&address as *const libc::sockaddr_un).cast(), length as libc::socklen_t)
        })?;
        Ok(NotifySocket { fd, address: format!("@{name}"), reported_stranger: false })
    }

    /// The NOTIFY_SOCKET value for the service.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Reads every queued datagram; true when one from the service holds the line `READY=1`.
    /// `main` is the service's main pid, None once it is reaped (its pid may then belong to
    /// anyone): only that process and its descendants are listened to.
    pub fn read(&mut self, service: &str, main: Option<pid_t>) -> io::Result<bool> {
        let mut ready = false;
        let mut buffer = [0u8; MESSAGE_MAX];
        loop {
            let (length, sender) = match self.receive(&mut buffer) {
                Ok(datagram) => datagram,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(ready),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            // Pid 0: the sender is in a PID namespace the launcher cannot see into.
            let from_service = match (sender, main) {
                (Some(sender), Some(main)) if sender > 0 => procfs::is_descendant(sender, main),
                _ => false,
            };
            if !from_service {
                if !self.reported_stranger {
                    self.reported_stranger = true;
                    let who = sender.map_or("an unknown process".to_owned(), |pid| format!("pid {pid}"));
                    let main = main.map_or("gone".to_owned(), |pid| pid.to_string());
                    log!(
                        "service `{service}`: ignoring notify messages from {who}, which is not the service \
                         (main pid {main}) nor one of its descendants"
                    );
                }
                continue;
            }
            ready |= buffer[..length].split(|byte| *byte == b'\n').any(|line| line == b"READY=1");
        }
    }

    /// One datagram: its length (at most the buffer's: longer ones are cut) and its sender's pid.
    fn receive(&self, buffer: &mut [u8]) -> io::Result<(usize, Option<pid_t>)> {
        // Room for the credentials only: descriptors a stranger might send (SCM_RIGHTS) do not
        // fit, so the kernel closes them instead of filling the launcher's fd table.
        const CONTROL_LEN: usize = unsafe { libc::CMSG_SPACE(mem::size_of::<libc::ucred>() as u32) } as usize;
        let mut control = [MaybeUninit::<u64>::uninit(); CONTROL_LEN.div_ceil(8)];
        let mut iov = libc::iovec { iov_base: buffer.as_mut_ptr().cast(), iov_len: buffer.len() };
        // SAFETY: msghdr is plain data; all zeroes is a valid value.
        let mut message: libc::msghdr = unsafe { mem::zeroed() };
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = CONTROL_LEN as _;
        // SAFETY: `message` points at live buffers of the sizes it states.
        let length = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut message, libc::MSG_CMSG_CLOEXEC) };
        if length < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut sender = None;
        // SAFETY: the kernel filled `msg_controllen` bytes of `control`; CMSG_* walk within them.
        unsafe {
            let mut header = libc::CMSG_FIRSTHDR(&message);
            while !header.is_null() {
                let data = libc::CMSG_DATA(header);
                match ((*header).cmsg_level, (*header).cmsg_type) {
                    (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => {
                        sender = Some(data.cast::<libc::ucred>().read_unaligned().pid);
                    }
                    // Defensive: should a descriptor arrive after all, it must not leak.
                    (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                        let count = ((*header).cmsg_len as usize - (data as usize - header as usize)) / 4;
                        for index in 0..count {
                            libc::close(data.cast::<c_int>().add(index).read_unaligned());
                        }
                    }
                    _ => {}
                }
                header = libc::CMSG_NXTHDR(&message, header);
            }
        }
        // Without MSG_TRUNC in the flags, the length is what was copied; `min` states it.
        Ok(((length as usize).min(buffer.len()), sender))
    }
}

impl AsFd for NotifySocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    fn send(socket: &NotifySocket, message: &[u8]) {
        let name = socket.address().strip_prefix('@').unwrap();
        let client = UnixDatagram::unbound().unwrap();
        client.send_to_addr(message, &SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    }

    #[test]
    fn ready_counts_from_the_service_and_its_descendants_only() {
        let own = std::process::id() as pid_t;
        let mut socket = NotifySocket::bind("unit-test").unwrap();
        assert!(socket.address().starts_with("@launcher-"));
        assert!(!socket.read("unit-test", Some(own)).unwrap());

        send(&socket, b"STATUS=starting\nREADY=1\n");
        assert!(socket.read("unit-test", Some(own)).unwrap());
        send(&socket, b"READY=1");
        assert!(socket.read("unit-test", Some(own)).unwrap(), "no trailing newline");

        // The test process does not descend from a pid that cannot exist.
        send(&socket, b"READY=1\n");
        assert!(!socket.read("unit-test", Some(i32::MAX)).unwrap());
        assert!(socket.reported_stranger);
        send(&socket, b"READY=1\n");
        assert!(!socket.read("unit-test", None).unwrap(), "main pid reaped");
        send(&socket, b"READY=0\nREADY=10\n");
        assert!(!socket.read("unit-test", Some(own)).unwrap(), "only the line READY=1");
    }
}
