"""Fixture: functions reached through references captured while their module was imported."""

import m2
from web import app


@app.route("/bye")
def bye():
    return "bye"


def main():
    print(m2.dispatch("a", 1), m2.dispatch("b", 2), m2.measure())
    client = app.test_client()
    for path in ("/hello/bob", "/bye"):
        response = client.get(path)
        print(response.status_code, response.get_data(as_text=True))


main()
