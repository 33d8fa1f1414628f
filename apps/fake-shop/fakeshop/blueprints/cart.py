"""Adding to, changing and showing the cart."""

from flask import Blueprint, flash, redirect, render_template, request, url_for

from fakeshop import carts, parse
from fakeshop.blueprints.shop import product_or_404
from fakeshop.database import db
from fakeshop.models import OrderItem

bp = Blueprint("cart", __name__)


@bp.post("/add_to_cart/<id:product_id>")
def add_to_cart(product_id: int):
    product = product_or_404(product_id)
    try:
        quantity = parse.quantity(request.form.get("quantity"))
    except parse.InvalidInput as error:
        return render_template("detail.html", product=product, error=str(error)), 400
    cart = carts.current_cart() or carts.new_cart()
    item = next((item for item in cart.items if item.product_id == product.id), None)
    if item is None:
        cart.items.append(OrderItem(product=product, quantity=quantity, price=product.price))
    elif item.quantity + quantity > parse.MAX_QUANTITY:
        message = f"You already have {item.quantity} in your cart; at most {parse.MAX_QUANTITY} per product."
        return render_template("detail.html", product=product, error=message), 400
    else:
        item.quantity += quantity
    db.session.commit()
    flash(f"Added {quantity} × {product.name} to your cart.", "success")
    return carts.remember_cart(redirect(url_for("cart.show")), cart)


@bp.get("/cart")
def show():
    cart = carts.current_cart()
    return render_template("cart.html", cart=cart, items=cart.items if cart else [])


@bp.post("/update_quantity/<id:item_id>")
def update_quantity(item_id: int):
    item = carts.item_in_cart(item_id)
    try:
        item.quantity = parse.quantity(request.form.get("quantity"))
    except parse.InvalidInput as error:
        return render_template("cart.html", cart=item.order, items=item.order.items, error=str(error)), 400
    db.session.commit()
    flash(f"{item.product.name}: quantity set to {item.quantity}.", "success")
    return redirect(url_for("cart.show"))


@bp.post("/remove_item/<id:item_id>")
def remove_item(item_id: int):
    item = carts.item_in_cart(item_id)
    name = item.product.name
    db.session.delete(item)
    db.session.commit()
    flash(f"Removed {name} from your cart.", "success")
    return redirect(url_for("cart.show"))
