"""Error responses: JSON under /api/, Werkzeug's plain HTML pages elsewhere."""

from __future__ import annotations

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

API_PREFIX = "/api/"


def json_error(message: str, status: int):
    return jsonify(error=message), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        # Covers 404/405 for unknown API paths and methods, 413 for oversized bodies, and 500s
        # (Flask wraps unexpected exceptions in InternalServerError), so API clients always get JSON.
        if request.path.startswith(API_PREFIX):
            return json_error(error.description or error.name, error.code or 500)
        return error.get_response()
