"""A Flask app whose view is registered by a decorator while the module is imported."""

from flask import Flask

app = Flask(__name__)


def greet(name):
    return f"hello {name}"


@app.route("/hello/<name>")
def hello(name):
    return greet(name)
