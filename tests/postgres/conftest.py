"""PostgreSQL tests: a real server per test process (see tests/pgserver.py)."""

from pgserver import pg_server, pg_url  # noqa: F401  (fixtures)
