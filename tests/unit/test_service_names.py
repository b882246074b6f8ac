"""Service names: the default from the program, the stored name, and the config key."""

from __future__ import annotations

import json

import pytest

from flowagent.config import load_config
from flowagent.errors import ConfigError
from flowagent.service import default_service, qualified, service_of


@pytest.mark.parametrize("kind,name,args,expected", [
    ("script", "app.py", (), "app"),
    ("script", "services/billing/api.py", ("--port", "80"), "api"),
    ("script", "shop/__main__.py", (), "shop"),
    ("module", "shop.api", (), "shop.api"),
    ("program", "gunicorn", ("app:app",), "gunicorn"),
    ("program", "/usr/bin/python3", ("-u", "serve.py", "8000"), "serve"),
    ("program", "python3.12", ("-m", "uvicorn", "app:app"), "uvicorn"),
    ("program", "./my server!", (), "my-server"),
])
def test_default_service(kind: str, name: str, args: tuple[str, ...], expected: str) -> None:
    assert default_service(kind, name, args) == expected


def test_a_run_is_named_by_its_stored_service_else_its_command_line() -> None:
    assert service_of({"service": "pricing", "argv": json.dumps(["app.py"])}) == "pricing"
    assert service_of({"service": None, "argv": json.dumps(["-m shop.api", "x"])}) == "shop.api"
    assert service_of({"argv": json.dumps(["-- python", "front.py", "1"])}) == "front"
    assert service_of({}) == "program"
    assert qualified("a", "__main__:main") == "a:__main__:main"


def test_service_config_key(tmp_path) -> None:
    assert load_config(tmp_path, {}, {}).service == ""
    assert load_config(tmp_path, {"FLOWAGENT_SERVICE": "checkout"}, {}).service == "checkout"
    assert load_config(tmp_path, {"FLOWAGENT_SERVICE": "a"}, {"service": "b"}).service == "b"
    for bad in ("has space", "a:b", "-lead", "x" * 65):
        with pytest.raises(ConfigError, match="service name"):
            load_config(tmp_path, {}, {"service": bad})
