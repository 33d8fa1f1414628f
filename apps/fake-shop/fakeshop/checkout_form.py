"""The checkout form, parsed on the server: each field once, into what the order stores."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

ADDRESS_FIELDS = ("first_name", "last_name", "email", "mobile", "address1", "address2", "city",
                  "state", "country", "zip")
CARD_FIELDS = ("card_name", "card_number", "expiry_date", "cvv")
OPTIONAL_FIELDS = {"address2"}
# Never sent back to the browser when the form is shown again after an error.
SECRET_FIELDS = {"card_number", "cvv"}
# Each entry fits its column in `orders` (tests/test_checkout_form.py checks it): PostgreSQL
# refuses a longer value with an error where SQLite would store it. First and last name are
# stored together, "first last", in user_name VARCHAR(200).
MAX_LENGTHS = {"first_name": 99, "last_name": 100, "email": 254, "mobile": 30, "zip": 20, "city": 100,
               "state": 100, "country": 100}
DEFAULT_MAX_LENGTH = 200
LABELS = {
    "first_name": "First name", "last_name": "Last name", "email": "E-mail", "mobile": "Mobile",
    "address1": "Address", "address2": "Address line 2", "city": "City", "state": "State",
    "country": "Country", "zip": "ZIP code", "card_name": "Name on card",
    "card_number": "Card number", "expiry_date": "Expiry date", "cvv": "CVV",
}

# Every field is one line of text. PostgreSQL refuses NUL in a text column outright, and no other
# control character belongs in a name or an address either.
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Digits are spelt [0-9] throughout, never \d or str.isdigit(): those also accept other scripts'
# digits and superscripts ('²'), which the card check's int() refuses and no card network uses.
MOBILE = re.compile(r"\+?[0-9 ()\-]{6,30}")
EXPIRY = re.compile(r"(?P<month>[0-9]{2})/(?P<year>[0-9]{2})")
CVV = re.compile(r"[0-9]{3,4}")
CARD_NUMBER = re.compile(r"[0-9]{12,19}")
CARD_SEPARATORS = re.compile(r"[ \-]")
LONGEST_CARD_VALIDITY_YEARS = 20


class FieldError(ValueError):
    """The entry of one field cannot be used; the message is shown next to the field."""


@dataclass(frozen=True)
class Checkout:
    """A valid checkout: what may be stored. Holds no full card number and no CVV."""

    user_name: str
    user_email: str
    mobile: str
    address1: str
    address2: str
    city: str
    state: str
    country: str
    zip_code: str
    card_name: str
    card_last4: str
    expiry_date: str


def validate(form, today: date) -> tuple[Checkout | None, dict[str, str]]:
    """The checkout and no errors, or None and a message for each field that is wrong."""
    formats: dict[str, Callable[[str], str]] = {
        "email": parse_email,
        "mobile": parse_mobile,
        "card_number": parse_card_number,
        "expiry_date": lambda value: parse_expiry(value, today),
        "cvv": parse_cvv,
    }
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name in ADDRESS_FIELDS + CARD_FIELDS:
        try:
            values[name] = parse_field(name, form.get(name) or "", formats.get(name))
        except FieldError as error:
            errors[name] = str(error)
    if errors:
        return None, errors
    return Checkout(
        user_name=f"{values['first_name']} {values['last_name']}",
        user_email=values["email"],
        mobile=values["mobile"],
        address1=values["address1"],
        address2=values["address2"],
        city=values["city"],
        state=values["state"],
        country=values["country"],
        zip_code=values["zip"],
        card_name=values["card_name"],
        card_last4=values["card_number"][-4:],
        expiry_date=values["expiry_date"],
    ), {}


def parse_field(name: str, entry: str, parse_format: Callable[[str], str] | None) -> str:
    """One field's entry, trimmed, checked for presence, length and characters, then for the
    field's format when it has one; the value to store, or FieldError."""
    value = entry.strip()
    label = LABELS[name]
    longest = MAX_LENGTHS.get(name, DEFAULT_MAX_LENGTH)
    if not value:
        if name in OPTIONAL_FIELDS:
            return value
        raise FieldError(f"{label} is required.")
    if len(value) > longest:
        raise FieldError(f"{label} is too long (at most {longest} characters).")
    if CONTROL_CHARACTER.search(value):
        raise FieldError(f"{label} contains a control character: please type it again.")
    return parse_format(value) if parse_format else value


def redisplayable(form) -> dict[str, str]:
    """The visitor's entries to fill the form again, minus the card number and CVV."""
    return {name: (form.get(name) or "") for name in ADDRESS_FIELDS + CARD_FIELDS
            if name not in SECRET_FIELDS}


def parse_email(value: str) -> str:
    if not EMAIL.fullmatch(value):
        raise FieldError("Enter an e-mail address like name@example.com.")
    return value


def parse_mobile(value: str) -> str:
    if not MOBILE.fullmatch(value):
        raise FieldError("Enter a phone number: digits, spaces, +, - and ( ).")
    return value


def parse_card_number(value: str) -> str:
    """The card's digits, separators removed."""
    digits = CARD_SEPARATORS.sub("", value)
    if not CARD_NUMBER.fullmatch(digits):
        raise FieldError("A card number has 12 to 19 digits.")
    if not luhn_valid(digits):
        raise FieldError("This card number is not valid: please check it.")
    return digits


def luhn_valid(digits: str) -> bool:
    """``digits``: ASCII digits only, as parse_card_number ensures."""
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def parse_expiry(value: str, today: date) -> str:
    match = EXPIRY.fullmatch(value)
    if not match or not 1 <= int(match["month"]) <= 12:
        raise FieldError("Enter the expiry date as MM/YY, e.g. 08/29.")
    month, year = int(match["month"]), 2000 + int(match["year"])
    # A card is valid until the end of its expiry month.
    if (year, month) < (today.year, today.month):
        raise FieldError("This card has expired.")
    if year > today.year + LONGEST_CARD_VALIDITY_YEARS:
        raise FieldError("This expiry date is too far in the future: please check it.")
    return value


def parse_cvv(value: str) -> str:
    if not CVV.fullmatch(value):
        raise FieldError("The CVV is the 3 or 4 digits on the card.")
    return value
