"""Engines for the two backends, and clear errors when the database is unreachable or behind its migrations."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from shared.settings import get_settings


class DatabaseError(RuntimeError):
    """A database problem the CLI reports in one line (exit code 3)."""


class DatabaseUnavailable(DatabaseError):
    pass


class SchemaOutOfDate(DatabaseError):
    pass


def _sqlite_pragmas(busy_timeout_ms: int):
    def on_connect(dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        # WAL lets readers work while a writer commits; busy_timeout makes concurrent in-process work wait.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.close()
    return on_connect


def create_engine(url: str | None = None, *, busy_timeout_ms: int = 30000) -> Engine:
    """A new engine for ``url`` (default: the settings' database URL). ``busy_timeout_ms`` is how long a
    SQLite connection waits for another writer (ignored on PostgreSQL)."""
    url = url or get_settings().database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})
        sa.event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms))
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (cached; call ``get_engine.cache_clear()`` in tests)."""
    return create_engine(url or get_settings().database_url)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def describe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def check_connection(engine: Engine) -> None:
    """Raise DatabaseUnavailable with a readable message if the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(f"cannot reach the database at {describe(engine)}: {reason}") from None


def check_schema(engine: Engine) -> None:
    """Raise SchemaOutOfDate unless the database is at the newest migration."""
    from db.migrate import current_revision, head_revision
    check_connection(engine)
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"the database at {describe(engine)} is at migration {current or 'none'}, the code needs {head}: "
            f"run `xpvae db upgrade`")
