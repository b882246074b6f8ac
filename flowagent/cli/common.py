"""What the commands share: the parser class whose errors are one line, opening the store,
naming a run, and the formatting of times and JSON.
"""

from __future__ import annotations

import os

from ..errors import NotFoundError, UsageError

TYPE_CHECKING = False  # `flowagent run` imports as little as it can: no typing, no argparse
if TYPE_CHECKING:
    import argparse
    from typing import Any, TextIO


def _parser(**kwargs: Any) -> argparse.ArgumentParser:
    """An ArgumentParser whose errors are UsageErrors (one line, exit 2). argparse is imported
    here, by the commands that need it, not by ``flowagent run``."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise UsageError(f"{message} (see 'flowagent {self.prog.split()[-1]} --help')"
                             if " " in self.prog else f"{message} (see 'flowagent --help')")

    return Parser(**kwargs)


def _store(data_dir: str | None, store: str | None = None):
    from ..config import load_config
    from ..store.api import open_store, store_url

    cfg = load_config(os.getcwd(), os.environ, {k: v for k, v in (
        ("data_dir", data_dir), ("store", store)) if v})
    return open_store(store_url(cfg.data_dir, cfg.store), readonly=True)


def _run_id(store: Any, run: str | None) -> str:
    if run:
        if run == "latest" or store.run(run) is None:
            matches = [r["run_id"] for r in store.runs() if r["run_id"].startswith(run)]
            if run == "latest":
                matches = [store.latest_run()] if store.latest_run() else []
            if len(matches) != 1:
                raise NotFoundError(f"no run {run!r} in the store; 'flowagent runs' lists them")
            return matches[0]
        return run
    latest = store.latest_run()
    if latest is None:
        raise NotFoundError("the store has no runs yet; record one with 'flowagent run app.py'")
    return latest


def _run_refs(store: Any, specs: list[str] | None) -> list[Any]:
    """The runs ``--run`` names, each with its store: a run id (or prefix, or ``latest``) of
    the data directory in use, a data directory (its latest run), or ``DIR:RUN``."""
    from ..reports.stitch import RunRef
    from ..store.api import db_path, open_store

    refs = []
    for spec in specs or [None]:
        where, run = store, spec
        # a run id of the store in use wins over a directory of the same name in the cwd
        if _names_data_dir(spec) and (store is None or store.run(spec) is None):
            path, run = (spec, None) if os.path.isdir(spec) else spec.rpartition(":")[::2]
            where = open_store(db_path(path), readonly=True)
        refs.append(RunRef.of(where, _run_id(where, run)))
    return refs


def _names_data_dir(spec: str | None) -> bool:
    return bool(spec) and (os.path.isdir(spec) or os.path.isdir(spec.rpartition(":")[0]))


def _print_json(obj: Any, out: TextIO) -> None:
    """The --json output of every reading command."""
    import json

    json.dump(obj, out, indent=2, default=str)
    out.write("\n")


def _iso(ns: int | None) -> str:
    if not ns:
        return "-"
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _ms(ns: int | None) -> str:
    if ns is None:
        return "-"
    if ns >= 1_000_000_000:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1_000_000:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e3:.1f} us"


def _one_line_json(obj: Any) -> str:
    import json

    return json.dumps(obj)
