//! A service starts only once the services it is `after` are ready: TCP, HTTP and notify checks.
//! Each dependency creates a marker just before it becomes ready (after a delay, so that a
//! launcher that did not wait would be caught); the dependent records whether it saw the marker.

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use common::{free_port, Mode, Scratch};

/// A dependent service that writes "yes" or "no" to DIR/seen: did `marker` exist when it started?
fn dependent(scratch: &Scratch, marker: &str) -> String {
    format!(
        r#"
        [[service]]
        name = "dependent"
        command = ["sh", "-c", "if [ -e {dir}/{marker} ]; then echo yes; else echo no; fi > {dir}/seen.tmp; mv {dir}/seen.tmp {dir}/seen; exec sleep 1000"]
        after = ["dependency"]
        "#,
        dir = scratch.display()
    )
}

fn assert_dependent_waited(scratch: &Scratch, config: &str) {
    assert_dependent_waited_in(Mode::Subreaper, scratch, config);
}

fn assert_dependent_waited_in(mode: Mode, scratch: &Scratch, config: &str) {
    let mut running = scratch.start_in(mode, config);
    scratch.wait_for_file("seen");
    assert_eq!(scratch.read("seen"), "yes\n", "the dependent started before its dependency was ready");
    running.signal(libc::SIGTERM);
    assert_eq!(running.wait().code(), Some(0), "stderr: {}", scratch.stderr());
    let stderr = scratch.stderr();
    assert!(stderr.contains("launcher: service `dependency` is ready"), "{stderr}");
}

#[test]
fn tcp_readiness_orders_the_start() {
    let scratch = Scratch::new("ready-tcp");
    let port = free_port();
    scratch.write(
        "listen.py",
        "import socket, sys, time\n\
         time.sleep(0.5)\n\
         open(sys.argv[2], 'w').close()\n\
         server = socket.socket()\n\
         server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         server.bind(('127.0.0.1', int(sys.argv[1])))\n\
         server.listen()\n\
         while True:\n    server.accept()[0].close()\n",
    );
    let dir = scratch.display();
    let config = format!(
        r#"
        grace_period = "30s"
        [[service]]
        name = "dependency"
        command = ["python3", "{dir}/listen.py", "{port}", "{dir}/listening"]
        ready = {{ tcp = "127.0.0.1:${{LAUNCHER_TEST_UNSET_PORT:-{port}}}", timeout = "60s" }}
        {}"#,
        dependent(&scratch, "listening")
    );
    assert_dependent_waited(&scratch, &config);
}

#[test]
fn http_readiness_waits_for_a_2xx_answer() {
    let scratch = Scratch::new("ready-http");
    let port = free_port();
    // Answers 503 to the first three requests: listening is not enough, it must answer 2xx.
    scratch.write(
        "server.py",
        "import http.server, os, sys\n\
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
         http.server.HTTPServer(('127.0.0.1', port), Handler).serve_forever()\n",
    );
    let dir = scratch.display();
    let config = format!(
        r#"
        grace_period = "30s"
        [[service]]
        name = "dependency"
        command = ["python3", "{dir}/server.py", "{port}", "{dir}/healthy"]
        ready = {{ http = "http://127.0.0.1:{port}/healthz", timeout = "60s" }}
        {}"#,
        dependent(&scratch, "healthy")
    );
    assert_dependent_waited(&scratch, &config);
}

#[test]
fn notify_readiness_waits_for_ready_1() {
    let scratch = Scratch::new("ready-notify");
    let config = format!(
        r#"
        grace_period = "30s"
        [[service]]
        name = "dependency"
        command = {}
        env = {{ SERVICE_DELAY = "0.5" }}
        ready = {{ notify = true, timeout = "60s" }}
        {}"#,
        scratch.service_command("notifier", "stop"),
        dependent(&scratch, "notifier.ready")
    );
    assert_dependent_waited(&scratch, &config);
}

#[test]
fn redis_server_notifies_readiness_on_an_abstract_socket() {
    let scratch = Scratch::new("ready-redis");
    let port = free_port();
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
    let mut running = scratch.start(&format!(
        r#"
        grace_period = "30s"
        [[service]]
        name = "redis"
        command = ["redis-server", "--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--dir", "{dir}", "--supervised", "systemd"]
        ready = {{ notify = true, timeout = "60s" }}

        [[service]]
        name = "pinger"
        command = ["sh", "-c", "python3 {dir}/ping.py {port} {dir}/pong && mv {dir}/pong.tmp {dir}/pong && exec sleep 1000"]
        after = ["redis"]
        "#
    ));
    scratch.wait_for_file("pong");
    assert_eq!(scratch.read("pong"), "+PONG\r\n");
    running.signal(libc::SIGTERM);
    assert_eq!(running.wait().code(), Some(0), "stderr: {}", scratch.stderr());
}

#[test]
fn a_disabled_dependency_counts_as_ready() {
    let scratch = Scratch::new("ready-disabled");
    let dir = scratch.display();
    let mut running = scratch.start(&format!(
        r#"
        [[service]]
        name = "dependency"
        command = ["touch", "{dir}/dependency-ran"]
        enabled = "${{LAUNCHER_TEST_UNSET_ENABLED:-false}}"
        ready = {{ notify = true, timeout = "1s" }}
        {}"#,
        dependent(&scratch, "dependency-ran")
    ));
    scratch.wait_for_file("seen");
    assert_eq!(scratch.read("seen"), "no\n");
    running.signal(libc::SIGTERM);
    assert_eq!(running.wait().code(), Some(0));
    assert!(scratch.stderr().contains("service `dependency` is disabled"));
}

#[test]
fn a_readiness_timeout_stops_what_started_and_fails() {
    let scratch = Scratch::new("ready-timeout");
    let mut running = scratch.start(&format!(
        r#"
        grace_period = "30s"
        [[service]]
        name = "first"
        command = {}
        ready = {{ notify = true, timeout = "60s" }}

        [[service]]
        name = "silent"
        command = ["sleep", "1000"]
        after = ["first"]
        ready = {{ notify = true, timeout = "1s" }}

        [[service]]
        name = "never-started"
        command = ["touch", "{}/never-started"]
        after = ["silent"]
        "#,
        scratch.service_command("first", "stop"),
        scratch.display()
    ));
    let status = running.wait();
    let stderr = scratch.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("launcher: service `silent` did not become ready within 1s"), "{stderr}");
    assert_eq!(scratch.read("stopped"), "first\n", "the started service was stopped");
    assert!(!scratch.path("never-started").exists());
}

in_both_modes!(ready_from_a_descendant_of_the_service_counts, ready_from_another_process_is_ignored);

/// The service's main process is a shell; READY=1 comes from its child (gunicorn's workers are
/// its children too, and libsystemd may notify from any thread or child).
fn ready_from_a_descendant_of_the_service_counts(mode: Mode) {
    let scratch = Scratch::new("ready-descendant");
    let dir = scratch.display();
    let config = format!(
        r#"
        grace_period = "30s"
        [[service]]
        name = "dependency"
        command = ["sh", "-c", "python3 {dir}/service.py notifier {dir} & wait"]
        env = {{ SERVICE_DELAY = "0.5" }}
        ready = {{ notify = true, timeout = "60s" }}
        {}"#,
        dependent(&scratch, "notifier.ready")
    );
    assert_dependent_waited_in(mode, &scratch, &config);
    assert!(!scratch.stderr().contains("ignoring notify messages"), "{}", scratch.stderr());
}

/// Another service of the same launcher, and the test itself (outside the launcher's tree, and
/// outside its PID namespace as PID 1), send READY=1 to a silent service's socket: both are
/// ignored, with one message, and the readiness check times out.
fn ready_from_another_process_is_ignored(mode: Mode) {
    let scratch = Scratch::new("ready-stranger");
    let dir = scratch.display();
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
    let mut running = scratch.start_in(
        mode,
        &format!(
            r#"
            grace_period = "30s"
            [[service]]
            name = "impostor"
            command = ["python3", "{dir}/impostor.py", "{dir}"]

            [[service]]
            name = "silent"
            command = ["sh", "{dir}/silent.sh", "{dir}"]
            after = ["impostor"]
            ready = {{ notify = true, timeout = "5s" }}
            "#
        ),
    );
    scratch.wait_for_file("address");
    let address = scratch.read("address");
    let name = address.trim().strip_prefix('@').expect("an abstract address");
    let test = UnixDatagram::unbound().expect("a datagram socket");
    test.send_to_addr(b"READY=1\n", &SocketAddr::from_abstract_name(name.as_bytes()).expect("an abstract name"))
        .expect("send READY=1 from the test");
    let status = running.wait();
    let stderr = scratch.stderr();

    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(scratch.path("impostor-sent").exists(), "{stderr}");
    assert!(stderr.contains("launcher: service `silent` did not become ready within 5s"), "{stderr}");
    let ignoring: Vec<&str> = stderr.lines().filter(|line| line.contains("ignoring notify messages")).collect();
    assert_eq!(ignoring.len(), 1, "reported once:\n{stderr}");
    assert!(ignoring[0].starts_with("launcher: service `silent`: ignoring notify messages from "), "{stderr}");
    assert!(ignoring[0].contains("which is not the service (main pid "), "{stderr}");
}
