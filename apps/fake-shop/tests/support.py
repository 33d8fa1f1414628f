"""Test helpers: a throwaway PostgreSQL server, free ports, patient waiting."""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import psycopg

# Generous: the machine running the suite may be a loaded 2-core box.
STARTUP_TIMEOUT = 90
APP_ROLE = "shop"
APP_PASSWORD = "shop-test-password"
SERVICE_USER = "postgres"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, timeout: float, what: str, interval: float = 0.1):
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(interval)


def postgres_bindir() -> Path | None:
    """Where initdb and postgres live: on PATH, else Debian's versioned folder."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return Path(os.path.realpath(on_path)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda path: int(Path(path).parent.parent.name))
    return Path(candidates[-1]).parent if candidates else None


class PostgresServer:
    """A PostgreSQL cluster in a temporary folder, on a free port of 127.0.0.1.

    The test suite connects as the superuser through the Unix socket (trust); the app connects
    over TCP as an ordinary role with a password, as it would in production. PostgreSQL refuses
    to run as root, so under root the cluster belongs to the `postgres` system user.
    """

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="fakeshop-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.as_service_user: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam(SERVICE_USER)
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self.as_service_user = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                                    "--init-groups", "--"]

    def initialise(self) -> None:
        subprocess.run(
            [*self.as_service_user, str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
             "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C",
             "--no-sync"],
            check=True, capture_output=True, text=True,
        )
        self.start()
        with self.admin() as connection:
            connection.execute(f"CREATE ROLE {APP_ROLE} LOGIN CREATEDB PASSWORD '{APP_PASSWORD}'")

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*self.as_service_user, str(self.bindir / "postgres"), "-D", str(self.data),
                 "-k", str(self.root), "-h", "127.0.0.1", "-p", str(self.port),
                 # Durability is pointless for throwaway test data; speed is not.
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        wait_until(self.answers, STARTUP_TIMEOUT, f"PostgreSQL on port {self.port} (log: {self.log_path})")

    def answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited with {self.process.returncode}:\n{self.log_path.read_text()}")
        try:
            with self.admin():
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # "fast" shutdown: disconnect clients, then exit
        try:
            self.process.wait(timeout=STARTUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def admin(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host=str(self.root), port=self.port, user="postgres", dbname=database,
                               autocommit=True, connect_timeout=5)

    def create_database(self, name: str) -> str:
        """A new empty database owned by the app's role; returns the app's URL for it."""
        with self.admin() as connection:
            connection.execute(f'CREATE DATABASE "{name}" OWNER {APP_ROLE}')
        return self.create_database_url(name)

    def create_database_url(self, name: str) -> str:
        """How the app reaches database ``name``: over TCP, with a password, as in production."""
        return f"postgresql+psycopg://{APP_ROLE}:{APP_PASSWORD}@127.0.0.1:{self.port}/{name}"

    def drop_database(self, name: str) -> None:
        with self.admin() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class _ErrorRecorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


@contextmanager
def logged_errors() -> Iterator[list[logging.LogRecord]]:
    """The records logged at ERROR or with a traceback while the block runs (the app logs every
    database error and unhandled exception so). A context manager rather than caplog: hypothesis
    tests may only use fixtures that outlive one example."""
    recorder = _ErrorRecorder()
    root = logging.getLogger()
    root.addHandler(recorder)
    try:
        yield recorder.records
    finally:
        root.removeHandler(recorder)


def valid_checkout(**changes) -> dict[str, str]:
    """A checkout form that passes validation, with ``changes`` applied."""
    form = {
        "first_name": "Ana", "last_name": "Silva", "email": "ana@example.com", "mobile": "+55 11 98765-4321",
        "address1": "Rua das Flores, 100", "address2": "apto 12", "city": "São Paulo", "state": "SP",
        "country": "Brazil", "zip": "01234-000", "card_name": "ANA SILVA",
        "card_number": "4111 1111 1111 1111", "expiry_date": f"12/{(date.today().year + 2) % 100:02d}",
        "cvv": "123",
    }
    form.update(changes)
    return form
