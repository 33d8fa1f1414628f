"""The visitor's cart: the open order named by the `order_id` cookie."""

from __future__ import annotations

import uuid

from flask import Response, abort, current_app, request
from sqlalchemy import select

from fakeshop.database import db
from fakeshop.models import Order, OrderItem

CART_COOKIE = "order_id"
CART_COOKIE_MAX_AGE = 30 * 24 * 3600
MAX_QUANTITY = 99


class QuantityError(ValueError):
    pass


def parse_quantity(raw: str | None) -> int:
    """The `quantity` form field as an integer in 1..MAX_QUANTITY, or a QuantityError saying why."""
    if raw is None or not raw.strip():
        raise QuantityError("Please enter a quantity.")
    try:
        quantity = int(raw.strip())
    except ValueError:
        raise QuantityError(f"The quantity must be a whole number, not “{raw.strip()[:20]}”.") from None
    if not 1 <= quantity <= MAX_QUANTITY:
        raise QuantityError(f"The quantity must be between 1 and {MAX_QUANTITY}.")
    return quantity


def current_cart(for_update: bool = False) -> Order | None:
    """The open order of this visitor's cookie, or None (no cookie, unknown, or checked out)."""
    cart_id = request.cookies.get(CART_COOKIE)
    if not cart_id:
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


def remember_cart(response: Response, cart: Order) -> Response:
    response.set_cookie(
        CART_COOKIE,
        cart.uuid,
        max_age=CART_COOKIE_MAX_AGE,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )
    return response


def forget_cart(response: Response) -> Response:
    response.delete_cookie(CART_COOKIE, httponly=True, samesite="Lax")
    return response
