"""Alembic environment: uses the engine handed over by db.migrate (or the settings' URL)."""
from alembic import context

from db.engine import create_engine
from db.schema import metadata

config = context.config
engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url") or None)

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    context.run_migrations()
