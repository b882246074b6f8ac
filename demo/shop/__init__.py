"""A tiny shop: catalog, carts, pricing, inventory, checkout, reports, jobs and a web API."""
