"""Fixtures: a real redis-server on a free loopback port, and apps wired to it."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

# The in-process tests count with prometheus_client's own registry; a multiprocess directory
# left in the caller's environment would switch /metrics to reading files nobody writes.
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

from giropops import create_app  # noqa: E402  (after the environment is settled)
from giropops.config import Config  # noqa: E402

APP_DIR = Path(__file__).resolve().parent.parent
# Generous: the test machine may be a loaded 2-core box.
STARTUP_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, *, what: str, timeout: float = STARTUP_TIMEOUT_SECONDS, on_timeout=lambda: ""):
    """Poll `condition` until it returns a true value; fail with `what` and extra detail if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}. {on_timeout()}")


def counter_value(client) -> float:
    """`senha_gerada_total` as the app's /metrics shows it."""
    body = client.get("/metrics").get_data(as_text=True)
    match = re.search(r"^senha_gerada_total ([0-9.e+]+)$", body, re.MULTILINE)
    assert match, f"senha_gerada_total missing from /metrics:\n{body}"
    return float(match.group(1))


class _ErrorRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


@contextmanager
def logged_errors() -> Iterator[list[logging.LogRecord]]:
    """The records logged at ERROR or with a traceback while the block runs (Flask logs every
    unhandled exception so). A context manager rather than caplog: hypothesis tests may only use
    fixtures that outlive one example."""
    recorder = _ErrorRecorder()
    root = logging.getLogger()
    root.addHandler(recorder)
    try:
        yield recorder.records
    finally:
        root.removeHandler(recorder)


class RedisServer:
    """One redis-server process without persistence, restartable on the same port."""

    def __init__(self, binary: str, workdir: Path, *, password: str | None = None) -> None:
        self.binary = binary
        self.workdir = workdir
        self.password = password
        self.port = free_port()
        self.log_path = workdir / "redis.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        credentials = f":{self.password}@" if self.password else ""
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, decode_responses=True)

    def start(self) -> None:
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
        ]
        if self.password:
            command += ["--requirepass", self.password]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._answers_ping, what=f"redis-server on port {self.port}", on_timeout=self._log_tail)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STARTUP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _answers_ping(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"redis-server exited with code {self.process.returncode}. {self._log_tail()}")
        try:
            with self.client() as client:
                return client.ping()
        except redis.RedisError:
            return False

    def _log_tail(self) -> str:
        return "Its log ends with:\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])


@pytest.fixture(scope="session")
def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{reason}; CI must run the Redis tests")
        pytest.skip(reason)
    return binary


@pytest.fixture(scope="session")
def redis_server(redis_binary, tmp_path_factory):
    server = RedisServer(redis_binary, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_outage(redis_server):
    """The shared server, with the promise that it runs again after the test whatever happens."""
    yield redis_server
    if not redis_server.running:
        redis_server.start()


@pytest.fixture
def redis_client(redis_server):
    client = redis_server.client()
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def app(redis_client, redis_server):
    return create_app(Config(redis_host="127.0.0.1", redis_port=redis_server.port))


@pytest.fixture
def client(app):
    return app.test_client()
