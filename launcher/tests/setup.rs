//! Setup steps run once, in order, before any service; a failing step stops the startup.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{argv, sh, toml_string, Mode, Scratch, LAUNCHER};

#[test]
fn setup_steps_run_in_order_before_the_services() {
    let scratch = Scratch::new("setup-order");
    let dir = scratch.display();
    let metrics = format!("${{LAUNCHER_TEST_METRICS:-{dir}/metrics/multiproc}}");
    let config = scratch.config().mkdir("metrics-dir", &metrics, "0777");
    let config = config.setup("first", &sh(&format!("echo first:$$STEP_VALUE:$$(pwd) >> {dir}/log")));
    let config = config.env("STEP_VALUE", "${LAUNCHER_TEST_UNSET_VALUE:-from-default}");
    let config = config.key("workdir", &toml_string(&format!("{dir}/metrics")));
    let config = config.setup("second", &sh(&format!("echo second >> {dir}/log")));
    let config = config.service("app", &sh(&format!("echo service >> {dir}/log; exit 0")));
    let path = scratch.write("launcher.toml", config.as_ref());
    // chmod, not mkdir's mode: a restrictive umask must not matter.
    let mut command = Command::new("sh");
    command.arg("-c").arg(format!("umask 077; exec {LAUNCHER} --config {}", path.display()));
    let status = scratch.spawn(command).wait();

    scratch.assert_exited(status, 0, &[]);
    assert_eq!(scratch.read("log"), format!("first:from-default:{dir}/metrics\nsecond\nservice\n"));
    let mode = std::fs::metadata(scratch.path("metrics/multiproc")).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o777);
}

#[test]
fn a_failing_step_stops_the_startup_with_its_exit_code() {
    let scratch = Scratch::new("setup-failure");
    let config = scratch.config().setup("migrations", &sh("echo migrating; exit 4"));
    let config = config.setup("after-migrations", &scratch.touch_command("later-step-ran"));
    let status = scratch.start(config.service("web", &scratch.touch_command("service-ran"))).wait();

    scratch.assert_exited(status, 4, &["launcher: setup step `migrations` failed (exit code 4)"]);
    assert_eq!(scratch.stdout(), "migrating\n", "a step's output passes straight through");
    assert!(!scratch.path("later-step-ran").exists());
    assert!(!scratch.path("service-ran").exists());
}

#[test]
fn a_step_that_cannot_start_names_itself() {
    let scratch = Scratch::new("setup-missing");
    let config = scratch.config().setup("migrations", &argv(&["launcher-test-no-such-program", "db", "upgrade"]));
    let status = scratch.start(config).wait();
    scratch.assert_exited(status, 127, &["setup step `migrations`: cannot start `launcher-test-no-such-program`"]);
}

#[test]
fn a_mkdir_step_that_fails_names_itself() {
    let scratch = Scratch::new("setup-mkdir");
    scratch.write("a-file", "");
    let metrics = scratch.path("a-file/metrics").display().to_string();
    let status = scratch.start(scratch.config().mkdir("metrics-dir", &metrics, "0777")).wait();
    scratch.assert_exited(status, 1, &["setup step `metrics-dir` failed: cannot create"]);
}

in_both_modes!(a_step_past_its_timeout_is_stopped_with_its_group, a_step_ignoring_sigterm_past_its_timeout_is_killed);

/// The step's main process and a helper in its process group both handle SIGTERM: on the
/// timeout, both get it, the services never start, and the launcher exits 124.
fn a_step_past_its_timeout_is_stopped_with_its_group(mode: Mode) {
    let scratch = Scratch::new("setup-timeout");
    scratch.write(
        "hang.sh",
        "dir=$1\n\
         sh -c 'trap \"echo helper >> $0/stopped; exit 0\" TERM; touch $0/helper.ready; while :; do sleep 0.05; done' \"$dir\" &\n\
         trap 'echo migration >> \"$dir/stopped\"; exit 0' TERM\n\
         touch \"$dir/migration.ready\"\n\
         while :; do sleep 0.05; done\n",
    );
    let config = scratch.config().grace_period("30s");
    let config = config.setup("hung-migration", &scratch.script_command("sh", "hang.sh")).timeout("2s");
    let started = Instant::now();
    let status = scratch.start_in(mode, config.service("web", &scratch.touch_command("service-ran"))).wait();
    let took = started.elapsed();

    let stderr = scratch.assert_exited(
        status,
        124,
        &["launcher: setup step `hung-migration` did not finish within its timeout of 2s: stopping its process \
           group; not starting the services"],
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
    let stuck = sh(&format!("trap '' TERM; touch {}/stuck.ready; while :; do sleep 0.05; done", scratch.display()));
    let config = scratch.config().grace_period("1s").setup("stuck", &stuck).timeout("1s");
    let status = scratch.start_in(mode, config.service("web", &scratch.touch_command("service-ran"))).wait();

    scratch.assert_exited(
        status,
        124,
        &[
            "setup step `stuck` did not finish within its timeout of 1s",
            "launcher: grace period of 1s is over: killing setup step `stuck`",
            "setup step `stuck` stopped (killed by SIGKILL)",
        ],
    );
    assert!(scratch.path("stuck.ready").exists());
    assert!(!scratch.path("service-ran").exists());
}
