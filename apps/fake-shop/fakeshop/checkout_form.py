"""Server-side validation of the checkout form."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

ADDRESS_FIELDS = ("first_name", "last_name", "email", "mobile", "address1", "address2", "city",
                  "state", "country", "zip")
CARD_FIELDS = ("card_name", "card_number", "expiry_date", "cvv")
OPTIONAL_FIELDS = {"address2"}
# Never sent back to the browser when the form is shown again after an error.
SECRET_FIELDS = {"card_number", "cvv"}
MAX_LENGTHS = {"email": 254, "mobile": 30, "zip": 20, "city": 100, "state": 100, "country": 100}
DEFAULT_MAX_LENGTH = 200
LABELS = {
    "first_name": "First name", "last_name": "Last name", "email": "E-mail", "mobile": "Mobile",
    "address1": "Address", "address2": "Address line 2", "city": "City", "state": "State",
    "country": "Country", "zip": "ZIP code", "card_name": "Name on card",
    "card_number": "Card number", "expiry_date": "Expiry date", "cvv": "CVV",
}

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MOBILE = re.compile(r"^\+?[0-9 ()\-]{6,30}$")
EXPIRY = re.compile(r"^(\d{2})/(\d{2})$")
CVV = re.compile(r"^\d{3,4}$")
CARD_SEPARATORS = re.compile(r"[ \-]")
LONGEST_CARD_VALIDITY_YEARS = 20


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
    values = {name: (form.get(name) or "").strip() for name in ADDRESS_FIELDS + CARD_FIELDS}
    errors: dict[str, str] = {}
    for name, value in values.items():
        longest = MAX_LENGTHS.get(name, DEFAULT_MAX_LENGTH)
        if not value and name not in OPTIONAL_FIELDS:
            errors[name] = f"{LABELS[name]} is required."
        elif len(value) > longest:
            errors[name] = f"{LABELS[name]} is too long (at most {longest} characters)."
    checks = {
        "email": email_problem,
        "mobile": mobile_problem,
        "card_number": card_number_problem,
        "expiry_date": lambda value: expiry_problem(value, today),
        "cvv": cvv_problem,
    }
    for name, check in checks.items():
        if name not in errors and (problem := check(values[name])):
            errors[name] = problem
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
        card_last4=card_digits(values["card_number"])[-4:],
        expiry_date=values["expiry_date"],
    ), {}


def redisplayable(form) -> dict[str, str]:
    """The visitor's entries to fill the form again, minus the card number and CVV."""
    return {name: (form.get(name) or "") for name in ADDRESS_FIELDS + CARD_FIELDS
            if name not in SECRET_FIELDS}


def email_problem(value: str) -> str | None:
    return None if EMAIL.match(value) else "Enter an e-mail address like name@example.com."


def mobile_problem(value: str) -> str | None:
    return None if MOBILE.match(value) else "Enter a phone number: digits, spaces, +, - and ( )."


def card_digits(value: str) -> str:
    return CARD_SEPARATORS.sub("", value)


def card_number_problem(value: str) -> str | None:
    digits = card_digits(value)
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        return "A card number has 12 to 19 digits."
    if not luhn_valid(digits):
        return "This card number is not valid: please check it."
    return None


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def expiry_problem(value: str, today: date) -> str | None:
    match = EXPIRY.match(value)
    if not match or not 1 <= int(match.group(1)) <= 12:
        return "Enter the expiry date as MM/YY, e.g. 08/29."
    month, year = int(match.group(1)), 2000 + int(match.group(2))
    # A card is valid until the end of its expiry month.
    if (year, month) < (today.year, today.month):
        return "This card has expired."
    if year > today.year + LONGEST_CARD_VALIDITY_YEARS:
        return "This expiry date is too far in the future: please check it."
    return None


def cvv_problem(value: str) -> str | None:
    return None if CVV.match(value) else "The CVV is the 3 or 4 digits on the card."
