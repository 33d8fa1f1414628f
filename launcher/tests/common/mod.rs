//! Helpers for the launcher's tests: real processes in a scratch directory, no mocks.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const LAUNCHER: &str = env!("CARGO_BIN_EXE_launcher");
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

    /// A TOML array for a SERVICE_PY service.
    pub fn service_command(&self, name: &str, behaviour: &str) -> String {
        format!("[\"python3\", \"{}/service.py\", \"{name}\", \"{}\", \"{behaviour}\"]", self.display(), self.display())
    }

    /// Starts the launcher on `config` (written to launcher.toml); stdout and stderr go to files.
    pub fn start(&self, config: &str) -> Running {
        let path = self.write("launcher.toml", config);
        let mut command = Command::new(LAUNCHER);
        command.arg("--config").arg(path);
        self.spawn(command)
    }

    pub fn spawn(&self, mut command: Command) -> Running {
        let stdout = fs::File::create(self.path("launcher.out")).expect("create launcher.out");
        let stderr = fs::File::create(self.path("launcher.err")).expect("create launcher.err");
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .current_dir(&self.dir)
            .spawn()
            .expect("start the launcher");
        Running { child: Some(child), started: Instant::now() }
    }

    pub fn stderr(&self) -> String {
        self.read("launcher.err")
    }

    pub fn stdout(&self) -> String {
        self.read("launcher.out")
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
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0, "kill the launcher");
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().expect("running").try_wait(), Ok(None))
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
        let Some(child) = self.child.as_mut() else { return };
        // SAFETY: see `signal`.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
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
