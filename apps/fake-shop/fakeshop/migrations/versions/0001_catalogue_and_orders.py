"""Create products, orders and order_items, and seed the catalogue.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# (name, price, short description, description, image file under static/img/products/)
CATALOGUE = [
    ("HD Webcam 1080p", "349.00", "Full HD webcam with a stereo microphone.",
     "Crisp 1080p video at 30 frames per second, automatic light correction and a clip that fits "
     "any monitor. Plug it in over USB and it just works for calls and streams.", "webcam.svg"),
    ("Stream Deck 15", "1299.00", "Fifteen programmable LCD keys for live production.",
     "Switch scenes, start recordings and fire sound effects with one press. Each key shows its "
     "own icon, and profiles change with the application in front.", "stream-deck.svg"),
    ("Laptop Pro 16", "8999.00", "16-inch workstation laptop for heavy builds.",
     "Twelve cores, 32 GB of memory, a 1 TB SSD and a bright 16-inch screen: compiles, renders "
     "and runs a handful of containers without breaking a sweat.", "laptop-pro.svg"),
    ("Laptop Air 13", "5499.00", "Light 13-inch laptop with all-day battery.",
     "Weighs 1.2 kg, lasts a full working day on one charge and stays silent: there is no fan. "
     "16 GB of memory and a 512 GB SSD.", "laptop-air.svg"),
    ("Noise-Cancelling Headphones", "1899.00", "Over-ear wireless headphones with ANC.",
     "Active noise cancelling, 30 hours of battery and a microphone good enough for meetings. "
     "Folds flat into the supplied case.", "headphones.svg"),
    ("Smartphone X", "4299.00", "6.1-inch smartphone with a triple camera.",
     "OLED screen, 256 GB of storage, a triple camera that copes with low light and a battery "
     "that charges to half in twenty minutes.", "smartphone.svg"),
    ("Mirrorless Camera", "6799.00", "24 MP mirrorless camera with 4K video.",
     "A full-frame sensor, in-body stabilisation and 4K video at 60 frames per second in a body "
     "small enough to carry every day. Kit lens included.", "camera.svg"),
    ("Wireless Microphone", "899.00", "Clip-on wireless microphone pair.",
     "Two transmitters and one receiver with a range of 200 m and 8 hours of battery, for "
     "interviews and videos on the move.", "wireless-mic.svg"),
    ("USB Microphone", "749.00", "Cardioid USB condenser microphone.",
     "Studio sound for podcasts and streams over a single USB cable, with a headphone output and "
     "a mute button on top.", "usb-mic.svg"),
]


def upgrade():
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(120), nullable=False, unique=True),
        sa.Column("price", sa.Numeric(10, 2), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("short_description", sa.String(255), nullable=False),
        sa.Column("image", sa.String(120), nullable=False),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("order_number", sa.String(32), unique=True),
        sa.Column("user_name", sa.String(200)),
        sa.Column("user_email", sa.String(254)),
        sa.Column("total_price", sa.Numeric(12, 2)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.Column("address1", sa.String(200)),
        sa.Column("address2", sa.String(200)),
        sa.Column("city", sa.String(100)),
        sa.Column("state", sa.String(100)),
        sa.Column("country", sa.String(100)),
        sa.Column("zip_code", sa.String(20)),
        sa.Column("mobile", sa.String(30)),
        sa.Column("card_name", sa.String(200)),
        sa.Column("card_last4", sa.String(4)),
        sa.Column("expiry_date", sa.String(5)),
    )
    op.create_table(
        "order_items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("order_id", sa.Integer(), sa.ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
        sa.Column("product_id", sa.Integer(), sa.ForeignKey("products.id"), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price", sa.Numeric(10, 2), nullable=False),
    )
    op.create_index("ix_order_items_order_id", "order_items", ["order_id"])
    seed_catalogue()


def seed_catalogue():
    """Insert each product unless one of that name exists, so a second run adds nothing."""
    products = sa.table(
        "products",
        sa.column("name", sa.String),
        sa.column("price", sa.Numeric(10, 2)),
        sa.column("short_description", sa.String),
        sa.column("description", sa.Text),
        sa.column("image", sa.String),
    )
    for name, price, short_description, description, image in CATALOGUE:
        values = sa.select(
            sa.literal(name, sa.String),
            sa.literal(Decimal(price), sa.Numeric(10, 2)),
            sa.literal(short_description, sa.String),
            sa.literal(description, sa.Text),
            sa.literal(image, sa.String),
        ).where(~sa.exists().where(products.c.name == name))
        op.execute(products.insert().from_select(
            ["name", "price", "short_description", "description", "image"], values
        ))


def downgrade():
    op.drop_table("order_items")
    op.drop_table("orders")
    op.drop_table("products")
