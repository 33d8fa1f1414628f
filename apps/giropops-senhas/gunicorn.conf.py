"""gunicorn settings: `gunicorn --config gunicorn.conf.py giropops.wsgi:app`.

Environment: PORT (default 5000), GUNICORN_WORKERS (default 2), GUNICORN_THREADS (default 2),
PROMETHEUS_MULTIPROC_DIR (default: a fresh directory under the temporary directory).
"""

import os
import re
import shutil
import tempfile


def _positive_int_from_env(name, default):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    # [0-9], not str.isdigit(): that also accepts '²', which int() refuses with a traceback.
    if not re.fullmatch(r"[0-9]{1,9}", raw) or int(raw) < 1:
        raise SystemExit(f"{name} must be a positive integer, got {raw!r}; fix or unset it")
    return int(raw)


bind = f"0.0.0.0:{_positive_int_from_env('PORT', 5000)}"
workers = _positive_int_from_env("GUNICORN_WORKERS", 2)
# Requests mostly wait on Redis, so a few threads per worker cost little and help.
threads = _positive_int_from_env("GUNICORN_THREADS", 2)
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
# Nested shutdown budgets: gunicorn's 5 s graceful timeout < the launcher's 8 s grace before it
# SIGKILLs < `docker stop`'s 10 s. Each layer then finishes before the one above gives up on it.
graceful_timeout = 5
accesslog = "-"
errorlog = "-"
# Worker heartbeats are file writes; on a disk-backed (or overlay) /tmp they can stall and get
# workers killed as "timed out". /dev/shm is memory-backed when present.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"
# gunicorn 25.1+ opens a control socket under $HOME by default: unused here, and the image's
# root filesystem is read-only.
control_socket_disable = True

# Prometheus multiprocess mode: this must be in the environment before a worker imports
# prometheus_client, so that every worker writes its counters where /metrics can add them up.
_metrics_dir_is_ours = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _metrics_dir_is_ours:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="giropops-metrics-")


def on_starting(server):
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(metrics_dir, exist_ok=True)
    # Files from a previous run would be added to this run's counters.
    for name in os.listdir(metrics_dir):
        if name.endswith(".db"):
            os.remove(os.path.join(metrics_dir, name))


def child_exit(server, worker):
    from prometheus_client import multiprocess

    # Keeps the counters of a dead worker but drops its live gauges.
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _metrics_dir_is_ours:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
