//! A service starts only once the services it is `after` are ready: TCP, HTTP and notify checks.
//! Each dependency creates a marker just before it becomes ready (after a delay, so that a
//! launcher that did not wait would be caught); the dependent records whether it saw the marker.

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use common::{argv, free_port, sh, toml_string, Config, Mode, Running, Scratch};

/// Listens on port ARGV[1] half a second after it starts, creating the file ARGV[2] just before.
const LISTEN_PY: &str = "import socket, sys, time\n\
     time.sleep(0.5)\n\
     open(sys.argv[2], 'w').close()\n\
     server = socket.socket()\n\
     server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
     server.bind(('127.0.0.1', int(sys.argv[1])))\n\
     server.listen()\n\
     while True:\n    server.accept()[0].close()\n";

/// Serves HTTP on port ARGV[1], answering 503 to the first three requests (listening is not
/// enough, it must answer 2xx), then creating the file ARGV[2] and answering 200.
const HTTP_SERVER_PY: &str = "import http.server, os, sys\n\
     port, marker = int(sys.argv[1]), sys.argv[2]\n\
     answered = 0\n\
     class Handler(http.server.BaseHTTPRequestHandler):\n\
     \x20   def do_GET(self):\n\
     \x20       global answered\n\
     \x20       answered += 1\n\
     \x20       if answered > 3:\n\
     \x20           open(marker, 'a').close()\n\
     \x20       self.send_response(200 if answered > 3 else 503)\n\
     \x20       self.end_headers()\n\
     \x20   def log_message(self, *args):\n\
     \x20       pass\n\
     http.server.HTTPServer(('127.0.0.1', port), Handler).serve_forever()\n";

/// Adds to `config` a dependent service, after the service `dependency`, that writes "yes" or
/// "no" to DIR/seen: did `marker` exist when it started? Starts the launcher on it in `mode` and
/// returns it, still running, with what the dependent saw.
fn start_with_dependent(mode: Mode, scratch: &Scratch, config: Config, marker: &str) -> (Running, String) {
    let dir = scratch.display();
    let dependent = sh(&format!(
        "if [ -e {dir}/{marker} ]; then echo yes; else echo no; fi > {dir}/seen.tmp; mv {dir}/seen.tmp {dir}/seen; exec sleep 1000"
    ));
    let running = scratch.start_ready_in(mode, config.service("dependent", &dependent).after("dependency"), &["seen"]);
    (running, scratch.read("seen"))
}

/// The dependent of `dependency` saw its `marker`: it started only once `dependency` was ready.
fn assert_dependent_waited(mode: Mode, scratch: &Scratch, dependency: Config, marker: &str) {
    let (mut running, seen) = start_with_dependent(mode, scratch, dependency, marker);
    assert_eq!(seen, "yes\n", "the dependent started before its dependency was ready");
    scratch.assert_exited(running.stop(libc::SIGTERM), 0, &["launcher: service `dependency` is ready"]);
}

/// The dependency is `python3 DIR/NAME PORT DIR/MARKER` on a free port, NAME holding `script`,
/// ready when the check `ready(port)` passes; the script creates MARKER just before.
fn assert_script_dependency_waited(test: &str, name: &str, script: &str, ready: impl Fn(u16) -> String, marker: &str) {
    let scratch = Scratch::new(test);
    let port = free_port();
    let script = scratch.write(name, script).display().to_string();
    let command = argv(&["python3", &script, &port.to_string(), &scratch.path(marker).display().to_string()]);
    let dependency = scratch.config().grace_period("30s").service("dependency", &command).ready(&ready(port), "60s");
    assert_dependent_waited(Mode::Subreaper, &scratch, dependency, marker);
}

/// The dependency runs `command`, which starts SERVICE_PY as `notifier`: READY=1 half a second
/// after it starts, notifier.ready just before.
fn notifier(scratch: &Scratch, command: &str) -> Config {
    let config = scratch.config().grace_period("30s").service("dependency", command);
    config.env("SERVICE_DELAY", "0.5").ready("notify = true", "60s")
}

#[test]
fn tcp_readiness_orders_the_start() {
    let ready = |port| format!("tcp = \"127.0.0.1:${{LAUNCHER_TEST_UNSET_PORT:-{port}}}\"");
    assert_script_dependency_waited("ready-tcp", "listen.py", LISTEN_PY, ready, "listening");
}

#[test]
fn http_readiness_waits_for_a_2xx_answer() {
    let ready = |port| format!("http = \"http://127.0.0.1:{port}/healthz\"");
    assert_script_dependency_waited("ready-http", "server.py", HTTP_SERVER_PY, ready, "healthy");
}

#[test]
fn notify_readiness_waits_for_ready_1() {
    let scratch = Scratch::new("ready-notify");
    let dependency = notifier(&scratch, &scratch.service_command("notifier", "stop"));
    assert_dependent_waited(Mode::Subreaper, &scratch, dependency, "notifier.ready");
}

#[test]
fn redis_server_notifies_readiness_on_an_abstract_socket() {
    let scratch = Scratch::new("ready-redis");
    let port = free_port().to_string();
    let dir = scratch.display();
    // The dependent asks redis for PONG as it starts: only a ready redis answers.
    scratch.write(
        "ping.py",
        "import socket, sys\n\
         try:\n\
         \x20   connection = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)\n\
         \x20   connection.sendall(b'PING\\r\\n')\n\
         \x20   answer = connection.recv(64)\n\
         except OSError as error:\n\
         \x20   answer = repr(error).encode()\n\
         open(sys.argv[2] + '.tmp', 'wb').write(answer)\n",
    );
    let redis = argv(&[
        "redis-server",
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--dir",
        &dir,
        "--supervised",
        "systemd",
    ]);
    let config = scratch.config().grace_period("30s").service("redis", &redis);
    let pinger =
        sh(&format!("python3 {dir}/ping.py {port} {dir}/pong && mv {dir}/pong.tmp {dir}/pong && exec sleep 1000"));
    let config = config.ready("notify = true", "60s").service("pinger", &pinger).after("redis");
    let mut running = scratch.start_ready(config, &["pong"]);
    assert_eq!(scratch.read("pong"), "+PONG\r\n");
    scratch.assert_exited(running.stop(libc::SIGTERM), 0, &[]);
}

#[test]
fn a_disabled_dependency_counts_as_ready() {
    let scratch = Scratch::new("ready-disabled");
    let config = scratch.config().service("dependency", &scratch.touch_command("dependency-ran"));
    let config = config.key("enabled", &toml_string("${LAUNCHER_TEST_UNSET_ENABLED:-false}"));
    let (mut running, seen) =
        start_with_dependent(Mode::Subreaper, &scratch, config.ready("notify = true", "1s"), "dependency-ran");
    assert_eq!(seen, "no\n");
    scratch.assert_exited(running.stop(libc::SIGTERM), 0, &["service `dependency` is disabled"]);
}

#[test]
fn a_readiness_timeout_stops_what_started_and_fails() {
    let scratch = Scratch::new("ready-timeout");
    let config = scratch.config().grace_period("30s").test_service("first").ready("notify = true", "60s");
    let config = config.service("silent", &argv(&["sleep", "1000"])).after("first").ready("notify = true", "1s");
    let config = config.service("never-started", &scratch.touch_command("never-started")).after("silent");
    let status = scratch.start(config).wait();
    scratch.assert_exited(status, 1, &["launcher: service `silent` did not become ready within 1s"]);
    assert_eq!(scratch.read("stopped"), "first\n", "the started service was stopped");
    assert!(!scratch.path("never-started").exists());
}

in_both_modes!(ready_from_a_descendant_of_the_service_counts, ready_from_another_process_is_ignored);

/// The service's main process is a shell; READY=1 comes from its child (gunicorn's workers are
/// its children too, and libsystemd may notify from any thread or child).
fn ready_from_a_descendant_of_the_service_counts(mode: Mode) {
    let scratch = Scratch::new("ready-descendant");
    let dir = scratch.display();
    let dependency = notifier(&scratch, &sh(&format!("python3 {dir}/service.py notifier {dir} & wait")));
    assert_dependent_waited(mode, &scratch, dependency, "notifier.ready");
    assert!(!scratch.stderr().contains("ignoring notify messages"), "{}", scratch.stderr());
}

/// Another service of the same launcher, and the test itself (outside the launcher's tree, and
/// outside its PID namespace as PID 1), send READY=1 to a silent service's socket: both are
/// ignored, with one message, and the readiness check times out.
fn ready_from_another_process_is_ignored(mode: Mode) {
    let scratch = Scratch::new("ready-stranger");
    scratch.write(
        "impostor.py",
        "import os, socket, sys, time\n\
         path = os.path.join(sys.argv[1], 'address')\n\
         while not os.path.exists(path):\n\
         \x20   time.sleep(0.02)\n\
         address = open(path).read().strip()\n\
         notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         for _ in range(3):\n\
         \x20   notify.sendto(b'READY=1\\n', '\\0' + address[1:])\n\
         \x20   time.sleep(0.05)\n\
         open(os.path.join(sys.argv[1], 'impostor-sent'), 'w').close()\n\
         time.sleep(1000)\n",
    );
    scratch.write(
        "silent.sh",
        "echo \"$NOTIFY_SOCKET\" > \"$1/address.tmp\"\nmv \"$1/address.tmp\" \"$1/address\"\nexec sleep 1000\n",
    );
    let config =
        scratch.config().grace_period("30s").service("impostor", &scratch.script_command("python3", "impostor.py"));
    let config = config.service("silent", &scratch.script_command("sh", "silent.sh")).after("impostor");
    let mut running = scratch.start_ready_in(mode, config.ready("notify = true", "5s"), &["address"]);
    let address = scratch.read("address");
    let name = address.trim().strip_prefix('@').expect("an abstract address");
    let test = UnixDatagram::unbound().expect("a datagram socket");
    test.send_to_addr(b"READY=1\n", &SocketAddr::from_abstract_name(name.as_bytes()).expect("an abstract name"))
        .expect("send READY=1 from the test");
    let status = running.wait();

    let stderr = scratch.assert_exited(status, 1, &["launcher: service `silent` did not become ready within 5s"]);
    assert!(scratch.path("impostor-sent").exists(), "{stderr}");
    let ignoring: Vec<&str> = stderr.lines().filter(|line| line.contains("ignoring notify messages")).collect();
    assert_eq!(ignoring.len(), 1, "reported once:\n{stderr}");
    assert!(ignoring[0].starts_with("launcher: service `silent`: ignoring notify messages from "), "{stderr}");
    assert!(ignoring[0].contains("which is not the service (main pid "), "{stderr}");
}
