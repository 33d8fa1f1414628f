//! Helpers for the launcher's tests: real processes in a scratch directory, no mocks.
#![allow(dead_code)] // each test binary uses a different subset

use std::cell::OnceCell;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const LAUNCHER: &str = env!("CARGO_BIN_EXE_launcher");

/// How the launcher runs in a test: as a child subreaper (its pid is not 1), or as PID 1 of a
/// fresh PID namespace, as in a container: `unshare --pid --fork --mount-proc`, which needs root
/// (or a user namespace). The two differ in how the launcher reaches orphans: kill(-1) as PID 1,
/// its list of children otherwise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Subreaper,
    PidOne,
}

/// Defines, for each function `name(Mode)`, a module `name` with the tests `as_a_subreaper` and
/// `as_pid_1`. The latter skips when no PID namespace can be made, except under CI.
#[macro_export]
macro_rules! in_both_modes {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[test]
            fn as_a_subreaper() {
                super::$test($crate::common::Mode::Subreaper);
            }

            #[test]
            fn as_pid_1() {
                if $crate::common::pid_namespaces_available() {
                    super::$test($crate::common::Mode::PidOne);
                }
            }
        }
    )*};
}

/// `CI=true` or `CI=1`: a missing tool must fail the run rather than skip a test.
pub fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true") || value == "1")
}

/// Skips with a reason, except under CI where it fails the test.
pub fn missing(reason: &str) {
    assert!(!on_ci(), "CI is set but {reason}");
    println!("skipping: {reason}");
}

/// Whether `unshare --pid --fork --mount-proc` works here (util-linux, as root). Reports
/// through `missing` when it does not.
pub fn pid_namespaces_available() -> bool {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    let probe = PROBE.get_or_init(|| {
        let output = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child", "true"])
            .stdin(Stdio::null())
            .output()
            .map_err(|err| format!("unshare cannot run ({err}): install util-linux"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "unshare cannot make a PID namespace (run the tests as root): {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    });
    match probe {
        Ok(()) => true,
        Err(reason) => {
            missing(&format!("{reason}; the PID 1 test cannot run"));
            false
        }
    }
}

/// The command that runs the launcher (arguments to be added) in `mode`.
pub fn launcher_command(mode: Mode) -> Command {
    match mode {
        Mode::Subreaper => Command::new(LAUNCHER),
        Mode::PidOne => {
            // --kill-child: should the test kill unshare, the namespace dies with it.
            let mut command = Command::new("unshare");
            command.args(["--pid", "--fork", "--mount-proc", "--kill-child", LAUNCHER]);
            command
        }
    }
}
/// Generous: the machine may be loaded. Waiting this long means something is broken.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A service for the tests: waits SERVICE_DELAY seconds (default 0), installs its SIGTERM behaviour, then says it is ready by creating
/// DIR/NAME.ready (and by sending READY=1 when NOTIFY_SOCKET is set), then sleeps.
/// On SIGTERM it appends NAME to DIR/stopped and exits 0, unless told to ignore SIGTERM.
pub const SERVICE_PY: &str = r#"
import os, signal, socket, sys, time
name, directory = sys.argv[1], sys.argv[2]
time.sleep(float(os.environ.get("SERVICE_DELAY", "0")))
behaviour = sys.argv[3] if len(sys.argv) > 3 else "stop"
def stop(*_):
    with open(os.path.join(directory, "stopped"), "a") as log:
        log.write(name + "\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if behaviour == "ignore-term" else stop)
with open(os.path.join(directory, name + ".pid"), "w") as pid:
    pid.write(str(os.getpid()))
os.rename(os.path.join(directory, name + ".pid"), os.path.join(directory, name + ".ready"))
address = os.environ.get("NOTIFY_SOCKET")
if address:
    if address.startswith("@"):
        address = "\0" + address[1:]
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.sendto(b"STATUS=starting\nREADY=1\n", address)
while True:
    time.sleep(1000)
"#;

/// A TOML basic string: `text` in double quotes, with `\\` and `"` escaped.
pub fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A TOML array of strings, as a `command` is written.
pub fn argv(args: &[&str]) -> String {
    let strings: Vec<String> = args.iter().map(|arg| toml_string(arg)).collect();
    format!("[{}]", strings.join(", "))
}

/// `["sh", "-c", script]`. No `$` is escaped: `$$` is the launcher's literal `$`.
pub fn sh(script: &str) -> String {
    argv(&["sh", "-c", script])
}

/// The TOML array that runs SERVICE_PY, in `dir`, as service `name` with `behaviour`.
fn service_command(dir: &str, name: &str, behaviour: &str) -> String {
    argv(&["python3", &format!("{dir}/service.py"), name, dir, behaviour])
}

/// A launcher config, a table at a time (from `Scratch::config`):
/// `scratch.config().grace_period("30s").test_service("db").service("web", &command).after("db")`.
/// `after`, `ready`, `env`, `timeout` and `key` add to the table added last.
#[derive(Debug)]
pub struct Config {
    toml: String,
    /// The scratch directory, where SERVICE_PY is.
    dir: String,
}

impl Config {
    /// `grace_period = "…"`: first, before any table.
    pub fn grace_period(self, period: &str) -> Config {
        self.key("grace_period", &toml_string(period))
    }

    /// A `[[service]]` with its `name` and `command` (a TOML array, see `argv` and `sh`).
    pub fn service(self, name: &str, command: &str) -> Config {
        self.table("service", name).key("command", command)
    }

    /// A SERVICE_PY service that says it is ready through NAME.ready and stops on SIGTERM.
    pub fn test_service(self, name: &str) -> Config {
        let command = service_command(&self.dir, name, "stop");
        self.service(name, &command)
    }

    /// A `[[setup]]` command step.
    pub fn setup(self, name: &str, command: &str) -> Config {
        self.table("setup", name).key("command", command)
    }

    /// A `[[setup]]` mkdir step.
    pub fn mkdir(self, name: &str, path: &str, mode: &str) -> Config {
        self.table("setup", name).key("mkdir", &toml_string(path)).key("mode", &toml_string(mode))
    }

    /// `after = ["name"]`.
    pub fn after(self, name: &str) -> Config {
        self.key("after", &argv(&[name]))
    }

    /// `ready = { CHECK, timeout = "…" }`, `check` being `notify = true`, `tcp = "…"` or `http = "…"`.
    pub fn ready(self, check: &str, timeout: &str) -> Config {
        self.key("ready", &format!("{{ {check}, timeout = {} }}", toml_string(timeout)))
    }

    /// `env = { NAME = "value" }`.
    pub fn env(self, name: &str, value: &str) -> Config {
        self.key("env", &format!("{{ {name} = {} }}", toml_string(value)))
    }

    /// A step's `timeout = "…"`.
    pub fn timeout(self, timeout: &str) -> Config {
        self.key("timeout", &toml_string(timeout))
    }

    /// `key = value`, `value` as TOML.
    pub fn key(mut self, key: &str, value: &str) -> Config {
        self.toml.push_str(&format!("{key} = {value}\n"));
        self
    }

    fn table(mut self, kind: &str, name: &str) -> Config {
        self.toml.push_str(&format!("\n[[{kind}]]\n"));
        self.key("name", &toml_string(name))
    }
}

impl AsRef<str> for Config {
    fn as_ref(&self) -> &str {
        &self.toml
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "launcher-test-{test}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the scratch dir");
        fs::write(dir.join("service.py"), SERVICE_PY).expect("write service.py");
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `dir` as it appears in configs.
    pub fn display(&self) -> String {
        self.dir.display().to_string()
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, contents).expect("write a scratch file");
        path
    }

    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// The pid written to DIR/name (SERVICE_PY writes its own to NAME.ready).
    pub fn read_pid(&self, name: &str) -> i32 {
        let text = self.read(name);
        text.trim().parse().unwrap_or_else(|_| panic!("no pid in {name}: {text:?}"))
    }

    /// A TOML array for a SERVICE_PY service.
    pub fn service_command(&self, name: &str, behaviour: &str) -> String {
        service_command(&self.display(), name, behaviour)
    }

    /// `[interpreter, "DIR/script", "DIR"]`: a script written to the scratch dir, told where it is.
    pub fn script_command(&self, interpreter: &str, script: &str) -> String {
        argv(&[interpreter, &self.path(script).display().to_string(), &self.display()])
    }

    /// `["touch", "DIR/name"]`: a command that leaves a trace when it runs.
    pub fn touch_command(&self, name: &str) -> String {
        argv(&["touch", &self.path(name).display().to_string()])
    }

    /// An empty config; its `test_service`s run SERVICE_PY from this directory.
    pub fn config(&self) -> Config {
        Config { toml: String::new(), dir: self.display() }
    }

    /// Starts the launcher on `config` (written to launcher.toml); stdout and stderr go to files.
    pub fn start(&self, config: impl AsRef<str>) -> Running {
        self.start_in(Mode::Subreaper, config)
    }

    /// `start`, with the launcher as a subreaper or as PID 1 of a PID namespace.
    pub fn start_in(&self, mode: Mode, config: impl AsRef<str>) -> Running {
        self.spawn_in(mode, self.launcher_command_in(mode, config))
    }

    /// `start`, then waits for each of the `markers` files (a service's NAME.ready, say).
    pub fn start_ready(&self, config: impl AsRef<str>, markers: &[&str]) -> Running {
        self.start_ready_in(Mode::Subreaper, config, markers)
    }

    /// `start_in`, then waits for each of the `markers` files.
    pub fn start_ready_in(&self, mode: Mode, config: impl AsRef<str>, markers: &[&str]) -> Running {
        let running = self.start_in(mode, config);
        for marker in markers {
            self.wait_for_file(marker);
        }
        running
    }

    /// The command `start_in` runs, for a test to adjust before `spawn_in`.
    pub fn launcher_command_in(&self, mode: Mode, config: impl AsRef<str>) -> Command {
        let path = self.write("launcher.toml", config.as_ref());
        let mut command = launcher_command(mode);
        command.arg("--config").arg(path);
        command
    }

    pub fn spawn(&self, command: Command) -> Running {
        self.spawn_in(Mode::Subreaper, command)
    }

    /// Runs `command`, which is the launcher itself or, in `Mode::PidOne`, unshare running it.
    pub fn spawn_in(&self, mode: Mode, mut command: Command) -> Running {
        let stdout = fs::File::create(self.path("launcher.out")).expect("create launcher.out");
        let stderr = fs::File::create(self.path("launcher.err")).expect("create launcher.err");
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .current_dir(&self.dir)
            .spawn()
            .expect("start the launcher");
        Running { child: Some(child), started: Instant::now(), mode, launcher: OnceCell::new() }
    }

    pub fn stderr(&self) -> String {
        self.read("launcher.err")
    }

    pub fn stdout(&self) -> String {
        self.read("launcher.out")
    }

    /// Asserts that the launcher exited with `code` and that its stderr holds each of `messages`;
    /// returns the stderr for further checks.
    pub fn assert_exited(&self, status: ExitStatus, code: i32, messages: &[&str]) -> String {
        let stderr = self.stderr();
        assert_eq!(status.code(), Some(code), "stderr:\n{stderr}");
        for message in messages {
            assert!(stderr.contains(message), "expected {message:?} in stderr:\n{stderr}");
        }
        stderr
    }

    /// Waits until DIR/name exists; a timeout shows the launcher's messages.
    pub fn wait_for_file(&self, name: &str) {
        let path = self.path(name);
        let deadline = Instant::now() + PATIENCE;
        while !path.exists() {
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {} after {PATIENCE:?}; launcher stderr:\n{}",
                path.display(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub struct Running {
    child: Option<Child>,
    pub started: Instant,
    mode: Mode,
    /// The launcher's pid as this process sees it (in `Mode::PidOne`, unshare's child).
    launcher: OnceCell<i32>,
}

impl Running {
    /// The launcher's pid, as the tests see it (not 1, even as PID 1 of its namespace).
    pub fn pid(&self) -> i32 {
        let spawned = self.child.as_ref().expect("running").id() as i32;
        match self.mode {
            Mode::Subreaper => spawned,
            Mode::PidOne => *self.launcher.get_or_init(|| {
                let mut launcher = None;
                wait_until("unshare to start the launcher", || {
                    launcher = children(spawned).first().copied();
                    launcher.is_some() || parent_and_state(spawned).is_none_or(|(_, state)| state.starts_with('Z'))
                });
                launcher.expect("the launcher exited before the test could signal it")
            }),
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0, "kill the launcher");
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().expect("running").try_wait(), Ok(None))
    }

    /// Sends `signal` to the launcher, then waits for it to exit.
    pub fn stop(&mut self, signal: i32) -> ExitStatus {
        self.signal(signal);
        self.wait()
    }

    /// `stop`, and how long the launcher took to exit after the signal.
    pub fn stop_timed(&mut self, signal: i32) -> (ExitStatus, Duration) {
        let signalled = Instant::now();
        let status = self.stop(signal);
        (status, signalled.elapsed())
    }

    /// Waits for the launcher to exit (panics after PATIENCE).
    pub fn wait(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "the launcher did not exit within {PATIENCE:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    /// A failed test must not leave its launcher and services behind: SIGTERM, then SIGKILL.
    fn drop(&mut self) {
        let Some(child) = self.child.as_ref() else { return };
        // unshare ignores SIGTERM: it goes to the launcher itself, if it is still unshare's child.
        let target = match self.mode {
            Mode::Subreaper => Some(child.id() as i32),
            Mode::PidOne => children(child.id() as i32).first().copied(),
        };
        if let Some(target) = target {
            // SAFETY: see `signal`.
            unsafe { libc::kill(target, libc::SIGTERM) };
        }
        let child = self.child.as_mut().expect("checked above");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting for {what} after {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port").local_addr().unwrap().port()
}

pub fn process_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The `PPid:` and `State:` lines of /proc/PID/status, when the process exists.
pub fn parent_and_state(pid: i32) -> Option<(i32, String)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find_map(|line| line.strip_prefix(name)).map(|value| value.trim().to_owned()).unwrap_or_default()
    };
    Some((field("PPid:").parse().ok()?, field("State:")))
}

/// Runs the launcher to completion with `args`; returns (exit code, stdout, stderr).
pub fn run_launcher(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(LAUNCHER)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run the launcher");
    (
        output.status.code().expect("the launcher exited normally"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The children of `pid` (from /proc/PID/task/PID/children: one thread, or its main thread's).
pub fn children(pid: i32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .collect()
}

/// The process group of `pid`, from /proc/PID/stat (fields after the command name).
pub fn process_group(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(2)?.parse().ok()
}

/// The processes, as this process sees them, whose command line contains `marker`. Pids written
/// by processes inside a PID namespace are not the test's pids: the command line finds them.
pub fn processes_with(marker: &str) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(marker))
        })
        .collect()
}

/// True when `pid` is a zombie: exited, not reaped yet.
pub fn is_zombie(pid: i32) -> bool {
    parent_and_state(pid).is_some_and(|(_, state)| state.starts_with('Z'))
}
