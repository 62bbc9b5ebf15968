"""`xpvae export`: a model's per-star results or statistics into FITS, VOTable, Parquet or CSV (ECSV) files
for TOPCAT, astropy or pandas — streamed in chunks, so any number of rows fits in bounded memory.

The file is written beside its final path under a hidden temporary name and moved into place only when
complete: a failed export leaves nothing behind, and an existing file is replaced only with --overwrite.
"""
from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import click

from xpvae.jobrun import EXIT_USAGE, _die, _engine


def _format_for(out: Path, fmt: str | None) -> str:
    from xpvae.exporters import SUFFIXES
    if fmt:
        return fmt
    fmt = SUFFIXES.get(out.suffix.lower())
    if fmt is None:
        _die(f"cannot tell the format from {out.name!r}: pass --format fits|votable|parquet|csv", EXIT_USAGE)
    return fmt


def _check_out(out: Path, overwrite: bool) -> None:
    if out.is_dir():
        _die(f"{out} is a directory: give a file name", EXIT_USAGE)
    if (out.exists() or out.is_symlink()) and not overwrite:
        _die(f"{out} exists: pass --overwrite to replace it", EXIT_USAGE)
    if not out.parent.is_dir():
        _die(f"{out.parent} is not a directory", EXIT_USAGE)


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished file into place; without --overwrite never replace a file that appeared meanwhile."""
    if overwrite:
        os.replace(tmp, out)
        return
    try:
        os.link(tmp, out)
    except FileExistsError:
        _die(f"{out} appeared while exporting: not replaced (pass --overwrite)", EXIT_USAGE)
    finally:
        tmp.unlink(missing_ok=True)


def run_export(what: str, model: dict, fmt: str, out: Path, where: str | None, overwrite: bool,
               chunk_rows: int, on_progress=None) -> int:
    """Write the export; returns the number of rows. Raises db.export.ExportError or database errors."""
    from db.export import EXPORTS, open_export
    from xpvae.exporters import WRITERS
    meta = {"export": what, "description": EXPORTS[what].description, "model": model["name"],
            "model_id": model["id"], "where": where or "",
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh, open_export(_engine(), what, model, where, chunk_rows) as (plan, batches):
            writer = WRITERS[fmt](fh, plan, meta)
            for batch in batches:
                writer.write(batch)
                if on_progress:
                    on_progress(writer.rows, plan.n_rows, f"rows → {out.name}")
            writer.close()
        _publish(tmp, out, overwrite)
        return writer.rows
    finally:
        tmp.unlink(missing_ok=True)


@click.command("export")
@click.argument("what", type=click.Choice(["latents", "statistics", "scores", "alpha"]))
@click.option("--model", "model_ref", required=True, help="model name, or id as N or id:N")
@click.option("--format", "fmt", type=click.Choice(["fits", "votable", "parquet", "csv"]),
              help="default: from the --out suffix (.fits, .vot/.xml, .parquet, .csv/.ecsv)")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="the file to write")
@click.option("--where", help="SQL filter on the export's own columns, e.g. \"pristine AND cool_giant\" or "
              "\"split = 'test' AND z4 > 0\"; runs in a read-only transaction; no ';', comments, '\\' or '$'")
@click.option("--overwrite", is_flag=True, help="replace --out if it exists")
@click.option("--chunk-rows", type=click.IntRange(1, 10_000_000), default=20_000, show_default=True,
              help="rows read and written at a time (memory grows with it)")
def export(what, model_ref, fmt, out, where, overwrite, chunk_rows) -> None:
    """Export latents (per star: latents, fit quality, photometry, ra/dec when stored, APOGEE labels),
    statistics (the model's analysis_statistics), scores (anomaly scores) or alpha (P(high-α) per star, from
    `xpvae analyze alpha-catalogue`) as FITS, VOTable, Parquet or CSV (ECSV), NULLs kept as masked values."""
    import sqlalchemy as sa

    from db.export import EXPORTS, ExportError
    from db.models_registry import get_model
    from xpvae.commands import _model_ref
    from xpvae.progress import ProgressLine
    view = EXPORTS[what]
    if view.missing:
        _die(f"cannot export {what}: {view.missing}", EXIT_USAGE)
    fmt = _format_for(out, fmt)
    _check_out(out, overwrite)
    model = get_model(_engine(), _model_ref(model_ref))     # exit 2 for a malformed name, 4 for no such model
    bar = ProgressLine(f"export {what}")
    try:
        n = run_export(what, model, fmt, out, where, overwrite, chunk_rows, on_progress=bar)
    except ExportError as exc:
        _die(str(exc), EXIT_USAGE)
    except sa.exc.DBAPIError as exc:      # the database refused the filter (unknown column, a write, …)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        _die(f"the database refused the export query{' (check --where)' if where else ''}: {reason}", EXIT_USAGE)
    finally:
        bar.close()
    click.echo(f"wrote {n:,} rows of {what} for model {model['name']!r} to {out} ({fmt})")
