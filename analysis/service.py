"""The analysis jobs: read latents, spectra and labels from the database, call the plain analysis functions,
store every statistic as rows of `analysis_statistics`, and the report (Markdown/HTML + PNG figures) under
XPVAE_HOME/reports/<kind>-job<id>/. Re-running a job replaces its rows."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from sqlalchemy.engine import Engine

from analysis.alpha import run_alpha_analysis
from analysis.alpha_catalogue import REPORT as CATALOGUE_REPORT
from analysis.alpha_catalogue import fit_alpha_catalogue, render_catalogue
from analysis.reconstruction_report import run_reconstruction_report
from analysis.rows import AnalysisResult
from analysis.samples import alpha_split, select_samples
from db import bulk
from db.labels import read_labels
from db.models_registry import get_model
from db.photometry import read_g_and_colour
from db.results import read_latent_features, read_latents
from db.schema import alpha_probabilities, analysis_reports, analysis_statistics
from db.spectra import read_spectra
from jobqueue.runner import JobContext
from shared import defaults as D
from shared.artifact import ModelArtifact
from shared.errors import InputError
from shared.inference import infer_all
from shared.preprocessing import normalise_by_flux


def store(engine: Engine, ctx: JobContext, report: str, model_id: int, result: AnalysisResult) -> None:
    """Replace this job's statistics and report row (idempotent)."""
    rows = [{**r, "job_id": ctx.job_id, "model_id": model_id} for r in result.rows]
    for r in rows:
        r["report"] = r.get("report") or report
    with engine.begin() as conn:
        conn.execute(analysis_statistics.delete().where(analysis_statistics.c.job_id == ctx.job_id))
        if rows:
            conn.execute(analysis_statistics.insert(), rows)
        conn.execute(analysis_reports.delete().where(analysis_reports.c.job_id == ctx.job_id))
        conn.execute(analysis_reports.insert().values(job_id=ctx.job_id, report=report, model_id=model_id,
                                                      path=str(result.report_path),
                                                      headline=_jsonable(result.headline)))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _out_dir(ctx: JobContext, kind: str) -> Path:
    return ctx.settings.reports_dir / f"{kind}-job{ctx.job_id}"


def _model_of_kind(engine: Engine, model_id: int, kind: str, flag: str) -> dict:
    model = get_model(engine, model_id)
    if model["kind"] != kind:
        raise InputError(f"{flag} {model['name']}: a model of kind {model['kind']}; {flag} takes one of kind {kind} "
                         "(see `xpvae models`)")
    return model


def _analysis_job(ctx: JobContext, kind: str, report: str,
                  compute: Callable[[JobContext, dict, Path], tuple[AnalysisResult, dict]]) -> dict:
    """The one skeleton of every analysis job: check the model is an sVAE, compute into the job's report folder,
    replace the job's rows and report row, and return what the CLI prints."""
    model = _model_of_kind(ctx.engine, ctx.params["model_id"], "svae", "--model")
    result, extra = compute(ctx, model, _out_dir(ctx, kind))
    store(ctx.engine, ctx, report, model["id"], result)
    return {"report": str(result.report_path), "n_statistics": len(result.rows),
            "figures": [str(f) for f in result.figures], "headline": _jsonable(result.headline), **extra}


def _latent_dim(model: dict) -> int:
    return int((model["config"] or {}).get("latent_dim", D.LATENT_DIM))


def _labelled(engine: Engine, source_id: np.ndarray) -> dict[str, np.ndarray]:
    """The APOGEE labels of these stars (``labelled`` marks the stars that have them); fails when none has."""
    labels = read_labels(engine, source_id)
    if not labels["labelled"].any():
        raise InputError("no star with inference results has APOGEE labels: ingest them first "
                         "(`xpvae ingest apogee`)")
    return labels


def run_alpha_job(ctx: JobContext) -> dict:
    return _analysis_job(ctx, "alpha", "alpha", _alpha)


def _alpha(ctx: JobContext, model: dict, out_dir: Path) -> tuple[AnalysisResult, dict]:
    p = ctx.params
    ctx.progress(0, None, "reading latents and labels")
    source_id, latents = read_latents(ctx.engine, model["id"], _latent_dim(model))
    labels = _labelled(ctx.engine, source_id)
    keep = labels["labelled"]
    phot = {k: v[keep] for k, v in read_g_and_colour(ctx.engine, source_id).items()}
    result = run_alpha_analysis(latents[keep], {k: v[keep] for k, v in labels.items()}, phot, out_dir=out_dir,
                                seed=int(p.get("seed", D.SEED)), n_folds=int(p.get("n_folds", D.ALPHA_FOLDS)),
                                n_boot=int(p.get("n_boot", D.ALPHA_BOOTSTRAP)), progress=ctx.progress)
    return result, {}


def store_alpha_probabilities(engine: Engine, model_id: int, job_id: int, source_id: np.ndarray,
                              p: np.ndarray) -> None:
    """Replace every P(high-α) row of the model in one transaction (a rerun never duplicates)."""
    n = len(source_id)
    with engine.begin() as conn:
        conn.execute(alpha_probabilities.delete().where(alpha_probabilities.c.model_id == model_id))
        bulk.upsert_rows(conn, alpha_probabilities, {"model_id": np.full(n, model_id, np.int64),
                                                     "source_id": source_id, "p_high_alpha": p,
                                                     "job_id": np.full(n, job_id, np.int64)},
                         key=("model_id", "source_id"))


def run_alpha_catalogue_job(ctx: JobContext) -> dict:
    return _analysis_job(ctx, CATALOGUE_REPORT, CATALOGUE_REPORT, _alpha_catalogue)


def _catalogue_training_set(engine: Engine, source_id: np.ndarray, sample: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, high) over all stars: the labelled stars of ``sample`` with a decided class, and that class."""
    labels = _labelled(engine, source_id)
    lab = labels["labelled"]
    sub = {k: v[lab] for k, v in labels.items()}
    phot = {k: v[lab] for k, v in read_g_and_colour(engine, source_id).items()}
    split = alpha_split(sub)
    train = np.zeros(len(source_id), bool)
    train[lab] = select_samples(sub, phot).masks[sample] & split.valid
    high = np.zeros(len(source_id), bool)
    high[lab] = split.high
    return train, high


def _alpha_catalogue(ctx: JobContext, model: dict, out_dir: Path) -> tuple[AnalysisResult, dict]:
    p = ctx.params
    sample, features = p.get("sample", "pristine"), p.get("features", "latents")
    ctx.progress(0, 4, "reading latents and labels")
    source_id, latent_features = read_latent_features(ctx.engine, model["id"], _latent_dim(model))
    train, high = _catalogue_training_set(ctx.engine, source_id, sample)
    colours = read_g_and_colour(ctx.engine, source_id)["bp_rp"] if features == "latents+colours" else None
    ctx.progress(1, 4, f"fitting and calibrating on {int(train.sum())} {sample} stars ({features})")
    try:
        cat = fit_alpha_catalogue(latent_features, train, high, sample=sample, seed=int(p.get("seed", D.SEED)),
                                  colours=colours)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    ctx.progress(2, 4, f"storing P(high-alpha) for {len(source_id)} stars")
    store_alpha_probabilities(ctx.engine, model["id"], ctx.job_id, source_id, cat.p_all)
    ctx.progress(3, 4, "report and calibration figure")
    result = render_catalogue(cat, out_dir)
    ctx.progress(4, 4, "done")
    return result, {"n_stars": int(len(source_id))}


def _flux_units(art: ModelArtifact, xhat_std: np.ndarray, scatter_std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A model's outputs in G-flux-normalised units (docs/science.md §7: one unit system for every model)."""
    return art.normalisation.invert(xhat_std), scatter_std * art.normalisation.sig


def run_reconstruction_job(ctx: JobContext) -> dict:
    return _analysis_job(ctx, "reconstruction", "reconstruction", _reconstruction)


def _held_out_stars(ctx: JobContext, model: dict, split: str | None, baseline: dict | None):
    """(source_id, labels) of the held-out stars; with a label baseline only those that have all its labels."""
    p = ctx.params
    limit = int(p.get("max_stars", D.RECONSTRUCTION_MAX_STARS))
    source_id, _ = read_latents(ctx.engine, model["id"], 1, split=split, limit=limit)
    labels = read_labels(ctx.engine, source_id)
    if baseline is not None:
        # The label model needs its labels: compare both models on the held-out stars that have them all.
        names = (baseline["config"] or {}).get("label_names") or D.BASELINE_LABELS
        ok = labels["labelled"] & np.all([np.isfinite(labels[n]) for n in names], axis=0)
        source_id = source_id[ok]
        labels = {k: v[ok] for k, v in labels.items()}
    return source_id, labels


def _spectra(engine: Engine, source_id: np.ndarray) -> dict[str, Any]:
    """G-flux-normalised coefficients, errors and (when every star has them) the archive correlations."""
    data = read_spectra(engine, source_id, with_correlations=True)
    if not np.array_equal(data["source_id"], source_id):
        raise RuntimeError("spectra and inference results disagree on the held-out stars")
    x, e = normalise_by_flux(data["coefficients"], data["errors"], data["phot_g_mean_flux"])
    corr = data["correlations"] if data["has_correlations"].all() else None
    return {"x": x, "sigma": e, "bp_correlations": None if corr is None else corr[:, 0],
            "rp_correlations": None if corr is None else corr[:, 1]}


def _baseline_outputs(engine: Engine, baseline: dict, labels: dict, common: dict):
    """The label baseline's outputs on the same stars, and the Teff/log g of its training stars."""
    bart = ModelArtifact.load(baseline["path"])
    lab = np.column_stack([labels[n] for n in bart.config.get("label_names", D.BASELINE_LABELS)])
    bout = infer_all(bart.build_model(), None, None, labels=lab, batch_size=16384)
    bxhat, bscat = _flux_units(bart, bout["xhat"], bout["scatter"])
    train_ids = np.asarray(bart.splits.get("train", []), dtype=np.int64)
    train_labels = None
    if train_ids.size:
        tl = read_labels(engine, train_ids)
        train_labels = {"teff": tl["teff"], "logg": tl["logg"]}
    return {**common, "x_hat": bxhat, "scatter": bscat}, train_labels


def _reconstruction(ctx: JobContext, model: dict, out_dir: Path) -> tuple[AnalysisResult, dict]:
    p = ctx.params
    art = ModelArtifact.load(model["path"])
    split = None if p.get("split", "test") == "all" else p.get("split", "test")
    baseline = _model_of_kind(ctx.engine, p["baseline_id"], "label_baseline", "--baseline") \
        if p.get("baseline_id") else None
    ctx.progress(0, None, "reading held-out spectra")
    source_id, labels = _held_out_stars(ctx, model, split, baseline)
    common = _spectra(ctx.engine, source_id)
    xs, es = art.normalisation.apply(common["x"], common["sigma"])
    out = infer_all(art.build_model(), xs, es, batch_size=16384)
    xhat, scat = _flux_units(art, out["xhat"], out["scatter"])
    models = {model["name"]: {**common, "x_hat": xhat, "scatter": scat}}
    train_labels = None
    if baseline is not None:
        models[baseline["name"]], train_labels = _baseline_outputs(ctx.engine, baseline, labels, common)
    result = run_reconstruction_report(models, {k: labels[k] for k in ("teff", "logg", "m_h")}, out_dir=out_dir,
                                       sample=f"{split or 'all'}", train_labels=train_labels,
                                       seed=int(p.get("seed", D.SEED)), progress=ctx.progress)
    return result, {"n_stars": int(len(source_id))}
