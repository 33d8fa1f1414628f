"""Error pages: HTTP errors keep their code, a database outage is a 503, anything else a 500."""

from __future__ import annotations

from flask import Flask, current_app, render_template
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

# PostgreSQL's code for "relation does not exist": the database is there but not migrated.
UNDEFINED_TABLE = "42P01"
RETRY_AFTER_SECONDS = "5"


def init_error_pages(app: Flask) -> None:
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(RequestEntityTooLarge, request_too_large)
    app.register_error_handler(DBAPIError, database_error)
    app.register_error_handler(PoolTimeoutError, database_unavailable)
    # Registered for the code, not for Exception, so Flask still logs the traceback first.
    app.register_error_handler(500, internal_error)


def http_error(error: HTTPException):
    headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
    return render_template("error.html", code=error.code, title=error.name,
                           message=error.description), error.code, headers


def request_too_large(_error: RequestEntityTooLarge):
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    return http_error(RequestEntityTooLarge(f"The request is larger than the {limit:,} bytes the shop accepts."))


def database_error(error: DBAPIError):
    if means_unavailable(error):
        return database_unavailable(error)
    current_app.logger.exception("database error", exc_info=error)
    return internal_error(error)


def means_unavailable(error: DBAPIError) -> bool:
    return (
        isinstance(error, (OperationalError, InterfaceError))
        or error.connection_invalidated
        or getattr(error.orig, "sqlstate", None) == UNDEFINED_TABLE
    )


def summary(error: BaseException) -> str:
    """The first line of the driver's message: enough for a log line, and never a password."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


def database_unavailable(error: Exception):
    current_app.logger.error("database unavailable: %s", summary(error))
    message = "The shop cannot reach its database right now. Please try again in a moment."
    return render_template("error.html", code=503, title="Service Unavailable", message=message), \
        503, {"Retry-After": RETRY_AFTER_SECONDS}


def internal_error(_error):
    message = "Something went wrong on our side. The error has been logged."
    return render_template("error.html", code=500, title="Internal Server Error", message=message), 500
