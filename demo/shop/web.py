"""A small JSON API for the shop."""

from __future__ import annotations

from flask import Flask, jsonify, request

from shop import inventory
from shop.cart import Cart
from shop.catalog import Catalog
from shop.checkout import CheckoutError, checkout as place_order
from shop.pricing import RULES

app = Flask(__name__)

CARTS: dict[str, Cart] = {}
_catalog: Catalog | None = None


class BadPayload(Exception):
    pass


def use_catalog(catalog: Catalog) -> None:
    global _catalog
    _catalog = catalog


def get_catalog() -> Catalog:
    if _catalog is None:
        use_catalog(Catalog.default())
    return _catalog


def make_validator(**fields):
    """Return a function that checks a JSON payload has ``fields`` (name -> type)."""

    def validate(payload) -> dict:
        if not isinstance(payload, dict):
            raise BadPayload("expected a JSON object")

        def require(name, kind):
            if name not in payload:
                raise BadPayload(f"missing field {name!r}")
            if not isinstance(payload[name], kind):
                raise BadPayload(f"field {name!r} must be {kind.__name__}")
            return payload[name]

        return {name: require(name, kind) for name, kind in fields.items()}

    return validate


validate_add_item = make_validator(sku=str, qty=int)
validate_checkout = make_validator(cart=str)


def error(message: str, status: int):
    return jsonify({"error": message}), status


@app.route("/health")
def health():
    return jsonify({"status": "ok", "products": get_catalog().size})


@app.route("/products")
def list_products():
    products = get_catalog().list(request.args.get("category"))
    return jsonify([p.to_dict() for p in products])


@app.route("/products/<sku>")
def get_product(sku):
    try:
        product = get_catalog().get(sku)
    except KeyError:
        return error(f"no such product: {sku}", 404)
    return jsonify(dict(product.to_dict(), in_stock=inventory.is_available(product.sku)))


@app.route("/carts/<owner>", methods=["GET"])
def show_cart(owner):
    cart = CARTS.get(owner)
    if cart is None:
        return error(f"no cart for {owner}", 404)
    return jsonify(cart.to_dict())


@app.route("/carts/<owner>/items", methods=["POST"])
def add_item(owner):
    try:
        data = validate_add_item(request.get_json(silent=True))
        if data["qty"] <= 0:
            raise BadPayload("qty must be positive")
    except BadPayload as exc:
        return error(str(exc), 400)
    product = get_catalog().find(data["sku"])
    if product is None:
        return error(f"no such product: {data['sku']}", 404)
    cart = CARTS.setdefault(owner, Cart(owner))
    line = cart.add(product, data["qty"])
    return jsonify(line._asdict()), 201


@app.route("/checkout", methods=["POST"])
def checkout():
    payload = request.get_json(silent=True)
    try:
        data = validate_checkout(payload)
        discount = payload.get("discount") or {}
        if discount.get("rule", "none") not in RULES:
            raise BadPayload(f"unknown discount rule {discount['rule']!r}")
    except BadPayload as exc:
        return error(str(exc), 400)
    cart = CARTS.get(data["cart"])
    if cart is None:
        return error(f"no cart for {data['cart']}", 404)
    try:
        order = place_order(cart, discount)
    except CheckoutError as exc:
        return error(str(exc), 400)
    # Anything else (a bad discount value, a product without a stock record) is a bug
    # that escapes the view: Flask turns it into a 500.
    return jsonify(order.to_dict())
