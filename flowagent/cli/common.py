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

    from ..store.api import Store


def _parser(**kwargs: Any) -> argparse.ArgumentParser:
    """An ArgumentParser whose errors are UsageErrors (one line, exit 2). argparse is imported
    here, by the commands that need it, not by ``flowagent run``."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise UsageError(f"{message} (see 'flowagent {self.prog.split()[-1]} --help')"
                             if " " in self.prog else f"{message} (see 'flowagent --help')")

    return Parser(**kwargs)


def _store(data_dir: str | None, store: str | None = None) -> Store:
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
            return str(matches[0])
        return run
    latest = store.latest_run()
    if latest is None:
        raise NotFoundError("the store has no runs yet; record one with 'flowagent run app.py'")
    return str(latest)


def _run_refs(store: Any, specs: list[str] | None) -> list[Any]:
    """The runs ``--run`` names, each with its store: a run id (or prefix, or ``latest``) of
    the data directory in use, a data directory (its latest run), or ``DIR:RUN``."""
    from ..reports.stitch import RunRef
    from ..store.api import db_path, open_store

    refs = []
    wanted: list[str | None] = list(specs) if specs else [None]
    for spec in wanted:
        where, run = store, spec
        # a run id of the store in use wins over a directory of the same name in the cwd
        if spec and _names_data_dir(spec) and (store is None or store.run(spec) is None):
            path, run = (spec, None) if os.path.isdir(spec) else spec.rpartition(":")[::2]
            where = open_store(db_path(path), readonly=True)
        refs.append(RunRef.of(where, _run_id(where, run)))
    return refs


def _names_data_dir(spec: str | None) -> bool:
    if not spec:
        return False
    return os.path.isdir(spec) or os.path.isdir(spec.rpartition(":")[0])


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


def _fleet_runs(store: Any, service: str | None, host: str | None) -> list[str]:
    """The runs of a service and/or host, newest first (one error line when there are none)."""
    runs = [r["run_id"] for r in store.runs(service=service, host=host)]
    if not runs:
        what = " on ".join(f"{k} {v!r}" for k, v in (("service", service), ("host", host)) if v)
        raise NotFoundError(f"no run of {what} in the store; 'flowagent view' shows the "
                            "services and hosts it holds on its Fleet page")
    return runs


def _run_of(store: Any, ns: Any) -> str:
    """``--run``, else the latest run of ``--service`` / ``--host``, else the latest run."""
    service, host = getattr(ns, "service", None), getattr(ns, "host", None)
    if ns.run and (service or host):
        raise UsageError("--run names one run and --service/--host choose runs by name: "
                         "give one or the other")
    if ns.run or not (service or host):
        return _run_id(store, ns.run)
    return _fleet_runs(store, service, host)[0]

