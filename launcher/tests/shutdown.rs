//! Signals, shutdown order, the grace period, exit codes and reaping.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    children, is_zombie, parent_and_state, process_exists, process_group, processes_with, run_launcher, wait_until,
    Mode, Scratch, LAUNCHER,
};

#[test]
fn sigterm_stops_services_in_reverse_order_and_exits_0_before_the_grace_period() {
    let scratch = Scratch::new("sigterm");
    let mut running = scratch.start(&format!(
        r#"
        grace_period = "30s"
        [[service]]
        name = "db"
        command = {}
        [[service]]
        name = "web"
        command = {}
        after = ["db"]
        [[service]]
        name = "worker"
        command = {}
        after = ["db"]
        "#,
        scratch.service_command("db", "stop"),
        scratch.service_command("web", "stop"),
        scratch.service_command("worker", "stop"),
    ));
    for name in ["db.ready", "web.ready", "worker.ready"] {
        scratch.wait_for_file(name);
    }
    let signalled = Instant::now();
    running.signal(libc::SIGTERM);
    let status = running.wait();
    let took = signalled.elapsed();
    println!("the launcher stopped 3 services in {took:?}");

    assert_eq!(status.code(), Some(0), "stderr: {}", scratch.stderr());
    assert!(took < Duration::from_secs(20), "it slept out the grace period: {took:?}");
    // Last started first, each one gone before the next is asked.
    assert_eq!(scratch.read("stopped"), "worker\nweb\ndb\n");
}

#[test]
fn a_service_ignoring_sigterm_is_killed_with_its_group_after_the_grace_period() {
    let scratch = Scratch::new("grace");
    let dir = scratch.display();
    // The stubborn service also has a child in its process group that ignores SIGTERM.
    let mut running = scratch.start(&format!(
        r#"
        grace_period = "1s"
        [[service]]
        name = "stubborn"
        command = ["sh", "-c", "trap '' TERM; python3 {dir}/service.py worker {dir} ignore-term & exec python3 {dir}/service.py stubborn {dir} ignore-term"]
        "#
    ));
    scratch.wait_for_file("stubborn.ready");
    scratch.wait_for_file("worker.ready");
    let stubborn: i32 = scratch.read("stubborn.ready").parse().unwrap();
    let worker: i32 = scratch.read("worker.ready").parse().unwrap();
    running.signal(libc::SIGTERM);
    let status = running.wait();

    let stderr = scratch.stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("launcher: grace period of 1s is over: killing service `stubborn`"), "{stderr}");
    assert!(stderr.contains("service `stubborn` stopped (killed by SIGKILL)"), "{stderr}");
    assert!(!process_exists(stubborn), "the service outlived the launcher");
    assert!(!process_exists(worker), "the service's worker outlived the launcher");
}

#[test]
fn a_crashing_service_stops_the_others_and_gives_its_exit_code() {
    let scratch = Scratch::new("crash");
    let dir = scratch.display();
    let mut running = scratch.start(&format!(
        r#"
        grace_period = "30s"
        [[service]]
        name = "steady"
        command = {}
        [[service]]
        name = "crasher"
        command = ["sh", "-c", "while [ ! -e {dir}/steady.ready ]; do sleep 0.05; done; exit 7"]
        "#,
        scratch.service_command("steady", "stop"),
    ));
    let status = running.wait();
    let stderr = scratch.stderr();
    assert_eq!(status.code(), Some(7), "{stderr}");
    assert!(
        stderr.contains("launcher: service `crasher` exited on its own (exit code 7): stopping the others"),
        "{stderr}"
    );
    assert_eq!(scratch.read("stopped"), "steady\n");
}

#[test]
fn a_service_killed_by_a_signal_gives_128_plus_n() {
    let scratch = Scratch::new("crash-signal");
    let mut running = scratch.start(
        r#"
        [[service]]
        name = "segfaulter"
        command = ["sh", "-c", "kill -SEGV $$$$"]
        "#,
    );
    assert_eq!(running.wait().code(), Some(128 + libc::SIGSEGV));
    assert!(scratch.stderr().contains("service `segfaulter` exited on its own (killed by SIGSEGV)"));
}

#[test]
fn signals_are_forwarded_to_the_services() {
    let scratch = Scratch::new("forward");
    let dir = scratch.display();
    let mut running = scratch.start(&format!(
        r#"
        [[service]]
        name = "reloader"
        command = ["sh", "-c", "trap 'echo got-hup >> {dir}/hup' HUP; touch {dir}/trap-set; while :; do sleep 0.05; done"]
        "#
    ));
    scratch.wait_for_file("trap-set");
    running.signal(libc::SIGHUP);
    scratch.wait_for_file("hup");
    assert!(running.is_running(), "SIGHUP must not stop the launcher");
    running.signal(libc::SIGINT);
    assert_eq!(running.wait().code(), Some(0));
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
    let dir = scratch.display();
    let mut running =
        scratch.start(&format!("[[service]]\nname = \"parent\"\ncommand = [\"sh\", \"{dir}/orphan.sh\", \"{dir}\"]\n"));
    scratch.wait_for_file("orphan.pid");
    let orphan: i32 = scratch.read("orphan.pid").trim().parse().unwrap();
    if let Some((parent, _)) = parent_and_state(orphan) {
        assert_eq!(parent, running.pid(), "the orphan was not reparented to the launcher");
    }
    // A zombie keeps its /proc entry (state Z) until its parent reaps it.
    wait_until("the orphan to be reaped", || parent_and_state(orphan).is_none());
    assert!(running.is_running(), "an orphan's exit must not stop the launcher");
    running.signal(libc::SIGTERM);
    assert_eq!(running.wait().code(), Some(0));
}

#[test]
fn the_launcher_waits_for_orphans_before_exiting() {
    let scratch = Scratch::new("orphan-exit");
    // The service leaves an orphan behind and exits: the launcher stops the orphan too.
    let dir = scratch.display();
    let mut running = scratch.start(&format!(
        r#"
        grace_period = "30s"
        [[service]]
        name = "leaver"
        command = ["sh", "-c", "(python3 {dir}/service.py orphan {dir} &); while [ ! -e {dir}/orphan.ready ]; do sleep 0.05; done; exit 3"]
        "#
    ));
    let status = running.wait();
    assert_eq!(status.code(), Some(3), "stderr: {}", scratch.stderr());
    let orphan: i32 = scratch.read("orphan.ready").parse().unwrap();
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
    running.signal(libc::SIGTERM);
    assert_eq!(running.wait().code(), Some(0));
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
    let dir = scratch.display();
    scratch.write(
        "leaver.sh",
        "dir=$1\n\
         ( sh -c 'python3 \"$0/service.py\" late \"$0\" & wait' \"$dir\" & )\n\
         exec python3 \"$dir/service.py\" main \"$dir\"\n",
    );
    let mut running = scratch.start_in(
        mode,
        &format!(
            r#"
            grace_period = "30s"
            [[service]]
            name = "leaver"
            command = ["sh", "{dir}/leaver.sh", "{dir}"]
            "#
        ),
    );
    scratch.wait_for_file("main.ready");
    scratch.wait_for_file("late.ready");
    let signalled = Instant::now();
    running.signal(libc::SIGTERM);
    let status = running.wait();
    let took = signalled.elapsed();
    let stderr = scratch.stderr();

    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(scratch.read("stopped"), "main\nlate\n", "{stderr}");
    assert!(took < Duration::from_secs(20), "the late orphan waited for the SIGKILL: {took:?}\n{stderr}");
    assert!(!stderr.contains("grace period of 30s is over"), "{stderr}");
}

/// A setup step's process group outlives the step in a worker; the worker exits too, and an
/// unrelated process joins the group id (as a recycled id would be reused). The SIGKILL at the
/// end of the grace period must not reach it: only groups of processes not reaped yet are killed.
fn the_final_sigkill_spares_the_groups_of_reaped_processes(mode: Mode) {
    let scratch = Scratch::new("stale-group");
    let dir = scratch.display();
    scratch.write("step.sh", "(sh \"$1/worker.sh\" \"$1\" &)\nexit 0\n");
    scratch.write("worker.sh", "while [ ! -e \"$1/worker-may-exit\" ]; do sleep 0.05; done\n");
    let mut running = scratch.start_in(
        mode,
        &format!(
            r#"
            grace_period = "1s"
            [[setup]]
            name = "leaves-a-worker"
            command = ["sh", "{dir}/step.sh", "{dir}"]

            [[service]]
            name = "stubborn"
            command = {}
            "#,
            scratch.service_command("stubborn", "ignore-term")
        ),
    );
    scratch.wait_for_file("stubborn.ready");
    assert!(scratch.stderr().contains("setup step `leaves-a-worker` done"), "{}", scratch.stderr());
    let worker_marker = format!("{dir}/worker.sh");
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
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("launcher: grace period of 1s is over: killing service `stubborn`"), "{stderr}");
}

/// A second SIGTERM or SIGINT during the stop ends the grace period at once.
fn a_second_signal_kills_everything_at_once(mode: Mode, first: i32, second: i32) {
    let scratch = Scratch::new("second-signal");
    let dir = scratch.display();
    let mut running = scratch.start_in(
        mode,
        &format!(
            r#"
            grace_period = "30s"
            [[service]]
            name = "quick"
            command = {}
            [[service]]
            name = "stubborn"
            command = ["sh", "-c", "trap '' TERM INT; python3 {dir}/service.py worker {dir} ignore-term & exec python3 {dir}/service.py stubborn {dir} ignore-term"]
            "#,
            scratch.service_command("quick", "stop"),
        ),
    );
    scratch.wait_for_file("quick.ready");
    scratch.wait_for_file("stubborn.ready");
    scratch.wait_for_file("worker.ready");
    running.signal(first);
    let first_name = if first == libc::SIGTERM { "SIGTERM" } else { "SIGINT" };
    wait_until("the stop to begin", || scratch.stderr().contains(&format!("received {first_name}: stopping")));
    // Within the grace period: the stubborn service is being waited for.
    std::thread::sleep(Duration::from_millis(300));
    assert!(running.is_running(), "the launcher stopped before the grace period: {}", scratch.stderr());
    let signalled = Instant::now();
    running.signal(second);
    let status = running.wait();
    let took = signalled.elapsed();
    let stderr = scratch.stderr();

    let second_name = if second == libc::SIGTERM { "SIGTERM" } else { "SIGINT" };
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(took < Duration::from_secs(10), "the second signal did not cut the grace period short: {took:?}");
    assert!(stderr.contains(&format!("launcher: received {second_name} again: killing everything now")), "{stderr}");
    assert!(stderr.contains("service `stubborn` stopped (killed by SIGKILL)"), "{stderr}");
    // The quick service was never asked: the stop had not reached it yet.
    assert_eq!(scratch.read("stopped"), "", "{stderr}");
    assert!(stderr.contains("service `quick` stopped (killed by SIGKILL)"), "{stderr}");
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
    let dir = scratch.display();
    let exiting =
        |code: i32| format!("[\"sh\", \"-c\", \"while [ ! -e {dir}/go ]; do sleep 0.05; done; exit {code}\"]");
    let mut running = scratch.start_in(
        mode,
        &format!(
            r#"
            grace_period = "30s"
            [[service]]
            name = "clean"
            command = {}
            [[service]]
            name = "five"
            command = {}
            after = ["clean"]
            [[service]]
            name = "three"
            command = {}
            after = ["five"]
            [[service]]
            name = "steady"
            command = {}
            after = ["three"]
            "#,
            exiting(0),
            exiting(5),
            exiting(3),
            scratch.service_command("steady", "stop"),
        ),
    );
    scratch.wait_for_file("steady.ready");
    let launcher = running.pid();
    wait_until("all four services to run", || children(launcher).len() == 4);
    running.signal(libc::SIGSTOP);
    scratch.write("go", "");
    wait_until("three exited services", || children(launcher).into_iter().filter(|&pid| is_zombie(pid)).count() == 3);
    running.signal(libc::SIGCONT);
    let status = running.wait();
    let stderr = scratch.stderr();

    assert_eq!(status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("launcher: service `clean` exited on its own (exit code 0)\n"), "{stderr}");
    assert!(
        stderr.contains("launcher: service `five` exited on its own (exit code 5): stopping the others\n"),
        "{stderr}"
    );
    assert!(stderr.contains("launcher: service `three` exited on its own (exit code 3)\n"), "{stderr}");
    assert!(
        stderr.contains(
            "launcher: 3 services exited at once: exiting with the code of service `five`, the first to fail"
        ),
        "{stderr}"
    );
    assert_eq!(scratch.read("stopped"), "steady\n");
}

/// A service that exits 0 on its own is done, and so is the launcher: the others are stopped
/// (in reverse start order, as on SIGTERM) and the launcher exits 0.
fn a_service_exiting_0_stops_the_others_and_the_launcher_exits_0(mode: Mode) {
    let scratch = Scratch::new("exit-0");
    let dir = scratch.display();
    let mut running = scratch.start_in(
        mode,
        &format!(
            r#"
            grace_period = "30s"
            [[service]]
            name = "first"
            command = {}
            [[service]]
            name = "oneshot"
            command = ["sh", "-c", "while [ ! -e {dir}/first.ready ] || [ ! -e {dir}/last.ready ]; do sleep 0.05; done; exit 0"]
            [[service]]
            name = "last"
            command = {}
            "#,
            scratch.service_command("first", "stop"),
            scratch.service_command("last", "stop"),
        ),
    );
    let status = running.wait();
    let stderr = scratch.stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("launcher: service `oneshot` exited on its own (exit code 0): stopping the others"),
        "{stderr}"
    );
    assert_eq!(scratch.read("stopped"), "last\nfirst\n", "{stderr}");
}
