//! The static launcher as PID 1 of a FROM-scratch container on the local Docker engine:
//! a service behind a readiness check, the probe as a health check, and a prompt `docker stop`.
//! Needs LAUNCHER_STATIC_BIN (set by `cargo xtask test`; `cargo xtask launcher` prints the path),
//! Docker, and a static busybox (Debian's busybox-static) as the supervised program.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::missing;

const LABEL: &str = "distroless-python.test=launcher";
const BUSYBOX: &str = "/bin/busybox";

const CONFIG: &str = r#"
grace_period = "5s"

[[setup]]
name = "scratch-dir"
mkdir = "/tmp/scratch"
mode = "0777"

[[service]]
name = "httpd"
command = ["/bin/busybox", "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/tmp/scratch"]
ready = { tcp = "127.0.0.1:8080", timeout = "30s" }

[[service]]
name = "sleeper"
command = ["/bin/busybox", "sleep", "1000"]
after = ["httpd"]
"#;

const DOCKERFILE: &str = "\
FROM scratch
COPY launcher /launcher
COPY busybox /bin/busybox
COPY launcher.toml /etc/launcher.toml
ENTRYPOINT [\"/launcher\"]
";

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        // The legacy builder: this image needs nothing from BuildKit, and the docker CLI first on
        // PATH here may lack buildx.
        .env("DOCKER_BUILDKIT", "0")
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run docker {args:?}: {err}"))
}

fn docker_ok(args: &[&str]) -> String {
    let output = docker(args);
    assert!(output.status.success(), "docker {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Removes the test's container and image, whatever happens to the test.
struct Cleanup {
    container: String,
    image: String,
    context: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.container]);
        let _ = docker(&["rmi", "-f", &self.image]);
        let _ = std::fs::remove_dir_all(&self.context);
    }
}

fn build_context(context: &Path, launcher: &Path) {
    std::fs::create_dir_all(context).unwrap();
    std::fs::copy(launcher, context.join("launcher")).expect("copy the static launcher");
    std::fs::copy(BUSYBOX, context.join("busybox")).expect("copy busybox");
    std::fs::write(context.join("launcher.toml"), CONFIG).unwrap();
    std::fs::write(context.join("Dockerfile"), DOCKERFILE).unwrap();
}

#[test]
fn docker_stop_of_the_launcher_as_pid_1_is_prompt_and_clean() {
    let Some(launcher) = std::env::var_os("LAUNCHER_STATIC_BIN").map(PathBuf::from) else {
        return missing("LAUNCHER_STATIC_BIN is not set (run `cargo xtask test`, or `cargo xtask launcher` and export the path it prints)");
    };
    assert!(launcher.is_file(), "LAUNCHER_STATIC_BIN={} is not a file", launcher.display());
    if !Path::new(BUSYBOX).is_file() {
        return missing("/bin/busybox is missing (apt-get install busybox-static)");
    }
    match Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            return missing(&format!(
                "the Docker engine does not answer: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
        Err(err) => return missing(&format!("the docker CLI cannot run: {err}")),
    }

    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let unique = format!("{}-{nanos:x}", std::process::id());
    let cleanup = Cleanup {
        container: format!("launcher-test-{unique}"),
        image: format!("distroless-python-test/launcher:{unique}"),
        context: std::env::temp_dir().join(format!("launcher-container-test-{unique}")),
    };
    build_context(&cleanup.context, &launcher);
    docker_ok(&["build", "--quiet", "--label", LABEL, "--tag", &cleanup.image, &cleanup.context.display().to_string()]);
    // Read-only root with a tmpfs /tmp, as the production images run.
    docker_ok(&[
        "run",
        "--detach",
        "--label",
        LABEL,
        "--name",
        &cleanup.container,
        "--read-only",
        "--tmpfs",
        "/tmp",
        &cleanup.image,
    ]);

    let deadline = Instant::now() + Duration::from_secs(60);
    let logs = || {
        let output = docker(&["logs", &cleanup.container]);
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
    };
    while !logs().contains("launcher: all services are up") {
        assert!(Instant::now() < deadline, "the services did not come up; logs:\n{}", logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid_one = docker_ok(&["exec", &cleanup.container, "/bin/busybox", "cat", "/proc/1/cmdline"]);
    assert!(pid_one.starts_with("/launcher"), "PID 1 is {pid_one:?}");
    // The probe is the image's HEALTHCHECK: it works in a container without shell or curl.
    let probe = docker(&["exec", &cleanup.container, "/launcher", "probe", "tcp://127.0.0.1:8080"]);
    assert_eq!(probe.status.code(), Some(0), "{}", String::from_utf8_lossy(&probe.stderr));

    // A long timeout: if the launcher ignored SIGTERM, docker would wait it out and SIGKILL (137).
    let started = Instant::now();
    docker_ok(&["stop", "--time", "30", &cleanup.container]);
    let took = started.elapsed();
    println!("docker stop of the launcher as PID 1 took {took:?}");

    let state = docker_ok(&["inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", &cleanup.container]);
    let logs = logs();
    assert_eq!(state, "false 0", "logs:\n{logs}");
    assert!(logs.contains("launcher: received SIGTERM: stopping"), "{logs}");
    assert!(logs.contains("launcher: service `sleeper` stopped"), "{logs}");
    assert!(logs.contains("launcher: service `httpd` stopped"), "{logs}");
}
