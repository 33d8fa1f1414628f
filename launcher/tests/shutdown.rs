//! Signals, shutdown order, the grace period, exit codes and reaping.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{parent_and_state, process_exists, run_launcher, wait_until, Scratch, LAUNCHER};

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
