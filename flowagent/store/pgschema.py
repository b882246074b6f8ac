"""The PostgreSQL store's schema: the SQLite layout (:mod:`flowagent.store.sqlite`), shared.

Differences from SQLite, and why:

* Every table is keyed so that rows of different runs never collide: many sidecars (one run
  each, on any number of hosts) write into one database at the same time and only ever touch
  their own run's rows. Writes are upserts by those keys, so a row delivered twice (a spool
  forwarded again after a crash) is stored once.
* ``shapes`` is global and interned by content: a shape's id is a hash of its text
  (:func:`shape_id`), the same in every sidecar's spool and here, so no id is ever remapped.
* ``sessions``, ``chunks`` and ``session_chunks`` (the big tables) are partitioned by run:
  retention and the size limit drop a run's partitions whole instead of deleting rows.
* Long texts (paths, variants) are unique through an md5 index: a B-tree entry holds at most
  about 2.7 kB, and a call path can be longer.
* Columns are BIGINT (SQLite integers are 64-bit) and BYTEA for blobs.
"""

from __future__ import annotations

import hashlib
import re

SCHEMA_VERSION = 1

# Key columns of each table: the upsert conflict target here, and what identifies a row the
# spool forwards or deletes. Expressions (md5) match the unique indexes below.
KEYS: dict[str, tuple[str, ...]] = {
    "runs": ("run_id",),
    "processes": ("run_id", "pk"),
    "functions": ("run_id", "fid"),
    "shapes": ("sid",),
    "sessions": ("run_id", "sid"),
    "chunks": ("run_id", "chunk_id"),
    "session_chunks": ("run_id", "sid", "chunk_id"),
    "graph_nodes": ("run_id", "fid"),
    "graph_edges": ("run_id", "caller_fid", "callee_fid", "result"),
    "shape_counts": ("run_id", "fid", "io", "shape_sid"),
    "paths": ("run_id", "path"),
    "variants": ("run_id", "variant"),
    "error_clusters": ("run_id", "exc_sid", "fid", "path", "handled"),
    "process_samples": ("run_id", "pid", "ts_ns"),
    "session_links": ("run_id", "session_id"),
    "trace_sessions": ("run_id", "session_id"),
    "trace_spans": ("run_id", "span_id", "session_id"),
}
HASHED = {"paths": {"path"}, "variants": {"variant"}, "error_clusters": {"path"}}
PARTITIONED = ("sessions", "chunks", "session_chunks")


def conflict_target(table: str) -> str:
    hashed = HASHED.get(table, set())
    return ", ".join(f"md5({c})" if c in hashed else c for c in KEYS[table])


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs(
  run_id TEXT PRIMARY KEY, started_ns BIGINT, ended_ns BIGINT, argv TEXT, cwd TEXT,
  status TEXT, exit_code BIGINT, backend TEXT,
  sessions BIGINT DEFAULT 0, calls BIGINT DEFAULT 0, errors BIGINT DEFAULT 0,
  incomplete_sessions BIGINT DEFAULT 0, produced_events BIGINT DEFAULT 0,
  dropped_events BIGINT DEFAULT 0, dropped_batches BIGINT DEFAULT 0,
  corrupt_frames BIGINT DEFAULT 0, duplicate_frames BIGINT DEFAULT 0,
  agent_errors BIGINT DEFAULT 0, processes BIGINT DEFAULT 0,
  sampled_out BIGINT DEFAULT 0, hook_errors BIGINT DEFAULT 0, hook_error TEXT,
  pruned_sessions BIGINT DEFAULT 0);
CREATE TABLE IF NOT EXISTS processes(
  run_id TEXT, pk TEXT, pid BIGINT, ppid BIGINT, info TEXT, started_ns BIGINT,
  last_seq BIGINT DEFAULT 0, ring_tail BIGINT DEFAULT 0, produced_events BIGINT DEFAULT 0,
  dropped_events BIGINT DEFAULT 0, dropped_batches BIGINT DEFAULT 0,
  stored_events BIGINT DEFAULT 0, duplicate_frames BIGINT DEFAULT 0,
  corrupt_frames BIGINT DEFAULT 0, agent_errors BIGINT DEFAULT 0, closed BIGINT DEFAULT 0,
  PRIMARY KEY(run_id, pk));
CREATE TABLE IF NOT EXISTS functions(
  run_id TEXT, fid BIGINT, name TEXT, module TEXT, qualname TEXT, file TEXT, line BIGINT,
  kind TEXT, params TEXT, PRIMARY KEY(run_id, fid));
CREATE INDEX IF NOT EXISTS functions_name ON functions(run_id, name);
CREATE TABLE IF NOT EXISTS shapes(sid BIGINT PRIMARY KEY, text TEXT);
CREATE INDEX IF NOT EXISTS shapes_text ON shapes(md5(text));
CREATE TABLE IF NOT EXISTS sessions(
  sid BIGINT, session_id TEXT, run_id TEXT NOT NULL, name TEXT, root_fid BIGINT,
  pid BIGINT, pk TEXT, thread TEXT, result TEXT, complete BIGINT, started_ns BIGINT,
  ended_ns BIGINT, duration_ns BIGINT, calls BIGINT DEFAULT 0, errors BIGINT DEFAULT 0,
  variant TEXT, tree_kept BIGINT DEFAULT 1, fids TEXT, raised TEXT,
  PRIMARY KEY(run_id, sid)) PARTITION BY LIST (run_id);
CREATE INDEX IF NOT EXISTS sessions_id ON sessions(session_id);
CREATE INDEX IF NOT EXISTS sessions_run ON sessions(run_id, started_ns);
CREATE INDEX IF NOT EXISTS sessions_kept ON sessions(run_id, tree_kept, sid);
CREATE TABLE IF NOT EXISTS chunks(
  chunk_id BIGINT, run_id TEXT NOT NULL, pk TEXT, ids BIGINT, calls BIGINT,
  placeholders BIGINT DEFAULT 0, data BYTEA,
  PRIMARY KEY(run_id, chunk_id)) PARTITION BY LIST (run_id);
CREATE TABLE IF NOT EXISTS session_chunks(
  run_id TEXT NOT NULL, sid BIGINT, chunk_id BIGINT, calls BIGINT,
  PRIMARY KEY(run_id, sid, chunk_id)) PARTITION BY LIST (run_id);
CREATE INDEX IF NOT EXISTS session_chunks_chunk ON session_chunks(run_id, chunk_id);
CREATE TABLE IF NOT EXISTS graph_nodes(
  run_id TEXT, fid BIGINT, calls BIGINT, errors BIGINT, partials BIGINT, total_ns BIGINT,
  self_ns BIGINT, min_ns BIGINT, max_ns BIGINT, roots BIGINT, cpu_ns BIGINT, hist TEXT,
  PRIMARY KEY(run_id, fid));
CREATE TABLE IF NOT EXISTS variants(
  run_id TEXT, variant TEXT, root_fid BIGINT, count BIGINT, errors BIGINT, hist TEXT,
  first_ns BIGINT, examples TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS variants_key ON variants(run_id, md5(variant));
CREATE TABLE IF NOT EXISTS error_clusters(
  run_id TEXT, exc_sid BIGINT, fid BIGINT, path TEXT, handled BIGINT, count BIGINT,
  first_ns BIGINT, last_ns BIGINT, examples TEXT);
CREATE UNIQUE INDEX IF NOT EXISTS error_clusters_key
  ON error_clusters(run_id, exc_sid, fid, md5(path), handled);
CREATE TABLE IF NOT EXISTS process_samples(
  run_id TEXT, pid BIGINT, ts_ns BIGINT, cpu_s DOUBLE PRECISION, rss_bytes BIGINT,
  PRIMARY KEY(run_id, pid, ts_ns));
CREATE TABLE IF NOT EXISTS graph_edges(
  run_id TEXT, caller_fid BIGINT, callee_fid BIGINT, result BIGINT, count BIGINT,
  total_ns BIGINT, PRIMARY KEY(run_id, caller_fid, callee_fid, result));
CREATE TABLE IF NOT EXISTS shape_counts(
  run_id TEXT, fid BIGINT, io TEXT, shape_sid BIGINT, count BIGINT, first_session TEXT,
  PRIMARY KEY(run_id, fid, io, shape_sid));
CREATE TABLE IF NOT EXISTS paths(run_id TEXT, path TEXT, count BIGINT);
CREATE UNIQUE INDEX IF NOT EXISTS paths_key ON paths(run_id, md5(path));
CREATE TABLE IF NOT EXISTS session_links(
  session_id TEXT, run_id TEXT, parent_session TEXT, parent_call BIGINT,
  parent_function TEXT, parent_pid BIGINT, PRIMARY KEY(run_id, session_id));
CREATE INDEX IF NOT EXISTS session_links_id ON session_links(session_id);
CREATE INDEX IF NOT EXISTS session_links_parent ON session_links(parent_session);
CREATE TABLE IF NOT EXISTS trace_sessions(
  session_id TEXT, run_id TEXT, trace_id TEXT, parent_span TEXT, call_id BIGINT,
  PRIMARY KEY(run_id, session_id));
CREATE INDEX IF NOT EXISTS trace_sessions_id ON trace_sessions(session_id);
CREATE INDEX IF NOT EXISTS trace_sessions_trace ON trace_sessions(trace_id);
CREATE TABLE IF NOT EXISTS trace_spans(
  span_id TEXT, run_id TEXT, session_id TEXT, call_id BIGINT, trace_id TEXT,
  PRIMARY KEY(run_id, span_id, session_id));
CREATE INDEX IF NOT EXISTS trace_spans_span ON trace_spans(span_id);
CREATE INDEX IF NOT EXISTS trace_spans_trace ON trace_spans(trace_id);
"""

# SQLite declared types → PostgreSQL, for columns the SQLite schema gained later (added here
# too when a spool brings them, so both layouts stay the same).
PG_TYPES = {"INTEGER": "BIGINT", "TEXT": "TEXT", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA",
            "": "TEXT"}


def pg_type(sqlite_decl: str) -> str:
    """``INTEGER DEFAULT 0`` → ``BIGINT DEFAULT 0`` (the type mapped, the rest kept)."""
    words = sqlite_decl.split()
    base = words[0].upper() if words else ""
    return " ".join([PG_TYPES.get(base, "TEXT"), *words[1:]])


def shape_id(text: str) -> int:
    """A shape's id: 62 bits of a hash of its text, never 0 (0 means "no shape")."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 2) or 1


def partition_name(table: str, run_id: str) -> str:
    """A partition's table name: readable and safe (the run id is not trusted as SQL)."""
    safe = re.sub(r"[^a-z0-9]", "", run_id.lower())[:24]
    digest = hashlib.md5(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{table}_r_{safe}_{digest}"
