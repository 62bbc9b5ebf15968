"""Alembic environment: uses the engine handed over by db.migrate (or the settings' URL)."""
from alembic import context

from db.engine import create_engine
from db.schema import metadata
from shared.settings import Settings

config = context.config
# `alembic` run by hand (no engine handed over): the ini's URL, else the environment's, as the CLI reads it
engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url")
                                                          or Settings.from_env().database_url)

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    context.run_migrations()
