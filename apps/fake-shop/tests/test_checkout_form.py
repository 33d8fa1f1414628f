"""The checkout validation rules on their own."""

from datetime import date

import pytest

from fakeshop import checkout_form
from tests.support import valid_checkout

TODAY = date(2025, 6, 15)


def errors_for(**changes):
    form = valid_checkout(expiry_date="12/27", **changes)
    return checkout_form.validate(form, today=TODAY)[1]


def refusal(parse, *arguments) -> str | None:
    """The message a field parser refuses the entry with, or None when it accepts it."""
    try:
        parse(*arguments)
    except checkout_form.FieldError as error:
        return str(error)
    return None


@pytest.mark.parametrize("number", ["4111111111111111", "5555 5555 5555 4444", "3782-822463-10005",
                                    "6011111111111117", "4012888888881881"])
def test_luhn_accepts_test_card_numbers(number):
    assert refusal(checkout_form.parse_card_number, number) is None


@pytest.mark.parametrize("number", ["4111111111111112", "1234567812345678", "0000000000001"])
def test_luhn_rejects_wrong_check_digits(number):
    assert "not valid" in refusal(checkout_form.parse_card_number, number)


@pytest.mark.parametrize("expiry, problem", [
    ("06/25", None),           # valid until the end of the expiry month
    ("05/25", "expired"),
    ("12/24", "expired"),
    ("01/45", None),
    ("01/46", "too far"),
    ("00/26", "MM/YY"),
    ("6/26", "MM/YY"),
    ("06/2026", "MM/YY"),
])
def test_expiry_dates(expiry, problem):
    result = refusal(checkout_form.parse_expiry, expiry, TODAY)
    assert (result is None) if problem is None else (problem in result)


def test_a_valid_form_yields_only_what_may_be_stored():
    checkout, errors = checkout_form.validate(valid_checkout(expiry_date="12/27", card_number="4111-1111-1111-1111"),
                                              today=TODAY)
    assert errors == {}
    assert checkout.card_last4 == "1111" and checkout.user_name == "Ana Silva"
    assert not {"card_number", "cvv"} & set(vars(checkout))


def test_every_problem_is_reported_at_once():
    assert set(errors_for(email="x", cvv="1", mobile="?")) == {"email", "cvv", "mobile"}


def test_entries_are_trimmed():
    checkout, errors = checkout_form.validate(valid_checkout(expiry_date="12/27", email="  ana@example.com "),
                                              today=TODAY)
    assert errors == {} and checkout.user_email == "ana@example.com"


def test_redisplayed_values_leave_out_card_number_and_cvv():
    values = checkout_form.redisplayable(valid_checkout())
    assert "card_number" not in values and "cvv" not in values
    assert values["card_name"] == "ANA SILVA" and values["zip"] == "01234-000"
