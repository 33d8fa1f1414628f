"""fake-shop in the browser: a whole purchase, and a checkout refused field by field."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from browsing import Browser

APP = "fake-shop"

VALID_CHECKOUT = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada@example.com",
    "mobile": "+44 20 7946 0000",
    "address1": "12 Analytical Street",
    "city": "London",
    "state": "Greater London",
    "country": "United Kingdom",
    "zip": "SW1A 1AA",
    "card_name": "A. Lovelace",
    # A test number that passes the Luhn check.
    "card_number": "4111 1111 1111 1111",
    "expiry_date": f"12/{(date.today().year + 2) % 100:02d}",
    "cvv": "123",
}

# Each wrong entry, and the message the shop shows next to its field.
INVALID_ENTRIES = {
    "first_name": ("", "First name is required."),
    "email": ("ada.example.com", "Enter an e-mail address like name@example.com."),
    "mobile": ("call me", "Enter a phone number: digits, spaces, +, - and ( )."),
    "card_number": ("4111 1111 1111 1112", "This card number is not valid: please check it."),
    "expiry_date": ("01/20", "This card has expired."),
    "cvv": ("12", "The CVV is the 3 or 4 digits on the card."),
}

# fakeshop/parse.py: 10 characters of an alphabet without look-alikes (no 0, O, 1, I).
ORDER_NUMBER = re.compile(r"[23456789ABCDEFGHJKLMNPQRSTUVWXYZ]{10}")


@dataclass(frozen=True)
class Product:
    name: str
    price: Decimal


def money(text: str) -> Decimal:
    """`$1,234.00` as the shop shows it."""
    return Decimal(text.strip().removeprefix("$").replace(",", ""))


def go_to_shop(browser: Browser) -> None:
    """Opens the catalogue through the menu, as a visitor does."""
    browser.follow(browser.find("header nav a[href='/shop']"))
    assert browser.text("main h1") == "Shop"


def open_product(browser: Browser, position: int) -> Product:
    """Opens the product at `position` in the catalogue."""
    browser.follow(browser.find_all(".grid .card a")[position])
    return Product(name=browser.text(".detail h1"), price=money(browser.text(".detail .price")))


def add_to_cart(browser: Browser) -> None:
    """Adds the product on the page, once, and lands on the cart."""
    browser.follow(browser.find(".detail form button[type=submit]"))
    assert browser.text("main h1") == "Your cart"


def notice(browser: Browser) -> str:
    """The message the shop flashes above the page."""
    return browser.text("main .notice")


@dataclass(frozen=True)
class CartLine:
    quantity: int
    subtotal: Decimal
    row: WebElement


def cart_lines(browser: Browser) -> dict[str, CartLine]:
    """The cart table, by product name."""
    lines = {}
    for row in browser.find_all("table.cart tbody tr"):
        cells = row.find_elements(By.CSS_SELECTOR, "td")
        quantity = row.find_element(By.CSS_SELECTOR, "input[name=quantity]").get_attribute("value")
        lines[cells[0].text] = CartLine(quantity=int(quantity), subtotal=money(cells[3].text), row=row)
    return lines


def order_total(browser: Browser) -> Decimal:
    """The total under the order's table (the cart's, or the confirmation's): the footer's second cell, after
    "Total"."""
    return money(browser.text("table.cart tfoot th:nth-of-type(2)"))


def test_a_visitor_fills_a_cart_changes_it_and_places_an_order(browser):
    browser.open("/")
    go_to_shop(browser)
    assert len(browser.find_all(".grid .card")) >= 2
    browser.screenshot("catalogue")
    first = open_product(browser, 0)
    browser.screenshot("product-detail")
    add_to_cart(browser)
    assert notice(browser) == f"Added 1 × {first.name} to your cart."
    browser.screenshot("cart-with-one-product")

    go_to_shop(browser)
    second = open_product(browser, 1)
    assert second.name != first.name
    add_to_cart(browser)
    lines = cart_lines(browser)
    assert list(lines) == [first.name, second.name]
    assert order_total(browser) == first.price + second.price
    browser.screenshot("cart-with-two-products")

    quantity = lines[first.name].row.find_element(By.CSS_SELECTOR, "input[name=quantity]")
    quantity.clear()
    quantity.send_keys("3")
    browser.follow(lines[first.name].row.find_element(By.XPATH, ".//button[.='Update']"))
    assert notice(browser) == f"{first.name}: quantity set to 3."
    lines = cart_lines(browser)
    assert (lines[first.name].quantity, lines[first.name].subtotal) == (3, 3 * first.price)
    assert order_total(browser) == 3 * first.price + second.price
    browser.screenshot("quantity-changed")

    browser.follow(lines[second.name].row.find_element(By.XPATH, ".//button[.='Remove']"))
    assert notice(browser) == f"Removed {second.name} from your cart."
    assert list(cart_lines(browser)) == [first.name]
    assert order_total(browser) == 3 * first.price
    browser.screenshot("second-product-removed")

    browser.follow(browser.find("a.button[href='/checkout']"))
    browser.fill(browser.find("form.checkout-form"), VALID_CHECKOUT)
    browser.screenshot("checkout-filled")
    browser.follow(browser.find("form.checkout-form button[type=submit]"))

    assert browser.text("main h1") == "Thank you, Ada Lovelace!"
    order_number = browser.text(".order-number")
    assert ORDER_NUMBER.fullmatch(order_number), order_number
    assert browser.driver.current_url == f"{browser.base_url}/order_confirmation/{order_number}"
    ordered = [cell.text for cell in browser.find_all("table.cart tbody td")]
    assert ordered == [first.name, f"${first.price:,.2f}", "3", f"${3 * first.price:,.2f}"]
    assert order_total(browser) == 3 * first.price
    assert "card ending in 1111" in browser.text("main")
    browser.screenshot("order-confirmation")


def test_an_invalid_checkout_shows_each_error_next_to_its_field(browser):
    browser.open("/")
    go_to_shop(browser)
    open_product(browser, 0)
    add_to_cart(browser)
    browser.follow(browser.find("a.button[href='/checkout']"))
    entries = VALID_CHECKOUT | {name: entry for name, (entry, _) in INVALID_ENTRIES.items()}
    browser.fill(browser.find("form.checkout-form"), entries)
    browser.screenshot("checkout-with-invalid-entries")
    browser.follow(browser.find("form.checkout-form button[type=submit]"))

    assert notice(browser) == f"Please correct the {len(INVALID_ENTRIES)} fields marked below."
    # Each field is a <label> holding its input and, when the entry was refused, the message right after it.
    shown = {}
    for field in browser.find_all("form.checkout-form label.field"):
        name = field.find_element(By.CSS_SELECTOR, "input").get_attribute("name")
        messages = field.find_elements(By.CSS_SELECTOR, "input + .field-error")
        if messages:
            assert "invalid" in field.get_attribute("class").split(), name
            shown[name] = messages[0].text
    assert shown == {name: message for name, (_, message) in INVALID_ENTRIES.items()}

    form = browser.find("form.checkout-form")
    kept = {name: form.find_element(By.NAME, name).get_attribute("value") for name in ("last_name", "email")}
    assert kept == {"last_name": VALID_CHECKOUT["last_name"], "email": INVALID_ENTRIES["email"][0]}
    assert form.find_element(By.NAME, "card_number").get_attribute("value") == "", "the card number is not sent back"
    browser.screenshot("checkout-field-errors")
