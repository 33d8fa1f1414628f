"""giropops-senhas: a password generator that keeps the latest passwords in Redis."""

from __future__ import annotations

from flask import Flask, Response, request

from .api import api
from .config import Config
from .errors import register_error_handlers
from .issuing import STORE_EXTENSION
from .ops import ops
from .pages import pages
from .store import PasswordStore, connect

# The largest legitimate request is a small form or JSON object.
MAX_REQUEST_BYTES = 16 * 1024

_SECURITY_HEADERS = {
    # Every script, style and image is served by the app itself: nothing else may load.
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(config: Config | None = None) -> Flask:
    """Build the app. Without `config`, settings come from the environment (see README.md).

    Redis is not contacted here: the app starts while Redis is still coming up, and `/readyz`
    says when it can serve.
    """
    config = config or Config.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.extensions[STORE_EXTENSION] = PasswordStore(
        connect(config),
        target=config.redis_target(),
        history_length=config.history_length,
        max_stored=config.max_stored_passwords,
    )
    app.register_blueprint(pages)
    app.register_blueprint(api)
    app.register_blueprint(ops)
    register_error_handlers(app)

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        response.headers.update(_SECURITY_HEADERS)
        if request.endpoint != "static":
            # Pages and API answers carry passwords: no browser or proxy cache may keep them.
            response.headers["Cache-Control"] = "no-store"
        return response

    return app
