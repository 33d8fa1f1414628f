"""Whatever a visitor sends, the shop answers without a 5xx, logs no error, and stores nothing
from a request it refused.

hypothesis tries route ids, order numbers, the cart cookie, every form field, methods, paths,
query strings, headers and bodies against the app on the real PostgreSQL, whose `integer` and
text columns refuse values SQLite would store. The app lives as long as the module (see
``module_pg_app``); each example starts a fresh test client, a browser without cookies, and
compares the database before and after its own request.
"""

from __future__ import annotations

import re
import string
import sys
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from fakeshop import parse
from fakeshop.carts import CART_COOKIE
from fakeshop.checkout_form import ADDRESS_FIELDS, CARD_FIELDS, DEFAULT_MAX_LENGTH, MAX_LENGTHS, luhn_valid
from fakeshop.metrics import KNOWN_METHODS, OTHER_METHOD, UNMATCHED_PATH
from tests.support import logged_errors, valid_checkout

# No deadline (the CI profile hypothesis loads under CI=true has none either): a request that
# waits on PostgreSQL on a loaded 2-core machine is not a failure.
PROPERTY = settings(max_examples=60, deadline=None)
CATALOGUE = range(1, 10)
CHECKOUT_FIELDS = ADDRESS_FIELDS + CARD_FIELDS

# Any text a form, a cookie or a URL can carry (surrogates cannot be encoded, so none are drawn).
any_text = st.text(max_size=30)
# Runs of digits from one to far past the 4300 digits int() converts.
digit_runs = st.builds(str.__mul__, st.sampled_from(string.digits),
                       st.integers(min_value=1, max_value=2 * sys.get_int_max_str_digits()))
# What str.isdigit() or int() accept besides 0-9: superscripts, Arabic-Indic, fullwidth, Devanagari.
foreign_digits = st.text(alphabet="²³¹٠١٢٣٤٥٦٧٨٩０１２３४५६", min_size=1, max_size=5)
number_entries = st.one_of(
    any_text,
    st.integers(min_value=-2**70, max_value=2**70).map(str),
    digit_runs,
    foreign_digits,
    st.sampled_from(["0", "007", "2147483647", "2147483648", "9223372036854775808", "\x00", "1\x00",
                     "-1", "+1", " 1", "1.0", "1_0"]),
)
# Control characters, NUL (which PostgreSQL refuses in text) above all, among ordinary ones.
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
control_text = st.text(st.just("\x00") | st.characters(codec="utf-8", categories=["Cc"]) | st.sampled_from("ab1 "),
                       min_size=1, max_size=10)
# Header values travel as Latin-1 and may not hold line breaks.
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                        max_size=40)


def with_check_digit(digits: str) -> str:
    """``digits`` followed by the digit that makes the whole pass the Luhn check."""
    return next(digits + check for check in string.digits if luhn_valid(digits + check))


# Digits 0-9 of other scripts: str.isdigit() accepts them all, int() only some (not superscripts).
LOOK_ALIKE_DIGITS = ["⁰¹²³⁴⁵⁶⁷⁸⁹", "٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "०१२३४५६७८९"]


def with_look_alike_digit(number: str, position: int, script: str) -> str:
    """``number`` with one digit written in another script, so its value (and Luhn sum) stays."""
    position %= len(number)
    return number[:position] + script[int(number[position])] + number[position + 1:]


valid_card_numbers = st.text(string.digits, min_size=11, max_size=18).map(with_check_digit)
card_number_entries = st.one_of(
    valid_card_numbers,
    st.builds(lambda number, separator: separator.join(number[i:i + 4] for i in range(0, len(number), 4)),
              valid_card_numbers, st.sampled_from([" ", "-", "  "])),
    st.builds(with_look_alike_digit, valid_card_numbers, st.integers(min_value=0),
              st.sampled_from(LOOK_ALIKE_DIGITS)),
    st.text(alphabet=string.digits + " -" + "".join(LOOK_ALIKE_DIGITS), min_size=10, max_size=25),
    any_text,
)


def checkout_entries(field: str):
    """Entries for one checkout field: anything, and text around the field's length limit."""
    limit = MAX_LENGTHS.get(field, DEFAULT_MAX_LENGTH)
    return st.one_of(
        st.none(), any_text, control_text, foreign_digits, st.text(min_size=limit - 1, max_size=limit + 1),
        card_number_entries if field == "card_number" else st.nothing(),
    )


checkout_changes = st.lists(st.sampled_from(CHECKOUT_FIELDS), min_size=1, max_size=3, unique=True).flatmap(
    lambda fields: st.fixed_dictionaries({field: checkout_entries(field) for field in fields}))


@pytest.fixture(scope="module")
def database(module_pg_app):
    engine = create_engine(module_pg_app.config["SQLALCHEMY_DATABASE_URI"])
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def placed_order(module_pg_app):
    """(the client that placed it, its order number)"""
    owner = module_pg_app.test_client()
    assert owner.post("/add_to_cart/3", data={"quantity": "1"}).status_code == 302
    response = owner.post("/checkout", data=valid_checkout())
    assert response.status_code == 302
    return owner, response.headers["Location"].rsplit("/", 1)[1]


def query(database, statement: str, **params):
    with database.connect() as connection:
        return connection.execute(text(statement), params).all()


def stored(database) -> tuple:
    """What a request could have stored: carts and orders, placed orders, cart lines, quantities."""
    [row] = query(database, "SELECT (SELECT count(*) FROM orders), "
                            "(SELECT count(*) FROM orders WHERE NOT is_open), "
                            "(SELECT count(*) FROM order_items), "
                            "(SELECT coalesce(sum(quantity), 0) FROM order_items)")
    return tuple(row)


def visitor_with_a_cart_line(module_pg_app, database, quantity: int = 2):
    """A new visitor with `quantity` of product 1 in the cart, and the id of that cart line."""
    visitor = module_pg_app.test_client()
    assert visitor.post("/add_to_cart/1", data={"quantity": str(quantity)}).status_code == 302
    [(line_id,)] = query(database, "SELECT i.id FROM order_items i JOIN orders o ON o.id = i.order_id "
                                   "WHERE o.uuid = :cart", cart=visitor.get_cookie(CART_COOKIE).value)
    return visitor, line_id


def as_id(segment: str) -> int | None:
    """What the README promises for an id in a path: 1..2147483647 in ASCII digits, else a 404."""
    significant = segment.lstrip("0")
    if not re.fullmatch(r"[0-9]+", segment) or not 0 < len(significant) <= 10:
        return None
    return int(significant) if int(significant) <= 2**31 - 1 else None


def as_quantity(entry: str | None) -> int | None:
    """What the README promises for a quantity: 1..99 in ASCII digits, else a 400."""
    number = as_id((entry or "").strip())
    return number if number is not None and number <= parse.MAX_QUANTITY else None


def is_valid_card_number(entry: str) -> bool:
    digits = re.sub(r"[ \-]", "", entry.strip())
    return re.fullmatch(r"[0-9]{12,19}", digits) is not None and luhn_valid(digits)


def field_errors(page: str) -> list[str]:
    """The names of the checkout fields shown with an error next to them."""
    return re.findall(r'name="([a-z0-9_]+)"[^>]*>\s*<small class="field-error">', page)


@PROPERTY
@given(segment=number_entries, add_to_cart=st.booleans())
def test_any_product_id(module_pg_app, database, segment, add_to_cart):
    visitor = module_pg_app.test_client()
    before = stored(database)
    with logged_errors() as errors:
        if add_to_cart:
            response = visitor.post(f"/add_to_cart/{quote(segment, safe='')}", data={"quantity": "1"})
        else:
            response = visitor.get(f"/detail/{quote(segment, safe='')}")
    assert not errors
    if as_id(segment) in CATALOGUE:
        assert response.status_code == (302 if add_to_cart else 200)
    else:
        assert response.status_code == 404
        assert b"Back to the shop" in response.data
        assert stored(database) == before


@PROPERTY
@given(segment=st.none() | number_entries, remove=st.booleans())
def test_any_cart_line_id(module_pg_app, database, segment, remove):
    """``segment`` None stands for the visitor's own cart line."""
    visitor, line_id = visitor_with_a_cart_line(module_pg_app, database)
    path_id = str(line_id) if segment is None else quote(segment, safe="")
    before = stored(database)
    with logged_errors() as errors:
        if remove:
            response = visitor.post(f"/remove_item/{path_id}")
        else:
            response = visitor.post(f"/update_quantity/{path_id}", data={"quantity": "3"})
    assert not errors
    if segment is None or as_id(segment) == line_id:
        assert response.status_code == 302
    else:
        assert response.status_code == 404
        assert b"This item is not in your cart" in response.data or b"Back to the shop" in response.data
        assert stored(database) == before


@PROPERTY
@given(number=st.one_of(st.none(), any_text, st.text(parse.ORDER_NUMBER_ALPHABET + "01IOabc\x00²", min_size=9,
                                                      max_size=11)),
       cookie=st.none() | any_text)
def test_any_order_number(module_pg_app, placed_order, number, cookie):
    """``number`` None stands for the placed order's number; only its owner sees its page."""
    owner, order_number = placed_order
    stranger = module_pg_app.test_client()
    if cookie is not None:
        stranger.set_cookie(CART_COOKIE, cookie)
    path = f"/order_confirmation/{quote(order_number if number is None else number, safe='')}"
    with logged_errors() as errors:
        owners_view, strangers_view = owner.get(path), stranger.get(path)
    assert not errors
    assert strangers_view.status_code == 404
    if number is None or number == order_number:
        assert owners_view.status_code == 200 and order_number in owners_view.get_data(as_text=True)
    else:
        assert owners_view.status_code == 404


@PROPERTY
@given(cookie=any_text | st.text(string.hexdigits + "-", min_size=36, max_size=36) | st.text(max_size=300),
       request_kind=st.sampled_from(["cart", "checkout page", "checkout", "add", "update", "remove",
                                     "confirmation"]))
def test_any_cart_cookie(module_pg_app, database, placed_order, cookie, request_kind):
    """A cookie the shop did not set names no cart: the visitor has an empty cart, whatever it holds."""
    _, someone_elses_line = visitor_with_a_cart_line(module_pg_app, database)
    _, order_number = placed_order
    visitor = module_pg_app.test_client()
    visitor.set_cookie(CART_COOKIE, cookie)
    requests = {
        "cart": lambda: visitor.get("/cart"),
        "checkout page": lambda: visitor.get("/checkout"),
        "checkout": lambda: visitor.post("/checkout", data=valid_checkout()),
        "add": lambda: visitor.post("/add_to_cart/2", data={"quantity": "1"}),
        "update": lambda: visitor.post(f"/update_quantity/{someone_elses_line}", data={"quantity": "9"}),
        "remove": lambda: visitor.post(f"/remove_item/{someone_elses_line}"),
        "confirmation": lambda: visitor.get(f"/order_confirmation/{order_number}"),
    }
    before = stored(database)
    with logged_errors() as errors:
        response = requests[request_kind]()
    assert not errors
    if request_kind == "add":
        assert response.status_code == 302
        assert visitor.get_cookie(CART_COOKIE).value != cookie
        orders, placed, lines, quantities = before
        assert stored(database) == (orders + 1, placed, lines + 1, quantities + 1)
        return
    expected = {"cart": 200, "checkout page": 302, "checkout": 302, "update": 404, "remove": 404,
                "confirmation": 404}
    assert response.status_code == expected[request_kind]
    if request_kind == "cart":
        assert b"Your cart is empty" in response.data
    assert stored(database) == before


@PROPERTY
@given(entry=st.none() | number_entries, update=st.booleans())
def test_any_quantity(module_pg_app, database, entry, update):
    form = {} if entry is None else {"quantity": entry}
    if update:
        visitor, line_id = visitor_with_a_cart_line(module_pg_app, database, quantity=2)
        before = stored(database)
        with logged_errors() as errors:
            response = visitor.post(f"/update_quantity/{line_id}", data=form)
    else:
        visitor = module_pg_app.test_client()
        before = stored(database)
        with logged_errors() as errors:
            response = visitor.post("/add_to_cart/1", data=form)
    assert not errors
    quantity = as_quantity(entry)
    if quantity is None:
        assert response.status_code == 400
        assert b"notice-error" in response.data and b"quantity" in response.data.lower()
        assert stored(database) == before
    else:
        assert response.status_code == 302
        [(stored_quantity,)] = query(
            database, "SELECT i.quantity FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.uuid = :cart",
            cart=visitor.get_cookie(CART_COOKIE).value)
        assert stored_quantity == quantity


@PROPERTY
@given(changes=checkout_changes)
def test_any_checkout_entries(module_pg_app, database, changes):
    """A valid form with up to three fields changed (None: left out): the order is placed, or the
    page marks some of the changed fields, and only those, and nothing is stored."""
    visitor, _ = visitor_with_a_cart_line(module_pg_app, database)
    form = {**valid_checkout(), **changes}
    form = {field: entry for field, entry in form.items() if entry is not None}
    before = stored(database)
    with logged_errors() as errors:
        response = visitor.post("/checkout", data=form)
    assert not errors
    if response.status_code == 400:
        assert set(field_errors(response.get_data(as_text=True))) <= set(changes)
        assert field_errors(response.get_data(as_text=True))
        assert stored(database) == before
    else:
        assert response.status_code == 302
        assert not any(CONTROL_CHARACTER.search((entry or "").strip()) for entry in changes.values())
        assert visitor.get(response.headers["Location"]).status_code == 200


@PROPERTY
@given(entry=card_number_entries)
def test_any_card_number(module_pg_app, database, entry):
    visitor, _ = visitor_with_a_cart_line(module_pg_app, database)
    before = stored(database)
    with logged_errors() as errors:
        response = visitor.post("/checkout", data=valid_checkout(card_number=entry))
    assert not errors
    if is_valid_card_number(entry):
        assert response.status_code == 302
        number = response.headers["Location"].rsplit("/", 1)[1]
        [(last4,)] = query(database, "SELECT card_last4 FROM orders WHERE order_number = :number", number=number)
        assert last4 == re.sub(r"[ \-]", "", entry.strip())[-4:]
    else:
        assert response.status_code == 400
        assert field_errors(response.get_data(as_text=True)) == ["card_number"]
        assert stored(database) == before


paths = st.one_of(
    st.sampled_from(["/", "/shop", "/detail/1", "/add_to_cart/1", "/cart", "/update_quantity/1", "/remove_item/1",
                     "/checkout", "/order_confirmation/AAAAAAAAAA", "/contact", "/metrics", "/healthz", "/readyz",
                     "/static/css/shop.css"]),
    st.builds(lambda prefix, segment: prefix + quote(segment, safe=""),
              st.sampled_from(["/", "/detail/", "/static/", "/order_confirmation/"]), any_text),
)
methods = st.one_of(
    st.sampled_from(sorted(KNOWN_METHODS)),
    st.from_regex(r"[A-Za-z]{1,12}", fullmatch=True),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(["application/x-www-form-urlencoded", "multipart/form-data", "multipart/form-data; boundary=x",
                     "application/json", "text/plain"]),
    header_values,
)
# The two cookies the shop reads, the cart's and Flask's signed session (flash messages), with any
# value, among arbitrary Cookie headers.
cookie_headers = st.one_of(
    header_values,
    st.builds("{}={}".format, st.sampled_from([CART_COOKIE, "session"]), header_values),
)


@PROPERTY
@given(method=methods, path=paths, query_string=st.lists(st.tuples(any_text, any_text), max_size=3).map(urlencode),
       cookie_header=cookie_headers, accept=header_values, content_type=content_types, body=st.binary(max_size=300))
def test_any_request_line_headers_and_body(module_pg_app, method, path, query_string, cookie_header, accept,
                                           content_type, body):
    visitor = module_pg_app.test_client()
    with logged_errors() as errors:
        response = visitor.open(f"{path}?{query_string}", method=method, data=body, content_type=content_type,
                                headers={"Cookie": cookie_header, "Accept": accept})
    assert not errors
    assert response.status_code < 500
    if response.status_code >= 400 and method.upper() != "HEAD":
        # The error page with its message, or the form's page with the notice.
        assert b'class="error-page"' in response.data or b"notice-error" in response.data
    # Whatever came in, the request metrics keep to their fixed label values.
    exposition = visitor.get("/metrics").get_data(as_text=True)
    methods_seen = set(re.findall(r'^flask_http_request_total\{method="([^"]*)"', exposition, re.MULTILINE))
    paths_seen = set(re.findall(r'^flask_http_request_duration_seconds_count\{method="[^"]*",path="([^"]*)"',
                                exposition, re.MULTILINE))
    assert methods_seen <= KNOWN_METHODS | {OTHER_METHOD}
    assert paths_seen <= {rule.rule for rule in module_pg_app.url_map.iter_rules()} | {UNMATCHED_PATH}
