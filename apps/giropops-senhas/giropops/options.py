"""What a client asks for, checked before anything is generated or stored."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .passwords import MAX_LENGTH, MIN_LENGTH

DEFAULT_LENGTH = 8
LENGTH_FIELD = "tamanho"
DIGITS_FIELD = "incluir_numeros"
SPECIAL_FIELD = "incluir_caracteres_especiais"
# An HTML checkbox is sent only when ticked, with the value "on" unless the page sets another.
CHECKED = "on"

_LENGTH_RULE = f"'{LENGTH_FIELD}' must be an integer from {MIN_LENGTH} to {MAX_LENGTH}"
# ASCII only: str.isdigit() and int() also take other scripts' digits ('١٢'), and int() takes
# '+12' and '1_2' too; a form length is written with 0-9.
_ASCII_DIGITS = re.compile(r"[0-9]+")


class InvalidOptions(ValueError):
    """The request cannot be served as sent; the message says what to change."""


@dataclass(frozen=True)
class PasswordOptions:
    length: int = DEFAULT_LENGTH
    include_digits: bool = False
    include_special: bool = False

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> PasswordOptions:
        raw_length = form.get(LENGTH_FIELD, "").strip()
        return cls(
            length=_length_from_text(raw_length) if raw_length else DEFAULT_LENGTH,
            include_digits=form.get(DIGITS_FIELD) == CHECKED,
            include_special=form.get(SPECIAL_FIELD) == CHECKED,
        )

    @classmethod
    def from_json(cls, payload: Any) -> PasswordOptions:
        if not isinstance(payload, dict):
            raise InvalidOptions(
                f"the body must be a JSON object such as "
                f'{{"{LENGTH_FIELD}": 12, "{DIGITS_FIELD}": true, "{SPECIAL_FIELD}": true}}, '
                f"got a JSON {_json_type_name(payload)}"
            )
        unknown = sorted(set(payload) - {LENGTH_FIELD, DIGITS_FIELD, SPECIAL_FIELD})
        if unknown:
            # A misspelt field would otherwise silently fall back to its default.
            raise InvalidOptions(
                f"unknown field(s) {', '.join(map(repr, unknown))}; "
                f"the accepted fields are '{LENGTH_FIELD}', '{DIGITS_FIELD}' and '{SPECIAL_FIELD}'"
            )
        length = payload.get(LENGTH_FIELD, DEFAULT_LENGTH)
        # bool is a subclass of int in Python, but `true` is not a length.
        if not isinstance(length, int) or isinstance(length, bool):
            raise InvalidOptions(f"{_LENGTH_RULE}, got a JSON {_json_type_name(length)}")
        return cls(
            length=_checked_length(length),
            include_digits=_json_flag(payload, DIGITS_FIELD),
            include_special=_json_flag(payload, SPECIAL_FIELD),
        )


def _length_from_text(text: str) -> int:
    """The form's `tamanho` as an int in MIN_LENGTH..MAX_LENGTH, or InvalidOptions.

    The digits are counted before int() sees them: int() refuses strings of more than 4300
    digits with a ValueError, and a long run of digits is just a length out of range.
    """
    if not _ASCII_DIGITS.fullmatch(text):
        raise InvalidOptions(f"{_LENGTH_RULE}, got {text[:20]!r}")
    significant_digits = text.lstrip("0") or "0"
    if len(significant_digits) > len(str(MAX_LENGTH)):
        raise InvalidOptions(f"{_LENGTH_RULE}, got {_shortened(significant_digits)}")
    return _checked_length(int(significant_digits))


def _checked_length(length: int) -> int:
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise InvalidOptions(f"{_LENGTH_RULE}, got {_shortened(length)}")
    return length


def _json_flag(payload: dict, name: str) -> bool:
    value = payload.get(name, False)
    if not isinstance(value, bool):
        raise InvalidOptions(f"'{name}' must be true or false, got a JSON {_json_type_name(value)}")
    return value


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return f"number ({_shortened(value)})"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _shortened(number: int | float | str) -> str:
    text = str(number)
    return text if len(text) <= 20 else f"{text[:20]}..."
