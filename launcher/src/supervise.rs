//! Supervision: setup steps, services started in dependency order behind their readiness checks,
//! the single reaper, signal forwarding and the shutdown.
//!
//! Everything runs in one thread around one `poll`: on the signalfd (forwarded signals and
//! SIGCHLD) and on the services' notify sockets, which stay open and drained for as long as the
//! launcher runs (a service that notifies at shutdown too must not see an error or block). Only
//! `reap` calls `waitpid`, always as `waitpid(-1, WNOHANG)`, and maps pids to what it started;
//! orphans reparented to the launcher (PID 1, or a child subreaper otherwise) are reaped by the
//! same loop.
//!
//! Signals go only to targets that cannot have been recycled: the pid (or process group, the same
//! number) of a step or service not reaped yet, a child of the launcher not reaped yet, or, as
//! PID 1, every process of the namespace with kill(-1).

use std::fs;
use std::io;
use std::iter;
use std::mem;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use libc::{c_int, pid_t};

use crate::child::{self, Child, Status};
use crate::config::{Config, Launch, ReadyCheck, Service, SetupAction, SetupStep};
use crate::duration::DisplayDuration;
use crate::notify::NotifySocket;
use crate::procfs;
use crate::signals::{self, SignalFd};

const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// One readiness probe attempt may hold up the event loop this long at most.
const PROBE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Once the grace period is over, SIGKILL is repeated this often: a killed process's own
/// children are reparented to the launcher only as it dies.
const KILL_INTERVAL: Duration = Duration::from_millis(100);
/// While orphans are being stopped, a subreaper lists its children this often: a process
/// reparented to it (its parent just exited) arrives without any signal, and must get SIGTERM too.
const ORPHAN_SCAN_INTERVAL: Duration = Duration::from_millis(100);
/// The launcher's exit code when a setup step outlives its timeout, as timeout(1) exits.
const STEP_TIMEOUT_EXIT_CODE: i32 = 124;

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
        exited: Vec::new(),
        started: 0,
        stop_request: None,
        stop_signals: 0,
        stopping: false,
        kill_now: false,
        terminated: Vec::new(),
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

/// A step or service reaped, not yet looked at.
struct Exit {
    child: Child,
    status: Status,
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
    /// The service's main pid until it is reaped: only its process tree may notify.
    main_pid: Option<pid_t>,
    ready: bool,
}

struct Supervisor<'a> {
    config: &'a Config,
    signals: SignalFd,
    take_terminal: bool,
    /// Steps and services not reaped yet, in start order, so that the shutdown can walk it backwards.
    running: Vec<Child>,
    /// Reaped, not yet looked at, in reap order.
    exited: Vec<Exit>,
    /// How many steps and services were started: the next one's sequence number.
    started: usize,
    /// The first SIGTERM or SIGINT, which asks for the stop.
    stop_request: Option<c_int>,
    /// SIGTERMs and SIGINTs received: the second one ends the grace period at once.
    stop_signals: u32,
    /// The stop is under way (whatever started it).
    stopping: bool,
    /// A second SIGTERM or SIGINT came: SIGKILL everything now.
    kill_now: bool,
    /// Children sent SIGTERM as orphans during the stop, each once; a pid leaves it when reaped.
    terminated: Vec<pid_t>,
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
        // Before `reap`: a service that notified and exited is still a zombie, and its pid still its own.
        let services = &self.config.services;
        for notify in &mut self.notify_sockets {
            match notify.socket.read(&services[notify.service].name, notify.main_pid) {
                Ok(ready) => notify.ready |= ready,
                Err(err) => log!("reading the notify socket {} failed: {err}", notify.socket.address()),
            }
        }
        self.reap();
    }

    fn on_signal(&mut self, signal: c_int) {
        if !matches!(signal, libc::SIGTERM | libc::SIGINT) {
            for child in &self.running {
                child.signal(signal);
            }
            return;
        }
        // `stop` forwards the first one to each process in reverse start order.
        let name = signals::name(signal);
        self.stop_signals += 1;
        if self.stop_signals >= 2 {
            if !self.kill_now {
                log!("received {name} again: killing everything now");
                self.kill_now = true;
            }
        } else if self.stopping {
            log!("received {name}: already stopping (a second SIGTERM or SIGINT kills everything at once)");
        } else {
            log!("received {name}: stopping (a second SIGTERM or SIGINT kills everything at once)");
            self.stop_request = Some(signal);
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
            // Reaped, the pid may be reused: nothing may signal it, nor trust it as a sender.
            self.terminated.retain(|&terminated| terminated != pid);
            for notify in &mut self.notify_sockets {
                if notify.main_pid == Some(pid) {
                    notify.main_pid = None;
                }
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
        whole_group: bool,
        notify: Option<&NotifySocket>,
    ) -> Result<pid_t, Shutdown> {
        let options = child::Options {
            label,
            whole_group,
            sequence: self.started,
            notify_socket: notify.map(NotifySocket::address),
            take_terminal: self.take_terminal,
        };
        self.started += 1;
        let child = child::spawn(launch, options).map_err(Shutdown::with_code)?;
        let pid = child.pid;
        self.running.push(child);
        self.descendants_left = true;
        Ok(pid)
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
            SetupAction::Run { launch, timeout } => {
                let pid = self.spawn(launch, label.clone(), false, None)?;
                match self.wait_for(pid, Instant::now() + *timeout)? {
                    Some(Status::Exited(0)) => {
                        log!("{label} done");
                        Ok(())
                    }
                    Some(status) => {
                        log!("{label} failed ({status}): not starting the services");
                        Err(Shutdown::with_code(status.exit_code()))
                    }
                    None => {
                        log!(
                            "{label} did not finish within its timeout of {}: stopping its process group; \
                             not starting the services",
                            DisplayDuration(*timeout)
                        );
                        // The whole group: a step is often a wrapper around the program that hangs.
                        // `stop` then gives it the grace period, and SIGKILL.
                        if let Some(child) = self.running.iter_mut().find(|child| child.pid == pid) {
                            child.signal_group(libc::SIGTERM);
                            child.asked_to_stop = true;
                        }
                        Err(Shutdown::with_code(STEP_TIMEOUT_EXIT_CODE))
                    }
                }
            }
        }
    }

    /// The status of `pid` once it is reaped, or None at `deadline`.
    fn wait_for(&mut self, pid: pid_t, deadline: Instant) -> Result<Option<Status>, Shutdown> {
        loop {
            if let Some(index) = self.exited.iter().position(|exit| exit.child.pid == pid) {
                return Ok(Some(self.exited.remove(index).status));
            }
            if let Some(signal) = self.stop_request {
                return Err(Shutdown::requested(signal));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.pump(Some(deadline));
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
            if let Some(shutdown) = self.exits_stop_everything() {
                return Err(shutdown);
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
                let pid = self.spawn(&service.launch, label, service.signal_process_group, Some(&socket))?;
                self.notify_sockets.push(Notify { service: index, socket, main_pid: Some(pid), ready: false });
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
            if let Some(shutdown) = self.exits_stop_everything() {
                return shutdown;
            }
            if self.running.is_empty() {
                log!("no enabled service to supervise");
                return Shutdown::with_code(0);
            }
            self.pump(None);
        }
    }

    /// Services that exited on their own since the last look stop everything. The exit code is
    /// the first failing one's (else 0): in reap order, and among those reaped in one pass (which
    /// exited before the launcher could look), in start order. Deterministic either way.
    fn exits_stop_everything(&mut self) -> Option<Shutdown> {
        if self.exited.is_empty() {
            return None;
        }
        let mut exits = mem::take(&mut self.exited);
        exits.sort_by_key(|exit| exit.child.sequence);
        let decisive = exits.iter().position(|exit| exit.status.exit_code() != 0).unwrap_or(0);
        for (index, exit) in exits.iter().enumerate() {
            let then = if index == decisive && !self.running.is_empty() { ": stopping the others" } else { "" };
            log!("{} exited on its own ({}){then}", exit.child.label, exit.status);
        }
        let decisive = &exits[decisive];
        let code = decisive.status.exit_code();
        if exits.len() > 1 && code != 0 {
            let label = &decisive.child.label;
            log!("{} services exited at once: exiting with the code of {label}, the first to fail", exits.len());
        }
        Some(Shutdown::with_code(code))
    }

    /// Stops every process, last started first, each waited for before the next; then the
    /// orphans; all within the grace period, which a second SIGTERM or SIGINT cuts short. Then
    /// whatever is left is killed. Returns once no descendant is left.
    fn stop(mut self, shutdown: Shutdown) -> i32 {
        self.stopping = true;
        let grace = self.config.grace_period;
        let deadline = Instant::now() + grace;
        self.report_exits();
        let last_started_first: Vec<pid_t> = self.running.iter().rev().map(|child| child.pid).collect();
        for pid in last_started_first {
            if !self.in_grace(deadline) {
                break;
            }
            let Some(child) = self.running.iter_mut().find(|child| child.pid == pid) else { continue };
            if !child.asked_to_stop {
                child.signal(shutdown.signal);
                child.asked_to_stop = true;
            }
            while self.running.iter().any(|child| child.pid == pid) && self.in_grace(deadline) {
                self.pump(Some(deadline));
                self.report_exits();
            }
        }
        self.reap();
        if self.descendants_left && self.in_grace(deadline) {
            self.stop_orphans(deadline);
        }
        if self.descendants_left {
            self.kill_everything(grace);
        }
        shutdown.exit_code
    }

    fn in_grace(&self, deadline: Instant) -> bool {
        !self.kill_now && Instant::now() < deadline
    }

    /// Orphans of the services, reparented to the launcher, get SIGTERM and what is left of the
    /// grace period. As PID 1, kill(-1) reaches every process of the namespace, reparented yet or
    /// not. A subreaper can only name its children: it lists them again and again, so that a
    /// process reparented to it later (when its parent exits) gets SIGTERM too, each one once.
    fn stop_orphans(&mut self, deadline: Instant) {
        let pid_one = is_pid_one();
        if pid_one {
            self.signal_descendants(libc::SIGTERM);
        }
        while self.descendants_left && self.in_grace(deadline) {
            let wake_up = if pid_one {
                deadline
            } else {
                self.terminate_new_children();
                deadline.min(Instant::now() + ORPHAN_SCAN_INTERVAL)
            };
            self.pump(Some(wake_up));
            self.report_exits();
        }
    }

    /// SIGTERM to each child not sent it yet. Only the launcher reaps its children, so a pid it
    /// has just listed is still that child's when it is signalled, never a stranger's.
    fn terminate_new_children(&mut self) {
        let children = match procfs::own_children() {
            Ok(children) => children,
            Err(err) => return self.cannot_list_children(&err),
        };
        for pid in children {
            let asked_already = self.terminated.contains(&pid) || self.running.iter().any(|child| child.pid == pid);
            if !asked_already {
                if let Err(err) = signals::kill(pid, libc::SIGTERM) {
                    log!("cannot send SIGTERM to process {pid}: {err}");
                }
                self.terminated.push(pid);
            }
        }
    }

    /// SIGKILL, repeated until no descendant is left: to the process groups of the steps and
    /// services not reaped yet (their workers), and to every other child (or, as PID 1, every
    /// process). Groups of processes already reaped are left alone: their ids may be anyone's now.
    fn kill_everything(&mut self, grace: Duration) {
        let labels: Vec<&str> = self.running.iter().map(|child| child.label.as_str()).collect();
        let what = if labels.is_empty() { "the orphaned processes left".to_owned() } else { labels.join(", ") };
        if self.kill_now {
            log!("killing {what}");
        } else {
            log!("grace period of {} is over: killing {what}", DisplayDuration(grace));
        }
        while self.descendants_left {
            for child in &self.running {
                child.signal_group(libc::SIGKILL);
            }
            self.signal_descendants(libc::SIGKILL);
            self.pump(Some(Instant::now() + KILL_INTERVAL));
            self.report_exits();
        }
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
        match procfs::own_children() {
            Ok(children) => {
                for child in children {
                    if let Err(err) = signals::kill(child, signal) {
                        log!("cannot send {} to process {child}: {err}", signals::name(signal));
                    }
                }
            }
            Err(err) => self.cannot_list_children(&err),
        }
    }

    fn cannot_list_children(&mut self, err: &io::Error) {
        if !self.warned_about_proc {
            self.warned_about_proc = true;
            log!("cannot list the remaining processes ({err}): waiting for them to exit");
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
