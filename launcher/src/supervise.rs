//! Supervision: setup steps, services started in dependency order behind their readiness checks,
//! the single reaper, signal forwarding and the shutdown.
//!
//! Everything runs in one thread around one `poll`: on the signalfd (forwarded signals and
//! SIGCHLD) and on the services' notify sockets, which stay open and drained for as long as the
//! launcher runs (a service that notifies at shutdown too must not see an error or block). Only `reap` calls `waitpid`,
//! always as `waitpid(-1, WNOHANG)`, and maps pids to what it started; orphans reparented to the
//! launcher (PID 1, or a child subreaper otherwise) are reaped by the same loop.

use std::io;
use std::iter;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use std::{fmt, fs};

use libc::{c_int, pid_t};

use crate::config::{Config, Launch, ReadyCheck, Service, SetupAction, SetupStep};
use crate::duration::DisplayDuration;
use crate::notify::NotifySocket;
use crate::signals::{self, SignalFd};

const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// One readiness probe attempt may hold up the event loop this long at most.
const PROBE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Once the grace period is over, SIGKILL is repeated this often: a killed process's own
/// children are reparented to the launcher only as it dies.
const KILL_INTERVAL: Duration = Duration::from_millis(100);

/// Runs `config` to the end and returns the launcher's exit code. `take_terminal` hands the
/// terminal (if stdin is one) to the service, for the interactive `launcher -- CMD`.
pub fn run(config: &Config, take_terminal: bool) -> i32 {
    let signals = match SignalFd::block_handled() {
        Ok(signals) => signals,
        Err(err) => {
            log!("cannot block signals to handle them: {err}");
            return 1;
        }
    };
    become_subreaper();
    let mut supervisor = Supervisor {
        config,
        signals,
        take_terminal,
        running: Vec::new(),
        groups: Vec::new(),
        exited: Vec::new(),
        stop_request: None,
        notify_sockets: Vec::new(),
        descendants_left: false,
        warned_about_proc: false,
    };
    let shutdown = match supervisor.start() {
        Ok(()) => supervisor.watch(),
        Err(shutdown) => shutdown,
    };
    supervisor.stop(shutdown)
}

fn become_subreaper() {
    if is_pid_one() {
        return;
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        log!(
            "cannot become a child subreaper ({}): orphans of the services will not be reaped by the launcher",
            io::Error::last_os_error()
        );
    }
}

fn is_pid_one() -> bool {
    std::process::id() == 1
}

#[derive(Clone, Copy)]
enum Status {
    Exited(i32),
    Killed(c_int),
}

impl Status {
    fn from_wait(raw: c_int) -> Status {
        if libc::WIFSIGNALED(raw) {
            Status::Killed(libc::WTERMSIG(raw))
        } else {
            Status::Exited(libc::WEXITSTATUS(raw))
        }
    }

    /// The shell's convention, which container runtimes follow: 128+N for signal N.
    fn exit_code(self) -> i32 {
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

/// Why everything stops: the launcher's exit code, and the signal that asks each process to stop.
struct Shutdown {
    exit_code: i32,
    signal: c_int,
}

impl Shutdown {
    fn requested(signal: c_int) -> Shutdown {
        Shutdown { exit_code: 0, signal }
    }

    fn with_code(exit_code: i32) -> Shutdown {
        Shutdown { exit_code, signal: libc::SIGTERM }
    }
}

/// A process the launcher started and has not reaped yet.
struct Child {
    pid: pid_t,
    label: String,
    signal_group: bool,
}

impl Child {
    fn signal(&self, signal: c_int) {
        let target = if self.signal_group { -self.pid } else { self.pid };
        if let Err(err) = signals::kill(target, signal) {
            log!("cannot send {} to {}: {err}", signals::name(signal), self.label);
        }
    }
}

struct Exit {
    child: Child,
    status: Status,
}

impl Exit {
    fn stops_everything(self, others_running: bool) -> Shutdown {
        let then = if others_running { ": stopping the others" } else { "" };
        log!("{} exited on its own ({}){then}", self.child.label, self.status);
        Shutdown::with_code(self.status.exit_code())
    }
}

enum Progress {
    Waiting,
    Disabled,
    Starting { deadline: Instant, check: Pending },
    Ready,
}

enum Pending {
    Notify,
    Probe { next_attempt: Instant, last_failure: String },
}

/// The notify socket of a service (by index in `Config::services`).
struct Notify {
    service: usize,
    socket: NotifySocket,
    ready: bool,
}

struct Supervisor<'a> {
    config: &'a Config,
    signals: SignalFd,
    take_terminal: bool,
    /// In start order, so that the shutdown can walk it backwards.
    running: Vec<Child>,
    /// Every process group the launcher created, for the SIGKILL at the end of the grace period.
    groups: Vec<pid_t>,
    /// Reaped, not yet looked at.
    exited: Vec<Exit>,
    stop_request: Option<c_int>,
    notify_sockets: Vec<Notify>,
    /// False once waitpid has said ECHILD: no descendant is left.
    descendants_left: bool,
    warned_about_proc: bool,
}

impl Supervisor<'_> {
    /// Waits for the next event (or `until`), then handles pending signals and reaps.
    fn pump(&mut self, until: Option<Instant>) {
        let mut fds: Vec<libc::pollfd> = iter::once(self.signals.as_fd())
            .chain(self.notify_sockets.iter().map(|notify| notify.socket.as_fd()))
            .map(|fd| libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 })
            .collect();
        let timeout_ms = until.map_or(-1, |until| {
            let left = until.saturating_duration_since(Instant::now());
            c_int::try_from(left.as_micros().div_ceil(1000)).unwrap_or(c_int::MAX)
        });
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs.
        let result = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if result < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                log!("waiting for events failed: {err}");
                // Do not spin on a persistent failure; the loop still reaps and forwards below.
                std::thread::sleep(KILL_INTERVAL);
            }
        }
        loop {
            match self.signals.next() {
                // SIGCHLD only wakes the loop: `reap` below runs on every turn anyway.
                Ok(Some(libc::SIGCHLD)) => {}
                Ok(Some(signal)) => self.on_signal(signal),
                Ok(None) => break,
                Err(err) => {
                    log!("reading signals failed: {err}");
                    break;
                }
            }
        }
        for notify in &mut self.notify_sockets {
            match notify.socket.ready() {
                Ok(ready) => notify.ready |= ready,
                Err(err) => log!("reading the notify socket {} failed: {err}", notify.socket.address()),
            }
        }
        self.reap();
    }

    fn on_signal(&mut self, signal: c_int) {
        if matches!(signal, libc::SIGTERM | libc::SIGINT) {
            // `stop` forwards it to each process in reverse start order.
            if self.stop_request.is_none() {
                log!("received {}: stopping", signals::name(signal));
                self.stop_request = Some(signal);
            }
            return;
        }
        for child in &self.running {
            child.signal(signal);
        }
    }

    fn reap(&mut self) {
        loop {
            let mut raw = 0;
            // SAFETY: waitpid writes the status into `raw`.
            let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
            if pid == 0 {
                self.descendants_left = true;
                return;
            }
            if pid < 0 {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::ECHILD) => self.descendants_left = false,
                    Some(libc::EINTR) => continue,
                    _ => log!("waitpid failed: {err}"),
                }
                return;
            }
            // Any other pid is an orphan reparented to the launcher: reaping it is all there is to do.
            if let Some(index) = self.running.iter().position(|child| child.pid == pid) {
                let child = self.running.remove(index);
                self.exited.push(Exit { child, status: Status::from_wait(raw) });
            }
        }
    }

    fn spawn(
        &mut self,
        launch: &Launch,
        label: String,
        signal_group: bool,
        notify: Option<&NotifySocket>,
    ) -> Result<(), Shutdown> {
        let mut command = Command::new(&launch.argv[0]);
        // Its own process group, so that the final SIGKILL reaches the service's workers too.
        command.args(&launch.argv[1..]).envs(&launch.env).process_group(0);
        match notify {
            Some(socket) => command.env("NOTIFY_SOCKET", socket.address()),
            // An inherited NOTIFY_SOCKET belongs to whoever started the launcher.
            None => command.env_remove("NOTIFY_SOCKET"),
        };
        if let Some(dir) = &launch.workdir {
            command.current_dir(dir);
        }
        let take_terminal = self.take_terminal;
        // SAFETY: reset_in_child only makes async-signal-safe calls.
        unsafe {
            command.pre_exec(move || signals::reset_in_child(take_terminal));
        }
        match command.spawn() {
            Ok(handle) => {
                // The handle is dropped without a wait: `reap` owns every wait.
                let pid = handle.id() as pid_t;
                log!("started {label} (pid {pid})");
                self.groups.push(pid);
                self.running.push(Child { pid, label, signal_group });
                self.descendants_left = true;
                Ok(())
            }
            Err(err) => {
                match launch.workdir.as_ref().filter(|dir| !dir.is_dir()) {
                    Some(dir) => log!("{label}: cannot start: its workdir {} is not a directory", dir.display()),
                    None => log!("{label}: cannot start `{}`: {err}", launch.argv[0]),
                }
                // A shell's codes for "not found" and "not executable".
                let code = match err.kind() {
                    io::ErrorKind::NotFound => 127,
                    io::ErrorKind::PermissionDenied => 126,
                    _ => 1,
                };
                Err(Shutdown::with_code(code))
            }
        }
    }

    fn start(&mut self) -> Result<(), Shutdown> {
        let config = self.config;
        for step in &config.setup {
            self.run_setup_step(step)?;
        }
        self.start_services(&config.services)
    }

    fn run_setup_step(&mut self, step: &SetupStep) -> Result<(), Shutdown> {
        let label = format!("setup step `{}`", step.name);
        match &step.action {
            SetupAction::Mkdir { path, mode } => match make_directory(path, *mode) {
                Ok(()) => {
                    log!("{label}: {} is ready", path.display());
                    Ok(())
                }
                Err(why) => {
                    log!("{label} failed: {why}");
                    Err(Shutdown::with_code(1))
                }
            },
            SetupAction::Run(launch) => {
                self.spawn(launch, label.clone(), false, None)?;
                let pid = self.running.last().map(|child| child.pid);
                match self.wait_for(pid)? {
                    Status::Exited(0) => {
                        log!("{label} done");
                        Ok(())
                    }
                    status => {
                        log!("{label} failed ({status}): not starting the services");
                        Err(Shutdown::with_code(status.exit_code()))
                    }
                }
            }
        }
    }

    fn wait_for(&mut self, pid: Option<pid_t>) -> Result<Status, Shutdown> {
        loop {
            if let Some(index) = self.exited.iter().position(|exit| Some(exit.child.pid) == pid) {
                return Ok(self.exited.remove(index).status);
            }
            if let Some(signal) = self.stop_request {
                return Err(Shutdown::requested(signal));
            }
            self.pump(None);
        }
    }

    fn start_services(&mut self, services: &[Service]) -> Result<(), Shutdown> {
        let mut progress: Vec<Progress> = services
            .iter()
            .map(|service| {
                if service.enabled {
                    Progress::Waiting
                } else {
                    log!("service `{}` is disabled", service.name);
                    Progress::Disabled
                }
            })
            .collect();
        let settled = |progress: &Progress| matches!(progress, Progress::Ready | Progress::Disabled);
        loop {
            // Services are in start order, so one pass also starts dependents of services that
            // are ready as soon as they are spawned.
            for (index, service) in services.iter().enumerate() {
                if matches!(progress[index], Progress::Waiting)
                    && service.after.iter().all(|&dep| settled(&progress[dep]))
                {
                    progress[index] = self.start_service(index, service)?;
                }
            }
            if progress.iter().all(settled) {
                if !services.is_empty() {
                    log!("all services are up");
                }
                return Ok(());
            }
            let mut any_became_ready = false;
            for (index, service) in services.iter().enumerate() {
                if let Progress::Starting { deadline, check } = &mut progress[index] {
                    let notified = self.notify_sockets.iter().any(|notify| notify.service == index && notify.ready);
                    if notified || check_probe(service, check, *deadline) {
                        log!("service `{}` is ready", service.name);
                        progress[index] = Progress::Ready;
                        any_became_ready = true;
                    } else if Instant::now() >= *deadline {
                        self.log_not_ready(index, service, check);
                        return Err(Shutdown::with_code(1));
                    }
                }
            }
            if any_became_ready {
                continue;
            }
            let wake_up = progress
                .iter()
                .filter_map(|progress| match progress {
                    Progress::Starting { deadline, check: Pending::Probe { next_attempt, .. } } => {
                        Some((*deadline).min(*next_attempt))
                    }
                    Progress::Starting { deadline, .. } => Some(*deadline),
                    _ => None,
                })
                .min();
            self.pump(wake_up);
            if let Some(signal) = self.stop_request {
                return Err(Shutdown::requested(signal));
            }
            if let Some(exit) = self.exited.pop() {
                return Err(exit.stops_everything(!self.running.is_empty()));
            }
        }
    }

    fn start_service(&mut self, index: usize, service: &Service) -> Result<Progress, Shutdown> {
        let label = format!("service `{}`", service.name);
        let Some(ready) = &service.ready else {
            self.spawn(&service.launch, label, service.signal_process_group, None)?;
            return Ok(Progress::Ready);
        };
        let check = match ready.check {
            ReadyCheck::Notify => {
                let socket = NotifySocket::bind(&service.name).map_err(|err| {
                    log!("{label}: cannot create its notify socket: {err}");
                    Shutdown::with_code(1)
                })?;
                self.spawn(&service.launch, label, service.signal_process_group, Some(&socket))?;
                self.notify_sockets.push(Notify { service: index, socket, ready: false });
                Pending::Notify
            }
            ReadyCheck::Probe(_) => {
                self.spawn(&service.launch, label, service.signal_process_group, None)?;
                Pending::Probe { next_attempt: Instant::now(), last_failure: "not probed yet".into() }
            }
        };
        Ok(Progress::Starting { deadline: Instant::now() + ready.timeout, check })
    }

    fn log_not_ready(&self, index: usize, service: &Service, check: &Pending) {
        let timeout = service.ready.as_ref().map_or(Duration::ZERO, |ready| ready.timeout);
        let why = match check {
            Pending::Notify => {
                let address =
                    self.notify_sockets.iter().find(|notify| notify.service == index).map(|n| n.socket.address());
                format!("no READY=1 on NOTIFY_SOCKET={}", address.unwrap_or("?"))
            }
            Pending::Probe { last_failure, .. } => last_failure.clone(),
        };
        log!("service `{}` did not become ready within {} ({why}): stopping", service.name, DisplayDuration(timeout));
    }

    /// Blocks until something needs attention, then reports why everything must stop.
    fn watch(&mut self) -> Shutdown {
        loop {
            if let Some(signal) = self.stop_request {
                return Shutdown::requested(signal);
            }
            if let Some(exit) = self.exited.pop() {
                return exit.stops_everything(!self.running.is_empty());
            }
            if self.running.is_empty() {
                log!("no enabled service to supervise");
                return Shutdown::with_code(0);
            }
            self.pump(None);
        }
    }

    /// Stops every process, last started first, each waited for before the next (all within the
    /// grace period); then whatever is left is killed. Returns once no descendant is left.
    fn stop(mut self, shutdown: Shutdown) -> i32 {
        let grace = self.config.grace_period;
        let deadline = Instant::now() + grace;
        self.report_exits();
        let last_started_first: Vec<pid_t> = self.running.iter().rev().map(|child| child.pid).collect();
        for pid in last_started_first {
            let Some(child) = self.running.iter().find(|child| child.pid == pid) else { continue };
            child.signal(shutdown.signal);
            while self.running.iter().any(|child| child.pid == pid) && Instant::now() < deadline {
                self.pump(Some(deadline));
                self.report_exits();
            }
        }
        self.reap();
        if self.descendants_left && Instant::now() < deadline {
            // Orphans of the services, reparented to the launcher: they get the same chance.
            self.signal_descendants(libc::SIGTERM);
            while self.descendants_left && Instant::now() < deadline {
                self.pump(Some(deadline));
                self.report_exits();
            }
        }
        if self.descendants_left {
            let labels: Vec<&str> = self.running.iter().map(|child| child.label.as_str()).collect();
            let what = if labels.is_empty() { "the orphaned processes left".to_owned() } else { labels.join(", ") };
            log!("grace period of {} is over: killing {what}", DisplayDuration(grace));
            while self.descendants_left {
                for &group in &self.groups {
                    if let Err(err) = signals::kill(-group, libc::SIGKILL) {
                        log!("cannot kill process group {group}: {err}");
                    }
                }
                self.signal_descendants(libc::SIGKILL);
                self.pump(Some(Instant::now() + KILL_INTERVAL));
                self.report_exits();
            }
        }
        shutdown.exit_code
    }

    fn report_exits(&mut self) {
        for exit in self.exited.drain(..) {
            log!("{} stopped ({})", exit.child.label, exit.status);
        }
    }

    /// Signals every remaining descendant: in a PID namespace `kill(-1)` reaches all processes
    /// but PID 1; elsewhere the launcher's children are listed from /proc (orphans included, as
    /// they are reparented to it).
    fn signal_descendants(&mut self, signal: c_int) {
        if is_pid_one() {
            if let Err(err) = signals::kill(-1, signal) {
                log!("cannot send {} to the remaining processes: {err}", signals::name(signal));
            }
            return;
        }
        let pid = std::process::id();
        match fs::read_to_string(format!("/proc/self/task/{pid}/children")) {
            Ok(children) => {
                for child in children.split_whitespace().filter_map(|pid| pid.parse::<pid_t>().ok()) {
                    if let Err(err) = signals::kill(child, signal) {
                        log!("cannot send {} to process {child}: {err}", signals::name(signal));
                    }
                }
            }
            Err(err) if !self.warned_about_proc => {
                self.warned_about_proc = true;
                log!("cannot list the remaining processes ({err}): waiting for them to exit");
            }
            Err(_) => {}
        }
    }
}

/// One probe attempt when one is due (every PROBE_INTERVAL); true when it succeeds.
fn check_probe(service: &Service, check: &mut Pending, deadline: Instant) -> bool {
    let Pending::Probe { next_attempt, last_failure } = check else { return false };
    let Some(ReadyCheck::Probe(target)) = service.ready.as_ref().map(|ready| &ready.check) else { return false };
    let now = Instant::now();
    if now < *next_attempt {
        return false;
    }
    let result = target.check((now + PROBE_ATTEMPT_TIMEOUT).min(deadline));
    *next_attempt = Instant::now() + PROBE_INTERVAL;
    match result {
        Ok(_) => true,
        Err(why) => {
            *last_failure = why;
            false
        }
    }
}

/// mkdir -p, then chmod: the mode must not depend on the umask, nor on who runs the image.
fn make_directory(path: &Path, mode: Option<u32>) -> Result<(), String> {
    fs::create_dir_all(path).map_err(|err| format!("cannot create {}: {err}", path.display()))?;
    let Some(mode) = mode else { return Ok(()) };
    let current =
        fs::metadata(path).map_err(|err| format!("cannot stat {}: {err}", path.display()))?.permissions().mode();
    if current & 0o7777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|err| format!("cannot chmod {mode:04o} {}: {err}", path.display()))?;
    }
    Ok(())
}
