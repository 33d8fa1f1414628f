"""Catalogue pages."""

from flask import Blueprint, abort, render_template
from sqlalchemy import select

from fakeshop.database import db
from fakeshop.models import Product

bp = Blueprint("shop", __name__)
FEATURED_COUNT = 3


@bp.get("/")
def index():
    featured = db.session.scalars(select(Product).order_by(Product.price.desc()).limit(FEATURED_COUNT)).all()
    return render_template("index.html", products=featured)


@bp.get("/shop")
def catalogue():
    products = db.session.scalars(select(Product).order_by(Product.id)).all()
    return render_template("shop.html", products=products)


@bp.get("/detail/<id:product_id>")
def detail(product_id: int):
    return render_template("detail.html", product=product_or_404(product_id))


@bp.get("/contact")
def contact():
    return render_template("contact.html")


def product_or_404(product_id: int) -> Product:
    product = db.session.get(Product, product_id)
    if product is None:
        abort(404, description=f"There is no product number {product_id}.")
    return product
