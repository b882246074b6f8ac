"""``flowagent diff`` reports shifts in how calls end: each function's and each flow variant's
result mix and each request route's status mix, counts on both sides, noise left out."""

from __future__ import annotations

import json

import pytest

from flowagent.reports import diff as D
from helpers import run_cli, write_files

pytestmark = pytest.mark.e2e

APP = {
    "work.py": """
        def compute(i, version):
            r = steady(i, version)  # the same call tree whether it fails or not
            if version == 2 or i % 3 == 0:
                raise ValueError(i)
            return r

        def steady(i, version):
            # fails in 1 of 30 calls, then in 2 of 30: below the noise rule
            if i == 7 or (version == 2 and i == 8):
                try:
                    raise KeyError(i)
                except KeyError:
                    return 0
            return i

        def rare(version):
            # 3 calls a run: all fine, then all failing, too few calls to judge
            if version == 2:
                raise RuntimeError("rare")
            return 1
    """,
    "web.py": """
        import logging
        import sys

        from flask import Flask

        import work

        VERSION = int(sys.argv[1])
        app = Flask(__name__)
        logging.getLogger("web").disabled = True

        @app.route("/item/<int:i>")
        def item(i):
            return str(work.compute(i, VERSION))

        @app.route("/ok")
        def ok():
            return "fine"

        client = app.test_client()
        codes = [client.get(f"/item/{i}").status_code for i in range(30)]
        codes += [client.get("/ok").status_code for _ in range(10)]
        for _ in range(3):
            try:
                work.rare(VERSION)
            except RuntimeError:
                pass
        print(sorted(set(codes)))
    """,
}


@pytest.fixture(scope="module")
def diffed(tmp_path_factory):
    root = tmp_path_factory.mktemp("diff_results")
    write_files(root, APP)
    data = root / "data"
    for version in (1, 2):
        proc = run_cli(["run", "--data-dir", str(data), "web.py", str(version)], root,
                       timeout=180)
        assert proc.returncode == 0, proc.stderr.decode()
    runs = json.loads(run_cli(["runs", "--json", "--data-dir", str(data)], root).stdout)
    a, b = runs[1]["run_id"], runs[0]["run_id"]
    out = run_cli(["diff", a, b, "--json", "--data-dir", str(data)], root)
    assert out.returncode == 0, out.stderr.decode()
    text = run_cli(["diff", a, b, "--data-dir", str(data)], root)
    same = run_cli(["diff", a, a, "--json", "--data-dir", str(data)], root)
    return json.loads(out.stdout), text.stdout.decode(), json.loads(same.stdout)


def test_result_shift_of_a_function_with_counts_on_both_sides(diffed):
    d, text, _ = diffed
    shifts = {s["function"]: s for s in d["result_shifts"]}
    assert shifts["work:compute"]["a"] == {"calls": 30, "success": 20, "error": 10,
                                           "partial": 0}
    assert shifts["work:compute"]["b"] == {"calls": 30, "success": 0, "error": 30,
                                           "partial": 0}
    assert shifts["work:compute"]["changed"] == ["success", "error"]
    # the view that lets it raise fails the same way
    assert shifts["__main__:item"]["b"]["error"] == 30
    # 1/30 -> 2/30 partials and 0/3 -> 3/3 errors are noise
    assert "work:steady" not in shifts and "work:rare" not in shifts
    assert "! results of work:compute: success 20/30 (67%) -> 0/30 (0%), " \
           "error 10/30 (33%) -> 30/30 (100%)" in text


def test_status_shift_of_a_request_route(diffed):
    d, text, _ = diffed
    [route] = d["status_shifts"]
    assert route["function"] == "<request>:GET /item/<int:i>"
    assert route["a"] == {"calls": 30, "status": {"200": 20, "500": 10}}
    assert route["b"] == {"calls": 30, "status": {"200": 0, "500": 30}}
    assert route["changed"] == ["200", "500"]
    assert "! status of <request>:GET /item/<int:i>: 200 20/30 (67%) -> 0/30 (0%), " \
           "500 10/30 (33%) -> 30/30 (100%)" in text


def test_variant_result_shift(diffed):
    d, text, _ = diffed
    by_root = {v["root"]: v for v in d["variant_result_shifts"]}
    v = by_root["<request>:GET /item/<int:i>"]
    # a 500 answer: the request failed (error or partial, as the request root reports it)
    a, b = v["a"], v["b"]
    assert a["calls"] == 30 and a["success"] == 20 and a["error"] + a["partial"] == 10
    assert b["calls"] == 30 and b["success"] == 0 and b["error"] + b["partial"] == 30
    assert "success" in v["changed"] and a["incomplete"] == b["incomplete"] == 0
    assert set(by_root) == {"<request>:GET /item/<int:i>"}  # /ok and rare did not move
    assert f"! results of flow variant {v['variant'][:12]} (<request>:GET /item/<int:i>)" in text


def test_a_run_against_itself_has_no_shift(diffed):
    _, _, same = diffed
    assert same["result_shifts"] == same["status_shifts"] == \
        same["variant_result_shifts"] == []


def test_noise_rule():
    mix = lambda calls, error: {"calls": calls, "error": error}  # noqa: E731
    assert D.shifted(mix(30, 10), mix(30, 30), ["error"]) == ["error"]
    assert D.shifted(mix(30, 1), mix(30, 2), ["error"]) == []         # 3 points: noise
    assert D.shifted(mix(3, 0), mix(3, 3), ["error"]) == []           # too few calls
    assert D.shifted(mix(10, 0), mix(10, 2), ["error"]) == []         # 20 points, z < 2
    assert D.shifted(mix(1000, 100), mix(1000, 250), ["error"]) == ["error"]
    assert D.shifted(mix(1000, 100), mix(1000, 150), ["error"]) == ["error"]
    assert D.shifted(mix(50, 0), mix(50, 50), ["error"]) == ["error"]
    assert D.shifted(mix(50, 5), mix(50, 5), ["error"]) == []
