"""JSON API: `POST /api/gerar-senha` and `GET /api/senhas`."""

from __future__ import annotations

import json

from flask import Blueprint, jsonify, request

from .errors import json_error
from .issuing import UNAVAILABLE_MESSAGE, issue_password, password_store
from .options import InvalidOptions, PasswordOptions
from .store import StoreUnavailable

api = Blueprint("api", __name__, url_prefix="/api")

_EXAMPLE = '{"tamanho": 12, "incluir_numeros": true, "incluir_caracteres_especiais": true}'


@api.post("/gerar-senha")
def generate_password():
    try:
        options = PasswordOptions.from_json(_json_body())
    except InvalidOptions as problem:
        return json_error(str(problem), 400)
    try:
        password = issue_password(options)
    except StoreUnavailable:
        return json_error(UNAVAILABLE_MESSAGE, 503)
    return jsonify(senha=password)


@api.get("/senhas")
def latest_passwords():
    try:
        passwords = password_store().latest()
    except StoreUnavailable:
        return json_error(UNAVAILABLE_MESSAGE, 503)
    # id 1 is the newest, as in the original API.
    return jsonify([{"id": number, "senha": password} for number, password in enumerate(passwords, 1)])


def _json_body():
    """Parsed here rather than with request.get_json() so that every problem is a 400 that
    says what to send (Flask answers 415 for a wrong content type)."""
    body = request.get_data(cache=True)
    if not body.strip():
        raise InvalidOptions(f"the request body is empty; send a JSON object such as {_EXAMPLE}")
    if not request.is_json:
        raise InvalidOptions(
            f"the Content-Type must be application/json, got {request.mimetype or 'none'!r}; "
            "with curl, add -H 'Content-Type: application/json'"
        )
    try:
        return json.loads(body)
    except json.JSONDecodeError as problem:
        raise InvalidOptions(
            f"the body is not valid JSON ({problem.msg} at line {problem.lineno} column {problem.colno})"
        ) from None
    except (ValueError, RecursionError):
        # Not UTF-8, an integer too long to convert, or nesting deeper than the parser allows.
        raise InvalidOptions(f"the body is not usable JSON; send a JSON object such as {_EXAMPLE}") from None
