//! Signal plumbing. The launcher installs no handlers: it blocks the signals it cares about and
//! reads them from a signalfd in its single event loop. Blocked signals are queued even for a
//! namespace's PID 1, which the kernel otherwise spares from signals without a handler.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libc::c_int;

use crate::sys::check;

/// Forwarded to services; SIGTERM and SIGINT also start the shutdown.
pub const FORWARDED: [c_int; 6] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2];

pub struct SignalFd(OwnedFd);

fn handled_set() -> io::Result<libc::sigset_t> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set before sigaddset reads it.
    unsafe {
        check(libc::sigemptyset(set.as_mut_ptr()))?;
        for signal in FORWARDED.into_iter().chain([libc::SIGCHLD]) {
            check(libc::sigaddset(set.as_mut_ptr(), signal))?;
        }
        Ok(set.assume_init())
    }
}

impl SignalFd {
    /// Blocks the forwarded signals and SIGCHLD, and opens a signalfd that reports them.
    pub fn block_handled() -> io::Result<SignalFd> {
        let set = handled_set()?;
        // SAFETY: plain syscalls on a valid, initialised sigset; the fd is owned right away.
        unsafe {
            // An inherited SIG_IGN for SIGCHLD makes the kernel reap children on its own, and
            // waitpid would never see an exit status. (Blocked signals are queued for the
            // signalfd whatever their disposition, so the forwarded ones need no reset.)
            if libc::signal(libc::SIGCHLD, libc::SIG_DFL) == libc::SIG_ERR {
                return Err(io::Error::last_os_error());
            }
            check(libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()))?;
            let fd = check(libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK))?;
            Ok(SignalFd(OwnedFd::from_raw_fd(fd)))
        }
    }

    /// The next pending signal, or None when there is none.
    pub fn next(&self) -> io::Result<Option<c_int>> {
        let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        loop {
            // SAFETY: reads at most `size` bytes into `info`.
            let read = unsafe { libc::read(self.0.as_raw_fd(), info.as_mut_ptr().cast(), size) };
            if read == size as isize {
                // SAFETY: the kernel filled the whole struct.
                return Ok(Some(unsafe { info.assume_init() }.ssi_signo as c_int));
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock => return Ok(None),
                io::ErrorKind::Interrupted => continue,
                _ if read >= 0 => {
                    return Err(io::Error::other(format!("short read of {read} bytes from the signalfd")))
                }
                _ => return Err(err),
            }
        }
    }
}

impl AsFd for SignalFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Prepared before fork what the child needs to reset its signals: libc's SIGRTMAX is a function,
/// and between fork and exec only async-signal-safe calls may run.
#[derive(Clone, Copy)]
pub struct ChildSignals {
    last_signal: c_int,
    take_terminal: bool,
}

impl ChildSignals {
    /// With `take_terminal` the child's process group becomes the terminal's foreground group
    /// (interactive `launcher -- CMD`).
    pub fn new(take_terminal: bool) -> ChildSignals {
        ChildSignals { last_signal: libc::SIGRTMAX(), take_terminal }
    }

    /// Runs in the forked child before exec: default dispositions for every signal and an empty
    /// mask: the state a program expects when an interactive shell starts it.
    /// Handlers are reset by exec anyway, but an ignored signal stays ignored across exec: the
    /// launcher's own (Rust ignores SIGPIPE) and whatever its parent ignored (`nohup`, a shell's
    /// background job ignoring SIGINT and SIGQUIT) would otherwise reach the service.
    /// Only async-signal-safe calls: this runs between fork and exec.
    pub fn reset_in_child(self) -> io::Result<()> {
        // The raw syscall, not libc's sigaction: glibc and musl refuse to touch the real-time
        // signals they reserve for themselves (32 up to SIGRTMIN), which an ancestor may have
        // ignored all the same. An all-zero kernel sigaction is SIG_DFL, no flags and an empty
        // mask on every architecture; the buffer is larger than any architecture's struct.
        let default_action = [0u64; 8];
        let sigset_bytes = (self.last_signal as usize).div_ceil(8);
        for signal in 1..=self.last_signal {
            if signal == libc::SIGKILL || signal == libc::SIGSTOP {
                continue; // they cannot be ignored or caught, and the kernel refuses to change them
            }
            // SAFETY: rt_sigaction reads `default_action` (large enough) and writes nothing.
            let result = unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    default_action.as_ptr(),
                    std::ptr::null_mut::<libc::c_void>(),
                    sigset_bytes,
                )
            };
            if result != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: sigemptyset, sigaddset, sigprocmask, isatty, tcsetpgrp and getpid are
        // async-signal-safe, and every set is initialised before use.
        unsafe {
            let mut set = MaybeUninit::<libc::sigset_t>::uninit();
            check(libc::sigemptyset(set.as_mut_ptr()))?;
            if self.take_terminal && libc::isatty(libc::STDIN_FILENO) == 1 {
                // A background group calling tcsetpgrp gets SIGTTOU unless it is blocked.
                let mut ttou = MaybeUninit::<libc::sigset_t>::uninit();
                check(libc::sigemptyset(ttou.as_mut_ptr()))?;
                check(libc::sigaddset(ttou.as_mut_ptr(), libc::SIGTTOU))?;
                check(libc::sigprocmask(libc::SIG_BLOCK, ttou.as_ptr(), std::ptr::null_mut()))?;
                // Without the terminal the command still runs, it just cannot read it: not worth failing.
                libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
            }
            // Everything unblocked: the launcher's blocked set, and whatever it inherited blocked.
            check(libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut()))?;
        }
        Ok(())
    }
}

/// kill(2): `target` is a pid, or a process group when negative. A process that is already
/// gone is not an error: it is about to be reaped.
pub fn kill(target: libc::pid_t, signal: c_int) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(target, signal) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

pub fn name(signal: c_int) -> String {
    let known = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    known.to_owned()
}
