"""The visitor's cart: the open order named by the `order_id` cookie."""

from __future__ import annotations

import uuid

from flask import Response, abort, current_app, request
from sqlalchemy import select

from fakeshop import parse
from fakeshop.database import db
from fakeshop.models import Order, OrderItem

CART_COOKIE = "order_id"
CART_COOKIE_MAX_AGE = 30 * 24 * 3600


def current_cart(for_update: bool = False) -> Order | None:
    """The open order of this visitor's cookie, or None (no cookie, unknown, or checked out)."""
    cart_id = parse.cart_id(request.cookies.get(CART_COOKIE))
    if cart_id is None:
        return None
    query = select(Order).where(Order.uuid == cart_id, Order.is_open.is_(True))
    if for_update:
        # Serialises two checkouts of the same cart (double click); other carts are not blocked.
        query = query.with_for_update()
    return db.session.scalars(query).one_or_none()


def new_cart() -> Order:
    cart = Order(uuid=str(uuid.uuid4()), is_open=True)
    db.session.add(cart)
    return cart


def item_in_cart(item_id: int) -> OrderItem:
    """The item if it belongs to this visitor's open cart; 404 otherwise.

    Items of other carts get the same answer as items that do not exist, so the answer tells
    nothing about other visitors' carts.
    """
    cart = current_cart()
    item = db.session.get(OrderItem, item_id)
    if cart is None or item is None or item.order_id != cart.id:
        abort(404, description="This item is not in your cart.")
    return item


def remember_cart(response: Response, cart: Order, path: str = "/") -> Response:
    response.set_cookie(
        CART_COOKIE,
        cart.uuid,
        max_age=CART_COOKIE_MAX_AGE,
        path=path,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )
    return response


def hand_over_to_confirmation(response: Response, order: Order, confirmation_path: str) -> Response:
    """After checkout: the next visit starts a new cart, and the cookie of the cart that placed
    the order stays behind for the order's confirmation page only (a cookie limited to that path).
    That cookie is what lets this browser, and no other, see the page, even once it shops again."""
    response.delete_cookie(CART_COOKIE, httponly=True, samesite="Lax")
    return remember_cart(response, order, path=confirmation_path)


def cart_ids_in_cookies() -> list[str]:
    """Every cart id among the `order_id` cookies: on a confirmation page a browser sends both the
    cookie of its current cart and the one of the cart that placed the order."""
    return [cart_id for cookie in request.cookies.getlist(CART_COOKIE)
            if (cart_id := parse.cart_id(cookie)) is not None]
