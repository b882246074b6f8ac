"""What the views call into: a small shop (catalogue, carts, pricing, recommendations)."""

from __future__ import annotations

from dataclasses import dataclass, field

PRODUCTS = {f"p{i}": {"sku": f"p{i}", "name": f"Product {i}", "price": 2.0 + (i * 37 % 90),
                      "stock": i * 13 % 40, "tags": ["new"] if i % 3 == 0 else ["sale", "x"]}
            for i in range(100)}


@dataclass
class Cart:
    cart_id: int
    lines: dict[str, int] = field(default_factory=dict)


CARTS: dict[int, Cart] = {}


class NotFound(LookupError):
    pass


def reset() -> None:
    CARTS.clear()


def find_product(sku: str) -> dict:
    product = PRODUCTS.get(sku)
    if product is None:
        raise NotFound(sku)
    return product


def in_stock(product: dict) -> bool:
    return product["stock"] > 0


def public_view(product: dict) -> dict:
    return {"sku": product["sku"], "name": product["name"], "price": product["price"],
            "available": in_stock(product)}


def related(product: dict, limit: int = 3) -> list[dict]:
    n = int(product["sku"][1:])
    return [public_view(find_product(f"p{(n + k) % 100}")) for k in range(1, limit + 1)]


def product_page(sku: str) -> dict:
    product = find_product(sku)
    return {"product": public_view(product), "related": related(product)}


def get_cart(cart_id: int) -> Cart:
    cart = CARTS.get(cart_id)
    if cart is None:
        cart = CARTS[cart_id] = Cart(cart_id)
    return cart


def check_qty(qty: int) -> int:
    if qty <= 0 or qty > 50:
        raise ValueError("bad quantity")
    return qty


def add_to_cart(cart_id: int, sku: str, qty: int) -> dict:
    product = find_product(sku)
    cart = get_cart(cart_id)
    cart.lines[product["sku"]] = cart.lines.get(product["sku"], 0) + check_qty(qty)
    return cart_summary(cart)


def line_price(sku: str, qty: int) -> float:
    return round(find_product(sku)["price"] * qty, 2)


def cart_summary(cart: Cart) -> dict:
    lines = [{"sku": s, "qty": q, "price": line_price(s, q)} for s, q in cart.lines.items()]
    return {"cart_id": cart.cart_id, "lines": lines, "total": cart_total(lines)}


def cart_total(lines: list[dict]) -> float:
    return round(sum(line["price"] for line in lines), 2)
