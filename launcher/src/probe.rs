//! Health probes: TCP connect and HTTP GET (2xx is healthy), bounded by a deadline.
//! Used by readiness checks and by `launcher probe`, the HEALTHCHECK of shell-less images.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::duration::DisplayDuration;

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Tcp { host: String, port: u16 },
    Http { host: String, port: u16, path: String },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp { host, port } => write!(f, "tcp://{}:{port}", bracketed(host)),
            Target::Http { host, port, path } => write!(f, "http://{}:{port}{path}", bracketed(host)),
        }
    }
}

/// IPv6 literals need brackets in URLs and Host headers.
fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

impl Target {
    /// `http://host[:port]/path` or `tcp://host:port`.
    pub fn parse_url(url: &str) -> Result<Target, String> {
        if let Some(address) = url.strip_prefix("tcp://") {
            return Target::parse_tcp_address(address.strip_suffix('/').unwrap_or(address));
        }
        if url.starts_with("https://") {
            return Err(format!("{url}: TLS is not supported: probe the plain HTTP port (http://...)"));
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?} is not a probe URL: use http://host:port/path or tcp://host:port"))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        let (host, port) = split_host_port(authority, Some(80)).map_err(|problem| format!("{url}: {problem}"))?;
        if path.contains(char::is_whitespace) {
            return Err(format!("{url}: the path contains whitespace: percent-encode it"));
        }
        Ok(Target::Http { host, port, path: path.to_owned() })
    }

    /// `host:port`, as readiness `tcp = "127.0.0.1:6379"` writes it.
    pub fn parse_tcp_address(address: &str) -> Result<Target, String> {
        let (host, port) = split_host_port(address, None).map_err(|problem| format!("{address:?}: {problem}"))?;
        Ok(Target::Tcp { host, port })
    }

    /// Probes once. Ok and Err both hold a one-line reason.
    pub fn check(&self, deadline: Instant) -> Result<String, String> {
        match self {
            Target::Tcp { host, port } => connect(host, *port, deadline)
                .map(|_| format!("{self}: connected"))
                .map_err(|why| format!("{self}: {why}")),
            Target::Http { host, port, path } => match http_status(host, *port, path, deadline) {
                Ok(status) if status.starts_with('2') => Ok(format!("{self}: {status}")),
                Ok(status) => Err(format!("{self}: answered {status}")),
                Err(why) => Err(format!("{self}: {why}")),
            },
        }
    }
}

fn split_host_port(authority: &str, default_port: Option<u16>) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed `[` in the host")?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    let port = match (port, default_port) {
        (Some(port), _) => {
            port.parse::<u16>().ok().filter(|port| *port != 0).ok_or_else(|| format!("invalid port {port:?}"))?
        }
        (None, Some(default)) => default,
        (None, None) => return Err("the port is missing: write host:port".into()),
    };
    Ok((host.to_owned(), port))
}

fn remaining(deadline: Instant) -> Result<Duration, String> {
    deadline.checked_duration_since(Instant::now()).filter(|left| !left.is_zero()).ok_or_else(|| "timed out".to_owned())
}

fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let addresses = (host, port).to_socket_addrs().map_err(|err| format!("cannot resolve {host}: {err}"))?;
    let mut last_error = format!("{host} resolves to no address");
    for address in addresses {
        match TcpStream::connect_timeout(&address, remaining(deadline)?) {
            Ok(stream) => return Ok(stream),
            Err(err) => last_error = describe_io(&err),
        }
    }
    Err(last_error)
}

fn describe_io(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out".into(),
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => err.to_string(),
    }
}

/// GET `path` and return the status line's code and reason, e.g. "200 OK".
fn http_status(host: &str, port: u16, path: &str, deadline: Instant) -> Result<String, String> {
    let mut stream = connect(host, port, deadline)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}:{port}\r\nUser-Agent: launcher-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        bracketed(host)
    );
    stream.set_write_timeout(Some(remaining(deadline)?)).map_err(|err| describe_io(&err))?;
    stream.write_all(request.as_bytes()).map_err(|err| format!("sending the request: {}", describe_io(&err)))?;
    let mut response = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    // Only the status line matters; stop reading as soon as it is complete.
    while !response.windows(2).any(|pair| pair == b"\r\n") && response.len() < 8192 {
        stream.set_read_timeout(Some(remaining(deadline)?)).map_err(|err| describe_io(&err))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => response.extend_from_slice(&chunk[..read]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(format!("no answer: {}", describe_io(&err))),
        }
    }
    let line_end = response.windows(2).position(|pair| pair == b"\r\n").unwrap_or(response.len());
    let status_line = String::from_utf8_lossy(&response[..line_end]);
    let mut parts = status_line.splitn(2, ' ');
    match (parts.next(), parts.next()) {
        (Some(version), Some(status)) if version.starts_with("HTTP/") && status.len() >= 3 => {
            Ok(status.trim().to_owned())
        }
        _ if response.is_empty() => Err("closed the connection without answering".into()),
        _ => {
            Err(format!("answered something that is not HTTP: {:?}", status_line.chars().take(60).collect::<String>()))
        }
    }
}

static WATCHDOG_MESSAGE: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static WATCHDOG_MESSAGE_LEN: AtomicUsize = AtomicUsize::new(0);

extern "C" fn watchdog_fired(_signal: libc::c_int) {
    let message = WATCHDOG_MESSAGE.load(Ordering::SeqCst);
    let len = WATCHDOG_MESSAGE_LEN.load(Ordering::SeqCst);
    // Only async-signal-safe calls here: write(2) and _exit(2).
    unsafe {
        if !message.is_null() {
            libc::write(libc::STDERR_FILENO, message.cast(), len);
        }
        libc::_exit(1);
    }
}

/// `launcher probe URL --timeout T`: exit 0 when healthy, 1 otherwise, never later than `timeout` (not zero).
/// A SIGALRM watchdog enforces the bound even where no timeout applies (name resolution).
pub fn run_cli(url: &str, timeout: Duration) -> i32 {
    let target = match Target::parse_url(url) {
        Ok(target) => target,
        Err(why) => {
            log!("unhealthy: {why}");
            return 1;
        }
    };
    let message: &'static mut [u8] =
        format!("launcher: unhealthy: {target}: no answer within {}\n", DisplayDuration(timeout)).into_bytes().leak();
    WATCHDOG_MESSAGE_LEN.store(message.len(), Ordering::SeqCst);
    WATCHDOG_MESSAGE.store(message.as_mut_ptr(), Ordering::SeqCst);
    if let Err(err) = arm_watchdog(timeout) {
        log!("unhealthy: cannot arm the probe's timeout: {err}");
        return 1;
    }
    match target.check(Instant::now() + timeout) {
        Ok(why) => {
            log!("healthy: {why}");
            0
        }
        Err(why) => {
            log!("unhealthy: {why}");
            1
        }
    }
}

fn arm_watchdog(timeout: Duration) -> io::Result<()> {
    let handler: extern "C" fn(libc::c_int) = watchdog_fired;
    // SAFETY: the handler only calls async-signal-safe functions; the timer is set after the handler.
    unsafe {
        if libc::signal(libc::SIGALRM, handler as libc::sighandler_t) == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
        let seconds = timeout.as_secs().try_into().map_err(|_| io::Error::other("the timeout is too long"))?;
        let timer = libc::itimerval {
            it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 },
            it_value: libc::timeval { tv_sec: seconds, tv_usec: timeout.subsec_micros().into() },
        };
        if libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_probe_urls() {
        assert_eq!(
            Target::parse_url("http://127.0.0.1:5000/healthz").unwrap(),
            Target::Http { host: "127.0.0.1".into(), port: 5000, path: "/healthz".into() }
        );
        assert_eq!(
            Target::parse_url("http://localhost").unwrap(),
            Target::Http { host: "localhost".into(), port: 80, path: "/".into() }
        );
        assert_eq!(Target::parse_url("tcp://[::1]:6379").unwrap(), Target::Tcp { host: "::1".into(), port: 6379 });
        assert_eq!(Target::parse_url("tcp://[::1]:6379").unwrap().to_string(), "tcp://[::1]:6379");
        assert!(Target::parse_url("https://x/").unwrap_err().contains("TLS"));
        assert!(Target::parse_url("tcp://host").unwrap_err().contains("port is missing"));
        assert!(Target::parse_url("tcp://host:99999").unwrap_err().contains("invalid port"));
        assert!(Target::parse_url("ftp://host").unwrap_err().contains("not a probe URL"));
    }
}
