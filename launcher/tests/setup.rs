//! Setup steps run once, in order, before any service; a failing step stops the startup.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Mode, Scratch, LAUNCHER};

#[test]
fn setup_steps_run_in_order_before_the_services() {
    let scratch = Scratch::new("setup-order");
    let dir = scratch.display();
    let config = format!(
        r#"
        [[setup]]
        name = "metrics-dir"
        mkdir = "${{LAUNCHER_TEST_METRICS:-{dir}/metrics/multiproc}}"
        mode = "0777"

        [[setup]]
        name = "first"
        command = ["sh", "-c", "echo first:$$STEP_VALUE:$$(pwd) >> {dir}/log"]
        env = {{ STEP_VALUE = "${{LAUNCHER_TEST_UNSET_VALUE:-from-default}}" }}
        workdir = "{dir}/metrics"

        [[setup]]
        name = "second"
        command = ["sh", "-c", "echo second >> {dir}/log"]

        [[service]]
        name = "app"
        command = ["sh", "-c", "echo service >> {dir}/log; exit 0"]
        "#
    );
    let path = scratch.write("launcher.toml", &config);
    // chmod, not mkdir's mode: a restrictive umask must not matter.
    let mut command = Command::new("sh");
    command.arg("-c").arg(format!("umask 077; exec {LAUNCHER} --config {}", path.display()));
    let status = scratch.spawn(command).wait();

    assert_eq!(status.code(), Some(0), "stderr: {}", scratch.stderr());
    assert_eq!(scratch.read("log"), format!("first:from-default:{dir}/metrics\nsecond\nservice\n"));
    let mode = std::fs::metadata(scratch.path("metrics/multiproc")).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o777);
}

#[test]
fn a_failing_step_stops_the_startup_with_its_exit_code() {
    let scratch = Scratch::new("setup-failure");
    let dir = scratch.display();
    let mut running = scratch.start(&format!(
        r#"
        [[setup]]
        name = "migrations"
        command = ["sh", "-c", "echo migrating; exit 4"]

        [[setup]]
        name = "after-migrations"
        command = ["touch", "{dir}/later-step-ran"]

        [[service]]
        name = "web"
        command = ["touch", "{dir}/service-ran"]
        "#
    ));
    let status = running.wait();

    assert_eq!(status.code(), Some(4));
    let stderr = scratch.stderr();
    assert!(stderr.contains("launcher: setup step `migrations` failed (exit code 4)"), "{stderr}");
    assert_eq!(scratch.stdout(), "migrating\n", "a step's output passes straight through");
    assert!(!scratch.path("later-step-ran").exists());
    assert!(!scratch.path("service-ran").exists());
}

#[test]
fn a_step_that_cannot_start_names_itself() {
    let scratch = Scratch::new("setup-missing");
    let mut running = scratch.start(
        r#"
        [[setup]]
        name = "migrations"
        command = ["launcher-test-no-such-program", "db", "upgrade"]
        "#,
    );
    assert_eq!(running.wait().code(), Some(127));
    let stderr = scratch.stderr();
    assert!(stderr.contains("setup step `migrations`: cannot start `launcher-test-no-such-program`"), "{stderr}");
}

#[test]
fn a_mkdir_step_that_fails_names_itself() {
    let scratch = Scratch::new("setup-mkdir");
    scratch.write("a-file", "");
    let mut running = scratch.start(&format!(
        "[[setup]]\nname = \"metrics-dir\"\nmkdir = \"{}/a-file/metrics\"\nmode = \"0777\"\n",
        scratch.display()
    ));
    assert_eq!(running.wait().code(), Some(1));
    let stderr = scratch.stderr();
    assert!(stderr.contains("setup step `metrics-dir` failed: cannot create"), "{stderr}");
}

in_both_modes!(a_step_past_its_timeout_is_stopped_with_its_group, a_step_ignoring_sigterm_past_its_timeout_is_killed);

/// The step's main process and a helper in its process group both handle SIGTERM: on the
/// timeout, both get it, the services never start, and the launcher exits 124.
fn a_step_past_its_timeout_is_stopped_with_its_group(mode: Mode) {
    let scratch = Scratch::new("setup-timeout");
    let dir = scratch.display();
    scratch.write(
        "hang.sh",
        "dir=$1\n\
         sh -c 'trap \"echo helper >> $0/stopped; exit 0\" TERM; touch $0/helper.ready; while :; do sleep 0.05; done' \"$dir\" &\n\
         trap 'echo migration >> \"$dir/stopped\"; exit 0' TERM\n\
         touch \"$dir/migration.ready\"\n\
         while :; do sleep 0.05; done\n",
    );
    let started = Instant::now();
    let mut running = scratch.start_in(
        mode,
        &format!(
            r#"
            grace_period = "30s"
            [[setup]]
            name = "hung-migration"
            command = ["sh", "{dir}/hang.sh", "{dir}"]
            timeout = "2s"

            [[service]]
            name = "web"
            command = ["touch", "{dir}/service-ran"]
            "#
        ),
    );
    let status = running.wait();
    let took = started.elapsed();
    let stderr = scratch.stderr();

    assert_eq!(status.code(), Some(124), "{stderr}");
    assert!(
        stderr.contains(
            "launcher: setup step `hung-migration` did not finish within its timeout of 2s: stopping its process \
             group; not starting the services"
        ),
        "{stderr}"
    );
    // The helper may record a second SIGTERM: once its parent is gone, it is an orphan, and the
    // orphans' SIGTERM reaches it too (as PID 1, kill(-1) reaches everyone).
    let mut stopped: Vec<String> = scratch.read("stopped").lines().map(str::to_owned).collect();
    stopped.sort();
    stopped.dedup();
    assert_eq!(stopped, ["helper", "migration"], "both got SIGTERM\n{stderr}");
    assert!(!scratch.path("service-ran").exists());
    assert!(took >= Duration::from_secs(2), "stopped before its timeout: {took:?}");
    assert!(took < Duration::from_secs(20), "it waited for the grace period: {took:?}\n{stderr}");
    assert!(!stderr.contains("grace period of 30s is over"), "{stderr}");
}

/// A step that ignores SIGTERM gets the grace period after its timeout, then SIGKILL.
fn a_step_ignoring_sigterm_past_its_timeout_is_killed(mode: Mode) {
    let scratch = Scratch::new("setup-timeout-kill");
    let dir = scratch.display();
    let mut running = scratch.start_in(
        mode,
        &format!(
            r#"
            grace_period = "1s"
            [[setup]]
            name = "stuck"
            command = ["sh", "-c", "trap '' TERM; touch {dir}/stuck.ready; while :; do sleep 0.05; done"]
            timeout = "1s"

            [[service]]
            name = "web"
            command = ["touch", "{dir}/service-ran"]
            "#
        ),
    );
    let status = running.wait();
    let stderr = scratch.stderr();
    assert_eq!(status.code(), Some(124), "{stderr}");
    assert!(stderr.contains("setup step `stuck` did not finish within its timeout of 1s"), "{stderr}");
    assert!(stderr.contains("launcher: grace period of 1s is over: killing setup step `stuck`"), "{stderr}");
    assert!(stderr.contains("setup step `stuck` stopped (killed by SIGKILL)"), "{stderr}");
    assert!(scratch.path("stuck.ready").exists());
    assert!(!scratch.path("service-ran").exists());
}
