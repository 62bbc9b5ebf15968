"""The ingest job: a thin wrapper from job parameters to the plain loaders in ingest.load."""
from __future__ import annotations

import dataclasses

from shared.jobs import JobContext


def run_ingest_job(ctx: JobContext) -> dict:
    from ingest import load
    p = ctx.params
    source, paths = p["source"], p["paths"]
    if source == "gaia-xp":
        summary = load.ingest_gaia_xp(ctx.engine, paths, correlations=p.get("correlations", True), progress=ctx.progress)
    elif source == "photometry":
        summary = load.ingest_photometry(ctx.engine, paths, progress=ctx.progress)
    elif source == "apogee":
        summary = load.ingest_apogee(ctx.engine, paths[0], progress=ctx.progress)
    elif source == "catalogue":
        summary = load.ingest_catalogue(ctx.engine, paths[0], norm=p.get("norm"), progress=ctx.progress)
    else:
        raise ValueError(f"unknown ingest source {source!r}")
    out = summary.to_dict() if hasattr(summary, "to_dict") else dataclasses.asdict(summary)
    out["source"] = source
    if summary.files_failed:
        first = (next(f.error for f in summary.files if not f.ok).strip().splitlines() or [""])[0]
        ctx.incomplete(f"{summary.files_failed} of {len(summary.files)} files failed, first: {first}",
                       nothing_done=summary.files_ok == 0)
    return out
