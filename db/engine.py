"""Engines for the two backends, and clear errors when the database is unreachable or behind its migrations."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url


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


def _parse_url(url: str) -> sa.engine.URL:
    try:
        return make_url(url)
    except sa.exc.ArgumentError:
        shown = f" {url!r}" if "@" not in url else ""     # never echo what may hold a password
        raise DatabaseUnavailable(f"XPVAE_DATABASE_URL{shown} is not a database URL (e.g. "
                                  "postgresql+psycopg2://user@host:5432/xpvae or sqlite:////abs/path/xpvae.sqlite)"
                                  ) from None


def create_engine(url: str, *, busy_timeout_ms: int = 30000) -> Engine:
    """A new engine for ``url`` (Settings.database_url). ``busy_timeout_ms`` is how long a SQLite connection
    waits for another writer (ignored on PostgreSQL). Creates nothing on disk: only `prepare_sqlite_file` (used
    by `xpvae db upgrade`) makes a SQLite file's directory."""
    parsed = _parse_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = sa.create_engine(parsed, connect_args={"timeout": busy_timeout_ms / 1000})
            sa.event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms))
            return engine
        return sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5)
    except (sa.exc.NoSuchModuleError, ImportError) as exc:
        raise DatabaseUnavailable(f"cannot use the database URL {describe_url(parsed)}: {exc} (supported: "
                                  "postgresql+psycopg2:// and sqlite://)") from None


def sqlite_file(engine: Engine) -> Path | None:
    """The file behind a SQLite engine; None for other backends and in-memory or URI databases."""
    db = engine.url.database
    if engine.dialect.name != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def prepare_sqlite_file(engine: Engine) -> None:
    """Make the directory of a SQLite database that is about to be created (`xpvae db upgrade`, the demo)."""
    path = sqlite_file(engine)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """The process-wide engine for ``url``: one per database URL, keyed by the URL itself (never by the
    environment), so its connection pool is shared by every job of the process. A test that wants a private
    pool calls `create_engine` and disposes of it."""
    return create_engine(url)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def describe(engine: Engine) -> str:
    return describe_url(engine.url)


def describe_url(url: sa.engine.URL) -> str:
    return url.render_as_string(hide_password=True)


def check_connection(engine: Engine, *, create: bool = False) -> None:
    """Raise DatabaseUnavailable with a readable message if the database cannot be reached. A SQLite file
    that does not exist is unreachable too (connecting would create it: a mistyped path must not), unless
    ``create`` (`xpvae db upgrade`) asks for it."""
    path = sqlite_file(engine)
    if create:
        try:
            prepare_sqlite_file(engine)
        except OSError as exc:
            raise DatabaseUnavailable(f"cannot create the database directory for {path}: {exc.strerror}") from None
    elif path is not None and not path.is_file():
        raise DatabaseUnavailable(f"no database file at {path}: check XPVAE_DATABASE_URL / XPVAE_HOME, or create "
                                  "it with `xpvae db upgrade`")
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


# --- classifying failures -------------------------------------------------------------------------------------
_LOCK_CONFLICT_CODES = ("40P01", "40001")     # deadlock_detected, serialization_failure


def is_lock_conflict(exc: BaseException | None) -> bool:
    """A PostgreSQL deadlock or serialisation failure (raised as is, or as the cause of another error): the
    transaction was rolled back and may simply run again."""
    seen = 0
    while exc is not None and seen < 8:
        if getattr(getattr(exc, "orig", None) or exc, "pgcode", None) in _LOCK_CONFLICT_CODES:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def is_transient_db_error(exc: BaseException) -> bool:
    """A database failure that a later attempt may not meet: the connection lost or refused, a lock conflict,
    SQLite busy. Covers SQLAlchemy's wrappers and the raw driver errors of the bulk paths (raw cursors)."""
    import sqlite3
    if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError,
                        sa.exc.TimeoutError, sqlite3.OperationalError)):
        return True
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    try:
        import psycopg2
    except ImportError:
        return False
    return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) or is_lock_conflict(exc)
