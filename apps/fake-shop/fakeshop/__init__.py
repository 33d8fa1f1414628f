"""fake-shop: a small demo web shop. ``create_app`` is the application factory."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from flask import Flask, abort, current_app, request
from flask.helpers import get_debug_flag
from flask.logging import default_handler

from fakeshop import config as settings
from fakeshop import parse
from fakeshop.blueprints import cart, checkout, ops, shop
from fakeshop.database import db, head_revision, migrate
from fakeshop.errors import init_error_pages
from fakeshop.metrics import init_metrics

SECURITY_HEADERS = {
    # Every asset is served by the app itself, so the policy can be strict.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from the environment; ``config`` overrides individual Flask settings."""
    if get_debug_flag():
        raise RuntimeError(
            "fake-shop never runs in debug mode (the Werkzeug debugger runs any code a visitor "
            "sends): unset FLASK_DEBUG and drop --debug"
        )
    app = Flask(__name__)
    configure_logging(app)
    overrides = dict(config or {})
    app.config.update(settings.config_from_env(os.environ))
    if "SQLALCHEMY_DATABASE_URI" not in overrides:
        app.config["SQLALCHEMY_DATABASE_URI"] = settings.database_url_from_env(os.environ, app.instance_path)
    app.config.update(overrides)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS",
                          settings.engine_options(app.config["SQLALCHEMY_DATABASE_URI"]))
    settings.ensure_secret_key(app.config)
    app.logger.info("database: %s", settings.redacted(app.config["SQLALCHEMY_DATABASE_URI"]))

    db.init_app(app)
    migrate.init_app(app, db)
    app.extensions["fakeshop.head_revision"] = head_revision()
    app.url_map.converters.update(parse.URL_CONVERTERS)
    for blueprint in (shop.bp, cart.bp, checkout.bp, ops.bp):
        app.register_blueprint(blueprint)
    init_error_pages(app)
    init_metrics(app)
    # After the metrics' own hook, so that refused requests are counted too.
    app.before_request(refuse_oversized_request)
    app.after_request(add_security_headers)
    app.add_template_filter(money)
    return app


def configure_logging(app: Flask) -> None:
    """Log the app's INFO messages, with timestamps, to stderr unless the host program set logging
    up itself (then they propagate to its handlers)."""
    app.logger.removeHandler(default_handler)  # WARNING and up only, without timestamps
    if logging.getLogger().handlers or app.logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    app.logger.addHandler(handler)
    app.logger.setLevel(logging.INFO)


def refuse_oversized_request() -> None:
    """413 for any body declared larger than MAX_CONTENT_LENGTH, whether or not the route reads
    it. Flask enforces the limit only when a body is read (it still does so for chunked bodies,
    which declare no length)."""
    if (request.content_length or 0) > current_app.config["MAX_CONTENT_LENGTH"]:
        abort(413)


def add_security_headers(response):
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def money(value: Decimal | int | None) -> str:
    return f"${Decimal(value or 0):,.2f}"
