"""Registered models: one row per trained (or imported) model, pointing at its self-describing artifact.

Names and references (README "Models"): a name is 1-64 ASCII characters, a letter first, then letters, digits,
'.', '_' or '-' — so a name is never a path and never a number. A reference is a name, or an id written ``N``
or ``id:N``. A name is registered once; ``replace=True`` swaps the model for a new one (a new id) and deletes
the old one's inference and analysis rows in the same transaction.
"""
from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from db.job_store import now
from db.schema import analysis_reports, analysis_statistics, inference_results, jobs, models
from shared.errors import InputError

if TYPE_CHECKING:       # the artifact module pulls in torch: not at import time for every database command
    from shared.artifact import ModelArtifact

log = logging.getLogger(__name__)

NAME_RULE = "1-64 characters: a letter, then letters, digits, '.', '_' or '-'"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")
_ID = re.compile(r"(?:id:)?([0-9]+)")
_MAX_ID = 2**31 - 1     # the id column is a 32-bit integer


class ModelNotFound(InputError, LookupError):
    """No model by that name or id: a job asking for one fails at once (see shared.errors)."""


class InvalidModelName(InputError):
    pass


class ModelNameTaken(InputError):
    pass


class Registration(NamedTuple):
    model_id: int
    path: str                     # the artifact this row points at
    replaced_path: str | None     # the replaced model's artifact, no longer referenced; None if nothing replaced


def _shown(text: object) -> str:
    s = repr(text)
    return s if len(s) <= 40 else f"{s[:37]}...' ({len(str(text))} characters)"


def check_model_name(name: object) -> str:
    """``name`` if it is a valid model name, else InvalidModelName saying the rule."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidModelName(f"invalid model name {_shown(name)}: {NAME_RULE}")
    return name


def parse_model_ref(ref: str | int) -> int | str:
    """A reference → the id (int) for ``N`` or ``id:N``, else the name (str, which must be a valid name)."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        return ref
    text = str(ref)
    m = _ID.fullmatch(text)
    if m:
        return int(m.group(1))
    if text.startswith("id:"):
        raise InvalidModelName(f"invalid model reference {_shown(text)}: write id:N with N a number")
    try:
        return check_model_name(text)
    except InvalidModelName:
        raise InvalidModelName(f"invalid model reference {_shown(text)}: a model name ({NAME_RULE}), "
                               "or an id as N or id:N") from None


def _derived_analysis_jobs(conn: Connection, model_id: int) -> list[int]:
    """Analysis jobs whose stored rows came from this model: its own analyses, and reconstruction reports
    that compared another model with it as the baseline (recorded in the job's parameters)."""
    own = set(conn.execute(sa.select(analysis_reports.c.job_id)
                           .where(analysis_reports.c.model_id == model_id)).scalars())
    own |= set(conn.execute(sa.select(analysis_statistics.c.job_id).distinct()
                            .where(analysis_statistics.c.model_id == model_id)).scalars())
    reconstructions = sa.select(jobs.c.id, jobs.c.params).where(jobs.c.kind == "analyze_reconstruction")
    for job_id, params in conn.execute(reconstructions):
        if isinstance(params, dict) and params.get("baseline_id") == model_id:
            own.add(job_id)
    return sorted(own)


def _delete_derived(conn: Connection, model_id: int) -> None:
    analysis = _derived_analysis_jobs(conn, model_id)
    if analysis:
        conn.execute(analysis_statistics.delete().where(analysis_statistics.c.job_id.in_(analysis)))
        conn.execute(analysis_reports.delete().where(analysis_reports.c.job_id.in_(analysis)))
    conn.execute(inference_results.delete().where(inference_results.c.model_id == model_id))


def name_free(engine: Engine, name: str, *, replace: bool = False, job_id: int | None = None) -> None:
    """Fail early (ModelNameTaken) when registering ``name`` later would be refused."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(models.c.id, models.c.job_id).where(models.c.name == name)).first()
    if row is not None and not replace and not (job_id is not None and row.job_id == job_id):
        raise ModelNameTaken(_taken(name, row.id))


def _taken(name: str, model_id: int) -> str:
    return (f"model name {name!r} is taken (id {model_id}): choose another --name, or pass --replace to replace "
            "that model and delete its inference and analysis results")


def register_model(engine: Engine, *, name: str, kind: str, path: str, job_id: int | None = None,
                   config: dict | None = None, summary: dict | None = None, n_train: int | None = None,
                   replace: bool = False) -> Registration:
    """Insert a model row. A taken name is refused (ModelNameTaken) unless ``replace`` — or unless the row was
    made by this same job (a re-run job registers again): then, in one transaction, the new row is inserted
    (a new id) and the old row with its inference and analysis rows is deleted."""
    check_model_name(name)
    values = dict(kind=kind, path=str(path), job_id=job_id, config=config, summary=summary, n_train=n_train)
    try:
        with engine.begin() as conn:
            old = conn.execute(sa.select(models.c.id, models.c.job_id, models.c.path)
                               .where(models.c.name == name).with_for_update()).first()
            if old is not None:
                if not replace and not (job_id is not None and old.job_id == job_id):
                    raise ModelNameTaken(_taken(name, old.id))
                # free the name first so that the new row gets a fresh id on both backends ('~' is never in a name)
                conn.execute(models.update().where(models.c.id == old.id).values(name=f"~replaced-{old.id}"))
            new_id = int(conn.execute(models.insert().values(name=name, created_at=now(), **values)
                                      .returning(models.c.id)).scalar_one())
            if old is not None:
                _delete_derived(conn, old.id)
                conn.execute(models.delete().where(models.c.id == old.id))
    except sa.exc.IntegrityError:       # another registration of this name committed meanwhile
        raise ModelNameTaken(f"model name {name!r} was registered meanwhile by another job: choose another --name, "
                             "or pass --replace") from None
    replaced = old.path if old is not None and old.path != str(path) else None
    return Registration(new_id, str(path), replaced)


def register_artifact(engine: Engine, art: ModelArtifact, *, name: str, models_dir: str | Path, replace: bool = False,
                      job_id: int | None = None, summary: dict | None = None,
                      n_train: int | None = None) -> Registration:
    """Save ``art`` in ``models_dir`` and register it as ``name`` (``register_model``: a taken name is refused
    unless ``replace``). The file is named from the validated name and a random token: it
    cannot leave ``models_dir``, and a replacement never overwrites the file a committed row points at. The
    replaced model's file is deleted after the commit, if it lies in ``models_dir``."""
    check_model_name(name)
    models_dir = Path(models_dir).resolve()
    path = art.save(models_dir / f"{name}.{secrets.token_hex(4)}.pt")
    try:
        reg = register_model(engine, name=name, kind=art.kind, path=str(path), job_id=job_id, config=art.config,
                             summary=summary, n_train=n_train, replace=replace)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if reg.replaced_path:
        old = Path(reg.replaced_path).resolve()
        if old.parent == models_dir:        # never delete outside it (rows from older versions may point anywhere)
            old.unlink(missing_ok=True)
        else:
            log.warning("replaced model's artifact %s is outside %s: left in place", old, models_dir)
    return reg


def get_model(engine: Engine, ref: str | int) -> dict:
    """A model by reference: a name, or an id as N or id:N (names are never numbers, so never ambiguous)."""
    key = parse_model_ref(ref)
    with engine.connect() as conn:
        if isinstance(key, int):
            row = (conn.execute(sa.select(models).where(models.c.id == key)).mappings().first()
                   if 0 < key <= _MAX_ID else None)
        else:
            row = conn.execute(sa.select(models).where(models.c.name == key)).mappings().first()
    if row is None:
        what = f"id {key}" if isinstance(key, int) else f"named {key!r}"
        raise ModelNotFound(f"no model {what} (see `xpvae models`)")
    return dict(row)


def list_models(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(models).order_by(models.c.id)).mappings()]


def unique_name(engine: Engine, stem: str) -> str:
    """``stem``, or ``stem-2``, ``stem-3``… whichever is free (for default names, which are valid)."""
    with engine.connect() as conn:
        names = set(conn.execute(sa.select(models.c.name).where(models.c.name.like(f"{stem}%"))).scalars())
    if stem not in names:
        return stem
    i = 2
    while f"{stem}-{i}" in names:
        i += 1
    return f"{stem}-{i}"
