"""Checkout: validate the cart, price it, reserve the stock."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

from shop import inventory
from shop.cart import Cart
from shop.pricing import apply_discount, format_cents

MAX_QTY_PER_LINE = 20

_order_numbers = itertools.count(1)
_order_lock = threading.Lock()


class CheckoutError(Exception):
    """The cart cannot be checked out (the customer can fix it)."""


@dataclass
class Order:
    order_id: str
    owner: str
    subtotal_cents: int
    total_cents: int
    items: int

    def to_dict(self) -> dict:
        return {
            "order_id": self.order_id,
            "owner": self.owner,
            "subtotal": format_cents(self.subtotal_cents),
            "total": format_cents(self.total_cents),
            "items": self.items,
        }


def make_line_checker(max_qty: int):
    """Return a validator for cart lines, closed over ``max_qty``."""

    def check(line) -> None:
        if line.qty <= 0:
            raise CheckoutError(f"{line.sku}: quantity must be positive")
        if line.qty > max_qty:
            raise CheckoutError(f"{line.sku}: at most {max_qty} per order")

    return check


def validate_cart(cart: Cart) -> None:
    if not len(cart):
        raise CheckoutError("cart is empty")
    check = make_line_checker(MAX_QTY_PER_LINE)
    for line in cart.lines:
        check(line)


def reserve_all(cart: Cart) -> None:
    """Reserve every line, or nothing: on failure, release what was taken and re-raise."""
    taken = []
    try:
        for line in cart.lines:
            inventory.reserve(line.sku, line.qty)
            taken.append(line)
    except Exception:
        for line in taken:
            inventory.release(line.sku, line.qty)
        raise


def next_order_id(owner: str) -> str:
    with _order_lock:
        return f"ORD-{next(_order_numbers):04d}-{owner}"


def checkout(cart: Cart, discount: dict | None = None) -> Order:
    validate_cart(cart)
    subtotal = cart.subtotal()
    discount = discount or {}
    total = apply_discount(subtotal, discount.get("rule", "none"), discount.get("value", 0))
    try:
        reserve_all(cart)
    except inventory.OutOfStock as exc:
        raise CheckoutError(str(exc)) from exc
    order = Order(next_order_id(cart.owner), cart.owner, subtotal, total, sum(l.qty for l in cart.lines))
    cart.clear()
    return order
