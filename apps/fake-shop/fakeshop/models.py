from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fakeshop.database import db

CENTS = Decimal("0.01")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Product(db.Model):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    description: Mapped[str] = mapped_column(Text)
    short_description: Mapped[str] = mapped_column(String(255))
    image: Mapped[str] = mapped_column(String(120))


class Order(db.Model):
    """A cart while ``is_open``; an order once checked out.

    Of the card only the last four digits are kept (enough for the customer to recognise it);
    the full number and the CVV are never stored.
    """

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The value of the visitor's `order_id` cookie: random, so carts cannot be guessed.
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    order_number: Mapped[str | None] = mapped_column(String(32), unique=True)
    user_name: Mapped[str | None] = mapped_column(String(200))
    user_email: Mapped[str | None] = mapped_column(String(254))
    total_price: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
    address1: Mapped[str | None] = mapped_column(String(200))
    address2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str | None] = mapped_column(String(100))
    country: Mapped[str | None] = mapped_column(String(100))
    zip_code: Mapped[str | None] = mapped_column(String(20))
    mobile: Mapped[str | None] = mapped_column(String(30))
    card_name: Mapped[str | None] = mapped_column(String(200))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    expiry_date: Mapped[str | None] = mapped_column(String(5))

    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderItem.id"
    )

    @property
    def items_total(self) -> Decimal:
        return sum((item.subtotal for item in self.items), Decimal("0")).quantize(CENTS)


class OrderItem(db.Model):
    __tablename__ = "order_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    # The unit price when the item was added: a later price change does not alter the cart.
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))

    order: Mapped[Order] = relationship(back_populates="items")
    product: Mapped[Product] = relationship()

    @property
    def subtotal(self) -> Decimal:
        return (Decimal(self.price) * self.quantity).quantize(CENTS)
