"""Fleet control: the live settings of every recording of one service, kept in the store.

``flowagent control --service NAME`` writes one row per service here (the shared PostgreSQL
of a fleet, or the SQLite store of one machine); every running sidecar of that service polls
its row (one indexed read a second) and, when the row's generation moves, writes the run's
local control file that its recorded processes already follow. So a change reaches every
host without anyone knowing where the recordings run, and without restarting them.

The statements are written once, in the dialect both stores speak (``?`` placeholders are
translated for PostgreSQL by :class:`~flowagent.store.pgconn.PgDB`; ``ON CONFLICT ... DO
UPDATE`` is the same in both). The table is created by its first writer: readers of a store
no one ever controlled find no table and read "no settings".
"""

from __future__ import annotations

import time

from ..protocol import jsonline
from ..protocol.control import apply_change
from ..record import NamedTuple

TYPE_CHECKING = False  # typing is not imported at run time (the sidecar's start)
if TYPE_CHECKING:
    from typing import Any, Sequence

TABLE = "service_control"

SCHEMA = (f"CREATE TABLE IF NOT EXISTS {TABLE}(service TEXT PRIMARY KEY, state TEXT NOT NULL, "
          "generation BIGINT NOT NULL, updated_ns BIGINT NOT NULL)")


class ServiceControl(NamedTuple):
    """A service's live settings; None / empty: not set (the run's own configuration holds).
    ``include`` / ``exclude``: module globs recorded / skipped in addition to the run's own,
    for modules imported from then on. ``generation`` grows with every change."""
    service: str
    paused: bool | None
    sample_rate: float | None
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    generation: int
    updated_ns: int

    def state(self) -> dict[str, Any]:
        """The settings as the run's control file holds them (only those that are set)."""
        out: dict[str, Any] = {}
        if self.paused is not None:
            out["paused"] = self.paused
        if self.sample_rate is not None:
            out["sample_rate"] = self.sample_rate
        out["include"] = list(self.include)
        out["exclude"] = list(self.exclude)
        return out


def _decode(service: str, text: str, generation: int, updated_ns: int) -> ServiceControl:
    try:
        state = jsonline.loads(text)  # a sidecar's poll: no `re` for json's patterns
    except ValueError:
        state = {}
    if not isinstance(state, dict):
        state = {}
    paused = state.get("paused")
    rate = state.get("sample_rate")
    return ServiceControl(service, None if paused is None else bool(paused),
                          None if rate is None else float(rate),
                          tuple(str(g) for g in state.get("include") or ()),
                          tuple(str(g) for g in state.get("exclude") or ()),
                          int(generation), int(updated_ns))


def read(db: Any, service: str) -> ServiceControl | None:
    """The service's row, or None (never controlled, or a store without the table)."""
    try:
        row = db.execute(f"SELECT state, generation, updated_ns FROM {TABLE} "  # noqa: S608
                         "WHERE service=?", (service,)).fetchone()
    except Exception as exc:  # no table yet: no one controlled any service in this store
        if "no such table" in str(exc) or "does not exist" in str(exc):
            return None
        raise
    return None if row is None else _decode(service, row[0], row[1], row[2])


def read_all(db: Any) -> list[ServiceControl]:
    try:
        rows = db.execute(f"SELECT service, state, generation, updated_ns FROM {TABLE} "  # noqa: S608
                          "ORDER BY service").fetchall()
    except Exception as exc:
        if "no such table" in str(exc) or "does not exist" in str(exc):
            return []
        raise
    return [_decode(r[0], r[1], r[2], r[3]) for r in rows]


def merged(current: ServiceControl | None, service: str, paused: bool | None,
           sample_rate: float | None, include: Sequence[str] | None,
           exclude: Sequence[str] | None) -> dict[str, Any]:
    """The state after a change: given settings replace the current ones, others stay."""
    state = current.state() if current is not None else {"include": [], "exclude": []}
    return apply_change(state, paused, sample_rate, include, exclude)


def write(db: Any, service: str, state: dict[str, Any]) -> None:
    """Upsert the service's row with the next generation (inside the caller's transaction)."""
    db.execute(f"INSERT INTO {TABLE}(service, state, generation, updated_ns) "  # noqa: S608
               "VALUES(?,?,1,?) ON CONFLICT(service) DO UPDATE SET state=excluded.state, "
               f"generation={TABLE}.generation+1, updated_ns=excluded.updated_ns",
               (service, _sorted_json(state), time.time_ns()))


__all__ = ["SCHEMA", "ServiceControl", "TABLE", "merged", "read", "read_all", "write"]


def _sorted_json(state: dict[str, Any]) -> str:
    import json  # the writer's (``flowagent control``), not a sidecar's

    return json.dumps(state, sort_keys=True)
