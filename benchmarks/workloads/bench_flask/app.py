"""The Flask app: views are thin and call into :mod:`bench_flask.service`."""

from __future__ import annotations

from flask import Flask, jsonify, request

from . import service


def create_app() -> Flask:
    app = Flask("bench_flask")

    @app.get("/products/<sku>")
    def product(sku: str):
        try:
            return jsonify(service.product_page(sku))
        except service.NotFound:
            return jsonify({"error": "not found"}), 404

    @app.post("/carts/<int:cart_id>/items")
    def add_item(cart_id: int):
        body = request.get_json()
        try:
            return jsonify(service.add_to_cart(cart_id, body["sku"], int(body["qty"])))
        except ValueError:
            return jsonify({"error": "bad quantity"}), 400
        except service.NotFound:
            return jsonify({"error": "not found"}), 404

    @app.get("/carts/<int:cart_id>")
    def show_cart(cart_id: int):
        return jsonify(service.cart_summary(service.get_cart(cart_id)))

    return app
