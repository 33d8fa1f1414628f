"""The production server: gunicorn with gunicorn.conf.py, several workers, shared metrics."""

import os
import re
import runpy
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

from fakeshop.database import upgrade_to_head
from tests.support import free_port, wait_until
from tests.test_migrations import APP_DIR

CONFIG = APP_DIR / "gunicorn.conf.py"
TIMEOUT = 90
LIVE_GAUGE_FILE = re.compile(r"^gauge_livesum_(\d+)\.db$")


def load_config(monkeypatch, **environ) -> dict:
    for name in ("PORT", "GUNICORN_WORKERS", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECRET_KEY", "test-secret")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONFIG))


def test_config_defaults(monkeypatch):
    settings = load_config(monkeypatch)
    assert settings["bind"] == "0.0.0.0:5000"
    assert settings["workers"] == 2
    assert settings["graceful_timeout"] == 5 and settings["timeout"] == 30
    assert settings["accesslog"] == "-"
    assert settings.get("worker_tmp_dir") == ("/dev/shm" if os.path.isdir("/dev/shm") else None)


def test_config_reads_port_and_workers(monkeypatch):
    settings = load_config(monkeypatch, PORT="8080", GUNICORN_WORKERS="5")
    assert (settings["bind"], settings["workers"]) == ("0.0.0.0:8080", 5)


@pytest.mark.parametrize("workers", ["0", "many", "²", "9" * 5000])
def test_config_refuses_a_bad_worker_count(monkeypatch, workers):
    with pytest.raises(SystemExit, match="GUNICORN_WORKERS must be a whole number"):
        load_config(monkeypatch, GUNICORN_WORKERS=workers)


def live_gauge_pids(directory) -> set[int]:
    return {int(match.group(1)) for name in os.listdir(directory) if (match := LIVE_GAUGE_FILE.match(name))}


def fetch(url: str, data: dict | None = None) -> tuple[int, str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def metric_value(exposition: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", exposition, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_gunicorn_serves_the_app_with_multiprocess_metrics(make_app, pg_database_url, tmp_path):
    upgrade_to_head(make_app(pg_database_url))
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left over from an earlier run")
    notify_path = str(tmp_path / "notify.sock")
    notifications = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notifications.bind(notify_path)
    notifications.settimeout(TIMEOUT)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environment = {**os.environ, "DATABASE_URL": pg_database_url, "SECRET_KEY": "test-secret",
                   "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "GUNICORN_WORKERS": "2",
                   "NOTIFY_SOCKET": notify_path}
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            # The test binds loopback only; the config's 0.0.0.0 is for the container.
            [sys.executable, "-m", "gunicorn", "--config", str(CONFIG), "--bind", f"127.0.0.1:{port}",
             "fakeshop.wsgi:app"],
            cwd=APP_DIR, env=environment, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        assert b"READY=1" in notifications.recv(4096), log_path.read_text()
        assert not (metrics_dir / "counter_999999.db").exists()  # stale metrics wiped at start
        workers = wait_until(lambda: len(live_gauge_pids(metrics_dir)) == 2 and live_gauge_pids(metrics_dir),
                             TIMEOUT, "both workers to load the app")

        page_views = 12
        for _ in range(page_views):
            assert fetch(f"{base}/shop")[0] == 200
        assert fetch(f"{base}/add_to_cart/1", {"quantity": "x"})[0] == 400
        assert fetch(f"{base}/healthz") == (200, "ok\n")
        assert fetch(f"{base}/readyz") == (200, "ready\n")

        status, exposition = fetch(f"{base}/metrics")
        assert status == 200
        # Every worker's count is in, whichever worker answers the scrape.
        assert metric_value(exposition, 'flask_http_request_total{method="GET",status="200"}') == page_views
        assert metric_value(exposition, 'flask_http_request_total{method="POST",status="400"}') == 1

        # A worker dies: the master replaces it and child_exit removes the dead one's live gauge.
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in live_gauge_pids(metrics_dir) and len(live_gauge_pids(metrics_dir)) == 2,
                   TIMEOUT, "the dead worker's metrics to be cleaned up and a new worker to start")
        assert fetch(f"{base}/shop")[0] == 200
        status, exposition = fetch(f"{base}/metrics")
        assert metric_value(exposition, 'flask_http_request_total{method="GET",status="200"}') == page_views + 1
    finally:
        server.send_signal(signal.SIGTERM)
        returncode = server.wait(timeout=TIMEOUT)
        notifications.close()
    output = log_path.read_text()
    assert returncode == 0, output
    assert '"GET /shop HTTP/1.1" 200' in output  # access log on stdout
    assert "Traceback" not in output, output
