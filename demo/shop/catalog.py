"""Product catalog."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price_cents: int
    category: str  # slash-separated path, e.g. "kitchen/cookware"

    def to_dict(self) -> dict:
        return {
            "sku": self.sku,
            "name": self.name,
            "price_cents": self.price_cents,
            "category": self.category,
        }


DEFAULT_PRODUCTS = [
    ("KIT-PAN-01", "Cast iron pan", 3499, "kitchen/cookware"),
    ("KIT-POT-02", "Stock pot", 4250, "kitchen/cookware"),
    ("KIT-KNIFE-02", "Chef's knife", 5900, "kitchen/cutlery"),
    ("KIT-SPOON-05", "Wooden spoons (5)", 899, "kitchen/utensils"),
    ("GDN-SHOVEL", "Garden shovel", 2799, "garden/tools"),
    ("GDN-RAKE", "Leaf rake", 1999, "garden/tools"),
    ("GDN-SEED-TOM", "Tomato seeds", 349, "garden/seeds"),
    ("GDN-GNOME", "Garden gnome (discontinued)", 1500, "garden/decor"),
    ("OFF-PEN-BLK", "Black pens (10)", 450, "office/writing"),
    ("OFF-PAPER-A4", "A4 paper (500 sheets)", 699, "office/paper"),
    ("OFF-LAMP", "Desk lamp", 2450, "office/furniture/lighting"),
]


class Catalog:
    """An in-memory collection of products, indexed by SKU."""

    def __init__(self, products=()):
        self._products: dict[str, Product] = {}
        for product in products:
            self.add(product)

    @classmethod
    def default(cls) -> "Catalog":
        return cls(Product(*row) for row in DEFAULT_PRODUCTS)

    @staticmethod
    def normalize_sku(raw: str) -> str:
        return raw.strip().upper()

    @property
    def size(self) -> int:
        return len(self._products)

    def add(self, product: Product) -> None:
        self._products[product.sku] = product

    def get(self, sku: str) -> Product:
        """Return the product for ``sku``; raises KeyError if it is unknown."""
        return self._products[self.normalize_sku(sku)]

    def find(self, sku: str) -> Product | None:
        """Like :meth:`get`, but returns None for an unknown SKU."""
        try:
            return self.get(sku)
        except KeyError:
            return None

    def list(self, category: str | None = None) -> list[Product]:
        products = sorted(self._products.values(), key=lambda p: p.sku)
        if category is None:
            return products
        prefix = category.strip("/") + "/"
        return [p for p in products if (p.category + "/").startswith(prefix)]
