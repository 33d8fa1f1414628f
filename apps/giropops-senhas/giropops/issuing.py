"""Generating a password and recording it, shared by the HTML page and the JSON API."""

from __future__ import annotations

from flask import current_app

from .metrics import PASSWORDS_GENERATED
from .options import PasswordOptions
from .passwords import generate_password
from .store import PasswordStore

STORE_EXTENSION = "giropops.store"
UNAVAILABLE_MESSAGE = "the password store (Redis) is unavailable; try again in a few seconds"


def password_store() -> PasswordStore:
    return current_app.extensions[STORE_EXTENSION]


def issue_password(options: PasswordOptions) -> str:
    """Raises StoreUnavailable, and then nothing is counted nor returned: a password the
    history cannot show would confuse users of the list."""
    password = generate_password(
        options.length, include_digits=options.include_digits, include_special=options.include_special
    )
    password_store().add(password)
    PASSWORDS_GENERATED.inc()
    return password
