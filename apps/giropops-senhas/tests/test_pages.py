import re
import string
from html import unescape

import pytest

from giropops.store import PASSWORDS_KEY


def shown_password(response) -> str:
    match = re.search(r'id="senha" class="password" value="([^"]*)"', response.get_data(as_text=True))
    assert match, "the page shows no generated password"
    return unescape(match.group(1))


def history_items(response) -> list[str]:
    return [unescape(item) for item in re.findall(r"<li data-id=\"\d+\"><code>(.*?)</code></li>", response.get_data(as_text=True))]


def test_get_shows_the_form_with_slider_and_checkboxes(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert 'type="range" id="tamanho" name="tamanho"' in page
    assert 'min="8" max="32"' in page
    assert 'name="incluir_numeros" value="on"' in page
    assert 'name="incluir_caracteres_especiais" value="on"' in page
    assert "Nenhuma senha gerada ainda." in page


def test_page_loads_only_local_assets(client):
    page = client.get("/").get_data(as_text=True)
    references = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert references, "the page references no assets"
    for reference in references:
        assert reference.startswith("/"), f"{reference} is not served by the app"
        assert client.get(reference).status_code == 200, reference


def test_page_has_show_hide_and_copy_buttons(client):
    page = client.post("/", data={"tamanho": "12"}).get_data(as_text=True)
    assert 'data-toggle-target="senha"' in page
    assert 'data-copy-target="senha"' in page


@pytest.mark.parametrize(
    "form, expect_digits, expect_special",
    [
        ({}, False, False),
        ({"incluir_numeros": "on"}, True, False),
        ({"incluir_caracteres_especiais": "on"}, False, True),
        ({"incluir_numeros": "on", "incluir_caracteres_especiais": "on"}, True, True),
        # Only "on" ticks a box, as in the original.
        ({"incluir_numeros": "yes", "incluir_caracteres_especiais": "true"}, False, False),
    ],
)
def test_form_checkbox_semantics(client, form, expect_digits, expect_special):
    response = client.post("/", data={"tamanho": "20", **form})
    assert response.status_code == 200
    password = shown_password(response)
    assert len(password) == 20
    assert any(c in string.digits for c in password) == expect_digits
    assert any(c in string.punctuation for c in password) == expect_special
    page = response.get_data(as_text=True)
    assert ('name="incluir_numeros" value="on" checked' in page) == expect_digits


def test_form_without_length_uses_the_original_default(client):
    assert len(shown_password(client.post("/", data={}))) == 8


def test_form_accepts_lengths_beyond_the_slider(client):
    assert len(shown_password(client.post("/", data={"tamanho": "100"}))) == 100


def test_generated_password_is_stored_and_listed_newest_first(client, redis_client):
    first = shown_password(client.post("/", data={"tamanho": "10"}))
    second = shown_password(client.post("/", data={"tamanho": "10"}))
    assert redis_client.lrange(PASSWORDS_KEY, 0, -1) == [second, first]
    listing = client.get("/")
    assert history_items(listing) == [second, first]
    # Like the original, the page shows the newest password on a plain visit.
    assert shown_password(listing) == second


def test_page_lists_at_most_ten(client, redis_client):
    redis_client.rpush(PASSWORDS_KEY, *[f"senha-{n}" for n in range(15)])
    assert history_items(client.get("/")) == [f"senha-{n}" for n in range(10)]


def test_passwords_are_html_escaped(client, redis_client):
    redis_client.lpush(PASSWORDS_KEY, '<script>"&')
    page = client.get("/").get_data(as_text=True)
    assert "<script>\"&" not in page
    assert "&lt;script&gt;" in page


@pytest.mark.parametrize(
    "length, expected",
    [
        ("doze", "&#39;tamanho&#39; must be an integer from 4 to 128, got &#39;doze&#39;"),
        ("3", "&#39;tamanho&#39; must be an integer from 4 to 128, got 3"),
        ("129", "&#39;tamanho&#39; must be an integer from 4 to 128, got 129"),
        ("-8", "&#39;tamanho&#39; must be an integer from 4 to 128, got &#39;-8&#39;"),
        ("12.5", "got &#39;12.5&#39;"),
        ("١٢", "got &#39;١٢&#39;"),
        # str.isdigit() accepts it, int() does not.
        ("²", "got &#39;²&#39;"),
        # More digits than int() converts (4300).
        ("9" * 5000, "must be an integer from 4 to 128, got 99999999999999999999..."),
    ],
)
def test_bad_length_shows_a_message_with_400(client, redis_client, length, expected):
    response = client.post("/", data={"tamanho": length})
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert expected in response.get_data(as_text=True)
    assert redis_client.llen(PASSWORDS_KEY) == 0


def test_security_headers(client):
    response = client.get("/")
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


def test_unknown_page_is_a_404(client):
    assert client.get("/nada").status_code == 404
