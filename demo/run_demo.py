"""Drive the shop: web requests, async jobs, a report and a few worker threads."""

from __future__ import annotations

import logging
import threading

from shop import jobs, reports
from shop.cart import Cart
from shop.catalog import Catalog
from shop.checkout import checkout
from shop.pricing import format_cents
from shop.web import app, use_catalog

# (method, path, JSON body or raw text)
REQUESTS = [
    ("GET", "/health", None),
    ("GET", "/products", None),
    ("GET", "/products?category=kitchen", None),
    ("GET", "/products/KIT-PAN-01", None),
    ("GET", "/products/kit-knife-02", None),
    ("GET", "/products/NOPE-404", None),
    ("POST", "/carts/alice/items", {"sku": "KIT-PAN-01", "qty": 1}),
    ("POST", "/carts/alice/items", {"sku": "OFF-PEN-BLK", "qty": 3}),
    ("POST", "/carts/alice/items", {"sku": "NOPE", "qty": 1}),
    ("POST", "/carts/alice/items", {"sku": "OFF-PEN-BLK", "qty": 0}),
    ("POST", "/carts/alice/items", "this is not json"),
    ("GET", "/carts/alice", None),
    ("POST", "/checkout", {"cart": "alice", "discount": {"rule": "percent", "value": 10}}),
    ("POST", "/carts/bob/items", {"sku": "GDN-SEED-TOM", "qty": 2}),
    ("POST", "/checkout", {"cart": "bob", "discount": {"rule": "percent", "value": 150}}),
    ("POST", "/checkout", {"cart": "nobody"}),
    ("POST", "/carts/carol/items", {"sku": "OFF-PAPER-A4", "qty": 2}),
    ("POST", "/carts/carol/items", {"sku": "GDN-GNOME", "qty": 1}),
    ("POST", "/checkout", {"cart": "carol"}),
    ("POST", "/checkout", {"cart": "bob", "discount": {"rule": "fixed", "value": 200}}),
]

# Each worker thread checks out its own small basket: (skus, qty, discount).
THREAD_BASKETS = [
    (["KIT-POT-02", "KIT-SPOON-05"], 1, {"rule": "none"}),
    (["GDN-SHOVEL", "GDN-SEED-TOM"], 2, {"rule": "percent", "value": 15}),
    (["OFF-LAMP", "OFF-PAPER-A4"], 1, {"rule": "fixed", "value": 300}),
    (["KIT-KNIFE-02", "KIT-PAN-01"], 2, {"rule": "bulk"}),
]


def drive_web() -> dict[int, int]:
    app.config["PROPAGATE_EXCEPTIONS"] = False  # unhandled view errors become 500s
    logging.getLogger(app.name).disabled = True  # the 500s are expected: no traceback
    client = app.test_client()
    statuses: dict[int, int] = {}
    for method, path, body in REQUESTS:
        if isinstance(body, str):
            response = client.open(path, method=method, data=body, content_type="text/plain")
        else:
            response = client.open(path, method=method, json=body)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    return statuses


def thread_checkout(catalog: Catalog, index: int, results: list) -> None:
    skus, qty, discount = THREAD_BASKETS[index]
    cart = Cart(f"worker-{index}")
    for sku in skus:
        cart.add(catalog.get(sku), qty)
    results[index] = checkout(cart, discount).total_cents


def run_threads(catalog: Catalog) -> list[int]:
    results = [0] * len(THREAD_BASKETS)
    threads = [
        threading.Thread(target=thread_checkout, args=(catalog, i, results), name=f"worker-{i}")
        for i in range(len(THREAD_BASKETS))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main() -> int:
    catalog = Catalog.default()
    use_catalog(catalog)

    statuses = drive_web()
    quotes = jobs.run(catalog)
    lines = list(reports.report_lines(catalog))
    totals = run_threads(catalog)

    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
    print(
        f"demo: {sum(statuses.values())} requests ({ok} ok, {statuses.get(404, 0)} not found, "
        f"{statuses.get(400, 0)} bad request, {statuses.get(500, 0)} server error); "
        f"{len(quotes)} async jobs; report lines: {len(lines)}"
    )
    print(
        f"demo: async quotes total {format_cents(sum(q.total_cents for q in quotes))} "
        f"({sum(not q.discount_applied for q in quotes)} bad discounts); "
        f"{len(totals)} threads checked out {format_cents(sum(totals))}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
