"""Checkout: validation, the right order closed, card data not stored, concurrency."""

import re
import threading
from datetime import date

import pytest

from fakeshop import checkout_form
from fakeshop.carts import CART_COOKIE
from tests.support import valid_checkout

CONFIRMATION = re.compile(r"^/order_confirmation/([23456789A-HJ-NP-Z]{10})$")


def fill_cart(client, *products):
    for product_id, quantity in products:
        assert client.post(f"/add_to_cart/{product_id}", data={"quantity": str(quantity)}).status_code == 302
    return client.get_cookie(CART_COOKIE).value


def order_row(sql, cart_uuid):
    [row] = sql("SELECT * FROM orders WHERE uuid = :uuid", uuid=cart_uuid)
    return row


def test_checkout_page_shows_the_form_and_summary(client):
    fill_cart(client, (1, 2))
    page = client.get("/checkout").get_data(as_text=True)
    for field in ["first_name", "last_name", "email", "mobile", "address1", "address2", "city", "state",
                  "country", "zip", "card_name", "card_number", "expiry_date", "cvv"]:
        assert f'name="{field}"' in page
    assert "$698.00" in page


@pytest.mark.parametrize("method", ["get", "post"])
def test_checkout_with_an_empty_cart_redirects_with_a_message(client, method):
    response = getattr(client, method)("/checkout", data=valid_checkout())
    assert response.status_code == 302 and response.headers["Location"] == "/cart"
    assert b"Your cart is empty" in client.get("/cart").data


def test_checkout_after_removing_every_item_is_refused(client, sql):
    cart = fill_cart(client, (1, 1))
    [item] = sql("SELECT i.id FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.uuid = :u", u=cart)
    client.post(f"/remove_item/{item['id']}")
    assert client.post("/checkout", data=valid_checkout()).status_code == 302
    assert order_row(sql, cart)["is_open"]


def test_checkout_places_the_order_and_shows_the_confirmation(client, sql):
    cart = fill_cart(client, (1, 2), (9, 1))
    response = client.post("/checkout", data=valid_checkout())
    assert response.status_code == 302
    order_number = CONFIRMATION.match(response.headers["Location"]).group(1)
    assert client.get_cookie(CART_COOKIE) is None  # the next visit starts a new cart

    row = order_row(sql, cart)
    assert not row["is_open"] and row["order_number"] == order_number
    assert float(row["total_price"]) == 1447.00
    assert (row["user_name"], row["user_email"], row["city"], row["zip_code"]) == (
        "Ana Silva", "ana@example.com", "São Paulo", "01234-000")

    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert order_number in page and "Ana Silva" in page and "$1,447.00" in page and "ending in 1111" in page
    assert b"Your cart is empty" in client.get("/cart").data


def test_card_number_and_cvv_are_never_stored(client, sql):
    cart = fill_cart(client, (4, 1))
    client.post("/checkout", data=valid_checkout(card_number="5555-5555-5555-4444", cvv="7070"))
    row = order_row(sql, cart)
    assert row["card_last4"] == "4444"
    assert "card_number" not in row and "cvv" not in row
    # The random cart id and the timestamp could contain any digits by chance.
    stored = " ".join(str(value) for name, value in row.items() if name not in ("uuid", "created_at"))
    assert "5555555555554444" not in stored and "5555-5555" not in stored and "7070" not in stored


def test_checkout_closes_the_visitors_order_not_the_first_open_one(app, sql):
    early, late = app.test_client(), app.test_client()
    early_cart = fill_cart(early, (1, 1))  # the oldest open order in the database
    late_cart = fill_cart(late, (2, 1))
    assert late.post("/checkout", data=valid_checkout(email="late@example.com")).status_code == 302
    assert order_row(sql, early_cart)["is_open"]
    closed = order_row(sql, late_cart)
    assert not closed["is_open"] and closed["user_email"] == "late@example.com"
    # The early visitor's cart is intact and can still be checked out.
    assert b"HD Webcam" in early.get("/cart").data
    assert early.post("/checkout", data=valid_checkout()).status_code == 302


def test_a_checked_out_order_cannot_be_checked_out_again(app, sql):
    visitor = app.test_client()
    cart = fill_cart(visitor, (1, 1))
    visitor.post("/checkout", data=valid_checkout())
    visitor.set_cookie(CART_COOKIE, cart)  # replaying the old cookie
    assert visitor.post("/checkout", data=valid_checkout(email="again@example.com")).status_code == 302
    assert order_row(sql, cart)["user_email"] == "ana@example.com"


def past_expiry() -> str:
    today = date.today()
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{month:02d}/{year % 100:02d}"


@pytest.mark.parametrize("changes, field, message", [
    ({"email": "not-an-email"}, "email", "e-mail address"),
    ({"email": ""}, "email", "is required"),
    ({"first_name": "  "}, "first_name", "is required"),
    ({"city": ""}, "city", "is required"),
    ({"mobile": "call me"}, "mobile", "phone number"),
    ({"card_number": "4111 1111 1111 1112"}, "card_number", "not valid"),
    ({"card_number": "4111-abcd-1111-1111"}, "card_number", "12 to 19 digits"),
    ({"card_number": "4111"}, "card_number", "12 to 19 digits"),
    ({"expiry_date": "13/30"}, "expiry_date", "MM/YY"),
    ({"expiry_date": "2030-12"}, "expiry_date", "MM/YY"),
    ({"expiry_date": past_expiry()}, "expiry_date", "expired"),
    ({"cvv": "12"}, "cvv", "3 or 4 digits"),
    ({"cvv": "12a"}, "cvv", "3 or 4 digits"),
    ({"zip": "9" * 50}, "zip", "too long"),
    # First and last name are stored together in a VARCHAR(200).
    ({"first_name": "A" * 100}, "first_name", "too long"),
    # Digits that str.isdigit() accepts: int() refuses superscripts, and takes Arabic-Indic digits
    # no card network uses.
    ({"card_number": "4111 1111 1111 111²"}, "card_number", "12 to 19 digits"),
    ({"card_number": "٤١١١ ١١١١ ١١١١ ١١١١"}, "card_number", "12 to 19 digits"),
    ({"expiry_date": "١٢/٣٠"}, "expiry_date", "MM/YY"),
    ({"cvv": "١٢٣"}, "cvv", "3 or 4 digits"),
    # PostgreSQL refuses NUL in text.
    ({"email": "ana\x00@example.com"}, "email", "control character"),
    ({"city": "São\x00Paulo"}, "city", "control character"),
])
def test_invalid_checkout_is_400_with_the_message_and_the_entries_kept(client, sql, changes, field, message):
    cart = fill_cart(client, (1, 1))
    form = valid_checkout(**changes)
    response = client.post("/checkout", data=form)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page
    assert re.search(rf'name="{field}"[^>]*>\s*<small class="field-error">', page)
    assert 'value="Rua das Flores, 100"' in page  # other entries are kept...
    assert "4111 1111" not in page and 'value="123"' not in page  # ...but not the card secrets
    assert order_row(sql, cart)["is_open"]


def test_missing_form_fields_are_reported_not_crashing(client):
    fill_cart(client, (1, 1))
    response = client.post("/checkout", data={})
    assert response.status_code == 400
    assert response.get_data(as_text=True).count("is required") == 13  # all but address2


def test_address_line_2_is_optional(client, sql):
    cart = fill_cart(client, (1, 1))
    assert client.post("/checkout", data=valid_checkout(address2="")).status_code == 302
    assert not order_row(sql, cart)["is_open"]


def test_the_longest_accepted_entries_are_stored(client, sql):
    """Each entry fits its column: PostgreSQL refuses a longer value where SQLite would store it."""
    def longest(field):
        return checkout_form.MAX_LENGTHS.get(field, checkout_form.DEFAULT_MAX_LENGTH)

    cart = fill_cart(client, (1, 1))
    entries = {field: "é" * longest(field) for field in ("first_name", "last_name", "address1", "address2",
                                                          "city", "state", "country", "zip", "card_name")}
    entries["email"] = "a" * (longest("email") - len("@example.com")) + "@example.com"
    entries["mobile"] = "1" * longest("mobile")
    assert client.post("/checkout", data=valid_checkout(**entries)).status_code == 302
    row = order_row(sql, cart)
    assert len(row["user_name"]) == longest("first_name") + 1 + longest("last_name")
    assert (row["user_email"], row["city"]) == (entries["email"], entries["city"])


def place_order(client) -> str:
    """The confirmation page's path of a new order placed by ``client``."""
    fill_cart(client, (1, 1))
    response = client.post("/checkout", data=valid_checkout())
    assert response.status_code == 302
    return response.headers["Location"]


def test_the_confirmation_is_only_for_the_browser_that_placed_the_order(app):
    owner = app.test_client()
    confirmation = place_order(owner)
    assert b"Ana Silva" in owner.get(confirmation).data
    other_shopper = app.test_client()
    fill_cart(other_shopper, (2, 1))
    for visitor in (app.test_client(), other_shopper):
        response = visitor.get(confirmation)
        assert response.status_code == 404
        assert b"opens only in the browser that placed it" in response.data
        assert b"Ana Silva" not in response.data and b"ana@example.com" not in response.data


def test_the_owner_keeps_the_confirmation_after_shopping_again(app):
    owner = app.test_client()
    first = place_order(owner)
    # The cart cookie is gone, except for the confirmation page.
    assert owner.get_cookie(CART_COOKIE) is None
    assert owner.get_cookie(CART_COOKIE, path=first) is not None
    assert b"Your cart is empty" in owner.get("/cart").data
    second = place_order(owner)  # a new cart, so a new cart cookie
    assert owner.get(first).status_code == 200
    assert owner.get(second).status_code == 200


def test_unknown_order_confirmation_is_404(client):
    assert client.get("/order_confirmation/AAAAAAAAAA").status_code == 404


@pytest.mark.parametrize("number", ["AAAAAAAAA", "AAAAAAAAAAA", "aaaaaaaaaa", "AAAAAAAAA0", "AAAAAAAAA%00",
                                    "%C2%B2" * 10])
def test_order_numbers_of_another_shape_are_404(client, number):
    assert client.get(f"/order_confirmation/{number}").status_code == 404


def test_open_cart_has_no_confirmation_page(client, sql):
    fill_cart(client, (1, 1))
    # An open order has no number; make sure a NULL number cannot match anything either.
    assert client.get("/order_confirmation/None").status_code == 404


def test_concurrent_checkouts_of_different_carts_each_close_their_own(app, sql):
    shoppers = 4
    clients = [app.test_client() for _ in range(shoppers)]
    carts = [fill_cart(client, (index + 1, index + 1)) for index, client in enumerate(clients)]
    start = threading.Barrier(shoppers)
    locations: dict[int, str] = {}
    failures: list[BaseException] = []

    def check_out(index: int) -> None:
        try:
            start.wait(timeout=60)
            response = clients[index].post("/checkout", data=valid_checkout(email=f"shopper{index}@example.com"))
            assert response.status_code == 302, response.get_data(as_text=True)
            locations[index] = response.headers["Location"]
        except BaseException as error:  # reported in the main thread
            failures.append(error)

    threads = [threading.Thread(target=check_out, args=(index,)) for index in range(shoppers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert len(set(locations.values())) == shoppers

    for index, cart in enumerate(carts):
        row = order_row(sql, cart)
        assert not row["is_open"]
        assert row["user_email"] == f"shopper{index}@example.com"
        assert locations[index].endswith(row["order_number"])
        [item] = sql("SELECT product_id, quantity FROM order_items WHERE order_id = :id", id=row["id"])
        assert (item["product_id"], item["quantity"]) == (index + 1, index + 1)
