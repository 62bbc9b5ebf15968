"""xp_spectra, xp_correlations and inference_results partitioned by source_id range (PostgreSQL)

Each table is rebuilt in place: renamed aside, recreated as a range-partitioned parent with one partition per
HEALPix level-1 pixel (db/partitions.py), its rows copied over, its keys, foreign keys, indexes and the views
over it restored, the old heap dropped. Whatever columns, indexes and views earlier migrations gave these
tables are carried over as the database has them. The copy rewrites every row once (about as long as loading
them); downgrade does the reverse. SQLite keeps plain tables: nothing to do there.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 12:30:00
"""
from alembic import op

from db.partitions import PARTITION_KEY, PARTITIONED_TABLES, partition_ddl

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

LEVEL = 1          # frozen here: what this migration creates, whatever db.partitions says later
OLD = "{}__rebuild"


def _rows(bind, sql: str, params: dict) -> list[tuple]:
    return [tuple(r) for r in bind.exec_driver_sql(sql, params).all()]


def _catalogue(bind) -> dict:
    """What must be recreated around the tables: their key/check constraints, the foreign keys from or to
    them, their other indexes, and the views that use them (with definitions), all under the tables'
    current names."""
    names = {"t": list(PARTITIONED_TABLES)}
    rel = "ANY(SELECT to_regclass(x) FROM unnest(%(t)s::text[]) x)"
    return {
        "own": _rows(bind, f"SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                     f"FROM pg_constraint WHERE conrelid = {rel} AND conparentid = 0 "
                     f"AND contype IN ('p', 'u', 'c') ORDER BY contype, conname",
                     names),
        "fk": _rows(bind, f"SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
                    f"FROM pg_constraint WHERE contype = 'f' AND conparentid = 0 "
                    f"AND (conrelid = {rel} OR confrelid = {rel}) ORDER BY conname",
                    names),
        "index": _rows(bind, f"SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                       f"WHERE i.indrelid = {rel} AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
                       f"WHERE c.conindid = i.indexrelid) ORDER BY 1", names),
        "view": _rows(bind, f"SELECT DISTINCT v.oid::regclass::text, pg_get_viewdef(v.oid) FROM pg_depend d "
                      f"JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
                      f"WHERE d.refobjid = {rel} AND v.relkind = 'v'", names),
    }


def _drop_dependents(cat: dict) -> None:
    for view, _ in cat["view"]:
        op.execute(f"DROP VIEW {view}")
    for table, name, _ in cat["fk"]:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    for index, _ in cat["index"]:
        op.execute(f"DROP INDEX {index}")
    for table, name, _ in cat["own"]:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")


def _copy_table(table: str, partitioned: bool) -> None:
    op.execute(f"ALTER TABLE {table} RENAME TO {OLD.format(table)}")
    layout = f" PARTITION BY RANGE ({PARTITION_KEY})" if partitioned else ""
    op.execute(f"CREATE TABLE {table} (LIKE {OLD.format(table)} INCLUDING DEFAULTS INCLUDING STORAGE "
               f"INCLUDING COMMENTS){layout}")
    if partitioned:
        for ddl in partition_ddl(table, LEVEL):
            op.execute(ddl)
    op.execute(f"INSERT INTO {table} SELECT * FROM {OLD.format(table)}")
    op.execute(f"DROP TABLE {OLD.format(table)}")


def _restore_dependents(cat: dict) -> None:
    for table, name, definition in cat["own"]:
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
    for _, definition in cat["index"]:
        op.execute(definition)
    for table, name, definition in cat["fk"]:
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
    for view, definition in cat["view"]:
        op.execute(f"CREATE VIEW {view} AS {definition}")


def _rebuild(partitioned: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    cat = _catalogue(bind)
    _drop_dependents(cat)
    for table in PARTITIONED_TABLES:
        _copy_table(table, partitioned)
    # keys after the copy: one index build per partition instead of index maintenance row by row
    _restore_dependents(cat)
    # a partitioned parent is never analysed by autovacuum: the parallel reads want its histogram now
    op.execute(f"ANALYZE {', '.join(PARTITIONED_TABLES)}")


def upgrade() -> None:
    _rebuild(partitioned=True)


def downgrade() -> None:
    _rebuild(partitioned=False)
