"""Shared fixtures. The reference material is the repository's own reference/ folder (vendored, see its README)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from testdb import PG_ADMIN_URL, _empty_tables, _pg_url_for  # one home, importable by tests

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """One OpenMP/BLAS/torch thread per test process, set before numpy or torch is first imported (the workers
    and CLI runs the tests start inherit it): `make test` runs one test process per CPU (pytest-xdist), and more
    threads than cores thrash — two-thread torch steps on a loaded 2-core machine measured 40x slower than one.
    An operator's own OMP_NUM_THREADS wins. Then register every service's job kinds, as the CLI and each worker
    do at start-up (xpvae/services.py)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from xpvae.services import load_services
    load_services()


@pytest.fixture
def settings_for(tmp_path):
    """Build Settings explicitly, as the CLI and the workers do and pass them on: the embedded defaults with a
    home of this test's own, never this process's environment; keywords override fields (database_url, ...)."""
    import dataclasses

    from shared.settings import Settings

    def make(**fields) -> Settings:
        base = Settings.from_env({"XPVAE_HOME": str(tmp_path / "xpvae-home")})
        return dataclasses.replace(base, **fields)
    return make


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = REPO / "reference"
    if not (path / "README.md").exists():
        pytest.fail(f"reference material not found at {path}: the repository's reference/ folder is incomplete")
    return path


# --- databases -----------------------------------------------------------------------------------------------
# PostgreSQL: one database per test run (created, migrated, dropped); SQLite: one file per test run.
# Tests that use PostgreSQL are marked `integration` automatically through the `db_backend` parameter.


@pytest.fixture(scope="session")
def pg_url():
    """A fresh, migrated PostgreSQL database for this test run; dropped afterwards."""
    from db.engine import create_engine
    from db.migrate import upgrade
    name = f"xpvae_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL} (start it: see .ci/run): {exc.orig}")
    url = _pg_url_for(name)
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory):
    """A migrated SQLite database file for this test run."""
    from db.engine import create_engine
    from db.migrate import upgrade
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'xpvae.sqlite'}"
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def db_backend(request):
    return request.param


@pytest.fixture
def engine(request, db_backend):
    """An engine on an emptied, migrated database of each backend (the same test runs on both)."""
    from db.engine import create_engine
    url = request.getfixturevalue("pg_url" if db_backend == "postgresql" else "sqlite_url")
    eng = create_engine(url)
    _empty_tables(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def pg_engine(pg_url):
    """An engine on the emptied PostgreSQL test database (integration tests)."""
    from db.engine import create_engine
    eng = create_engine(pg_url)
    _empty_tables(eng)
    yield eng
    eng.dispose()
