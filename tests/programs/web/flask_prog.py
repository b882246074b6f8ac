"""A Flask app driven by its test client: a streamed body, a 500, an unknown method."""

from flask import Flask, stream_with_context

import catalog

app = Flask(__name__)


@app.route("/items/<sku>")
def item(sku):
    return {"price": catalog.price(sku)}


@app.route("/export")
def export():
    return app.response_class(stream_with_context(catalog.lines()), mimetype="text/plain")


@app.route("/boom")
def boom():
    return str(catalog.ratio(0))


def main():
    client = app.test_client()
    print(client.get("/items/A1").status_code, client.get("/boom").status_code,
          client.open("/items/A1", method="BREW").status_code,
          client.get("/" + "x" * 5000).status_code,
          client.get("/export").get_data(as_text=True).replace("\n", ";"))


main()
