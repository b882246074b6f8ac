"""Discount rules and money helpers."""

from __future__ import annotations


def no_discount(subtotal: int, value: float = 0) -> int:
    return subtotal


def percent_off(subtotal: int, value: float) -> int:
    if not 0 <= value <= 100:
        raise ValueError(f"percent must be between 0 and 100, got {value}")
    return round(subtotal * (100 - value) / 100)


def fixed_off(subtotal: int, value: float) -> int:
    if value < 0:
        raise ValueError(f"fixed discount must not be negative, got {value}")
    return max(0, subtotal - int(value))


def bulk_off(subtotal: int, value: float = 0) -> int:
    """5% off orders of $100 or more."""
    if subtotal >= 10_000:
        return percent_off(subtotal, 5)
    return subtotal


# Dispatch table: rule name -> function(subtotal_cents, value) -> discounted cents.
RULES = {
    "none": no_discount,
    "percent": percent_off,
    "fixed": fixed_off,
    "bulk": bulk_off,
}


def apply_discount(subtotal: int, rule: str = "none", value: float = 0) -> int:
    """Apply the named rule; raises KeyError for an unknown rule, ValueError for a bad value."""
    return RULES[rule](subtotal, value)


def format_cents(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}"
