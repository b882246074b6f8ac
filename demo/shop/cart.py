"""Shopping carts."""

from __future__ import annotations

from typing import NamedTuple

from shop.catalog import Product


class LineItem(NamedTuple):
    sku: str
    name: str
    unit_price_cents: int
    qty: int

    @property
    def total_cents(self) -> int:
        return self.unit_price_cents * self.qty


class Cart:
    def __init__(self, owner: str):
        self.owner = owner
        self._lines: dict[str, LineItem] = {}

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, product: Product, qty: int = 1) -> LineItem:
        current = self._lines.get(product.sku)
        if current is not None:
            qty += current.qty
        line = LineItem(product.sku, product.name, product.price_cents, qty)
        self._lines[product.sku] = line
        return line

    def remove(self, sku: str) -> None:
        self._lines.pop(sku, None)

    def clear(self) -> None:
        self._lines.clear()

    @property
    def lines(self) -> list[LineItem]:
        return list(self._lines.values())

    def subtotal(self) -> int:
        return sum(line.total_cents for line in self._lines.values())

    def to_dict(self) -> dict:
        return {
            "owner": self.owner,
            "lines": [line._asdict() for line in self.lines],
            "subtotal_cents": self.subtotal(),
        }
