"""Whatever a client sends, the app answers without a 5xx, logs no error, and stores nothing it
refused: hypothesis tries form fields, JSON values and bodies, content types, methods, paths,
query strings and headers against the app on the real Redis.

The app and the Redis connection live as long as the module: hypothesis runs many examples in
one test call, so each example compares the Redis list before and after its own request.
"""

from __future__ import annotations

import json
import re
import string
import sys
from html import unescape
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import logged_errors
from giropops import MAX_REQUEST_BYTES, create_app
from giropops.config import Config
from giropops.options import DEFAULT_LENGTH, DIGITS_FIELD, LENGTH_FIELD, SPECIAL_FIELD
from giropops.passwords import MAX_LENGTH, MIN_LENGTH
from giropops.store import PASSWORDS_KEY
from test_pages import shown_password

# The CI profile hypothesis loads by itself under CI=true also has no deadline: a request that
# waits on Redis on a loaded machine is not a failure.
PROPERTY = settings(max_examples=100, deadline=None)
FIELDS = {LENGTH_FIELD, DIGITS_FIELD, SPECIAL_FIELD}
LENGTH_RULE = f"'{LENGTH_FIELD}' must be an integer from {MIN_LENGTH} to {MAX_LENGTH}"

# Any text a form or a URL can carry (surrogates cannot be encoded, so hypothesis leaves them out).
any_text = st.text(max_size=30)
# Runs of digits from one to far past the 4300 digits int() converts (and within the body limit).
digit_runs = st.builds(str.__mul__, st.sampled_from(string.digits),
                       st.integers(min_value=1, max_value=2 * sys.get_int_max_str_digits()))
# Characters str.isdigit() or int() accept that are not ASCII digits: superscripts, Arabic-Indic,
# fullwidth, Devanagari.
foreign_digits = st.text(alphabet="²³¹٠١٢٣٤٥٦٧٨٩０１２３４५६", min_size=1, max_size=5)
length_entries = st.one_of(
    any_text,
    st.integers(min_value=-10**40, max_value=10**40).map(str),
    digit_runs,
    foreign_digits,
    st.sampled_from(["", "  16 ", "0012", "1_2", "+12", "12\x00", "\x00", "12.0", "1e2"]),
)
checkbox_entries = st.one_of(st.just("on"), any_text)
# Header values travel as Latin-1 and may not hold line breaks.
header_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                        max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10**30, max_value=10**30) | st.floats() | any_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3),
    max_leaves=6,
)
json_payloads = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={
        LENGTH_FIELD: st.integers(min_value=0, max_value=200) | json_values,
        DIGITS_FIELD: st.booleans() | json_values,
        SPECIAL_FIELD: st.booleans() | json_values,
    }),
    st.dictionaries(st.sampled_from(sorted(FIELDS)) | any_text, json_values, max_size=4),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(["application/json", "application/json; charset=utf-8", "application/problem+json",
                     "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                     "multipart/form-data; boundary=x"]),
    header_values,
)
methods = st.one_of(
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"]),
    st.from_regex(r"[A-Za-z]{1,12}", fullmatch=True),
)
paths = st.one_of(
    st.sampled_from(["/", "/api/gerar-senha", "/api/senhas", "/healthz", "/readyz", "/metrics",
                     "/static/style.css", "/api/", "/nada"]),
    st.builds(lambda prefix, segment: prefix + quote(segment, safe=""),
              st.sampled_from(["/", "/api/", "/static/"]), any_text),
)
query_strings = st.lists(st.tuples(any_text, any_text), max_size=3).map(urlencode)


@pytest.fixture(scope="module")
def store(redis_server):
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def shared_client(redis_server):
    return create_app(Config(redis_host="127.0.0.1", redis_port=redis_server.port)).test_client()


def stored(store) -> tuple[int, str | None]:
    """Enough to tell whether a request stored a password: the list is trimmed, so its length
    alone may not change."""
    return store.llen(PASSWORDS_KEY), store.lindex(PASSWORDS_KEY, 0)


def form_length(entry: str | None) -> int | None:
    """What the README promises for `tamanho` in the form: the length, or None for a 400."""
    text = (entry or "").strip()
    if not text:
        return DEFAULT_LENGTH
    significant = text.lstrip("0") or "0"
    if not re.fullmatch(r"[0-9]+", text) or len(significant) > 3:
        return None
    return int(significant) if MIN_LENGTH <= int(significant) <= MAX_LENGTH else None


def json_options(payload) -> tuple[int, bool, bool] | None:
    """What the README promises for a JSON body: (length, digits, special), or None for a 400."""
    if not isinstance(payload, dict) or set(payload) - FIELDS:
        return None
    length = payload.get(LENGTH_FIELD, DEFAULT_LENGTH)
    flags = payload.get(DIGITS_FIELD, False), payload.get(SPECIAL_FIELD, False)
    if type(length) is not int or not MIN_LENGTH <= length <= MAX_LENGTH:
        return None
    if any(type(flag) is not bool for flag in flags):
        return None
    return length, *flags


def assert_password_matches(password: str, length: int, digits: bool, special: bool) -> None:
    assert len(password) == length
    assert any(c in string.digits for c in password) == digits
    assert any(c in string.punctuation for c in password) == special


@PROPERTY
@given(length=st.none() | length_entries, digits=st.none() | checkbox_entries,
       special=st.none() | checkbox_entries,
       extra=st.dictionaries(any_text.filter(lambda name: name not in FIELDS), any_text, max_size=3))
def test_form_answers_200_or_400_with_the_rule(shared_client, store, length, digits, special, extra):
    form = {**extra, **{name: value for name, value in
                        [(LENGTH_FIELD, length), (DIGITS_FIELD, digits), (SPECIAL_FIELD, special)]
                        if value is not None}}
    before = stored(store)
    with logged_errors() as errors:
        response = shared_client.post("/", data=form)
    assert not errors
    expected_length = form_length(length)
    if expected_length is None:
        assert response.status_code == 400
        assert response.mimetype == "text/html"
        assert LENGTH_RULE in unescape(response.get_data(as_text=True))
        assert stored(store) == before
    else:
        assert response.status_code == 200
        password = shown_password(response)
        assert_password_matches(password, expected_length, digits == "on", special == "on")
        assert store.lindex(PASSWORDS_KEY, 0) == password


@PROPERTY
@given(payload=json_payloads)
def test_json_api_answers_200_or_400_with_an_error(shared_client, store, payload):
    before = stored(store)
    with logged_errors() as errors:
        response = shared_client.post("/api/gerar-senha", data=json.dumps(payload), content_type="application/json")
    assert not errors
    expected = json_options(payload)
    assert response.is_json
    if expected is None:
        assert response.status_code == 400
        assert response.get_json()["error"]
        assert stored(store) == before
    else:
        assert response.status_code == 200
        password = response.get_json()["senha"]
        assert_password_matches(password, *expected)
        assert store.lindex(PASSWORDS_KEY, 0) == password


@PROPERTY
@given(body=st.binary(max_size=200) | any_text.map(str.encode) | digit_runs.map(str.encode),
       content_type=content_types)
def test_any_body_and_content_type_on_the_api(shared_client, store, body, content_type):
    before = stored(store)
    with logged_errors() as errors:
        response = shared_client.post("/api/gerar-senha", data=body, content_type=content_type)
    assert not errors
    assert response.is_json
    if response.status_code == 400:
        assert response.get_json()["error"]
        assert stored(store) == before
    else:
        assert response.status_code == 200
        assert store.lindex(PASSWORDS_KEY, 0) == response.get_json()["senha"]


@PROPERTY
@given(method=methods, path=paths, query=query_strings, accept=header_values, content_type=content_types,
       body=st.binary(max_size=100))
def test_any_method_path_query_and_headers(shared_client, method, path, query, accept, content_type, body):
    with logged_errors() as errors:
        response = shared_client.open(f"{path}?{query}", method=method, data=body, content_type=content_type,
                               headers={"Accept": accept})
    assert not errors
    assert response.status_code < 500
    if path.startswith("/api/") and response.status_code >= 400 and method != "HEAD":
        assert response.get_json()["error"]


@pytest.mark.parametrize("path", ["/", "/api/gerar-senha"])
def test_a_body_over_the_limit_is_a_413_with_a_message(shared_client, store, path):
    before = stored(store)
    response = shared_client.post(path, data={LENGTH_FIELD: "1" * MAX_REQUEST_BYTES})
    assert response.status_code == 413
    assert "exceeds the capacity limit" in response.get_data(as_text=True)
    assert stored(store) == before
