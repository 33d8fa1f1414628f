"""The cart: adding, changing, removing, bad input, and isolation between visitors."""

import pytest

from fakeshop.carts import CART_COOKIE


def add(client, product_id=1, quantity="1"):
    return client.post(f"/add_to_cart/{product_id}", data={"quantity": quantity})


def cart_items(sql, client):
    cookie = client.get_cookie(CART_COOKIE)
    return sql(
        "SELECT i.id, i.product_id, i.quantity, i.price FROM order_items i "
        "JOIN orders o ON o.id = i.order_id WHERE o.uuid = :uuid ORDER BY i.id",
        uuid=cookie.value,
    )


def test_add_to_cart_sets_the_cart_cookie_and_shows_the_cart(client, sql):
    response = add(client, 2, "3")
    assert response.status_code == 302 and response.headers["Location"] == "/cart"
    cookie = client.get_cookie(CART_COOKIE)
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    page = client.get("/cart").get_data(as_text=True)
    assert "Stream Deck 15" in page and "Added 3 × Stream Deck 15" in page
    assert [(row["product_id"], row["quantity"]) for row in cart_items(sql, client)] == [(2, 3)]


def test_adding_the_same_product_again_adds_up(client, sql):
    add(client, 1, "2")
    add(client, 1, "5")
    assert [row["quantity"] for row in cart_items(sql, client)] == [7]


def test_cart_total_is_sum_of_subtotals(client):
    add(client, 1, "2")  # 2 × 349.00
    add(client, 9, "1")  # 1 × 749.00
    assert "$1,447.00" in client.get("/cart").get_data(as_text=True)


def test_empty_cart_page(client):
    response = client.get("/cart")
    assert response.status_code == 200 and b"Your cart is empty" in response.data


@pytest.mark.parametrize("form", [{}, {"quantity": ""}, {"quantity": "abc"}, {"quantity": "1.5"},
                                  {"quantity": "0"}, {"quantity": "-3"}, {"quantity": "100"},
                                  {"quantity": "9" * 40}, {"quantity": "9" * 5000},
                                  # int() accepts all three; a quantity is written with 0-9 only.
                                  {"quantity": "٣"}, {"quantity": "+1"}, {"quantity": "1_0"},
                                  {"quantity": "²"}])
def test_bad_quantity_is_a_400_page_with_a_message(client, form):
    response = client.post("/add_to_cart/1", data=form)
    assert response.status_code == 400
    assert b"notice-error" in response.data and b"quantity" in response.data.lower()
    assert client.get_cookie(CART_COOKIE) is None


def test_more_than_99_of_one_product_in_total_is_refused(client, sql):
    add(client, 1, "60")
    response = add(client, 1, "60")
    assert response.status_code == 400 and b"at most 99" in response.data
    assert [row["quantity"] for row in cart_items(sql, client)] == [60]


def test_adding_an_unknown_product_is_404(client):
    assert add(client, 999).status_code == 404
    assert client.get_cookie(CART_COOKIE) is None


def test_update_quantity(client, sql):
    add(client, 1, "1")
    [item] = cart_items(sql, client)
    response = client.post(f"/update_quantity/{item['id']}", data={"quantity": "4"})
    assert response.status_code == 302
    assert [row["quantity"] for row in cart_items(sql, client)] == [4]


@pytest.mark.parametrize("quantity", [None, "", "x", "0", "1000"])
def test_update_with_bad_quantity_is_400_and_changes_nothing(client, sql, quantity):
    add(client, 1, "2")
    [item] = cart_items(sql, client)
    form = {} if quantity is None else {"quantity": quantity}
    response = client.post(f"/update_quantity/{item['id']}", data=form)
    assert response.status_code == 400 and b"notice-error" in response.data
    assert [row["quantity"] for row in cart_items(sql, client)] == [2]


def test_remove_item(client, sql):
    add(client, 1)
    add(client, 2)
    first, second = cart_items(sql, client)
    assert client.post(f"/remove_item/{first['id']}").status_code == 302
    assert [row["id"] for row in cart_items(sql, client)] == [second["id"]]


@pytest.mark.parametrize("path", ["/update_quantity/424242", "/remove_item/424242"])
def test_unknown_item_is_404(client, path):
    add(client, 1)
    assert client.post(path, data={"quantity": "1"}).status_code == 404


def test_ids_the_database_cannot_hold_are_404(client, sql):
    add(client, 1, "2")
    # Beyond PostgreSQL's integer, beyond 64 bits (SQLite), and a digit str.isdigit() accepts.
    for item_id in ["2147483648", "9223372036854775808", "%C2%B2"]:
        for route in ["/add_to_cart/{}", "/update_quantity/{}", "/remove_item/{}"]:
            path = route.format(item_id)
            assert client.post(path, data={"quantity": "1"}).status_code == 404, path
    assert [row["quantity"] for row in cart_items(sql, client)] == [2]


@pytest.mark.parametrize("path", ["/update_quantity/1", "/remove_item/1"])
def test_item_changes_without_a_cart_cookie_are_404(client, path):
    assert client.post(path, data={"quantity": "1"}).status_code == 404


def test_carts_of_two_visitors_are_isolated(app, sql):
    alice, bob = app.test_client(), app.test_client()
    add(alice, 1, "1")
    add(bob, 2, "2")
    [alice_item] = cart_items(sql, alice)
    [bob_item] = cart_items(sql, bob)
    assert alice.get_cookie(CART_COOKIE).value != bob.get_cookie(CART_COOKIE).value

    assert b"HD Webcam" in alice.get("/cart").data and b"Stream Deck" not in alice.get("/cart").data

    # Bob tries to change and remove Alice's item: refused, and her cart is untouched.
    assert bob.post(f"/update_quantity/{alice_item['id']}", data={"quantity": "50"}).status_code == 404
    assert bob.post(f"/remove_item/{alice_item['id']}").status_code == 404
    assert [(row["id"], row["quantity"]) for row in cart_items(sql, alice)] == [(alice_item["id"], 1)]
    assert [row["quantity"] for row in cart_items(sql, bob)] == [2]
    assert bob_item["id"] != alice_item["id"]


# A NUL would make PostgreSQL refuse the query rather than find no cart.
@pytest.mark.parametrize("cookie", ["not-a-real-cart", "a\x00b", "😀" * 40, "00000000-0000-0000-0000-000000000000"])
def test_forged_cart_cookie_starts_a_new_cart(app, sql, cookie):
    visitor = app.test_client()
    visitor.set_cookie(CART_COOKIE, cookie)
    assert b"Your cart is empty" in visitor.get("/cart").data
    assert visitor.post("/update_quantity/1", data={"quantity": "2"}).status_code == 404
    add(visitor, 3)
    assert visitor.get_cookie(CART_COOKIE).value != cookie
    assert [row["product_id"] for row in cart_items(sql, visitor)] == [3]
