"""The app as the image runs it: gunicorn, gunicorn.conf.py, several workers, real Redis."""

from __future__ import annotations

import json
import os
import re
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import APP_DIR, STARTUP_TIMEOUT_SECONDS, free_port

HTTP_TIMEOUT_SECONDS = 30


@contextmanager
def gunicorn(log_path: Path, **environment: str):
    """Run gunicorn the way the image does and stop it with SIGTERM, like `docker stop`."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(environment)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "giropops.wsgi:app"],
            cwd=APP_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STARTUP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def log_of(path: Path) -> str:
    return f"gunicorn's log:\n{path.read_text(errors='replace')}"


def wait_for_ready_notification(notify_socket: socket.socket, process: subprocess.Popen, log_path: Path) -> bytes:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    notify_socket.settimeout(0.5)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with code {process.returncode} before READY=1. {log_of(log_path)}")
        try:
            message = notify_socket.recv(4096)
        except TimeoutError:
            continue
        if b"READY=1" in message.split(b"\n"):
            return message
    pytest.fail(f"gunicorn sent no READY=1 within {STARTUP_TIMEOUT_SECONDS} s. {log_of(log_path)}")


def http(method: str, url: str, payload=None):
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_gunicorn_serves_the_app_with_aggregated_metrics(redis_server, redis_client, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "gunicorn.log"
    # A short directory: unix socket paths are limited to about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="gs-") as notify_dir:
        notify_path = os.path.join(notify_dir, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify_socket:
            notify_socket.bind(notify_path)
            with gunicorn(
                log_path, PORT=str(port), REDIS_URL=redis_server.url, NOTIFY_SOCKET=notify_path, GUNICORN_WORKERS="2"
            ) as process:
                wait_for_ready_notification(notify_socket, process, log_path)

                passwords = []
                for _ in range(4):
                    status, _, body = http(
                        "POST",
                        f"{base}/api/gerar-senha",
                        {"tamanho": 16, "incluir_numeros": True, "incluir_caracteres_especiais": True},
                    )
                    assert status == 200, log_of(log_path)
                    passwords.append(json.loads(body)["senha"])

                status, _, body = http("GET", f"{base}/api/senhas")
                assert status == 200
                assert [item["senha"] for item in json.loads(body)] == passwords[::-1]

                assert http("GET", f"{base}/healthz")[0] == 200
                assert http("GET", f"{base}/readyz")[0] == 200
                status, _, body = http("POST", f"{base}/api/gerar-senha", {"tamanho": 2})
                assert status == 400 and "error" in json.loads(body)

                status, headers, body = http("GET", f"{base}/metrics")
                assert status == 200
                assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
                # Whichever worker answers, the count covers both workers' requests.
                assert re.search(r"^senha_gerada_total 4\.0$", body.decode(), re.MULTILINE), body.decode()

            assert process.returncode == 0, log_of(log_path)

    log = log_path.read_text(errors="replace")
    assert "Listening at: http://0.0.0.0:" in log
    assert '"POST /api/gerar-senha HTTP/1.1" 200' in log, "no access log on stdout"
    assert not any(password in log for password in passwords), "a password reached the log"


def test_gunicorn_refuses_to_start_with_a_bad_setting(tmp_path):
    log_path = tmp_path / "gunicorn.log"
    with gunicorn(log_path, PORT=str(free_port()), REDIS_PORT="not-a-port") as process:
        try:
            process.wait(timeout=STARTUP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"gunicorn kept running with REDIS_PORT=not-a-port. {log_of(log_path)}")
    assert process.returncode != 0
    assert "REDIS_PORT must be an integer from 1 to 65535, got 'not-a-port'" in log_path.read_text()


@pytest.mark.parametrize("workers", ["0", "many", "²", "9" * 5000])
def test_gunicorn_conf_refuses_a_bad_worker_count(monkeypatch, workers):
    monkeypatch.setenv("GUNICORN_WORKERS", workers)
    with pytest.raises(SystemExit, match="GUNICORN_WORKERS must be a positive integer"):
        runpy.run_path(str(APP_DIR / "gunicorn.conf.py"))
