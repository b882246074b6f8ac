"""Outgoing HTTP call names: route-like URL templates that never carry request values."""

from __future__ import annotations

import pytest

from flowagent.agent.integrations.httpclient import url_template


@pytest.mark.parametrize("method,host,url,expected", [
    ("GET", "api:80", "/items/42?token=secret#frag", "GET api:80/items/{int}"),
    ("POST", "api:80", "/users/3f2a9c1e-7b4d-4e1a-9c0d-2b1e4f5a6c7d/orders", "POST api:80/users/{id}/orders"),
    ("GET", "api:80", "/v1/files/" + "a" * 40, "GET api:80/v1/files/{}"),
    ("GET", "api:80", "", "GET api:80/"),
    ("BREW", "api:80", "/pot", "OTHER api:80/pot"),
    ("GET", "proxy:3128", "http://user:pw@example.org:8080/a/7?x=1", "GET example.org:8080/a/{int}"),
    ("GET", "api:80", "/deadbeef12/raw", "GET api:80/{id}/raw"),
    ("GET", "api:80", "/health", "GET api:80/health"),
])
def test_url_templates(method: str, host: str, url: str, expected: str) -> None:
    assert url_template(method, host, url) == expected


def test_names_are_bounded() -> None:
    name = url_template("GET", "h:1", "/" + "/".join(["seg"] * 500))
    assert len(name) <= 257
