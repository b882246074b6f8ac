"""With ``--backend profile``, the program's own ``sys.setprofile`` or cProfile displaces the
recorder in its thread. Recording resumes afterwards, and what could not be recorded
meanwhile is counted: how many times, and for how long in all. The store keeps both with the
run and the summary says so."""

from __future__ import annotations

import json
import sys


import pytest

from helpers import PURE, record

pytestmark = pytest.mark.e2e

PROGRAM = """
import cProfile, sys, threading

def leaf(i):
    return i

def work():
    for i in range(100):
        leaf(i)

def displaced_here(release):
    sys.setprofile(lambda *a: None)
    work()  # not recorded: the program's profile function is in place
    release.wait()
    sys.setprofile(None)
    open(__file__).close()  # an audit event: recording resumes in this thread
    work()

def main():
    work()
    release = threading.Event()
    t = threading.Thread(target=displaced_here, args=(release,))
    t.start()
    work()  # the main thread records meanwhile
    release.set()
    t.join()
    p = cProfile.Profile()
    p.enable()
    work()  # cProfile's turn
    p.disable()
    work()
    print("ok")

main()
"""


@pytest.mark.parametrize("pure", [False, True], ids=["c", "pure"])
def test_displacements_are_counted_and_shown(tmp_path, pure):
    rec = record(PROGRAM, tmp_path, backend="profile", env={PURE: "1" if pure else "0"})
    assert rec.stdout == "ok\n"
    run = rec.run_info()
    # cProfile profiles through sys.monitoring from Python 3.12 on: no displacement there
    cprofile_displaces = sys.version_info < (3, 12)
    assert run["profile_displacements"] == 1 + cprofile_displaces
    assert run["profile_displaced_ns"] > 0
    n = 1 + cprofile_displaces
    assert f"displaced recording {n} time{'s' if n > 1 else ''}, " in rec.stderr, rec.stderr
    loss = json.loads(rec.cli("stats", "--json").stdout)["loss"]
    assert loss["profile_displacements"] == n
    from flowagent_viewer import create_app  # the stats page lists it with the losses

    page = create_app({"DATA_DIR": str(rec.data_dir)}).test_client().get(
        f"/runs/{run['run_id']}/stats").get_data(as_text=True)
    assert f'data-k="profile_displacements">{n}</dd>' in page
    assert 'class="loss has-loss"' in page
    # recorded: every work() call but the one under the program's own profile function
    # (and the one under cProfile where it displaces the recorder)
    works = 5 - cprofile_displaces
    assert len(rec.calls("__main__:work")) == works
    assert len(rec.calls("__main__:leaf")) == 100 * works


def test_no_displacement_no_count(tmp_path):
    rec = record("def f():\n    return 1\nprint(f())\n", tmp_path, backend="profile")
    run = rec.run_info()
    assert run["profile_displacements"] == 0
    assert run["profile_displaced_ns"] == 0
    assert "displaced" not in rec.stderr
