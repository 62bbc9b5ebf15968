"""The ingest job: a thin wrapper from job parameters to the plain loaders in ingest.load.

Sources read file by file (Gaia XP spectra, photometry) fan out like inference: the job lists its files once
and cuts them into shards — one file each, or consecutive small files together up to SHARD_BYTES — that every
ingest worker takes from the queue (in-process: one after another). A shard loads each of its files in one
transaction and upserts on the natural keys, so a shard run again (a killed worker's, redelivered) rewrites
the same rows and never adds any; it is marked done, its summary kept and its files added to the job's
progress in one transaction, so they count once. A file that fails fails its shard with the reason and the
other shards go on; the last shard to settle sums the shards' summaries into the job's result, which ends
'partial' naming the failed files. APOGEE and the catalogue are one file: the job loads it itself.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from db import job_store as jobs_db
from db.job_status import ShardStatus
from jobqueue.runner import JobContext, fan_out

SHARD_BYTES = 64 * 2**20      # small files share a shard up to this size on disk; a larger file is one shard
SHARD_MAX_FILES = 64          # and at most this many files
PLAN_SHARD = -1               # source_id_lo of the shard that reports inputs which gave no files


def run_ingest_job(ctx: JobContext) -> dict:
    from ingest import load
    p = ctx.params
    source, paths = p["source"], p["paths"]
    if source in load.FILE_SOURCES:
        _fan_out_files(ctx)           # does not return: the shards complete the job
    if source == "apogee":
        summary = load.ingest_apogee(ctx.engine, paths[0], progress=ctx.progress)
    elif source == "catalogue":
        summary = load.ingest_catalogue(ctx.engine, paths[0], norm=p.get("norm"), progress=ctx.progress,
                                        norms_dir=ctx.settings.home / "norms")
    else:
        raise ValueError(f"unknown ingest source {source!r}")
    out = summary.to_dict() if hasattr(summary, "to_dict") else dataclasses.asdict(summary)
    _judge(ctx, out)
    return out


def group_files(found: list, files_per_shard: int = 0, shard_bytes: int = SHARD_BYTES,
                max_files: int = SHARD_MAX_FILES) -> list[list]:
    """Consecutive files, in the planned order, cut into shards: ``files_per_shard`` each when given, else
    up to ``shard_bytes`` on disk and ``max_files`` files (a file larger than ``shard_bytes`` alone)."""
    if files_per_shard:
        return [found[i:i + files_per_shard] for i in range(0, len(found), files_per_shard)]
    groups: list[list] = []
    size = 0
    for f in found:
        n = f.path.stat().st_size if f.path.is_file() else 0
        if not groups or size + n > shard_bytes or len(groups[-1]) >= max_files:
            groups.append([])
            size = 0
        groups[-1].append(f)
        size += n
    return groups


def _fan_out_files(ctx: JobContext) -> None:
    """Plan the files (once: a redelivered job finds its shards) and fan them out."""
    from ingest import load
    p = ctx.params
    found, planned = load.plan_files(p["source"], p["paths"])
    groups = group_files(found, int(p.get("files_per_shard") or 0))
    ranges, work, first = [], [], 0
    for g in groups:
        ranges.append((first, first + len(g) - 1, len(g)))
        work.append({"files": [{"path": str(f.path), "item": f.item, "named": f.named} for f in g]})
        first += len(g)
    if planned.files:          # inputs that matched nothing, files passed over by name: reported by a shard too
        ranges.append((PLAN_SHARD, PLAN_SHARD, len(planned.files)))
        work.append({"files": [], "planned": planned.to_dict()})
    fan_out(ctx, ranges, work)


def run_ingest_shard(ctx: JobContext, shard: dict) -> None:
    from ingest import load
    p, n = ctx.params, len(jobs_db.get_shards(ctx.engine, ctx.job_id))
    files = _found(shard)
    if "planned" in shard["work"]:
        out = shard["work"]["planned"]
    else:
        summary = load.IngestSummary(p["source"])
        options = {"correlations": p.get("correlations", True)} if p["source"] == "gaia-xp" else {}
        load.FILE_SOURCES[p["source"]].load_files(ctx.engine, files, summary, _ShardProgress(ctx, shard, n),
                                                  len(files), **options)
        out = {**summary.to_dict(), "pixels": sorted(summary.pixels)}     # for the job's one ANALYZE
    failed = out["failed_files"]
    ctx.check_cancelled()
    with ctx.engine.begin() as conn:
        jobs_db.finish_shard(conn, ctx.job_id, shard["shard"], ShardStatus.FAILED if failed else ShardStatus.DONE,
                             "; ".join(_first_line(e) for e in failed) or None, result=out)
        jobs_db.add_progress(conn, ctx.job_id, shard["n_stars"])


def summarise_ingest_job(ctx: JobContext, shards: list[dict]) -> dict:
    """The job's result once every shard has settled: the shards' summaries summed (a shard that crashed
    on every attempt is reported as the failure of each of its files), the statistics refreshed once."""
    from ingest import load
    source = ctx.params["source"]
    parts = [s["result"] or _crashed(s) for s in shards]
    out = load.finish_file_dicts(ctx.engine, source, parts, [f for s in shards for f in _found(s)])
    out["n_shards"] = len(shards)
    _judge(ctx, out)
    return out


def _crashed(shard: dict) -> dict:
    """What a shard that never finished tells the summary: each of its files failed, with the shard's reason."""
    from ingest.load import FileResult
    why = _first_line(shard["error"] or "did not finish")
    files = [FileResult(str(f.path), error=f"{f.path}: {why}").to_dict() for f in _found(shard)]
    return {"files_failed": len(files), "failed_files": [f["error"] for f in files], "files": files}


def _found(shard: dict) -> list:
    from ingest.load import Found
    return [Found(Path(f["path"]), f["item"], f["named"]) for f in (shard["work"] or {}).get("files", [])]


def _judge(ctx: JobContext, out: dict) -> None:
    """Some files failed: the job is partial (failed if none loaded), never 'succeeded', and not retried."""
    if out["files_failed"]:
        first = _first_line(out["failed_files"][0]) if out["failed_files"] else ""
        ctx.incomplete(f"{out['files_failed']} of {len(out['files'])} files failed, first: {first}",
                       nothing_done=out["files_ok"] == 0)


def _first_line(text: str | None) -> str:
    return ((text or "").strip().splitlines() or [""])[0]


class _ShardProgress:
    """Progress inside one shard: the job's message (the count moves when the shard finishes) and an
    in-process progress bar that moves file by file."""

    def __init__(self, ctx: JobContext, shard: dict, n_shards: int):
        self.ctx, self.shard, self.n_shards = ctx, shard, n_shards
        job = jobs_db.get_job(ctx.engine, ctx.job_id) or {}
        self.base, self.total = int(job.get("progress_done") or 0), job.get("progress_total")

    def __call__(self, done: int, total: int | None, message: str = "") -> None:
        if self.ctx.on_progress:
            self.ctx.on_progress(self.base + done, self.total, message)
        self.ctx.say(f"shard {self.shard['shard'] + 1}/{self.n_shards}: {message}")
