"""Catalogue pages, static assets, security headers, ops endpoints (on both backends)."""

import pytest

from fakeshop.config import DEFAULT_MAX_CONTENT_LENGTH
from fakeshop.database import upgrade_to_head
from tests.support import valid_checkout

CATALOGUE_SIZE = 9


def test_home_page_shows_featured_products(client):
    response = client.get("/")
    assert response.status_code == 200
    assert b"Laptop Pro 16" in response.data  # the most expensive product comes first


def test_shop_lists_the_whole_catalogue(client):
    page = client.get("/shop").get_data(as_text=True)
    for name in ["HD Webcam 1080p", "Stream Deck 15", "Laptop Pro 16", "Laptop Air 13",
                 "Noise-Cancelling Headphones", "Smartphone X", "Mirrorless Camera",
                 "Wireless Microphone", "USB Microphone"]:
        assert name in page
    assert page.count('class="card"') == CATALOGUE_SIZE


def test_catalogue_is_seeded_with_nine_products_priced_349_to_8999(sql):
    prices = sorted(float(row["price"]) for row in sql("SELECT price FROM products"))
    assert len(prices) == CATALOGUE_SIZE
    assert (prices[0], prices[-1]) == (349.0, 8999.0)


def test_detail_page_shows_product_and_add_to_cart_form(client):
    page = client.get("/detail/1").get_data(as_text=True)
    assert "HD Webcam 1080p" in page
    assert 'action="/add_to_cart/1"' in page and 'name="quantity"' in page


@pytest.mark.parametrize("path", [
    "/detail/999", "/detail/0", "/detail/abc", "/no-such-page", "/detail/-1",
    # Beyond PostgreSQL's integer, beyond 64 bits (SQLite), beyond the 4300 digits int() converts.
    "/detail/2147483648", "/detail/9223372036854775808", "/detail/" + "9" * 5000,
    # Digits str.isdigit() accepts ('²', Arabic-Indic '١'), and NUL.
    "/detail/%C2%B2", "/detail/%D9%A1", "/detail/1%00",
])
def test_unknown_pages_are_404_pages(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert b"404" in response.data and b"Back to the shop" in response.data


def test_wrong_method_is_405_with_allow_header(client):
    response = client.get("/add_to_cart/1")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]


def test_contact_page(client):
    response = client.get("/contact")
    assert response.status_code == 200
    assert b"support@fakeshop.example" in response.data


def test_stylesheet_and_product_images_are_served_locally(client):
    page = client.get("/shop").get_data(as_text=True)
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    stylesheet = client.get("/static/css/shop.css")
    assert stylesheet.status_code == 200 and stylesheet.mimetype == "text/css"
    image = client.get("/static/img/products/webcam.svg")
    assert image.status_code == 200 and image.mimetype == "image/svg+xml"
    assert len(image.data) < 4096


def test_every_product_image_exists(client, sql):
    for row in sql("SELECT image FROM products"):
        assert client.get(f"/static/img/products/{row['image']}").status_code == 200


def test_pages_carry_security_headers(client):
    headers = client.get("/").headers
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_healthz_answers_without_touching_anything(client):
    response = client.get("/healthz")
    assert (response.status_code, response.data) == (200, b"ok\n")


def test_readyz_is_200_when_migrated(client):
    response = client.get("/readyz")
    assert (response.status_code, response.data) == (200, b"ready\n")


def test_metrics_in_prometheus_text_format_count_requests(client):
    client.get("/shop")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    body = response.get_data(as_text=True)
    assert 'flask_http_request_total{method="GET",status="200"}' in body
    assert 'flask_http_request_duration_seconds_count{method="GET",path="/shop",status="200"}' in body
    assert "flask_http_requests_in_progress" in body
    assert 'path="/metrics"' not in body


def test_metrics_labels_keep_to_known_methods_and_routes(client):
    client.open("/shop", method="BREW")
    client.get("/detail/424242")
    client.get("/no/such/page")
    body = client.get("/metrics").get_data(as_text=True)
    # A made-up method or a raw path would be a new series for every new value a client sends.
    assert "BREW" not in body
    assert 'flask_http_request_total{method="other",status="405"}' in body
    assert 'path="/detail/<id:product_id>",status="404"' in body
    assert "/no/such/page" not in body and 'path="<unmatched>",status="404"' in body


def test_a_body_over_the_limit_is_a_413_page_on_every_route(client, sql):
    client.post("/add_to_cart/2", data={"quantity": "1"})
    before = sql("SELECT count(*) AS lines, sum(quantity) AS quantities FROM order_items")
    form = {**valid_checkout(), "quantity": "1", "padding": "x" * DEFAULT_MAX_CONTENT_LENGTH}
    for method, path in [("POST", "/add_to_cart/1"), ("POST", "/checkout"), ("POST", "/remove_item/1"),
                         ("GET", "/shop")]:
        response = client.open(path, method=method, data=form)
        assert response.status_code == 413, path
        assert b"The request is larger than the 65,536 bytes the shop accepts." in response.data
    assert sql("SELECT count(*) AS lines, sum(quantity) AS quantities FROM order_items") == before
    assert b"Stream Deck" in client.get("/cart").data  # the cart is still open


def test_the_request_size_limit_is_configurable(database_url, make_app):
    app = make_app(database_url, MAX_CONTENT_LENGTH=1000)
    upgrade_to_head(app)
    client = app.test_client()
    response = client.post("/add_to_cart/1", data={"quantity": "1", "padding": "x" * 1000})
    assert response.status_code == 413 and b"larger than the 1,000 bytes" in response.data
    assert client.post("/add_to_cart/1", data={"quantity": "1", "padding": "x" * 900}).status_code == 302
