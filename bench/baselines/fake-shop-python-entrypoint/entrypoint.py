"""The usual entrypoint.py of a distroless Python image (there is no shell to write it in):
prepare, then start the server as a child process. Like most of them, it installs no signal
handler, so as PID 1 it ignores docker stop's SIGTERM until the SIGKILL 10 s later."""

import os
import subprocess
import sys

metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
os.makedirs(metrics_dir, exist_ok=True)
os.chmod(metrics_dir, 0o777)
subprocess.run([sys.executable, "-m", "fakeshop.migrate"], cwd="/app", check=True)
subprocess.run(["gunicorn", "--config", "/app/gunicorn.conf.py", "fakeshop.wsgi:app"], cwd="/app", check=True)
