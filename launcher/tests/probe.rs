//! `launcher probe` against real listeners: exit 0 when healthy, 1 otherwise (never 2), one line.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use common::{free_port, run_launcher};

/// Runs `launcher probe` and checks the one-line verdict; returns the line.
fn probe(url: &str, timeout: &str, healthy: bool) -> String {
    let (code, _, stderr) = run_launcher(&["probe", url, "--timeout", timeout], &[]);
    assert_eq!(code, if healthy { 0 } else { 1 }, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    let verdict = if healthy { "launcher: healthy: " } else { "launcher: unhealthy: " };
    assert!(stderr.starts_with(verdict), "{stderr}");
    stderr
}

/// An HTTP server on an ephemeral port that answers every request with `status_line`.
fn http_server(status_line: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for mut connection in listener.incoming().flatten() {
            let mut request = [0u8; 1024];
            let _ = connection.read(&mut request);
            let _ = write!(connection, "HTTP/1.1 {status_line}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    port
}

#[test]
fn tcp_probe_of_an_open_and_a_closed_port() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let line = probe(&format!("tcp://127.0.0.1:{open}"), "5s", true);
    assert!(line.contains("connected"), "{line}");
    drop(listener);

    let line = probe(&format!("tcp://127.0.0.1:{}", free_port()), "5s", false);
    assert!(line.contains("connection refused"), "{line}");
}

#[test]
fn http_probe_is_healthy_on_2xx_only() {
    for (status_line, path, healthy, expected) in [
        ("200 OK", "/healthz", true, "200 OK"),
        ("204 No Content", "/healthz", true, "204"),
        ("500 Internal Server Error", "/healthz", false, "answered 500 Internal Server Error"),
        ("301 Moved Permanently", "/", false, "301"),
    ] {
        let line = probe(&format!("http://127.0.0.1:{}{path}", http_server(status_line)), "5s", healthy);
        assert!(line.contains(expected), "{line}");
    }
}

#[test]
fn a_listener_that_never_answers_times_out() {
    // The kernel completes the handshake from the backlog; nobody ever reads or answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let line = probe(&format!("http://127.0.0.1:{port}/healthz"), "500ms", false);
    assert!(line.contains("no answer") || line.contains("timed out"), "{line}");
    drop(listener);
}

#[test]
fn bad_urls_are_unhealthy_not_usage_errors() {
    // Docker reserves exit code 2: whatever goes wrong, a probe exits 1.
    let line = probe("https://127.0.0.1/healthz", "1s", false);
    assert!(line.contains("TLS is not supported"), "{line}");
    let line = probe("localhost:8000", "1s", false);
    assert!(line.contains("not a probe URL"), "{line}");
    let (code, _, stderr) = run_launcher(&["probe"], &[]);
    assert_eq!(code, 1, "{stderr}");
}
