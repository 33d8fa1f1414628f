//! `launcher check`: a valid config prints the plan; each kind of error names file, line and column.

mod common;

use common::{run_launcher, Scratch};

/// Runs `launcher check` on `config`; returns (exit code, stdout, stderr, config path).
fn check(config: &str, env: &[(&str, &str)]) -> (i32, String, String, String) {
    let scratch = Scratch::new("check");
    let path = scratch.write("launcher.toml", config).display().to_string();
    let (code, stdout, stderr) = run_launcher(&["check", "--config", &path], env);
    (code, stdout, stderr, path)
}

/// Asserts that `config` is rejected with `message` at `line:column`.
fn assert_rejected(config: &str, line_column: &str, message: &str) {
    let (code, stdout, stderr, path) = check(config, &[]);
    assert_eq!(code, 1, "accepted:\n{config}\nstdout: {stdout}");
    let expected = format!("launcher: {path}:{line_column}: ");
    assert!(stderr.starts_with(&expected), "expected {expected:?}, got {stderr:?}");
    assert!(stderr.contains(message), "expected {message:?} in {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
}

#[test]
fn a_valid_config_prints_the_plan_with_expanded_values() {
    let config = r#"
grace_period = "8s"

[[setup]]
name = "metrics-dir"
mkdir = "${PROMETHEUS_MULTIPROC_DIR:-/tmp/metrics}"
mode = "0777"

[[setup]]
name = "migrations"
command = ["flask", "db", "upgrade"]
env = { FLASK_APP = "fakeshop:create_app", SECRET = "${LAUNCHER_TEST_SECRET}" }
workdir = "/app"

[[service]]
name = "web"
command = ["gunicorn", "--bind", "0.0.0.0:${PORT:-8000}", "fakeshop:create_app()"]
after = ["redis"]
ready = { http = "http://127.0.0.1:${PORT:-8000}/healthz", timeout = "10s" }

[[service]]
name = "redis"
command = ["redis-server", "--save", "", "--supervised", "systemd"]
enabled = "${EMBEDDED_REDIS:-true}"
ready = { notify = true, timeout = "5s" }
signal_process_group = true
"#;
    let (code, stdout, stderr, _) =
        check(config, &[("PORT", "5000"), ("EMBEDDED_REDIS", "no"), ("LAUNCHER_TEST_SECRET", "hunter2")]);
    assert_eq!(code, 0, "{stderr}");
    for expected in [
        "grace period: 8s",
        "  1. metrics-dir: mkdir /tmp/metrics (mode 0777)",
        "  2. migrations: flask db upgrade [env: FLASK_APP, SECRET] [workdir: /app]",
        "  1. redis (disabled): redis-server --save \"\" --supervised systemd",
        "     ready: notify (READY=1 on NOTIFY_SOCKET) within 5s",
        "  2. web: gunicorn --bind 0.0.0.0:5000 fakeshop:create_app()",
        "     after: redis",
        "     ready: http://127.0.0.1:5000/healthz within 10s",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("hunter2"), "environment values can be secrets");
}

#[test]
fn a_missing_config_file_is_named() {
    let (code, _, stderr) = run_launcher(&["check", "--config", "/nonexistent/launcher.toml"], &[]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot read the config /nonexistent/launcher.toml"), "{stderr}");
    let (code, _, stderr) = run_launcher(&["check"], &[("LAUNCHER_CONFIG", "/nonexistent/from-env.toml")]);
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/from-env.toml"), "{stderr}");
}

#[test]
fn unknown_keys_are_rejected() {
    assert_rejected("[[service]]\nname = \"a\"\ncomand = [\"a\"]\n", "3:1", "unknown field `comand`");
    assert_rejected("grace = \"1s\"\n", "1:1", "unknown field `grace`");
    assert_rejected(
        "[[service]]\nname = \"a\"\ncommand = [\"a\"]\nready = { notify = true, timout = \"1s\" }\n",
        "4:26",
        "unknown field `timout`",
    );
}

#[test]
fn unknown_and_cyclic_after_names_are_rejected() {
    assert_rejected(
        "[[service]]\nname = \"web\"\ncommand = [\"a\"]\nafter = [\"redis\"]\n",
        "4:10",
        "service `web` is after `redis`, which is not a service",
    );
    let cycle = "[[service]]\nname = \"a\"\ncommand = [\"a\"]\nafter = [\"b\"]\n\
                 [[service]]\nname = \"b\"\ncommand = [\"b\"]\nafter = [\"a\"]\n";
    assert_rejected(cycle, "8:10", "`after` makes a cycle: a -> b -> a");
}

#[test]
fn empty_commands_are_rejected() {
    assert_rejected("[[service]]\nname = \"a\"\ncommand = []\n", "3:11", "empty command");
    assert_rejected("[[setup]]\nname = \"a\"\ncommand = [\"\"]\n", "3:11", "program (its first element) is empty");
}

#[test]
fn malformed_durations_and_modes_are_rejected() {
    assert_rejected("grace_period = \"10 seconds\"\n", "1:16", "malformed duration \"10 seconds\"");
    assert_rejected(
        "[[service]]\nname = \"a\"\ncommand = [\"a\"]\nready = { tcp = \"127.0.0.1:1\", timeout = \"5\" }\n",
        "4:42",
        "malformed duration",
    );
    assert_rejected("[[setup]]\nname = \"d\"\nmkdir = \"/tmp/x\"\nmode = \"0999\"\n", "4:8", "malformed mode");
}

#[test]
fn duplicate_names_are_rejected() {
    assert_rejected(
        "[[service]]\nname = \"a\"\ncommand = [\"a\"]\n[[service]]\nname = \"a\"\ncommand = [\"a\"]\n",
        "5:8",
        "duplicate service name `a`",
    );
}

#[test]
fn a_setup_step_needs_exactly_one_of_mkdir_and_command() {
    assert_rejected(
        "[[setup]]\nname = \"both\"\nmkdir = \"/tmp/x\"\ncommand = [\"true\"]\n",
        "4:11",
        "has both `mkdir` and `command`",
    );
    assert_rejected("[[setup]]\nname = \"neither\"\n", "2:8", "needs one of `mkdir");
    assert_rejected(
        "[[setup]]\nname = \"d\"\nmkdir = \"/tmp/x\"\nworkdir = \"/\"\n",
        "4:11",
        "`workdir` does not apply to a mkdir step",
    );
}

#[test]
fn readiness_needs_exactly_one_check() {
    assert_rejected(
        "[[service]]\nname = \"a\"\ncommand = [\"a\"]\nready = { notify = true, tcp = \"127.0.0.1:1\" }\n",
        "4:9",
        "exactly one of",
    );
    assert_rejected(
        "[[service]]\nname = \"a\"\ncommand = [\"a\"]\nready = { http = \"https://127.0.0.1/\" }\n",
        "4:18",
        "TLS is not supported",
    );
    assert_rejected(
        "[[service]]\nname = \"a\"\ncommand = [\"a\"]\nready = { tcp = \"localhost\" }\n",
        "4:17",
        "port is missing",
    );
}

#[test]
fn unset_variables_are_named() {
    assert_rejected(
        "[[service]]\nname = \"a\"\ncommand = [\"a\", \"${LAUNCHER_TEST_UNSET_DATABASE_URL}\"]\n",
        "3:17",
        "environment variable LAUNCHER_TEST_UNSET_DATABASE_URL is not set",
    );
    assert_rejected(
        "[[service]]\nname = \"a\"\ncommand = [\"a\"]\nenabled = \"${LAUNCHER_TEST_UNSET_FLAG:-maybe}\"\n",
        "4:11",
        "not a boolean",
    );
    assert_rejected("[[service]]\nname = \"bad name\"\ncommand = [\"a\"]\n", "2:8", "invalid name");
}

#[test]
fn toml_syntax_errors_are_located() {
    assert_rejected("[[service]]\nname = \"a\n", "2:10", "invalid basic string");
}

#[test]
fn setup_step_timeouts_are_checked_and_printed() {
    let config = "[[setup]]\nname = \"migrations\"\ncommand = [\"flask\", \"db\", \"upgrade\"]\n\
                  [[setup]]\nname = \"warm-up\"\ncommand = [\"true\"]\ntimeout = \"30s\"\n";
    let (code, stdout, stderr, _) = check(config, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("  1. migrations: flask db upgrade\n     timeout: 5m\n"), "the default:\n{stdout}");
    assert!(stdout.contains("  2. warm-up: true\n     timeout: 30s\n"), "{stdout}");

    assert_rejected(
        "[[setup]]\nname = \"m\"\ncommand = [\"true\"]\ntimeout = \"0s\"\n",
        "4:11",
        "setup step `m`: `timeout` must be more than 0 (the default is 5m)",
    );
    assert_rejected("[[setup]]\nname = \"m\"\ncommand = [\"true\"]\ntimeout = \"5\"\n", "4:11", "malformed duration");
    assert_rejected(
        "[[setup]]\nname = \"d\"\nmkdir = \"/tmp/x\"\ntimeout = \"1s\"\n",
        "4:11",
        "`timeout` does not apply to a mkdir step",
    );
}
