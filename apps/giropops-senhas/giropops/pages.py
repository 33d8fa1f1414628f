"""The HTML page: `GET /` and the form's `POST /`."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from .issuing import UNAVAILABLE_MESSAGE, issue_password, password_store
from .options import CHECKED, DIGITS_FIELD, LENGTH_FIELD, SPECIAL_FIELD, InvalidOptions, PasswordOptions
from .store import StoreUnavailable

pages = Blueprint("pages", __name__)

# The slider's range; the server accepts the wider passwords.MIN_LENGTH..MAX_LENGTH (curl, API).
SLIDER_MIN = 8
SLIDER_MAX = 32
SLIDER_INITIAL = 12


@pages.route("/", methods=["GET", "POST"])
def index():
    if request.method == "GET":
        return _page(PasswordOptions(length=SLIDER_INITIAL))
    try:
        options = PasswordOptions.from_form(request.form)
    except InvalidOptions as problem:
        return _page(PasswordOptions(length=SLIDER_INITIAL), error=str(problem), status=400)
    try:
        password = issue_password(options)
    except StoreUnavailable:
        return _page(options, error=UNAVAILABLE_MESSAGE, status=503)
    return _page(options, password=password)


def _page(options: PasswordOptions, *, password: str | None = None, error: str | None = None, status: int = 200):
    try:
        history = password_store().latest()
    except StoreUnavailable:
        history = []
        error = error or UNAVAILABLE_MESSAGE
        status = 503 if status == 200 else status
    return (
        render_template(
            "index.html",
            # Like the original page, show the newest password when none was just generated.
            password=password or (history[0] if history else None),
            history=list(enumerate(history, 1)),
            error=error,
            length=min(max(options.length, SLIDER_MIN), SLIDER_MAX),
            include_digits=options.include_digits,
            include_special=options.include_special,
            slider_min=SLIDER_MIN,
            slider_max=SLIDER_MAX,
            length_field=LENGTH_FIELD,
            digits_field=DIGITS_FIELD,
            special_field=SPECIAL_FIELD,
            checked_value=CHECKED,
        ),
        status,
    )
