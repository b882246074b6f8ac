"""The request handler: parse, authenticate, build, price, respond; errors are handled."""

from __future__ import annotations

from .models import Cart, Line, ValidationError
from .service import authenticate, build_cart, load_user, price_cart


def parse_request(raw: dict) -> dict:
    return {"id": raw["request_id"], "user_id": int(raw["user_id"]), "token": raw["token"],
            "items": list(raw["items"]), "coupon": raw.get("coupon")}


def serialize_line(line: Line) -> dict:
    return {"sku": line.product.sku, "qty": line.qty, "tags": list(line.product.tags)}


def serialize_cart(cart: Cart) -> dict:
    return {"user": cart.user.name, "lines": [serialize_line(ln) for ln in cart.lines]}


def build_response(req: dict, cart: Cart, prices: dict) -> dict:
    return {"id": req["id"], "status": 200, "cart": serialize_cart(cart), "prices": prices}


def error_response(req: dict, status: int, reason: str) -> dict:
    return {"id": req["id"], "status": status, "error": reason}


def audit(response: dict, log: list) -> None:
    log.append((response["id"], response["status"]))


def handle(raw: dict, log: list) -> dict:
    req = parse_request(raw)
    if not authenticate(req["token"], req["user_id"]):
        response = error_response(req, 401, "unauthorized")
    else:
        user = load_user(req["user_id"])
        try:
            cart = build_cart(user, req["items"], req["coupon"])
        except ValidationError as exc:
            response = error_response(req, 400, str(exc))
        except KeyError:
            response = error_response(req, 404, "unknown product")
        else:
            response = build_response(req, cart, price_cart(cart))
    audit(response, log)
    return response
