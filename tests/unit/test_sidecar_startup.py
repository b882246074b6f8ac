"""What the sidecar reads at start without heavy imports: process samples from /proc (the
same figures psutil gives) and whether any distribution declares hook entry points."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from flowagent.sidecar import hooks as H
from flowagent.sidecar import sampler as S

psutil = pytest.importorskip("psutil")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_proc_samples_are_what_psutil_reads():
    child = subprocess.Popen([sys.executable, "-c",
                              "import sys; x = [0] * 3_000_000; sum(range(10**7)); "
                              "print('ok', flush=True); sys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ok\n"
        os.kill(child.pid, signal.SIGSTOP)  # its CPU time and memory hold still
        ours = S._ProcStat(child.pid).sample()
        theirs = S._PsutilStat(child.pid).sample()
        assert ours == theirs
        assert ours[0] > 0 and ours[1] > 20 << 20
    finally:
        os.kill(child.pid, signal.SIGCONT)
        child.stdin.close()
        child.wait(timeout=60)
    with pytest.raises(OSError):
        S._ProcStat(child.pid).sample()  # reaped: gone


def test_the_sampler_stores_a_row_per_process_through_proc(tmp_path):
    from flowagent.store.sqlite import SQLiteStore

    store = SQLiteStore(str(tmp_path / "flowagent.db"))
    sampler = S.ProcessSampler(store, "r", interval_s=3600)

    class P:
        pid = os.getpid()

    assert sampler.maybe_sample([P]) == 1
    assert sampler.maybe_sample([P]) == 0  # not due again yet
    (row,) = store.samples("r", os.getpid())
    assert row.cpu_s > 0 and row.rss_bytes > 0


def _dist(site, name: str, entry_points: str | None) -> None:
    d = site / f"{name}-1.0.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    if entry_points is not None:
        (d / "entry_points.txt").write_text(entry_points)


def test_hook_entry_points_are_found_when_a_distribution_declares_them(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _dist(site, "other", "[console_scripts]\nother = other:main\n")
    (site / "fa_hook_mod.py").write_text(textwrap.dedent("""
        CALLS = []
        def hook(event, data):
            CALLS.append(event)
    """))
    monkeypatch.setattr(sys, "path", [str(site), *sys.path])
    without = H.may_have_entry_points(H.GROUP)
    _dist(site, "fahook", f"[{H.GROUP}]\nmine = fa_hook_mod:hook\n")
    assert H.may_have_entry_points(H.GROUP)
    loaded = H.Hooks([])
    assert [label for label, _fn in loaded.hooks] == ["mine (entry point fa_hook_mod:hook)"]
    loaded.run_end({})
    import fa_hook_mod

    assert fa_hook_mod.CALLS == ["run_end"]
    if not without:  # nothing else installed here declares one: no metadata read at all
        monkeypatch.setattr("importlib.metadata.entry_points",
                            lambda **_: pytest.fail("read without need"))
        (site / "fahook-1.0.dist-info" / "entry_points.txt").unlink()
        assert not H.Hooks([]).hooks
