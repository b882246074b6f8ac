PRICES = {"A1": 10, "B2": 25}
EVENTS = []


def price(sku):
    return PRICES[sku]


def remember(event):
    EVENTS.append(event)
    return len(EVENTS)


def lines():
    for sku in sorted(PRICES):
        yield f"{sku},{price(sku)}\n"


def ratio(n):
    return 1 / n
