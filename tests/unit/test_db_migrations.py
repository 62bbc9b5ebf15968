"""The schema comes from alembic migrations and matches db.schema on both backends."""
import sqlalchemy as sa

from db.engine import DatabaseUnavailable, SchemaOutOfDate, check_schema, create_engine
from db.migrate import downgrade, head_revision, upgrade
from db.schema import metadata


def test_migrations_create_every_table_and_view(engine):
    check_schema(engine)     # at head: no error
    insp = sa.inspect(engine)
    assert set(metadata.tables) <= set(insp.get_table_names())
    assert {"xp_apogee", "latents"} <= set(insp.get_view_names())
    for name, table in metadata.tables.items():
        assert {c.name for c in table.columns} == {c["name"] for c in insp.get_columns(name)}, name


def test_out_of_date_schema_is_reported_with_the_fix(tmp_path):
    path = tmp_path / "old.sqlite"
    eng = create_engine(f"sqlite:///{path}")
    try:
        check_schema(eng)
        raise AssertionError("a missing database file must be reported, not created")
    except DatabaseUnavailable as exc:
        assert "no database file at" in str(exc) and not path.exists()
    path.touch()       # an empty SQLite database
    try:
        check_schema(eng)
        raise AssertionError("an empty database must be reported as out of date")
    except SchemaOutOfDate as exc:
        assert "xpvae db upgrade" in str(exc) and head_revision() in str(exc)
    upgrade(eng)
    check_schema(eng)
    downgrade(eng, "base")
    assert "jobs" not in sa.inspect(eng).get_table_names()
