"""Endpoints for the orchestrator and Prometheus."""

from flask import Blueprint, current_app
from sqlalchemy.exc import SQLAlchemyError

from fakeshop.database import db, schema_problem
from fakeshop.metrics import exposition

bp = Blueprint("ops", __name__)
PLAIN_TEXT = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}


@bp.get("/healthz")
def healthz():
    """The process answers; touches nothing else, so a database outage never restarts it."""
    return "ok\n", 200, PLAIN_TEXT


@bp.get("/readyz")
def readyz():
    """Ready when the database answers and its schema is at the newest migration."""
    try:
        problem = schema_problem(db.engine, current_app.extensions["fakeshop.head_revision"])
    except SQLAlchemyError as error:
        current_app.logger.warning("readiness: database unreachable: %s", error.__class__.__name__)
        return "not ready: database unreachable\n", 503, PLAIN_TEXT
    if problem:
        return f"not ready: {problem}\n", 503, PLAIN_TEXT
    return "ready\n", 200, PLAIN_TEXT


@bp.get("/metrics")
def metrics():
    return exposition()
