"""Checkout and order confirmation."""

import secrets
from dataclasses import asdict
from datetime import UTC, datetime

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from fakeshop import carts, checkout_form, parse
from fakeshop.database import db
from fakeshop.metrics import ORDERS_PLACED
from fakeshop.models import Order

bp = Blueprint("checkout", __name__)


@bp.route("/checkout", methods=["GET", "POST"])
def checkout():
    cart = carts.current_cart(for_update=request.method == "POST")
    if cart is None or not cart.items:
        flash("Your cart is empty: add a product before checking out.", "error")
        return redirect(url_for("cart.show"))
    if request.method == "GET":
        return render_template("checkout.html", cart=cart, values={}, errors={})
    order, errors = checkout_form.validate(request.form, today=datetime.now(UTC).date())
    if errors:
        db.session.rollback()
        return render_template(
            "checkout.html", cart=cart, values=checkout_form.redisplayable(request.form), errors=errors
        ), 400
    close_order(cart, order)
    db.session.commit()
    ORDERS_PLACED.inc()
    confirmation_path = url_for("checkout.confirmation", order_number=cart.order_number)
    return carts.hand_over_to_confirmation(redirect(confirmation_path), cart, confirmation_path)


def close_order(cart: Order, order: checkout_form.Checkout) -> None:
    for field, value in asdict(order).items():
        setattr(cart, field, value)
    cart.total_price = cart.items_total
    cart.order_number = "".join(
        secrets.choice(parse.ORDER_NUMBER_ALPHABET) for _ in range(parse.ORDER_NUMBER_LENGTH))
    cart.is_open = False


@bp.get("/order_confirmation/<order_number:order_number>")
def confirmation(order_number: str):
    """Only for the browser whose cart placed the order: the page shows the buyer's name, e-mail
    and city, and an order number read out over the phone or seen on a screen is no password.
    Anyone else gets the same 404 as for a number that does not exist."""
    order = db.session.scalars(
        select(Order).where(Order.order_number == order_number, Order.is_open.is_(False),
                            Order.uuid.in_(carts.cart_ids_in_cookies()))
    ).one_or_none()
    if order is None:
        abort(404, description="There is no order with this number in this browser: an order's "
                               "confirmation opens only in the browser that placed it.")
    return render_template("confirmation.html", order=order)
