"""Endpoints for the orchestrator and Prometheus."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from . import metrics
from .issuing import UNAVAILABLE_MESSAGE, password_store
from .store import StoreUnavailable

ops = Blueprint("ops", __name__)


@ops.get("/healthz")
def healthz():
    """Liveness: the process answers. No I/O, so a Redis outage never gets the app restarted."""
    return jsonify(status="ok")


@ops.get("/readyz")
def readyz():
    try:
        password_store().check()
    except StoreUnavailable:
        return jsonify(status="unavailable", error=UNAVAILABLE_MESSAGE), 503
    return jsonify(status="ready")


@ops.get("/metrics")
def prometheus_metrics():
    body, content_type = metrics.render(request.headers.get("Accept"))
    return Response(body, content_type=content_type)
