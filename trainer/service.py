"""The trainer: a training request (selection + configuration) becomes a trained, registered model.

Plain functions; the Celery task (trainer/tasks.py) only hands over a job id. Training checkpoints every N
epochs to XPVAE_HOME/checkpoints/train-job-<id>.pt and a redelivered or retried job resumes from there.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from sqlalchemy.engine import Engine

from db import bulk
from db.labels import read_labels
from db.models_registry import check_model_name, name_free, register_artifact, unique_name
from db.selection import Selection
from db.spectra import read_spectra
from jobqueue.runner import JobCancelled, JobContext
from shared.artifact import ModelArtifact
from shared.baseline import BaselineConfig, fit_label_baseline
from shared.errors import InputError
from shared.inference import infer_all
from shared.model import VAEConfig
from shared.params import describe_selection
from shared.preprocessing import finite_rows, normalise_by_flux
from shared.progress import Progress
from shared.recipe import Recipe, choose, n_train_rows
from shared.training import TrainConfig, TrainResult, fit_scatter_vae, load_checkpoint

# CLI/job parameter names → TrainConfig fields (the rest pass through unchanged).
_TRAIN_KEYS = {"epochs", "batch_size", "lr", "weight_decay", "t0", "t_mult", "eta_min", "seed", "checkpoint_every",
               "split", "compile", "threads", "likelihood"}


def train_config(params: dict, device: str, threads: int | None = None) -> TrainConfig:
    """``threads``: Settings.torch_threads, the default when the job gives none (None: torch's own)."""
    unknown = set(params) - _TRAIN_KEYS
    if unknown:
        raise ValueError(f"unknown training parameter(s): {sorted(unknown)}")
    defaults = {"threads": threads} if threads else {}
    return TrainConfig.from_dict({**defaults, **params, "device": device})


def resolved_train_config(p: dict, x: np.ndarray, e: np.ndarray, device: str,
                          threads: int | None = None) -> tuple[TrainConfig, Recipe | None]:
    """The job's TrainConfig. With ``p['recipe']`` (auto | published) the recipe fills batch size, lr, epochs and
    t0 for this training set's size, and the explicitly given ``p['train']`` values override it; a job without
    a recipe (older jobs, the demo) uses its parameters over the TrainConfig defaults."""
    given = dict(p.get("train", {}))
    if not p.get("recipe"):
        return train_config(given, device, threads), None
    split = tuple(given.get("split") or TrainConfig().split)
    n_train = n_train_rows(int(finite_rows(x, e, names=("x", "x_err"))[0].sum()), split)
    recipe = choose(p["recipe"], n_train, given)
    return train_config({**given, **recipe.settings}, device, threads), recipe


def load_training_set(engine: Engine, selection: Selection, progress: Progress | None = None,
                      correlations: bool = False, streams: int = 1) -> dict[str, np.ndarray]:
    """Spectra of the selection, G-flux normalised (docs/science.md §2 step 1), and with ``correlations`` their
    (N, 2, 1485) XP correlations (NaN where none are stored). Stars without a G flux cannot be normalised: the
    selection requires photometry, so they are never read. ``streams``: parallel read streams
    (Settings.read_streams)."""
    data = read_spectra(engine, selection, progress=progress, with_correlations=correlations, streams=streams)
    if len(data["source_id"]) == 0:
        raise InputError(f"no spectra with photometry match the selection "
                         f"({describe_selection(selection.to_dict())}): ingest Gaia XP spectra and photometry first, "
                         "or widen --source-id-min/--source-id-max/--quality/--limit")
    x, e = normalise_by_flux(data["coefficients"], data["errors"], data["phot_g_mean_flux"])
    out = {"source_id": data["source_id"], "x": x, "x_err": e}
    if correlations:
        out["correlations"] = data["correlations"]
    return out


class _MetricsWriter:
    """Per-epoch metrics → training_metrics rows (upsert: a resumed run rewrites the epochs it repeats) and
    progress on the job."""

    def __init__(self, ctx: JobContext, epochs: int):
        self.ctx, self.epochs = ctx, epochs

    def __call__(self, m: dict[str, float]) -> None:
        row = {"job_id": [self.ctx.job_id], "epoch": [int(m["epoch"])]}
        for k in ("loss", "nll", "kl", "val_loss", "val_nll", "val_kl", "lr", "seconds"):
            v = m.get(k)
            row[k] = [float(v) if v is not None and math.isfinite(float(v)) else None]
        with self.ctx.engine.begin() as conn:
            bulk.upsert_rows(conn, "training_metrics", row, key=("job_id", "epoch"))
        val = m.get("val_loss", float("nan"))
        self.ctx.progress(int(m["epoch"]), self.epochs,
                          f"epoch {int(m['epoch'])}/{self.epochs} loss {m['loss']:.3f} val {val:.3f}")


def _split_ids(result: TrainResult, source_id: np.ndarray) -> dict[str, list[int]]:
    return {k: source_id[v].tolist() for k, v in result.split.items()}


def _held_out_summary(result: TrainResult, x: np.ndarray, e: np.ndarray,
                      labels: np.ndarray | None = None) -> dict[str, Any]:
    """NLL and calibration on the test split, which training never saw (not even for early decisions).
    ``labels`` (all rows) are the label baseline's inputs; the sVAE needs none."""
    test = result.split["test"]
    if test.size == 0:
        return {}
    xs, es = result.normalisation.apply(x[test], e[test])
    out = infer_all(result.model, xs, es, labels=None if labels is None else labels[test], batch_size=65536)
    z = (xs - out["xhat"]) / np.sqrt(es ** 2 + out["scatter"].astype(np.float64) ** 2)
    summary = {"test_nll": float(np.mean(out["nll"])), "test_zscore_std": float(np.std(z)),
               "test_zscore_mean": float(np.mean(z)), "n_test": int(test.size)}
    if "kl" in out:
        summary["test_kl"] = float(np.mean(out["kl"]))
    return summary


def _should_stop(ctx: JobContext):
    def check() -> bool:
        try:
            ctx.check_cancelled()
        except JobCancelled:
            return True
        return False
    return check


def _resumed_from(path) -> int:
    if not path.exists():
        return 0
    try:
        return int(load_checkpoint(path).get("epoch", 0))
    except Exception:   # an unreadable checkpoint is reported by the engine itself
        return 0


def _model_name(ctx: JobContext, stem: str) -> str:
    """The job's model name, checked before any training (a bad or taken name must not cost a run): the given
    one, valid and free (or --replace), else a free default."""
    name = ctx.params.get("name")
    if not name:
        return unique_name(ctx.engine, f"{stem}-job{ctx.job_id}")
    check_model_name(name)
    name_free(ctx.engine, name, replace=ctx.params.get("replace") is True, job_id=ctx.job_id)
    return name


@dataclass
class _Plan:
    """What the sVAE and the label baseline do differently: the data they read, their configuration and the
    fit; the job around it (name check, checkpoint, cancellation, held-out summary, registration) is shared."""
    data: dict[str, np.ndarray]          # source_id, x, x_err (and correlations for the full likelihood)
    cfg: TrainConfig
    fit: Callable[..., TrainResult]      # the fit_* function with its data bound: the engine's keywords remain
    labels: np.ndarray | None = None     # the label baseline's inputs (all rows)
    recipe: Recipe | None = None


def _train_and_register(ctx: JobContext, stem: str, plan_job: Callable[[JobContext], _Plan]) -> dict:
    _model_name(ctx, stem)
    plan = plan_job(ctx)
    ckpt = ctx.settings.checkpoints_dir / f"train-job-{ctx.job_id}.pt"
    resumed_from = _resumed_from(ckpt)
    result = plan.fit(callback=_MetricsWriter(ctx, plan.cfg.epochs), checkpoint_path=ckpt, resume=True,
                      should_stop=_should_stop(ctx))
    if result.stopped:
        ctx.check_cancelled()      # raises JobCancelled: the checkpoint stays for `xpvae job retry`
    held_out = _held_out_summary(result, plan.data["x"], plan.data["x_err"], labels=plan.labels)
    recipe_info = {"recipe": plan.recipe.to_dict()} if plan.recipe is not None else {}
    return _register(ctx, result, plan.data["source_id"], stem, held_out, resumed_from, ckpt, recipe_info)


def run_train_job(ctx: JobContext) -> dict:
    """Train the scatter VAE on a selection (no labels used) and register it."""
    return _train_and_register(ctx, "svae", _plan_svae)


def run_baseline_job(ctx: JobContext) -> dict:
    """Train the label-dependent baseline (docs/science.md §8) on stars with good labels."""
    return _train_and_register(ctx, "baseline", _plan_baseline)


def _plan_svae(ctx: JobContext) -> _Plan:
    p = ctx.params
    selection = Selection.from_dict(p.get("selection"))
    model_cfg = VAEConfig.from_dict({**VAEConfig().to_dict(), **p.get("model", {})})
    ctx.progress(0, None, "reading spectra")
    # the full likelihood needs the correlations (12 kB a star): read them only then
    full = dict(p.get("train") or {}).get("likelihood") == "full"
    data = load_training_set(ctx.engine, selection, correlations=full, streams=ctx.settings.read_streams)
    cfg, recipe = resolved_train_config(p, data["x"], data["x_err"], ctx.settings.device, ctx.settings.torch_threads)
    if recipe is not None:
        ctx.progress(0, cfg.epochs, f"recipe {recipe.name}: {recipe.reason}")
    fit = functools.partial(fit_scatter_vae, data["x"], data["x_err"], model_cfg, cfg,
                            correlations=data.get("correlations"))
    return _Plan(data, cfg, fit, recipe=recipe)


def _plan_baseline(ctx: JobContext) -> _Plan:
    p = ctx.params
    sel_dict = dict(p.get("selection") or {})
    sel_dict.setdefault("quality", "good")
    selection = Selection.from_dict(sel_dict)
    cfg = train_config(p.get("train", {}), ctx.settings.device)
    bcfg = BaselineConfig.from_dict(p.get("model", {})) if p.get("model") else BaselineConfig()
    ctx.progress(0, cfg.epochs, "reading spectra and labels")
    data = load_training_set(ctx.engine, selection, streams=ctx.settings.read_streams)
    labels = read_labels(ctx.engine, data["source_id"])
    lab = np.column_stack([np.asarray(labels[n], dtype=np.float64) for n in bcfg.label_names])
    fit = functools.partial(fit_label_baseline, lab, data["x"], data["x_err"], bcfg, cfg)
    return _Plan(data, cfg, fit, labels=lab)


def _register(ctx: JobContext, result: TrainResult, source_id: np.ndarray, stem: str, held_out: dict,
              resumed_from: int, ckpt, recipe_info: dict | None = None) -> dict:
    name = _model_name(ctx, stem)     # again: a default name may have been taken while this job trained
    recipe_info = recipe_info or {}
    art = ModelArtifact.from_training(result, splits=_split_ids(result, source_id))
    art.training.update(held_out)
    if result.extra.get("label_normalisation"):
        art.training["label_normalisation"] = result.extra["label_normalisation"]
    last = result.history[-1] if result.history else {}
    summary = {"epochs": result.epochs_completed, "val_nll": last.get("val_nll"), **held_out,
               "seconds": result.seconds, "device": result.device, "excluded_rows": result.excluded.count,
               **recipe_info, **_likelihood_summary(result)}
    reg = register_artifact(ctx.engine, art, name=name, models_dir=ctx.settings.models_dir,
                            replace=ctx.params.get("replace") is True, job_id=ctx.job_id, summary=summary,
                            n_train=int(result.split["train"].size))
    ckpt.unlink(missing_ok=True)   # the registered artifact supersedes the checkpoint
    return {"model_id": reg.model_id, "name": name, "artifact": reg.path, "epochs_completed": result.epochs_completed,
            "resumed_from_epoch": resumed_from, "n_train": int(result.split["train"].size),
            "val_nll": last.get("val_nll"), **held_out, "seconds": result.seconds, "device": result.device,
            "batch_size": result.train_config.batch_size, "lr": result.train_config.lr, **recipe_info,
            **_likelihood_summary(result)}


def _likelihood_summary(result: TrainResult) -> dict:
    """The likelihood trained with and, for the full one, how many stars fell back to the diagonal."""
    lk = result.likelihood
    out = {"likelihood": lk.get("kind", "diagonal")}
    if "diagonal_fallback" in lk:
        out["diagonal_fallback_stars"] = lk["diagonal_fallback"]["stars"]
    return out
