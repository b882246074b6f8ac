"""The store interface: every question the sidecar, CLI, viewer, stats, diff, analysis and
exports ask of recorded data, and every write the sidecar makes, as typed methods.

Nothing outside :mod:`flowagent.store` writes SQL, knows a table or a column, or decodes a
stored encoding (duration histograms, example lists, the per-session function index): it
calls a :class:`Store` method and gets plain records (named tuples, read by field name) or
the export contract's dicts. Records are named tuples rather than dataclasses because every
command and the sidecar import this module before doing anything: classes made by
``NamedTuple`` cost a fraction of a dataclass's to create. Two implementations, chosen by
:func:`open_store` from a URL:

* a path, or ``sqlite:///path``: :class:`flowagent.store.sqlite.SQLiteStore`, the embedded
  default (one file in the data directory, one writer: the run's sidecar);
* ``postgresql://...``: :mod:`flowagent.store.postgres`, the shared store of a fleet (any
  number of sidecars on any number of hosts write into one database).

Row mappings. ``runs()``/``run()``, ``sessions()``/``session()``, ``functions()`` and
``processes()`` return plain dicts keyed by the field names listed in :data:`RUN_FIELDS`,
:data:`SESSION_FIELDS`, :data:`FUNCTION_FIELDS` and :data:`PROCESS_FIELDS`: the CLI prints them
as JSON and the viewer's templates read them, so their keys are a contract of their own.

Idempotency. A process is identified by its key ``pk`` (``<pid>-<process start id>`` as the
agent names its ring) within a run; each ring frame carries a sequence number, and the store
keeps the last one stored per process (:meth:`Store.process_state`) in the same transaction as
the frame's data, so a frame delivered twice is stored once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager

from ..protocol.wire import RESULT_NAMES as RESULTS  # call result names, in code order
from ..record import NamedTuple

# Every sidecar and command imports this module first: at run time it needs no `typing`, and
# its records are built by record.NamedTuple (typing's builds each field's annotation, a
# string here, into a compiled ForwardRef: most of this module's import).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol, TypedDict, runtime_checkable
else:
    TypedDict = dict  # the row mappings are plain dicts; their classes document the keys

    class _InterfaceMeta(type):
        """``isinstance(x, Store)`` as ``typing.runtime_checkable`` answers it: ``x`` has
        every member the interface declares."""

        def __instancecheck__(cls, obj: object) -> bool:
            return all(hasattr(obj, name) for name in cls.__dict__["_members"])

    class Protocol(metaclass=_InterfaceMeta):
        _members = ()

        def __init_subclass__(cls) -> None:
            cls._members = tuple(
                name for name in (*vars(cls).get("__annotations__", {}), *vars(cls))
                if not name.startswith("_"))

    def runtime_checkable(cls: type) -> type:
        return cls

# sessions.tree_kept: why a session's full call tree is (still) stored
PRUNED, RECENT, FAILED, EXEMPLAR = 0, 1, 2, 3

RUN_FIELDS = (
    "run_id", "started_ns", "ended_ns", "argv", "cwd", "status", "exit_code", "backend",
    "sessions", "calls", "errors", "incomplete_sessions", "produced_events", "dropped_events",
    "dropped_batches", "corrupt_frames", "duplicate_frames", "agent_errors", "processes",
    "sampled_out", "hook_errors", "hook_error", "pruned_sessions", "otlp_sessions",
    "otlp_spans", "otlp_undelivered", "service", "host", "profile_displacements",
    "profile_displaced_ns")
SESSION_FIELDS = (
    "session_id", "run_id", "name", "root_fid", "pid", "pk", "thread", "result", "complete",
    "started_ns", "ended_ns", "duration_ns", "calls", "errors", "variant", "tree_kept")
FUNCTION_FIELDS = ("run_id", "fid", "name", "module", "qualname", "file", "line", "kind",
                   "params")
PROCESS_FIELDS = (
    "run_id", "pk", "pid", "ppid", "info", "started_ns", "last_seq", "ring_tail",
    "produced_events", "dropped_events", "dropped_batches", "stored_events",
    "duplicate_frames", "corrupt_frames", "agent_errors", "closed")


class RunDict(TypedDict):
    """A ``runs()``/``run()`` row (:data:`RUN_FIELDS`); None where the run has not set it."""

    run_id: str
    started_ns: int
    ended_ns: int | None          # None while the run is recording
    argv: str | None              # JSON list; None until the run ends
    cwd: str | None
    status: str
    exit_code: int | None
    backend: str | None
    sessions: int
    calls: int
    errors: int
    incomplete_sessions: int
    produced_events: int
    dropped_events: int
    dropped_batches: int
    corrupt_frames: int
    duplicate_frames: int
    agent_errors: int
    processes: int
    sampled_out: int
    hook_errors: int
    hook_error: str | None
    pruned_sessions: int
    otlp_sessions: int
    otlp_spans: int
    otlp_undelivered: int
    service: str | None
    host: str | None
    profile_displacements: int
    profile_displaced_ns: int


class SessionDict(TypedDict):
    """A ``sessions()``/``session()`` row (:data:`SESSION_FIELDS`); ``calls`` and ``errors``
    include those of the sessions linked under it."""

    session_id: str
    run_id: str
    name: str | None              # None while the session is open
    root_fid: int
    pid: int
    pk: str
    thread: str
    result: str | None            # None while the session is open
    complete: bool
    started_ns: int
    ended_ns: int | None
    duration_ns: int | None
    calls: int
    errors: int
    variant: str | None
    tree_kept: int                # PRUNED, RECENT, FAILED or EXEMPLAR


class FunctionDict(TypedDict):
    """A ``functions()`` value (:data:`FUNCTION_FIELDS`), ``params`` decoded."""

    run_id: str
    fid: int
    name: str
    module: str
    qualname: str
    file: str
    line: int
    kind: str
    params: list[str]


class ProcessDict(TypedDict):
    """A ``processes()`` row (:data:`PROCESS_FIELDS`)."""

    run_id: str
    pk: str
    pid: int
    ppid: int | None
    info: str                     # JSON: the process's description and wire-id maps
    started_ns: int
    last_seq: int
    ring_tail: int
    produced_events: int
    dropped_events: int
    dropped_batches: int
    stored_events: int
    duplicate_frames: int
    corrupt_frames: int
    agent_errors: int
    closed: int


# -- records the sidecar writes ------------------------------------------------------------------

class FunctionDef(NamedTuple):
    """A recorded function, numbered per run (``fid``) by the run's sidecar."""

    fid: int
    name: str            # "module:qualname"
    module: str
    qualname: str
    file: str
    line: int
    kind: str
    params: tuple[str, ...]


class ProcessState(NamedTuple):
    """Where ingestion of one process stands (resume after a sidecar restart)."""

    last_seq: int        # the last frame sequence number stored (idempotency)
    ring_tail: int       # the ring position after that frame
    stored_events: int
    duplicate_frames: int
    info: Mapping[str, Any]  # the process's own description plus its wire-id maps


class ProcessProgress(NamedTuple):
    """What the sidecar writes for a process with each committed batch of frames."""

    last_seq: int
    ring_tail: int
    produced_events: int
    dropped_events: int
    dropped_batches: int
    stored_events: int
    duplicate_frames: int
    corrupt_frames: int
    agent_errors: int
    closed: int
    info: Mapping[str, Any]


class ProcessCounters(NamedTuple):
    """A stored process's loss and volume counters (a resumed run adds up retired rings)."""

    pk: str
    produced_events: int
    dropped_events: int
    dropped_batches: int
    corrupt_frames: int
    duplicate_frames: int
    agent_errors: int
    stored_events: int


class OpenSession(NamedTuple):
    """A stored session whose root call had not finished (rebuilt on resume)."""

    rowid: int
    session_id: str
    root_fid: int
    started_ns: int
    name: str | None
    thread: str | None


class SessionEnd(NamedTuple):
    """What a finished (or abandoned) session's row gets."""

    name: str
    root_fid: int
    thread: str
    result: str
    complete: bool
    started_ns: int
    ended_ns: int
    calls: int
    errors: int
    variant: str | None
    tree_kept: int
    fids: tuple[int, ...]                      # every function the session called
    raised: tuple[tuple[int, int, int], ...]   # (fid, exception shape id, calls)


class SessionRow(NamedTuple):
    """A finished session stored whole in one write (:meth:`Store.insert_sessions`): one that
    started and ended within one frame, so it never had an open row."""

    rowid: int           # from :meth:`Store.next_session_rowid`, one more per row
    session_id: str
    run_id: str
    pid: int
    pk: str
    end: SessionEnd


class ProcessSample(NamedTuple):
    run_id: str
    pid: int
    ts_ns: int
    cpu_s: float
    rss_bytes: int


class RunTotals(NamedTuple):
    """A run's totals as its sidecar writes them at the end."""

    sessions: int
    calls: int
    errors: int
    incomplete_sessions: int
    produced_events: int
    dropped_events: int
    dropped_batches: int
    corrupt_frames: int
    duplicate_frames: int
    agent_errors: int
    processes: int
    sampled_out: int
    hook_errors: int
    hook_error: str | None
    pruned_sessions: int     # added to what earlier sidecars of the run pruned


class RunEnd(NamedTuple):
    """What only the launcher knows about a run, written when the program has ended (by the
    launcher, or by the sidecar with its last write when the launcher sent it this)."""

    argv: tuple[str, ...]
    cwd: str
    backend: str
    ended_ns: int
    exit_code: int
    status: str


# -- aggregates (merged-graph totals; written by the sidecar, read by everyone) ------------------

class NodeStats(NamedTuple):
    fid: int
    calls: int
    errors: int
    partials: int
    total_ns: int
    self_ns: int
    min_ns: int
    max_ns: int
    roots: int
    cpu_ns: int
    hist: Mapping[int, int]   # duration distribution (flowagent.model.histogram)


class EdgeStats(NamedTuple):
    caller_fid: int
    callee_fid: int
    result: int
    count: int  # type: ignore[assignment]  # the column's name; shadows tuple.count
    total_ns: int


class ShapeCount(NamedTuple):
    fid: int
    io: str                    # "in" | "out"
    shape_sid: int
    count: int  # type: ignore[assignment]  # the column's name; shadows tuple.count
    first_session: str | None
    shape: str | None = None   # the shape's text (filled in on read)


class PathCount(NamedTuple):
    path: str                  # the path's stored key (a JSON list of function names)
    count: int  # type: ignore[assignment]  # the column's name; shadows tuple.count


class VariantStats(NamedTuple):
    variant: str
    root_fid: int
    count: int  # type: ignore[assignment]  # the column's name; shadows tuple.count
    errors: int
    hist: Mapping[int, int]
    first_ns: int
    examples: tuple[str, ...]


class ClusterStats(NamedTuple):
    exc_sid: int
    fid: int
    path: str                  # JSON list of function names
    handled: int
    count: int  # type: ignore[assignment]  # the column's name; shadows tuple.count
    first_ns: int
    last_ns: int
    examples: tuple[str, ...]


class AggregateRows(NamedTuple):
    """A run's aggregates, or the changed part of them (what one commit writes)."""

    nodes: tuple[NodeStats, ...] = ()
    edges: tuple[EdgeStats, ...] = ()
    shapes: tuple[ShapeCount, ...] = ()
    paths: tuple[PathCount, ...] = ()
    variants: tuple[VariantStats, ...] = ()
    clusters: tuple[ClusterStats, ...] = ()


# -- records readers get ---------------------------------------------------------------------------

class SessionFilter(NamedTuple):
    """The session list's filters (one definition, so a count always matches the list)."""

    run_id: str | None = None
    result: str | None = None
    root: str | None = None            # substring of the session's name
    min_duration_ns: int | None = None
    search: str | None = None          # substring of any function the session called
    service: str | None = None
    host: str | None = None


class SessionTotals(NamedTuple):
    """Totals of a run computed from its sessions (a run still being recorded)."""

    sessions: int
    calls: int
    errors: int
    open_sessions: int           # started, not finished yet
    incomplete_sessions: int     # ended without their root call finishing


class StoredCalls(NamedTuple):
    calls: int          # recorded calls held in kept trees
    placeholders: int   # calls a dead process left open, stored as incomplete


class RootCount(NamedTuple):
    name: str
    sessions: int


class ExceptionCount(NamedTuple):
    function_name: str
    exception_type: str
    count: int  # type: ignore[assignment]  # the column's name; shadows tuple.count


class VariantResult(NamedTuple):
    variant: str
    result: str
    sessions: int


class AggregateVersion(NamedTuple):
    """Moves whenever a live run's aggregates may have changed (viewer caches)."""

    nodes: int
    calls: int
    errors: int
    samples: int


class FleetEntry(NamedTuple):
    """One (service, host) pair of a store's runs."""

    service: str | None
    host: str | None
    runs: int
    live_runs: int
    last_started_ns: int


class SpoolBacklog(NamedTuple):
    """What one host's spool still held for a shared store when it last reached it."""

    host: str | None
    spool: str
    waiting: int
    updated_ns: int


@runtime_checkable
class Store(Protocol):
    """Recorded data: one implementation per database engine (see the module doc)."""

    url: str
    readonly: bool
    #: ``shared``: several sidecars write into it at once (PostgreSQL), not a file of one host
    capabilities: Mapping[str, bool]

    def close(self) -> None: ...

    def transaction(self) -> AbstractContextManager[Any]:
        """One atomic write: everything written inside commits together or not at all."""
        ...

    def savepoint(self) -> AbstractContextManager[Any]:
        """Inside a transaction: what is written inside is undone when it raises (and the
        exception goes on), the rest of the transaction stays."""
        ...

    # -- runs ----------------------------------------------------------------------------------
    def create_run(self, run_id: str, started_ns: int, service: str | None,
                   host: str | None) -> bool: ...
    def finish_run(self, run_id: str, end: RunEnd) -> None: ...
    def set_run_status(self, run_id: str, status: str) -> None: ...
    def write_run_totals(self, run_id: str, totals: RunTotals) -> None: ...
    def resolve_pending(self, run_id: str, still_running: bool) -> None:
        """After a resume: ``pending`` while processes still run, else ``finished``."""
        ...
    def write_otlp_totals(self, run_id: str, sessions: int, spans: int,
                          undelivered: int) -> None: ...
    def write_profile_displaced(self, run_id: str, displacements: int, ns: int) -> None:
        """Profile backend: times recording was displaced by the program's own profile
        function, and the time displaced in all."""
        ...
    def write_hook_errors(self, run_id: str, errors: int, first_error: str | None) -> None: ...
    def runs(self, *, service: str | None = None, host: str | None = None,
             limit: int | None = None) -> list[RunDict]: ...
    def run(self, run_id: str) -> RunDict | None: ...
    def latest_run(self) -> str | None: ...
    def fleet(self) -> list[FleetEntry]: ...
    def spool_backlog(self) -> list[SpoolBacklog]:
        """Changes each host's spool holds for a shared store (none for SQLite)."""
        ...

    # -- processes -----------------------------------------------------------------------------
    def add_process(self, run_id: str, pk: str, pid: int, ppid: int,
                    info: Mapping[str, Any], started_ns: int) -> None: ...
    def process_state(self, run_id: str, pk: str) -> ProcessState | None: ...
    def save_process(self, run_id: str, pk: str, progress: ProcessProgress) -> None: ...
    def process_counters(self, run_id: str) -> list[ProcessCounters]: ...
    def processes(self, run_id: str) -> list[ProcessDict]: ...
    def add_samples(self, samples: Sequence[ProcessSample]) -> None: ...
    def samples(self, run_id: str, pid: int) -> list[ProcessSample]: ...

    # -- functions and shapes ------------------------------------------------------------------
    def add_function(self, run_id: str, fn: FunctionDef) -> None: ...
    def functions(self, run_id: str) -> dict[int, FunctionDict]: ...
    def shape_id(self, text: str) -> int: ...
    def shape_text(self, sid: int | None) -> str | None: ...

    # -- sessions and their calls (write) ------------------------------------------------------
    def open_session(self, session_id: str, run_id: str, root_fid: int, pid: int, pk: str,
                     thread: str, started_ns: int, rowid: int | None = None) -> int:
        """The session's row (made once; a replay gets the same one): its row id (``rowid``
        when given and the row is new, else the next free one)."""
        ...
    def finish_session(self, rowid: int, end: SessionEnd) -> None: ...
    def next_session_rowid(self) -> int:
        """The first free session row id. Ids counted on from it are the writer's own only
        inside the write transaction it was read in."""
        ...
    def insert_sessions(self, rows: Sequence[SessionRow]) -> None:
        """Finished sessions, whole rows at once (ids from :meth:`next_session_rowid`)."""
        ...
    def insert_session_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """As :meth:`insert_sessions`, each row a tuple of the ``sessions`` table's columns
        (sid, session_id, run_id, name, root_fid, pid, pk, thread, result, complete,
        started_ns, ended_ns, duration_ns, calls, errors, variant, tree_kept, fids, raised)
        with ``fids`` and ``raised`` already in their stored text form."""
        ...
    def insert_session_columns(self, cols: Sequence[Sequence[Any]],
                               singles: Sequence[int | None] | None = None) -> None:
        """As :meth:`insert_session_rows`, the rows given column by column (a store may
        keep one-call sessions in a form of its own). ``singles``: each row's session
        number where the writer made it a one-call session (id ``<pk>-<number>``, complete,
        one call), else None; where it numbers every row, the ids column may be None."""
        ...
    def open_sessions(self, run_id: str, pk: str) -> list[OpenSession]: ...
    def session_chunk_data(self, rowid: int) -> Iterator[bytes]:
        """The chunks holding a session's calls, oldest first (raw, see ``chunks``)."""
        ...
    def add_chunk(self, run_id: str, pk: str, ids: int, calls: int, data: bytes,
                  placeholders: int = 0) -> int: ...
    def link_chunks(self, links: Iterable[tuple[int, int, int]]) -> None: ...
    def add_calls(self, session_id: str, rows: list[tuple[Any, ...]]) -> None: ...
    def add_session_link(self, run_id: str, session_id: str, parent_session: str,
                         parent_call: int, parent_function: str, parent_pid: int) -> None:
        """The session hangs under call ``parent_call`` of ``parent_session`` (a child
        process's work; kept once, a replay changes nothing)."""
        ...
    def count_kept(self, run_id: str, tree_kept: int) -> int: ...
    def kept_beyond(self, run_id: str, tree_kept: int, keep: int) -> list[int]:
        """Row ids of a run's sessions kept for ``tree_kept`` past the newest ``keep``."""
        ...
    def prune_trees(self, rowids: Sequence[int]) -> None:
        """Forget the calls of these sessions (their rows and aggregates stay)."""
        ...
    def prune_recent(self, run_id: str, tree_kept: int, keep: int) -> int:
        """:meth:`prune_trees` of :meth:`kept_beyond` (``run_id``, ``tree_kept``, ``keep``)
        at once; returns how many sessions were pruned."""
        ...
    def release_chunks(self, chunk_ids: Iterable[int]) -> None:
        """Chunks some of whose sessions were pruned: deleted when unlinked, else compacted."""
        ...

    # -- aggregates ----------------------------------------------------------------------------
    def load_aggregates(self, run_id: str) -> AggregateRows: ...
    def write_aggregates(self, run_id: str, rows: AggregateRows) -> None:
        """Upsert: each row replaces the stored row of the same key."""
        ...
    def node_stats(self, run_id: str) -> list[NodeStats]: ...
    def edge_stats(self, run_id: str) -> list[EdgeStats]: ...
    def variant_stats(self, run_id: str) -> list[VariantStats]:
        """Most frequent first (then first seen)."""
        ...
    def cluster_stats(self, run_id: str) -> list[ClusterStats]: ...
    def path_counts(self, run_id: str, limit: int | None = None) -> list[PathCount]: ...
    def shape_counts(self, run_id: str, io: str | None = None) -> list[ShapeCount]: ...
    def aggregates(self, run_id: str) -> dict[str, Any]:
        """Raw merged-graph input of one run (``flowagent.model.graph.from_aggregates``)."""
        ...
    def aggregate_version(self, run_id: str) -> AggregateVersion: ...

    # -- sessions (read) -----------------------------------------------------------------------
    def sessions(self, run_id: str | None = None, *, result: str | None = None,
                 root: str | None = None, min_duration_ns: int | None = None,
                 search: str | None = None, order: str = "started", limit: int = 100,
                 offset: int = 0, service: str | None = None,
                 host: str | None = None) -> list[SessionDict]:
        """Sessions matching the filters (see :class:`SessionFilter`); ``order``: started,
        -started, duration (longest first) or calls (most first)."""
        ...
    def count_sessions(self, run_id: str | None = None) -> int: ...
    def count_matching(self, f: SessionFilter, cap: int = 10_000) -> tuple[int, bool]:
        """Sessions matching ``f`` counted up to ``cap``: ``(count, capped)``."""
        ...
    def session(self, session_id: str) -> SessionDict | None: ...
    def session_starts(self, session_ids: Iterable[str]) -> dict[str, int]: ...
    def session_totals(self, run_id: str) -> SessionTotals:
        """Sessions linked under another's call count as part of it, not as sessions (their
        calls and errors do count)."""
        ...
    def parent_session(self, session_id: str) -> str | None:
        """The stored session ``session_id`` hangs under (a child process's work), if any."""
        ...
    def session_results(self, run_id: str) -> dict[str, int]:
        """Sessions per result (``open`` for those not finished)."""
        ...
    def variant_results(self, run_id: str) -> list[VariantResult]: ...
    def session_roots(self, run_id: str, limit: int = 200) -> list[RootCount]: ...
    def exception_types(self, run_id: str, limit: int = 200) -> list[ExceptionCount]: ...
    def function_sessions(self, run_id: str, function_name: str,
                          limit: int = 20) -> list[dict[str, Any]]: ...
    def root_sessions(self, run_id: str, root_name: str, limit: int) -> list[str]:
        """Kept sessions rooted at ``root_name``, newest first."""
        ...
    def session_graph(self, session_id: str) -> dict[str, Any] | None: ...
    def session_calls(self, session_id: str) -> list[dict[str, Any]]: ...
    def iter_session_graphs(self, run_id: str) -> Iterator[dict[str, Any]]: ...
    def stored_calls(self, run_id: str | None = None) -> dict[str, int]:
        """``{"calls": recorded calls held in kept trees, "placeholders": calls a dead
        process left open, stored as incomplete}``."""
        ...

    # -- fleet control (flowagent.store.control) ----------------------------------------------
    def service_control(self, service: str) -> Any:
        """The service's live settings (a :class:`~flowagent.store.control.ServiceControl`),
        or None when it was never controlled."""
        ...
    def service_controls(self) -> list[Any]: ...
    def set_service_control(self, service: str, *, paused: bool | None = None,
                            sample_rate: float | None = None,
                            include: Sequence[str] | None = None,
                            exclude: Sequence[str] | None = None) -> Any:
        """Change the given settings of every recording of ``service`` (others stay)."""
        ...

    # -- size limits and retention (flowagent.store.limit) -------------------------------------
    def stored_bytes(self) -> int: ...
    def prunable_runs(self, keep: str) -> list[str]: ...
    def delete_run(self, run_id: str) -> None: ...


# -- choosing and opening a store ------------------------------------------------------------------

from .location import DB_NAME, db_path, store_url  # noqa: E402 - light, for the launcher


def kind_of(url: str) -> str:
    """``"sqlite"`` or ``"postgresql"`` for a store URL (a plain path is SQLite)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in ("", "sqlite", "file"):
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    from ..errors import StoreError

    raise StoreError(f"unknown store {url!r}: give a path, sqlite:///PATH or "
                     "postgresql://USER@HOST/DB")


def sqlite_path(url: str) -> str:
    """The file of a SQLite store URL: ``sqlite:///rel/path``, ``sqlite:////abs/path`` (as
    SQLAlchemy spells them), ``file:///abs/path``, or a plain path."""
    for prefix in ("sqlite:///", "file://", "sqlite:"):
        if url.startswith(prefix):
            return url[len(prefix):]
    return url


def open_store(url: str, readonly: bool = False, data_dir: str | None = None) -> Store:
    """The store a URL names (see :func:`kind_of`): writable, or read-only for readers.
    ``data_dir``: the run's data directory, where a writer of a shared store spools what the
    server has not taken yet (see :mod:`flowagent.store.spool`)."""
    if kind_of(url) == "postgresql":
        from . import postgres

        return postgres.open_store(url, readonly=readonly,
                                   spool_dir=data_dir)
    from .sqlite import SQLiteStore

    return SQLiteStore(sqlite_path(url), readonly=readonly)


def damage_error(exc: BaseException) -> Exception | None:
    """The one-line error for a store that turned out damaged while reading it (a corrupt
    page met by a query), if ``exc`` says so; None for anything else."""
    import sys

    if "sqlite3" in sys.modules:
        from .sqlite import damage_error as sqlite_damage

        found = sqlite_damage(exc)
        if found is not None:
            return found
    return None


__all__ = [
    "RESULTS", "PRUNED", "RECENT", "FAILED", "EXEMPLAR", "RUN_FIELDS", "SESSION_FIELDS",
    "FUNCTION_FIELDS", "PROCESS_FIELDS", "RunDict", "SessionDict", "FunctionDict", "ProcessDict",
    "SpoolBacklog", "FunctionDef", "ProcessState",
    "ProcessProgress",
    "ProcessCounters", "OpenSession", "SessionEnd", "SessionRow", "ProcessSample", "RunTotals",
    "RunEnd",
    "NodeStats", "EdgeStats", "ShapeCount", "PathCount", "VariantStats", "ClusterStats",
    "AggregateRows", "SessionFilter", "SessionTotals", "StoredCalls", "RootCount",
    "ExceptionCount", "VariantResult", "AggregateVersion", "FleetEntry", "Store",
    "DB_NAME", "db_path", "store_url", "kind_of", "sqlite_path", "open_store", "damage_error",
]


# SQLite's result code for a write that found no room (``database or disk is full``).
_SQLITE_FULL = 13


def out_of_space(exc: BaseException) -> bool:
    """Whether a write failed only because the store's disk (or quota) is full: the store is
    intact (the failed transaction rolls back) and writing can go on once there is room."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF == _SQLITE_FULL:
        return True
    return "database or disk is full" in str(exc)
