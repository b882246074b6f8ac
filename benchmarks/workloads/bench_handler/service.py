"""Business logic: authentication, catalogue, pricing. Small functions, realistic data."""

from __future__ import annotations

from .models import Cart, Line, Product, User, ValidationError

CATALOGUE: dict[str, Product] = {
    f"SKU-{i:03d}": Product(f"SKU-{i:03d}", round(1.5 + (i * 7919 % 1000) / 10, 2),
                            ["a", "b"] if i % 2 else ["c"])
    for i in range(200)
}
TIERS = ("basic", "silver", "gold")
DISCOUNTS = {"basic": 0.0, "silver": 0.05, "gold": 0.1}


def check_token(token: str, user_id: int) -> bool:
    return token == f"tok-{user_id}"


def authenticate(token: str, user_id: int) -> bool:
    return check_token(token, user_id)


def user_tier(user_id: int) -> str:
    return TIERS[user_id % 3]


def load_user(user_id: int) -> User:
    return User(user_id, f"user{user_id}", user_tier(user_id))


def lookup_product(sku: str) -> Product:
    return CATALOGUE[sku]  # KeyError for an unknown sku: the handler answers 404


def validate_qty(qty: int) -> int:
    if qty <= 0:
        raise ValidationError("quantity must be positive")
    return qty


def make_line(item: dict) -> Line:
    return Line(lookup_product(item["sku"]), validate_qty(item["qty"]))


def build_cart(user: User, items: list[dict], coupon: str | None) -> Cart:
    cart = Cart(user, coupon=coupon)
    for item in items:
        cart.lines.append(make_line(item))
    return cart


def line_total(line: Line) -> float:
    return line.product.price * line.qty


def apply_discount(total: float, tier: str, coupon: str | None) -> float:
    rate = DISCOUNTS[tier] + (0.05 if coupon else 0.0)
    return total * (1 - rate)


def tax(total: float) -> float:
    return total * 0.2


def round_money(value: float) -> float:
    return round(value, 2)


def price_cart(cart: Cart) -> dict:
    subtotal = sum(line_total(line) for line in cart.lines)
    discounted = apply_discount(subtotal, cart.user.tier, cart.coupon)
    return {"subtotal": round_money(subtotal), "tax": round_money(tax(discounted)),
            "total": round_money(discounted + tax(discounted))}
