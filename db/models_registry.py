"""Registered models: one row per trained (or imported) model, pointing at its self-describing artifact."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.jobs import now
from db.schema import models


class ModelNotFound(LookupError):
    pass


def register_model(engine: Engine, *, name: str, kind: str, path: str, job_id: int | None = None,
                   config: dict | None = None, summary: dict | None = None, n_train: int | None = None) -> int:
    """Insert or update (by name) a model row; re-running the job that made it leaves one row."""
    values = dict(kind=kind, path=str(path), job_id=job_id, config=config, summary=summary, n_train=n_train)
    with engine.begin() as conn:
        existing = conn.execute(sa.select(models.c.id).where(models.c.name == name)).scalar()
        if existing is not None:
            conn.execute(models.update().where(models.c.id == existing).values(**values))
            return int(existing)
        return int(conn.execute(models.insert().values(name=name, created_at=now(), **values)
                                .returning(models.c.id)).scalar_one())


def get_model(engine: Engine, ref: str | int) -> dict:
    """A model by id or by name."""
    with engine.connect() as conn:
        stmt = sa.select(models)
        if isinstance(ref, int) or str(ref).isdigit():
            row = conn.execute(stmt.where(models.c.id == int(ref))).mappings().first()
        else:
            row = None
        if row is None:
            row = conn.execute(stmt.where(models.c.name == str(ref))).mappings().first()
    if row is None:
        raise ModelNotFound(f"no model {ref!r} (see `xpvae models`)")
    return dict(row)


def list_models(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(models).order_by(models.c.id)).mappings()]


def unique_name(engine: Engine, stem: str) -> str:
    with engine.connect() as conn:
        names = set(conn.execute(sa.select(models.c.name).where(models.c.name.like(f"{stem}%"))).scalars())
    if stem not in names:
        return stem
    i = 2
    while f"{stem}-{i}" in names:
        i += 1
    return f"{stem}-{i}"
