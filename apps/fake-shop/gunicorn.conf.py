"""gunicorn settings for fake-shop: `gunicorn --config gunicorn.conf.py fakeshop.wsgi:app`.

Read by the gunicorn master only; workers inherit what it sets up. gunicorn itself sends READY=1
to $NOTIFY_SOCKET once it listens, which the image's launcher uses as the readiness signal.
"""

import glob
import os
import re
import secrets
import sys


def worker_count() -> int:
    raw = os.environ.get("GUNICORN_WORKERS", "2").strip()
    # [0-9], not str.isdigit(): that also accepts '²', which int() refuses with a traceback.
    if re.fullmatch(r"[0-9]{1,9}", raw) and int(raw) >= 1:
        return int(raw)
    sys.exit(f"GUNICORN_WORKERS must be a whole number of worker processes (1 or more), got {raw!r}")


bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = worker_count()
# Shorter than the launcher's 8 s grace period, itself shorter than `docker stop`'s 10 s: workers
# finish their requests and exit before anyone escalates to SIGKILL.
graceful_timeout = 5
timeout = 30
# Import the app once in the master and fork the workers from it: start-up pays for the imports
# once instead of once per worker. Nothing opens a connection at import time, so no socket is
# shared across the fork (the connection pools are created empty and are fork-aware).
preload_app = True


def when_ready(server):
    """The app is loaded and the workers are about to be forked: move everything allocated so far out
    of the garbage collector's reach. Workers then share those pages instead of copying them when a
    collection touches them, and no process walks them again when it exits (stop stays fast)."""
    import gc

    gc.freeze()
accesslog = "-"
errorlog = "-"
# gunicorn 25.1+ opens a control socket under $HOME by default: unused here, and the image's
# root filesystem is read-only.
control_socket_disable = True
# The heartbeat file of each worker: keep it in memory (the image's root filesystem is read-only,
# and a disk-backed /tmp can stall heartbeats under I/O load).
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

if not os.environ.get("SECRET_KEY"):
    # Each worker would otherwise draw its own random key and reject the session cookies signed
    # by the others (flash messages would vanish at random). One key for all, still lost at restart.
    print("gunicorn.conf.py: SECRET_KEY is not set; using a random key shared by the workers, "
          "so sessions do not survive a restart: set SECRET_KEY", file=sys.stderr)
    os.environ["SECRET_KEY"] = secrets.token_hex(32)


def on_starting(server):
    """Start the metrics from zero: files left by an earlier run (or by the migration run) would
    otherwise be added to this run's values."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.remove(stale)


def post_fork(server, worker):
    """With the app preloaded, a worker would write its metric files only on its first request:
    announce it now, so that its live gauge exists from birth and child_exit has it to clean up."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from fakeshop.metrics import REQUESTS_IN_PROGRESS

        REQUESTS_IN_PROGRESS.inc(0)


def child_exit(server, worker):
    """A worker died or was replaced: drop its live-gauge files so they do not count forever."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
