"""What a request brings in (route parameters, form fields, the cart cookie), converted once.

Each converter either returns a value the rest of the app and the database can use as it is, or
refuses the input with the 4xx it deserves. The 500s this replaces all came from a check that
tested one property followed by a conversion that needed another: str.isdigit() accepts '²',
which int() refuses; Python's int has no upper bound, PostgreSQL's `integer` stops at 2147483647;
a string is a string to Python, but PostgreSQL refuses one holding NUL.
The checkout form has its own parser, fakeshop.checkout_form.
"""

from __future__ import annotations

import re

from werkzeug.routing import BaseConverter, ValidationError

# The largest value of PostgreSQL's `integer`, the type of every id column.
POSTGRES_INTEGER_MAX = 2**31 - 1
MAX_QUANTITY = 99
# No 0/O or 1/I: order numbers get read out over the phone. 10 characters of 32 = 50 bits, so
# confirmation pages cannot be found by guessing.
ORDER_NUMBER_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
ORDER_NUMBER_LENGTH = 10
# What str(uuid.uuid4()) writes, and so the only form a cart cookie the shop set can take.
CART_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# ASCII only: int() also takes other scripts' digits ('٣'), signs, spaces and underscores.
ASCII_DIGITS = re.compile(r"[0-9]+")


class InvalidInput(ValueError):
    """A visitor's entry the shop cannot use; the message says why, for the page."""


def ascii_int(text: str, highest: int) -> int | None:
    """``text`` as an int when it is written in ASCII digits and is at most ``highest``, else None.

    The length is checked before int() sees the digits: int() raises ValueError on strings of more
    than 4300 digits, and a long run of digits is only a number out of range.
    """
    if not ASCII_DIGITS.fullmatch(text):
        return None
    significant = text.lstrip("0") or "0"
    if len(significant) > len(str(highest)):
        return None
    number = int(significant)
    return number if number <= highest else None


class IdConverter(BaseConverter):
    """``<id:name>`` in a route: a row id, 1..2147483647 in ASCII digits.

    Anything else matches no route, so it is a 404 before a query could fail with PostgreSQL's
    "integer out of range" (SQLite stores 64-bit integers and would not have noticed).
    """

    regex = "[0-9]+"

    def to_python(self, value: str) -> int:
        number = ascii_int(value, POSTGRES_INTEGER_MAX)
        if not number:  # None (too large) or 0
            raise ValidationError()
        return number


class OrderNumberConverter(BaseConverter):
    """``<order_number:name>``: exactly the shape the shop gives order numbers, else a 404."""

    regex = f"[{ORDER_NUMBER_ALPHABET}]{{{ORDER_NUMBER_LENGTH}}}"


URL_CONVERTERS = {"id": IdConverter, "order_number": OrderNumberConverter}


def quantity(entry: str | None) -> int:
    """The `quantity` form field as an int in 1..MAX_QUANTITY, or InvalidInput saying why."""
    text = (entry or "").strip()
    if not text:
        raise InvalidInput("Please enter a quantity.")
    if not ASCII_DIGITS.fullmatch(text):
        raise InvalidInput(f"The quantity must be a whole number, not “{text[:20]}”.")
    number = ascii_int(text, MAX_QUANTITY)
    if not number:
        raise InvalidInput(f"The quantity must be between 1 and {MAX_QUANTITY}.")
    return number


def cart_id(cookie: str | None) -> str | None:
    """The cart id in an `order_id` cookie, or None for anything the shop cannot have set."""
    return cookie if cookie is not None and CART_ID.fullmatch(cookie) else None
