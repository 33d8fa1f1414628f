//! Signals, shutdown order, the grace period, exit codes and reaping.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    children, is_zombie, parent_and_state, process_exists, process_group, processes_with, run_launcher, sh, wait_until,
    Mode, Scratch, LAUNCHER,
};

/// Service `stubborn` ignores SIGTERM, and so does its worker, in its process group: SERVICE_PY
/// with `ignore-term`, started by a shell that first ignores `traps`. They write stubborn.ready
/// and worker.ready.
fn stubborn_command(scratch: &Scratch, traps: &str) -> String {
    let dir = scratch.display();
    sh(&format!(
        "trap '' {traps}; python3 {dir}/service.py worker {dir} ignore-term & exec python3 {dir}/service.py stubborn {dir} ignore-term"
    ))
}

/// A service that exits with `code` once each of the `markers` exists in the scratch dir.
fn exiting_once(scratch: &Scratch, markers: &[&str], code: i32) -> String {
    let dir = scratch.display();
    let waits: Vec<String> = markers.iter().map(|marker| format!("[ ! -e {dir}/{marker} ]")).collect();
    sh(&format!("while {}; do sleep 0.05; done; exit {code}", waits.join(" || ")))
}

#[test]
fn sigterm_stops_services_in_reverse_order_and_exits_0_before_the_grace_period() {
    let scratch = Scratch::new("sigterm");
    let config = scratch.config().grace_period("30s").test_service("db");
    let config = config.test_service("web").after("db").test_service("worker").after("db");
    let mut running = scratch.start_ready(config, &["db.ready", "web.ready", "worker.ready"]);
    let (status, took) = running.stop_timed(libc::SIGTERM);
    println!("the launcher stopped 3 services in {took:?}");

    scratch.assert_exited(status, 0, &[]);
    assert!(took < Duration::from_secs(20), "it slept out the grace period: {took:?}");
    // Last started first, each one gone before the next is asked.
    assert_eq!(scratch.read("stopped"), "worker\nweb\ndb\n");
}

#[test]
fn a_service_ignoring_sigterm_is_killed_with_its_group_after_the_grace_period() {
    let scratch = Scratch::new("grace");
    // The stubborn service also has a child in its process group that ignores SIGTERM.
    let config = scratch.config().grace_period("1s").service("stubborn", &stubborn_command(&scratch, "TERM"));
    let mut running = scratch.start_ready(config, &["stubborn.ready", "worker.ready"]);
    let (stubborn, worker) = (scratch.read_pid("stubborn.ready"), scratch.read_pid("worker.ready"));
    let status = running.stop(libc::SIGTERM);

    scratch.assert_exited(
        status,
        0,
        &[
            "launcher: grace period of 1s is over: killing service `stubborn`",
            "service `stubborn` stopped (killed by SIGKILL)",
        ],
    );
    assert!(!process_exists(stubborn), "the service outlived the launcher");
    assert!(!process_exists(worker), "the service's worker outlived the launcher");
}

#[test]
fn a_crashing_service_stops_the_others_and_gives_its_exit_code() {
    let scratch = Scratch::new("crash");
    let config = scratch.config().grace_period("30s").test_service("steady");
    let status = scratch.start(config.service("crasher", &exiting_once(&scratch, &["steady.ready"], 7))).wait();
    scratch.assert_exited(
        status,
        7,
        &["launcher: service `crasher` exited on its own (exit code 7): stopping the others"],
    );
    assert_eq!(scratch.read("stopped"), "steady\n");
}

#[test]
fn a_service_killed_by_a_signal_gives_128_plus_n() {
    let scratch = Scratch::new("crash-signal");
    let status = scratch.start(scratch.config().service("segfaulter", &sh("kill -SEGV $$$$"))).wait();
    scratch.assert_exited(status, 128 + libc::SIGSEGV, &["service `segfaulter` exited on its own (killed by SIGSEGV)"]);
}

#[test]
fn signals_are_forwarded_to_the_services() {
    let scratch = Scratch::new("forward");
    let dir = scratch.display();
    let reloader =
        sh(&format!("trap 'echo got-hup >> {dir}/hup' HUP; touch {dir}/trap-set; while :; do sleep 0.05; done"));
    let mut running = scratch.start_ready(scratch.config().service("reloader", &reloader), &["trap-set"]);
    running.signal(libc::SIGHUP);
    scratch.wait_for_file("hup");
    assert!(running.is_running(), "SIGHUP must not stop the launcher");
    scratch.assert_exited(running.stop(libc::SIGINT), 0, &[]);
}

#[test]
fn orphaned_grandchildren_are_reaped() {
    let scratch = Scratch::new("orphan");
    // `( ... & )`: the subshell exits at once, so the grandchild is orphaned and reparented to
    // the launcher (a child subreaper); it exits a second later and must not stay a zombie.
    scratch.write(
        "orphan.sh",
        "( sh -c 'echo $$ > \"$0/orphan.tmp\"; mv \"$0/orphan.tmp\" \"$0/orphan.pid\"; exec sleep 1' \"$1\" & )\n\
         exec sleep 1000\n",
    );
    let config = scratch.config().service("parent", &scratch.script_command("sh", "orphan.sh"));
    let mut running = scratch.start_ready(config, &["orphan.pid"]);
    let orphan = scratch.read_pid("orphan.pid");
    if let Some((parent, _)) = parent_and_state(orphan) {
        assert_eq!(parent, running.pid(), "the orphan was not reparented to the launcher");
    }
    // A zombie keeps its /proc entry (state Z) until its parent reaps it.
    wait_until("the orphan to be reaped", || parent_and_state(orphan).is_none());
    assert!(running.is_running(), "an orphan's exit must not stop the launcher");
    scratch.assert_exited(running.stop(libc::SIGTERM), 0, &[]);
}

#[test]
fn the_launcher_waits_for_orphans_before_exiting() {
    let scratch = Scratch::new("orphan-exit");
    // The service leaves an orphan behind and exits: the launcher stops the orphan too.
    let dir = scratch.display();
    let leaver = sh(&format!(
        "(python3 {dir}/service.py orphan {dir} &); while [ ! -e {dir}/orphan.ready ]; do sleep 0.05; done; exit 3"
    ));
    let status = scratch.start(scratch.config().grace_period("30s").service("leaver", &leaver)).wait();
    scratch.assert_exited(status, 3, &[]);
    let orphan = scratch.read_pid("orphan.ready");
    assert_eq!(scratch.read("stopped"), "orphan\n", "the orphan got SIGTERM");
    assert!(!process_exists(orphan));
}

#[test]
fn exec_mode_passes_exit_codes_and_output() {
    assert_eq!(run_launcher(&["--", "sh", "-c", "exit 3"], &[]).0, 3);
    assert_eq!(run_launcher(&["--", "sh", "-c", "kill -KILL $$"], &[]).0, 137);
    let (code, stdout, _) = run_launcher(&["--", "echo", "straight", "through"], &[]);
    assert_eq!((code, stdout.as_str()), (0, "straight through\n"));
    let (code, _, stderr) = run_launcher(&["--", "launcher-test-no-such-program"], &[]);
    assert_eq!(code, 127);
    assert!(stderr.contains("cannot start `launcher-test-no-such-program`"), "{stderr}");
}

#[test]
fn exec_mode_stops_its_command_on_sigterm() {
    let scratch = Scratch::new("exec-sigterm");
    let mut command = Command::new(LAUNCHER);
    command.args(["--", "python3", &format!("{}/service.py", scratch.display()), "only", &scratch.display()]);
    let mut running = scratch.spawn(command);
    scratch.wait_for_file("only.ready");
    scratch.assert_exited(running.stop(libc::SIGTERM), 0, &[]);
    assert_eq!(scratch.read("stopped"), "only\n");
}

in_both_modes!(
    orphans_reparented_during_the_stop_get_sigterm,
    the_final_sigkill_spares_the_groups_of_reaped_processes,
    a_second_sigterm_kills_everything_at_once,
    a_second_sigint_kills_everything_at_once,
    the_first_failing_service_gives_the_exit_code,
    a_service_exiting_0_stops_the_others_and_the_launcher_exits_0,
);

/// The service leaves a shell behind (an orphan, reparented to the launcher) whose own child
/// handles SIGTERM. When the shell gets SIGTERM and dies, its child is reparented to the launcher
/// only then, in the middle of the stop: it must get SIGTERM too, not a SIGKILL 30s later.
fn orphans_reparented_during_the_stop_get_sigterm(mode: Mode) {
    let scratch = Scratch::new("late-orphan");
    scratch.write(
        "leaver.sh",
        "dir=$1\n\
         ( sh -c 'python3 \"$0/service.py\" late \"$0\" & wait' \"$dir\" & )\n\
         exec python3 \"$dir/service.py\" main \"$dir\"\n",
    );
    let config = scratch.config().grace_period("30s").service("leaver", &scratch.script_command("sh", "leaver.sh"));
    let mut running = scratch.start_ready_in(mode, config, &["main.ready", "late.ready"]);
    let (status, took) = running.stop_timed(libc::SIGTERM);

    let stderr = scratch.assert_exited(status, 0, &[]);
    assert_eq!(scratch.read("stopped"), "main\nlate\n", "{stderr}");
    assert!(took < Duration::from_secs(20), "the late orphan waited for the SIGKILL: {took:?}\n{stderr}");
    assert!(!stderr.contains("grace period of 30s is over"), "{stderr}");
}

/// A setup step's process group outlives the step in a worker; the worker exits too, and an
/// unrelated process joins the group id (as a recycled id would be reused). The SIGKILL at the
/// end of the grace period must not reach it: only groups of processes not reaped yet are killed.
fn the_final_sigkill_spares_the_groups_of_reaped_processes(mode: Mode) {
    let scratch = Scratch::new("stale-group");
    scratch.write("step.sh", "(sh \"$1/worker.sh\" \"$1\" &)\nexit 0\n");
    scratch.write("worker.sh", "while [ ! -e \"$1/worker-may-exit\" ]; do sleep 0.05; done\n");
    let config = scratch.config().grace_period("1s").setup("leaves-a-worker", &scratch.script_command("sh", "step.sh"));
    let config = config.service("stubborn", &scratch.service_command("stubborn", "ignore-term"));
    let mut running = scratch.start_ready_in(mode, config, &["stubborn.ready"]);
    assert!(scratch.stderr().contains("setup step `leaves-a-worker` done"), "{}", scratch.stderr());
    let worker_marker = format!("{}/worker.sh", scratch.display());
    let mut worker = Vec::new();
    wait_until("the step's worker", || {
        worker = processes_with(&worker_marker);
        !worker.is_empty()
    });
    let group = process_group(worker[0]).expect("the worker's process group");
    assert_ne!(group, worker[0], "the worker is in the step's group, not its own");

    // Same session as the launcher (neither calls setsid), so it may join the group. It is no
    // descendant of the launcher and, as PID 1, outside its namespace.
    let joined = scratch.path("bystander-joined");
    let mut bystander = Command::new("python3")
        .args([
            "-c",
            "import os, sys, time\nos.setpgid(0, int(sys.argv[1]))\nopen(sys.argv[2], 'w').close()\ntime.sleep(1000)\n",
            &group.to_string(),
            &joined.display().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the bystander");
    scratch.wait_for_file("bystander-joined");
    scratch.write("worker-may-exit", "");
    wait_until("the worker to exit", || processes_with(&worker_marker).is_empty());
    assert_eq!(process_group(bystander.id() as i32), Some(group), "the bystander is the group's last member");

    running.signal(libc::SIGTERM);
    wait_until("the SIGKILL", || scratch.stderr().contains("service `stubborn` stopped (killed by SIGKILL)"));
    // A SIGKILL sent with the stubborn service's would have landed by now.
    std::thread::sleep(Duration::from_millis(500));
    let bystander_state = bystander.try_wait().expect("try_wait");
    // Before waiting for the launcher: as PID 1, its namespace cannot end while the bystander
    // holds one of its pids as its process group.
    let _ = bystander.kill();
    let _ = bystander.wait();
    let status = running.wait();

    let stderr = scratch.stderr();
    assert_eq!(bystander_state, None, "the launcher killed a process group it no longer owned\n{stderr}");
    scratch.assert_exited(status, 0, &["launcher: grace period of 1s is over: killing service `stubborn`"]);
}

/// A second SIGTERM or SIGINT during the stop ends the grace period at once.
fn a_second_signal_kills_everything_at_once(mode: Mode, first: i32, second: i32) {
    let scratch = Scratch::new("second-signal");
    let config = scratch.config().grace_period("30s").test_service("quick");
    let config = config.service("stubborn", &stubborn_command(&scratch, "TERM INT"));
    let mut running = scratch.start_ready_in(mode, config, &["quick.ready", "stubborn.ready", "worker.ready"]);
    running.signal(first);
    let first_name = if first == libc::SIGTERM { "SIGTERM" } else { "SIGINT" };
    wait_until("the stop to begin", || scratch.stderr().contains(&format!("received {first_name}: stopping")));
    // Within the grace period: the stubborn service is being waited for.
    std::thread::sleep(Duration::from_millis(300));
    assert!(running.is_running(), "the launcher stopped before the grace period: {}", scratch.stderr());
    let (status, took) = running.stop_timed(second);

    let second_name = if second == libc::SIGTERM { "SIGTERM" } else { "SIGINT" };
    let stderr = scratch.assert_exited(
        status,
        0,
        &[
            &format!("launcher: received {second_name} again: killing everything now"),
            "service `stubborn` stopped (killed by SIGKILL)",
            "service `quick` stopped (killed by SIGKILL)",
        ],
    );
    assert!(took < Duration::from_secs(10), "the second signal did not cut the grace period short: {took:?}");
    // The quick service was never asked: the stop had not reached it yet.
    assert_eq!(scratch.read("stopped"), "", "{stderr}");
}

fn a_second_sigterm_kills_everything_at_once(mode: Mode) {
    a_second_signal_kills_everything_at_once(mode, libc::SIGTERM, libc::SIGTERM);
}

fn a_second_sigint_kills_everything_at_once(mode: Mode) {
    a_second_signal_kills_everything_at_once(mode, libc::SIGINT, libc::SIGINT);
}

/// Three services exit while the launcher is stopped (SIGSTOP), so that one reaping pass finds
/// them all: exit 0, then 5, then 3, in start order. The first failing one gives the code.
fn the_first_failing_service_gives_the_exit_code(mode: Mode) {
    let scratch = Scratch::new("first-failure");
    let config = scratch.config().grace_period("30s").service("clean", &exiting_once(&scratch, &["go"], 0));
    let config = config.service("five", &exiting_once(&scratch, &["go"], 5)).after("clean");
    let config = config.service("three", &exiting_once(&scratch, &["go"], 3)).after("five");
    let mut running = scratch.start_ready_in(mode, config.test_service("steady").after("three"), &["steady.ready"]);
    let launcher = running.pid();
    wait_until("all four services to run", || children(launcher).len() == 4);
    running.signal(libc::SIGSTOP);
    scratch.write("go", "");
    wait_until("three exited services", || children(launcher).into_iter().filter(|&pid| is_zombie(pid)).count() == 3);
    running.signal(libc::SIGCONT);
    let status = running.wait();

    scratch.assert_exited(
        status,
        5,
        &[
            "launcher: service `clean` exited on its own (exit code 0)\n",
            "launcher: service `five` exited on its own (exit code 5): stopping the others\n",
            "launcher: service `three` exited on its own (exit code 3)\n",
            "launcher: 3 services exited at once: exiting with the code of service `five`, the first to fail",
        ],
    );
    assert_eq!(scratch.read("stopped"), "steady\n");
}

/// A service that exits 0 on its own is done, and so is the launcher: the others are stopped
/// (in reverse start order, as on SIGTERM) and the launcher exits 0.
fn a_service_exiting_0_stops_the_others_and_the_launcher_exits_0(mode: Mode) {
    let scratch = Scratch::new("exit-0");
    let oneshot = exiting_once(&scratch, &["first.ready", "last.ready"], 0);
    let config = scratch.config().grace_period("30s").test_service("first").service("oneshot", &oneshot);
    let status = scratch.start_in(mode, config.test_service("last")).wait();
    let stderr = scratch.assert_exited(
        status,
        0,
        &["launcher: service `oneshot` exited on its own (exit code 0): stopping the others"],
    );
    assert_eq!(scratch.read("stopped"), "last\nfirst\n", "{stderr}");
}
