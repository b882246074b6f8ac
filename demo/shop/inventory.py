"""Stock levels, shared by every request, job and thread."""

from __future__ import annotations

import threading

_STOCK: dict[str, int] = {
    "KIT-PAN-01": 40,
    "KIT-POT-02": 25,
    "KIT-KNIFE-02": 30,
    "KIT-SPOON-05": 60,
    "GDN-SHOVEL": 20,
    "GDN-RAKE": 20,
    "GDN-SEED-TOM": 200,
    # GDN-GNOME is discontinued: it is in the catalog but has no stock record.
    "OFF-PEN-BLK": 150,
    "OFF-PAPER-A4": 80,
    "OFF-LAMP": 15,
}
_LOCK = threading.Lock()


class OutOfStock(Exception):
    pass


def stock_level(sku: str) -> int:
    """Units on hand; raises KeyError for an unknown SKU."""
    return _STOCK[sku]


def is_available(sku: str, qty: int = 1) -> bool:
    try:
        return stock_level(sku) >= qty
    except KeyError:
        return False


def reserve(sku: str, qty: int) -> int:
    """Take ``qty`` units out of stock and return what is left.

    Raises KeyError for an unknown SKU and OutOfStock if there are not enough units.
    """
    with _LOCK:
        level = stock_level(sku)
        if level < qty:
            raise OutOfStock(f"{sku}: wanted {qty}, have {level}")
        _STOCK[sku] = level - qty
        return level - qty


def release(sku: str, qty: int) -> None:
    with _LOCK:
        _STOCK[sku] = stock_level(sku) + qty


def total_units() -> int:
    with _LOCK:
        return sum(_STOCK.values())
