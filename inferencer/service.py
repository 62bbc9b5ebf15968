"""The inferencer: a registered model over a selection of stars, in shards of source_id ranges.

The parent job plans the shards (quantiles of source_id) and fans them out; each shard reads its spectra,
runs the model at z = μ and replaces its rows of `inference_results` in one transaction, together with
marking the shard done — so a shard run twice (a worker killed mid-shard, a redelivery) leaves exactly one
row per star. The last shard to finish completes the job.
"""
from __future__ import annotations

import math
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from sqlalchemy.engine import Engine

from db import job_store as jobs_db
from db.job_status import ShardStatus
from db.models_registry import get_model
from db.results import chi2_coverage, replace_results
from db.schema import LATENT_MAX
from db.selection import Selection
from db.spectra import has_correlations, quantile_ranges, read_spectra, selected_source_ids
from inferencer import anomaly
from jobqueue.runner import JobContext, fan_out
from shared import defaults as D
from shared.anomaly import AnomalyCalibration
from shared.artifact import ModelArtifact
from shared.errors import InputError
from shared.inference import infer
from shared.params import describe_selection
from shared.preprocessing import normalise_by_flux

# 25k stars a shard: ~0.5 s of work for one process, small enough to balance two or more workers
# without a long tail, large enough that per-shard overhead (messages, queries) stays a few per cent.


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> tuple[ModelArtifact, object, dict[str, np.ndarray]]:
    art = ModelArtifact.load(path)
    splits = {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in (art.splits or {}).items()
              if len(v) and np.asarray(v).dtype.kind in "iu"}
    return art, art.build_model(), splits


def load_model(engine: Engine, model_id: int):
    row = get_model(engine, model_id)
    if row["kind"] != "svae":
        raise InputError(f"--model {row['name']}: a model of kind {row['kind']}; inference runs an sVAE "
                         "(kind svae, see `xpvae models`)")
    path = Path(row["path"])
    if not path.exists():
        raise FileNotFoundError(f"model {row['name']!r}: artifact {path} is missing")
    art, model, splits = _load(str(path), path.stat().st_mtime)
    if art.lacks_normalisation:
        raise InputError(f"model {row['name']!r} was imported without its normalisation and cannot run on spectra: "
                         f"import it again with `xpvae model import-published --norm apogee_norm.npz "
                         f"--name {row['name']} --replace`")
    return row, art, model, splits


def run_infer_job(ctx: JobContext) -> dict:
    p = ctx.params
    load_model(ctx.engine, p["model_id"])            # fail early, before any shard, if the model is unusable
    selection = Selection.from_dict(p.get("selection"))
    ids = selected_source_ids(ctx.engine, selection)      # one pass: the count and the shard bounds
    n = len(ids)
    if n == 0:
        raise InputError(f"no spectra with photometry match the selection ({describe_selection(selection.to_dict())}):"
                         " ingest them first, or widen --source-id-min/--source-id-max/--quality/--limit")
    n_shards = min(int(p.get("shards") or 0) or math.ceil(n / D.STARS_PER_SHARD), n)   # a shard holds >= 1 star
    if "anomaly_calibration" not in p:      # fitted once per job: a redelivered planner keeps the first
        _, art, model, splits = load_model(ctx.engine, p["model_id"])
        p["anomaly_calibration"] = anomaly.fit_calibration(ctx.engine, art, model, splits, ids).to_dict()
        jobs_db.update_job(ctx.engine, ctx.job_id, params=p)
    ranges = quantile_ranges(ids, n_shards)
    fan_out(ctx, ranges)      # does not return: the shards complete the job
    return {}


def summarise_infer_job(ctx: JobContext, shards: list[dict]) -> dict:
    """The finished job's result: counts, where the time went, and whether χ² could use full covariances."""
    engine, model_id = ctx.engine, ctx.params["model_id"]
    n, n_chi2, n_unstored = chi2_coverage(engine, model_id)
    timing = {k: round(sum(s[k] or 0.0 for s in shards), 3) for k in ("seconds_read", "seconds_model", "seconds_write")}
    chi2 = "full covariance for every star" if n_chi2 == n else \
        f"unavailable for {n - n_chi2} of {n} stars: " + chi2_causes(int(n_unstored), int(n - n_chi2 - n_unstored))
    return {"model_id": model_id, "n_shards": len(shards), "n_stars": int(sum(s["n_stars"] for s in shards)),
            "n_results": int(n), "chi2": chi2, **anomaly.summary(ctx.params), **timing}


def chi2_causes(n_unstored: int, n_singular: int) -> str:
    """Why χ² is missing, each cause counted apart: blaming absent correlations for a star whose stored
    covariance cannot be inverted would send the user to re-ingest for nothing."""
    causes = []
    if n_unstored:
        causes.append(f"{n_unstored} without stored correlations (ingested with --no-correlations?)")
    if n_singular:
        causes.append(f"{n_singular} whose covariance is not positive definite (correlations as stored)")
    return "; ".join(causes)


def configure_torch_threads(threads: int | None) -> None:
    """Torch threads per inference process from Settings.torch_threads (XPVAE_TORCH_THREADS; None: torch's
    default, i.e. every core). Two worker processes on two cores want 1 each: more only contend."""
    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _split_labels(source_id: np.ndarray, splits: dict[str, np.ndarray]) -> list[str | None]:
    out = np.full(len(source_id), None, dtype=object)
    for name, ids in splits.items():
        if ids.size:
            pos = np.searchsorted(ids, source_id).clip(max=ids.size - 1)
            out[ids[pos] == source_id] = name
    return out.tolist()


def infer_range(engine: Engine, model_id: int, selection: Selection, *, batch_size: int = 8192,
                chi2: bool = True, progress=None, batch_pause_s: float = 0.0,
                expected_rows: int | None = None, anomaly_calibration: AnomalyCalibration | None = None,
                read_streams: int = 1, torch_threads: int | None = None) -> tuple[dict, dict]:
    """Read, infer and build the result columns for one selection (no writing). Returns (columns, timings).
    ``expected_rows``: the selection's size when known (a shard's), to allocate the read once.
    ``anomaly_calibration``: the job's (inferencer/anomaly.py); without it the anomaly columns stay NULL.
    ``read_streams``: parallel read streams for a large range (Settings.read_streams).
    ``torch_threads``: Settings.torch_threads (None: torch's default)."""
    row, art, model, splits = load_model(engine, model_id)
    configure_torch_threads(torch_threads)
    t0 = time.perf_counter()
    # The correlations (12 kB a star) are read only where the range holds any: otherwise one index probe, not
    # a read of NaN blobs; either way the spectra are read once.
    with_corr = chi2 and has_correlations(engine, selection)
    data = read_spectra(engine, selection, expected_rows=expected_rows, with_correlations=with_corr,
                        streams=read_streams)
    corr, corr_rows = None, None
    if with_corr:
        has = data["has_correlations"]
        if has.any():
            # χ² in the model's standardised units: Σ_std = diag(e/(g·s))·R·diag(e/(g·s)) — the correlations
            # are unit-free, and es already carries the division by G flux and s (docs/science.md §7).
            corr_rows = None if has.all() else np.flatnonzero(has)
            pick = (lambda a: a) if corr_rows is None else (lambda a: a[corr_rows])
            corr = {"bp": pick(data["correlations"][:, 0]), "rp": pick(data["correlations"][:, 1])}
    t1 = time.perf_counter()
    x, e = normalise_by_flux(data["coefficients"], data["errors"], data["phot_g_mean_flux"])
    xs, es = art.normalisation.apply(x, e)
    n = len(data["source_id"])
    parts = []
    # With correlations for only some stars, the (costly: ~7x the network) χ² runs on those alone; the
    # others get NaN, as they would from NaN correlations.
    for res in infer(model, xs, es, correlations=corr if corr_rows is None else None, batch_size=batch_size,
                     include_reconstructions=anomaly_calibration is not None):     # the score needs x̂ and ŝ
        parts.append(res)
        if progress:
            progress(min(res["start"] + batch_size, n), n)
        if batch_pause_s:
            time.sleep(batch_pause_s)
    def cat(k: str) -> np.ndarray:
        return np.concatenate([q[k] for q in parts]) if parts else np.zeros(0)

    chi2_cols = {k: cat(k) for k in ("chi2_bp", "chi2_rp", "chi2_bp_scatter", "chi2_rp_scatter")}
    if corr_rows is not None:
        sub = list(infer(model, xs[corr_rows], es[corr_rows], correlations=corr, batch_size=batch_size,
                         include_reconstructions=False))
        for k in chi2_cols:
            chi2_cols[k][corr_rows] = np.concatenate([q[k] for q in sub])
    t2 = time.perf_counter()
    mu, sig = cat("latent_mu"), cat("latent_sigma")
    cols: dict[str, object] = {"model_id": np.full(n, model_id, np.int64), "source_id": data["source_id"],
                               "split": _split_labels(data["source_id"], splits)}
    for i in range(min(mu.shape[1] if mu.ndim == 2 else 0, LATENT_MAX)):
        cols[f"z{i + 1}"] = mu[:, i]
        cols[f"z{i + 1}_sigma"] = sig[:, i]
    cols["nll"] = cat("nll")
    cols["zscore_rms"] = cat("zscore_rms")
    cols["zscore_rms_scatter"] = cat("zscore_rms_scatter")
    for b in ("bp", "rp"):
        cols[f"{b}_chi2_dof"] = chi2_cols[f"chi2_{b}"] / 55.0
        cols[f"{b}_chi2_dof_scatter"] = chi2_cols[f"chi2_{b}_scatter"] / 55.0
    if anomaly_calibration is not None:
        cols.update(anomaly_calibration.columns(xs, cat("xhat"), es, cat("scatter")))
    return cols, {"seconds_read": t1 - t0, "seconds_model": t2 - t1}


class ShardProgress:
    """Progress inside one shard. The job's progress_done counts finished shards only (a shard adds its
    stars when its rows commit, so a rerun never counts twice); within a shard the job's message says how
    far this shard is, a few times a second, and an in-process progress bar moves with the stars."""

    def __init__(self, ctx: JobContext, shard: dict, interval_s: float = 0.5):
        self.ctx, self.shard, self.interval_s, self._last = ctx, shard, interval_s, 0.0
        job = jobs_db.get_job(ctx.engine, ctx.job_id) or {}
        self.base, self.total = int(job.get("progress_done") or 0), job.get("progress_total")
        self.n_shards = len(jobs_db.get_shards(ctx.engine, ctx.job_id))

    def __call__(self, done: int, n: int) -> None:
        message = f"shard {self.shard['shard'] + 1}/{self.n_shards}: {done:,}/{n:,} stars through the model"
        if self.ctx.on_progress:
            self.ctx.on_progress(self.base + done, self.total, message)
        now = time.monotonic()
        if now - self._last >= self.interval_s or done >= n:
            self._last = now
            jobs_db.update_job(self.ctx.engine, self.ctx.job_id, message=message)
            self.ctx.check_cancelled()


def _job_calibration(params: dict) -> AnomalyCalibration | None:
    cal = params.get("anomaly_calibration")
    return AnomalyCalibration.from_dict(cal) if cal else None


def run_infer_shard(ctx: JobContext, shard: dict) -> None:
    p = ctx.params
    lo, hi = int(shard["source_id_lo"]), int(shard["source_id_hi"])
    # A limited selection keeps its lowest `limit` source ids, and the shards were cut from exactly those, so
    # within [lo, hi] every selected star belongs to it: the range alone reproduces the selection.
    base = Selection.from_dict(p.get("selection"))
    selection = base.replace(source_id_lo=lo, source_id_hi=hi, limit=None)
    cols, timings = infer_range(ctx.engine, p["model_id"], selection,
                                batch_size=int(p.get("batch_size", D.INFER_BATCH_SIZE)),
                                chi2=bool(p.get("chi2", True)), batch_pause_s=float(p.get("batch_pause_s", 0)),
                                expected_rows=int(shard["n_stars"]), progress=ShardProgress(ctx, shard),
                                anomaly_calibration=_job_calibration(p), read_streams=ctx.settings.read_streams,
                                torch_threads=ctx.settings.torch_threads)
    ctx.check_cancelled()
    t = time.perf_counter()
    with ctx.engine.begin() as conn:
        replace_results(conn, p["model_id"], lo, hi, cols)
        jobs_db.finish_shard(conn, ctx.job_id, shard["shard"], ShardStatus.DONE, None,
                             seconds_write=time.perf_counter() - t, **timings)
        jobs_db.add_progress(conn, ctx.job_id, len(cols["source_id"]))
