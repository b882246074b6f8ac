"""Domain objects of the simulated request handler."""

from __future__ import annotations

from dataclasses import dataclass, field


class ValidationError(ValueError):
    """A request the handler refuses (bad quantity)."""


@dataclass
class User:
    user_id: int
    name: str
    tier: str


@dataclass
class Product:
    sku: str
    price: float
    tags: list[str] = field(default_factory=list)


@dataclass
class Line:
    product: Product
    qty: int


@dataclass
class Cart:
    user: User
    lines: list[Line] = field(default_factory=list)
    coupon: str | None = None
