//! Starting one process the way every step and service is started, and what is known of it until
//! it is reaped: its own process group, default signal dispositions and an empty mask, the
//! config's environment and workdir, and no NOTIFY_SOCKET but its own.

use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use libc::{c_int, pid_t};

use crate::config::Launch;
use crate::signals::{self, ChildSignals};

/// How a process ended, as waitpid reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Status {
    Exited(i32),
    Killed(c_int),
}

impl Status {
    pub fn from_wait(raw: c_int) -> Status {
        if libc::WIFSIGNALED(raw) {
            Status::Killed(libc::WTERMSIG(raw))
        } else {
            Status::Exited(libc::WEXITSTATUS(raw))
        }
    }

    /// The shell's convention, which container runtimes follow: 128+N for signal N.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Exited(code) => code,
            Status::Killed(signal) => 128 + signal,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Exited(code) => write!(f, "exit code {code}"),
            Status::Killed(signal) => write!(f, "killed by {}", signals::name(*signal)),
        }
    }
}

/// A process the launcher started and has not reaped yet. Its pid, and so its process group
/// (the same number), cannot be reused by another process before the launcher reaps it: that
/// makes `-pid` a safe target for kill(2) for exactly as long as the `Child` exists.
pub struct Child {
    pub pid: pid_t,
    pub label: String,
    /// Signals go to its whole process group rather than to its main pid.
    pub whole_group: bool,
    /// Start order: steps and services are numbered as they start.
    pub sequence: usize,
    /// It was sent its stop signal already (a timed-out step): the shutdown does not repeat it.
    pub asked_to_stop: bool,
}

impl Child {
    /// Sends `signal` to the main pid, or to the process group with `signal_process_group`.
    pub fn signal(&self, signal: c_int) {
        let target = if self.whole_group { -self.pid } else { self.pid };
        self.send(target, signal);
    }

    /// Sends `signal` to the child's whole process group, whatever `whole_group` says.
    pub fn signal_group(&self, signal: c_int) {
        self.send(-self.pid, signal);
    }

    fn send(&self, target: pid_t, signal: c_int) {
        if let Err(err) = signals::kill(target, signal) {
            log!("cannot send {} to {}: {err}", signals::name(signal), self.label);
        }
    }
}

/// What a process is started with, besides its command.
pub struct Options<'a> {
    pub label: String,
    /// `signal_process_group`: signals go to its whole process group.
    pub whole_group: bool,
    pub sequence: usize,
    /// The service's own NOTIFY_SOCKET address, if it has notify readiness.
    pub notify_socket: Option<&'a str>,
    pub take_terminal: bool,
}

/// Starts `launch` in its own process group. The error is the exit code the launcher reports, a
/// shell's: 127 when the program is not found, 126 when it is not executable, 1 otherwise.
pub fn spawn(launch: &Launch, options: Options<'_>) -> Result<Child, i32> {
    let Options { label, whole_group, sequence, notify_socket, take_terminal } = options;
    let mut command = Command::new(&launch.argv[0]);
    // Its own process group, so that the final SIGKILL reaches the service's workers too.
    command.args(&launch.argv[1..]).envs(&launch.env).process_group(0);
    match notify_socket {
        Some(address) => command.env("NOTIFY_SOCKET", address),
        // An inherited NOTIFY_SOCKET belongs to whoever started the launcher.
        None => command.env_remove("NOTIFY_SOCKET"),
    };
    if let Some(dir) = &launch.workdir {
        command.current_dir(dir);
    }
    let child_signals = ChildSignals::new(take_terminal);
    // SAFETY: reset_in_child only makes async-signal-safe calls.
    unsafe {
        command.pre_exec(move || child_signals.reset_in_child());
    }
    match command.spawn() {
        Ok(handle) => {
            // The handle is dropped without a wait: the supervisor's reaper owns every wait.
            let pid = handle.id() as pid_t;
            log!("started {label} (pid {pid})");
            Ok(Child { pid, label, whole_group, sequence, asked_to_stop: false })
        }
        Err(err) => {
            match launch.workdir.as_ref().filter(|dir| !dir.is_dir()) {
                Some(dir) => log!("{label}: cannot start: its workdir {} is not a directory", dir.display()),
                None => log!("{label}: cannot start `{}`: {err}", launch.argv[0]),
            }
            Err(match err.kind() {
                io::ErrorKind::NotFound => 127,
                io::ErrorKind::PermissionDenied => 126,
                _ => 1,
            })
        }
    }
}
