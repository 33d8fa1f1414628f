"""Prometheus metrics, shared by all gunicorn workers through PROMETHEUS_MULTIPROC_DIR.

With PROMETHEUS_MULTIPROC_DIR set, prometheus_client keeps every value in memory-mapped files in
that directory (one set per worker process) and /metrics adds them up; gunicorn.conf.py marks dead
workers and empties the directory at startup. Without it (development, tests) the values live in
this process only.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Probes and scrapes would drown the traffic that matters.
UNMEASURED_ENDPOINTS = {"ops.metrics", "ops.healthz", "ops.readyz", "static"}
# Label values come from fixed sets only: every new value is a new time series, so a label copied
# from the request (a made-up method, a raw path) would let any client grow the metrics without
# bound. The methods of RFC 9110 and PATCH keep their name; any other is counted as "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
OTHER_METHOD = "other"
# The path label is the route template, one of the app's routes, or this when none matched.
UNMATCHED_PATH = "<unmatched>"


def multiprocess_dir() -> str | None:
    # prometheus_client switches to multiprocess mode when the variable is set at all, even empty.
    if MULTIPROC_DIR_VARIABLE not in os.environ:
        return None
    directory = os.environ[MULTIPROC_DIR_VARIABLE]
    if not os.path.isdir(directory):
        # prometheus_client would fail with a bare FileNotFoundError; say what is wrong instead.
        raise RuntimeError(
            f"{MULTIPROC_DIR_VARIABLE}={directory!r} is not a directory: create it before starting "
            f"the app (the image's launcher does), or unset {MULTIPROC_DIR_VARIABLE} for a single process"
        )
    return directory


# Checked before any metric exists: an unlabelled metric opens its file as soon as it is created.
multiprocess_dir()

# The metric objects are process-wide (one registry per process), hence module level: every app
# the process creates (tests create many) records into the same ones. Names follow
# prometheus-flask-exporter's, which the original app used, so existing dashboards keep working.
REQUEST_DURATION = Histogram(
    "flask_http_request_duration_seconds",
    "Time spent handling an HTTP request",
    ["method", "path", "status"],
)
REQUESTS = Counter(
    "flask_http_request",
    "HTTP requests handled",
    ["method", "status"],
)
# "livesum" adds up the live workers only: a worker killed mid-request leaves its count behind
# until gunicorn.conf.py's child_exit hook marks it dead.
REQUESTS_IN_PROGRESS = Gauge(
    "flask_http_requests_in_progress",
    "HTTP requests being handled",
    multiprocess_mode="livesum",
)
ORDERS_PLACED = Counter("fakeshop_orders_placed", "Orders checked out")


def init_metrics(app: Flask) -> None:
    app.before_request(start_measuring)
    app.after_request(record_request)
    app.teardown_request(stop_measuring)


def start_measuring() -> None:
    if request.endpoint in UNMEASURED_ENDPOINTS:
        return
    g.request_started = time.perf_counter()
    REQUESTS_IN_PROGRESS.inc()


def record_request(response: Response) -> Response:
    started = g.get("request_started")
    if started is None:
        return response
    # The route template, not the raw path, so /detail/1 .. /detail/9999 make one series.
    path = request.url_rule.rule if request.url_rule else UNMATCHED_PATH
    method = request.method if request.method in KNOWN_METHODS else OTHER_METHOD
    status = str(response.status_code)
    REQUEST_DURATION.labels(method, path, status).observe(time.perf_counter() - started)
    REQUESTS.labels(method, status).inc()
    return response


def stop_measuring(_error: BaseException | None) -> None:
    # Teardown runs even when a request fails, so the gauge always comes back down.
    if g.pop("request_started", None) is not None:
        REQUESTS_IN_PROGRESS.dec()


def exposition() -> Response:
    if multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), mimetype=None, content_type=CONTENT_TYPE_LATEST)
