"""Background jobs, written with asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from shop import inventory
from shop.cart import Cart
from shop.catalog import Catalog, Product
from shop.pricing import apply_discount

# Each job quotes a basket: (skus, discount rule, discount value).
BASKETS = [
    (["KIT-PAN-01", "KIT-SPOON-05"], "none", 0),
    (["GDN-SHOVEL", "GDN-RAKE", "GDN-SEED-TOM"], "percent", 10),
    (["OFF-LAMP"], "fixed", 500),
    (["KIT-KNIFE-02", "KIT-POT-02"], "bulk", 0),
    (["OFF-PEN-BLK", "OFF-PAPER-A4"], "percent", 25),
    (["GDN-GNOME", "GDN-RAKE"], "none", 0),  # the gnome is out of stock
    (["NO-SUCH-SKU", "KIT-PAN-01"], "none", 0),  # unknown SKU is skipped
    (["OFF-LAMP", "OFF-PAPER-A4"], "percent", 120),  # bad discount: falls back to none
    (["KIT-SPOON-05"], "fixed", -1),  # bad discount: falls back to none
    (["GDN-SEED-TOM", "KIT-PAN-01", "OFF-LAMP"], "bulk", 0),
]


@dataclass
class Quote:
    job_id: int
    items: int
    total_cents: int
    discount_applied: bool


async def stream_products(catalog: Catalog, skus: list[str]) -> AsyncIterator[Product]:
    """Yield the known, in-stock products among ``skus``."""
    for sku in skus:
        await asyncio.sleep(0)
        product = catalog.find(sku)
        if product is not None and inventory.is_available(product.sku):
            yield product


async def quote_job(catalog: Catalog, job_id: int) -> Quote:
    skus, rule, value = BASKETS[job_id % len(BASKETS)]
    cart = Cart(f"job-{job_id}")
    async for product in stream_products(catalog, skus):
        cart.add(product, 1 + job_id % 3)
    await asyncio.sleep(0)
    try:
        total = apply_discount(cart.subtotal(), rule, value)
        applied = True
    except ValueError:
        total = cart.subtotal()
        applied = False
    return Quote(job_id, len(cart), total, applied)


async def run_jobs(catalog: Catalog, count: int = 10) -> list[Quote]:
    return list(await asyncio.gather(*(quote_job(catalog, i) for i in range(count))))


def run(catalog: Catalog, count: int = 10) -> list[Quote]:
    return asyncio.run(run_jobs(catalog, count))
