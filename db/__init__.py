"""The database layer: schema (db.schema), migrations (alembic, db/migrations), engines (db.engine) and fast
bulk I/O with one interface for PostgreSQL (COPY) and SQLite (executemany), see db.bulk.

Array byte layout (documented once, used everywhere): arrays are stored as little-endian `bytea`/BLOB values —
`*_coefficients` 55 × float64 (440 bytes), `*_coefficient_errors` 55 × float32 (220 bytes),
`*_coefficient_correlations` 1485 × float32 (5940 bytes, strict lower triangle in numpy.tril_indices(55, -1)
order). A missing band is NULL in every column of that band.

Importing any db module registers db's classification of its own errors as transient or not with
shared.errors (the job runner retries the transient ones; shared/ never imports db/).
"""
from db.engine import is_transient_db_error
from shared.errors import register_transient_check

register_transient_check(is_transient_db_error)
