"""Fixture: distinctive values flow through every kind of recorded call; none may be stored."""

import asyncio
import dataclasses

from flask import Flask

SECRET = "sekrit-value-42"
NUMBER = 987654321987


@dataclasses.dataclass
class Token:
    owner: str
    value: str


class Vault:
    def __init__(self, secret):
        self.secret = secret

    def reveal(self):
        return self.secret


def check(password, pin, extra=None, *args, **kwargs):
    if password != SECRET:
        raise ValueError(f"bad password {password} {pin}")
    return {SECRET: pin, "user": password}


def tokens(owner):
    yield Token(owner, SECRET)
    yield SECRET + "-yielded"


async def acheck(pin):
    return {"pin": pin, f"{SECRET}-key": str(pin)}


app = Flask(__name__)


@app.route("/users/<user>")
def user_view(user):
    return check(user, NUMBER, note=user)["user"]


def main():
    check(SECRET, NUMBER, [SECRET, NUMBER], SECRET, kw=SECRET, **{SECRET: NUMBER})
    try:
        check("wrong-" + SECRET, NUMBER)
    except ValueError:
        pass
    list(tokens(SECRET))
    Vault(SECRET).reveal()
    asyncio.run(acheck(NUMBER))
    response = app.test_client().get(f"/users/{SECRET}?q={SECRET}")
    print(response.status_code)


main()
