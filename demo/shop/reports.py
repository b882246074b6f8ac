"""Catalog reports."""

from __future__ import annotations

from collections.abc import Iterator

from shop import inventory
from shop.catalog import Catalog, Product
from shop.pricing import format_cents


def new_node() -> dict:
    return {"children": {}, "products": []}


def build_tree(products: list[Product]) -> dict:
    root = new_node()
    for product in products:
        node = root
        for part in product.category.split("/"):
            node = node["children"].setdefault(part, new_node())
        node["products"].append(product)
    return root


def count_products(node: dict) -> int:
    """Recursively count the products in a category subtree."""
    return len(node["products"]) + sum(count_products(child) for child in node["children"].values())


def render_tree(node: dict, depth: int = 0) -> list[str]:
    """Recursively render a category subtree, one indented line per category and product."""
    lines = []
    for name in sorted(node["children"]):
        child = node["children"][name]
        lines.append(f"{'  ' * depth}{name}/ ({count_products(child)})")
        lines.extend(render_tree(child, depth + 1))
    for product in node["products"]:
        stock = inventory.stock_level(product.sku) if inventory.is_available(product.sku) else "n/a"
        lines.append(f"{'  ' * depth}- {product.sku} {format_cents(product.price_cents)} stock={stock}")
    return lines


def report_lines(catalog: Catalog) -> Iterator[str]:
    """Yield the lines of the catalog report."""
    tree = build_tree(catalog.list())
    yield f"catalog report: {catalog.size} products"
    yield from render_tree(tree)
    yield f"units in stock: {inventory.total_units()}"
