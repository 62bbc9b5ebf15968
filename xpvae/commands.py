"""Job commands: ingest, train, infer, analyze, plus simulate, model import and demo."""
from __future__ import annotations

import os
from pathlib import Path

import click

from shared import defaults as D
from shared import params as P
from shared.paths import expand_path
from shared.recipe import PUBLISHED
from xpvae.compose import refuse_host_artifacts, worker_path
from xpvae.jobrun import EXIT_NOT_FOUND, EXIT_USAGE, Spec, _die, _engine, run_job


def selection_options(fn):
    """Options that pick the stars a job works on (see db.selection.Selection)."""
    opts = [
        click.option("--source-id-min", "source_id_lo", type=Spec(P.SELECTION["source_id_lo"]),
                     help="smallest Gaia source_id to include"),
        click.option("--source-id-max", "source_id_hi", type=Spec(P.SELECTION["source_id_hi"]),
                     help="largest Gaia source_id to include"),
        click.option("--quality", type=click.Choice(["pristine", "good", "giant", "cool_giant"]),
                     help="only stars whose APOGEE labels pass this selection (docs/science.md §9)"),
        click.option("--labelled/--any-labels", default=None, help="only stars with (or any) APOGEE labels"),
        click.option("--limit", type=Spec(P.SELECTION["limit"]),
                     help="at most this many stars (lowest source ids first)"),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def _selection(kw: dict) -> dict:
    sel = {k: kw.pop(k) for k in ("source_id_lo", "source_id_hi", "quality", "labelled", "limit")}
    sel = {k: v for k, v in sel.items() if v is not None}
    try:
        P.check_selection(sel)          # what no single option can see: --source-id-min above --source-id-max
    except P.InputError as exc:
        raise click.UsageError(str(exc)) from None
    return sel


def _model_ref(ref: str, flag: str = "--model", kind: str | None = "svae") -> int:
    """--model/--baseline: a name, or an id as N or id:N → the id (exit 2 if malformed or not of ``kind``,
    4 if no such model)."""
    from db.models_registry import InvalidModelName, ModelNotFound, get_model
    try:
        model = get_model(_engine(), ref)
    except InvalidModelName as exc:
        _die(str(exc), EXIT_USAGE)
    except ModelNotFound as exc:
        _die(str(exc), EXIT_NOT_FOUND)
    if kind is not None and model["kind"] != kind:
        _die(f"{flag} {ref}: model {model['name']!r} is of kind {model['kind']}, {flag} takes a model of kind "
             f"{kind} (see `xpvae models`)", EXIT_USAGE)
    return int(model["id"])


def _valid_name(ctx, param, value):
    from db.models_registry import InvalidModelName, check_model_name
    try:
        return None if value is None else check_model_name(value)
    except InvalidModelName as exc:
        raise click.BadParameter(str(exc)) from None


def name_option(default_text: str):
    return click.option("--name", callback=_valid_name, help=f"model name: a letter, then up to 63 letters, digits, "
                        f"'.', '_' or '-' (default: {default_text})")


replace_option = click.option("--replace", is_flag=True, help="if the name is taken, replace that model and delete "
                              "its inference and analysis results (else a taken name is refused)")


def _check_name_free(name: str | None, replace: bool) -> None:
    """Refuse a taken --name before any work is queued (the job checks again)."""
    from db.models_registry import ModelNameTaken, name_free
    if name:
        try:
            name_free(_engine(), name, replace=replace)
        except ModelNameTaken as exc:
            _die(str(exc), EXIT_USAGE)


wait_option = click.option("--wait", is_flag=True, help="stack mode: follow the job with a progress line until it ends")


# --- ingest --------------------------------------------------------------------------------------------------
def _expand(paths: tuple[str, ...]) -> list[str]:
    """Absolute paths and patterns for the job (workers may run elsewhere). Globs travel unexpanded, so that
    the loader knows which files were named and which were found (those of the wrong kind are passed over)."""
    out: list[str] = []
    for p in paths:
        try:
            expand_path(p)          # the loader's rule (shared.paths): fail here, before a job exists
        except FileNotFoundError as exc:
            raise click.BadParameter(str(exc)) from None
        text = os.path.abspath(os.path.expanduser(p))
        out.append(worker_path(text))   # as the workers will open it (absolute; /data/... in containers)
    return out


@click.group("ingest")
def ingest_group() -> None:
    """Load Gaia XP spectra, photometry, APOGEE labels or the published catalogue into the database."""


def _ingest(source: str, paths: list[str], wait: bool, **extra) -> None:
    run_job("ingest", {"source": source, "paths": paths, **extra}, wait=wait, label=f"ingest {source}")


files_per_shard_option = click.option(
    "--files-per-shard", type=Spec(P.INGEST["files_per_shard"]), default=0,
    help="files per shard, the unit that ingest workers share out (default 0: one file each, small files "
         "grouped up to 64 MB)")


@ingest_group.command("gaia-xp")
@click.argument("paths", nargs=-1, required=True)
@click.option("--no-correlations", is_flag=True, help="drop the correlation arrays (89 % of the bytes); "
              "χ² metrics are then reported as unavailable")
@files_per_shard_option
@wait_option
def ingest_gaia_xp(paths, no_correlations, files_per_shard, wait) -> None:
    """Gaia DR3 XP continuous spectra: CSV, ECSV, FITS, VOTable, DataLink zips, bulk .csv.gz, flat tables.
    PATHS may be files, directories or globs; their files are shared out over the ingest workers."""
    _ingest("gaia-xp", _expand(paths), wait, correlations=not no_correlations, files_per_shard=files_per_shard)


@ingest_group.command("photometry")
@click.argument("paths", nargs=-1, required=True)
@files_per_shard_option
@wait_option
def ingest_photometry(paths, files_per_shard, wait) -> None:
    """Gaia photometry (source_id, phot_g_mean_flux, phot_g_mean_mag, phot_bp_mean_mag, phot_rp_mean_mag)."""
    _ingest("photometry", _expand(paths), wait, files_per_shard=files_per_shard)


@ingest_group.command("apogee")
@click.argument("path")
@wait_option
def ingest_apogee(path, wait) -> None:
    """APOGEE DR17 allStar FITS (DR16 −9999 conventions accepted); computes the cross-match and quality flags."""
    _ingest("apogee", _expand((path,)), wait)


@ingest_group.command("catalogue")
@click.argument("path")
@click.option("--norm", type=click.Path(exists=True, dir_okay=False), help="the release's apogee_norm.npz")
@wait_option
def ingest_catalogue(path, norm, wait) -> None:
    """The authors' published XP×APOGEE catalogue (xp_apogee_cat.h5)."""
    _ingest("catalogue", _expand((path,)), wait, norm=worker_path(norm) if norm else None)


# --- train ---------------------------------------------------------------------------------------------------
@click.command("train")
@name_option("svae-job<job id>")
@replace_option
@click.option("--recipe", type=click.Choice(["auto", "published"]), default="auto", show_default=True,
              help="auto: batch size, lr and epochs from the number of optimiser steps the training set allows; "
                   f"published: the authors' lr {PUBLISHED['lr']:.0e}, batch {PUBLISHED['batch_size']}, "
                   f"{PUBLISHED['epochs']} epochs (tuned for ~360k training spectra). "
                   "--epochs, --batch-size, --lr and --t0 override either")
@click.option("--epochs", type=Spec(P.TRAIN["epochs"]),
              help=f"default: from the recipe (the published model used {PUBLISHED['epochs']})")
@click.option("--batch-size", type=Spec(P.TRAIN["batch_size"]),
              help=f"default: from the recipe; at most the number of training spectra ({D.SPLIT[0] * 100:g} % of "
                   "the selection)")
@click.option("--lr", type=Spec(P.TRAIN["lr"]), help="peak learning rate; default: from the recipe")
@click.option("--weight-decay", type=Spec(P.TRAIN["weight_decay"]), default=D.WEIGHT_DECAY, show_default=True)
@click.option("--t0", type=Spec(P.TRAIN["t0"]), help="cosine warm-restart period in epochs; default: from the recipe")
@click.option("--latent-dim", type=Spec(P.SVAE["latent_dim"]), default=D.LATENT_DIM, show_default=True)
@click.option("--hidden", type=Spec(P.SVAE["hidden"]), default=",".join(map(str, D.HIDDEN)), show_default=True,
              help="encoder widths")
@click.option("--seed", type=Spec(P.SEED), default=D.SEED, show_default=True)
@click.option("--checkpoint-every", type=Spec(P.TRAIN["checkpoint_every"]), default=D.CHECKPOINT_EVERY,
              show_default=True, help="epochs between checkpoints (0: only at the end)")
@click.option("--likelihood", type=click.Choice(["diagonal", "full"]), default="diagonal", show_default=True,
              help="diagonal: errors only, as published; full: each star's XP covariance, Σ + diag(ŝ²) per "
                   "band (needs stored correlations; bands without usable ones fall back to diagonal and are "
                   "counted; several times slower per epoch)")
@selection_options
@wait_option
def train_cmd(name, replace, recipe, epochs, batch_size, lr, weight_decay, t0, latent_dim, hidden, seed,
              checkpoint_every, likelihood, wait, **kw):
    """Train the scatter VAE on the selected spectra (no labels used) and register the model."""
    _check_name_free(name, replace)
    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "t0": t0}
    params = {"name": name, "replace": replace, "selection": _selection(kw), "recipe": recipe,
              "model": {"latent_dim": latent_dim, "hidden": list(hidden)},
              "train": {**{k: v for k, v in given.items() if v is not None}, "weight_decay": weight_decay,
                        "seed": seed, "checkpoint_every": checkpoint_every, "likelihood": likelihood}}
    run_job("train", params, wait=wait, label="train")


def _label_names(text: str) -> list[str]:
    """Parse --labels: known real-valued APOGEE columns, no repeats; a clear error otherwise."""
    import numpy as np

    from shared.xp import APOGEE_COLUMNS
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    numeric = sorted(k for k, t in APOGEE_COLUMNS.items() if t is not str and np.issubdtype(t, np.floating))
    unknown = [n for n in names if n not in numeric]
    if not names or unknown or len(set(names)) != len(names):
        raise click.BadParameter(f"{text!r}: give distinct label columns from {', '.join(numeric)}"
                                 + (f" (unknown: {', '.join(unknown)})" if unknown else ""), param_hint="--labels")
    return names


@click.command("train-baseline")
@name_option("baseline-job<job id>")
@replace_option
@click.option("--epochs", type=Spec(P.TRAIN["epochs"]), default=D.BASELINE_EPOCHS, show_default=True)
@click.option("--batch-size", type=Spec(P.TRAIN["batch_size"]), default=D.BASELINE_BATCH_SIZE, show_default=True)
@click.option("--lr", type=Spec(P.TRAIN["lr"]), default=D.BASELINE_LR, show_default=True)
@click.option("--seed", type=Spec(P.SEED), default=D.SEED, show_default=True)
@click.option("--labels-from", type=click.Choice(["good", "pristine"]), default="good", show_default=True)
@click.option("--labels", "label_names", default=",".join(D.BASELINE_LABELS), show_default=True,
              help="comma list of APOGEE label columns the baseline maps from, e.g. add sfd_ebv as a reddening proxy")
@selection_options
@wait_option
def train_baseline_cmd(name, replace, epochs, batch_size, lr, seed, labels_from, label_names, wait, **kw):
    """Train the label-dependent baseline (labels → spectrum + scatter) on stars with good labels."""
    _check_name_free(name, replace)
    sel = _selection(kw)
    sel.setdefault("quality", labels_from)
    params = {"name": name, "replace": replace, "selection": sel, "model": {"label_names": _label_names(label_names)},
              "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}}
    run_job("train_baseline", params, wait=wait, label="train-baseline")


# --- infer ---------------------------------------------------------------------------------------------------
@click.command("infer")
@click.option("--model", "model_ref", required=True, help="model name, or id as N or id:N")
@click.option("--shards", type=Spec(P.INFER["shards"]), default=0,
              help=f"number of shards (default 0: about {D.STARS_PER_SHARD:,} stars each)")
@click.option("--batch-size", type=Spec(P.INFER["batch_size"]), default=D.INFER_BATCH_SIZE, show_default=True)
@selection_options
@wait_option
def infer_cmd(model_ref, shards, batch_size, wait, **kw):
    """Run a model over the selected stars: latents (μ, σ), NLL, z-score and χ² summaries into inference_results."""
    params = {"model_id": _model_ref(model_ref), "selection": _selection(kw), "shards": shards,
              "batch_size": batch_size}
    run_job("infer", params, wait=wait, label="infer")


# --- analyze -------------------------------------------------------------------------------------------------
@click.group("analyze")
def analyze_group() -> None:
    """The science analyses; statistics go to SQL tables, figures and a report under XPVAE_HOME/reports."""


@analyze_group.command("alpha")
@click.option("--model", "model_ref", required=True, help="sVAE model name, or id as N or id:N (its inference "
              "must have run)")
@click.option("--folds", type=Spec(P.ALPHA["n_folds"]), default=D.ALPHA_FOLDS, show_default=True)
@click.option("--bootstrap", type=Spec(P.ALPHA["n_boot"]), default=D.ALPHA_BOOTSTRAP, show_default=True,
              help="bootstrap resamples of stars for the 95 % intervals")
@click.option("--seed", type=Spec(P.SEED), default=D.SEED, show_default=True)
@wait_option
def analyze_alpha(model_ref, folds, bootstrap, seed, wait):
    """[α/M] bimodality: classifiers (latents vs labels), dip test, ΔBIC, unsupervised mixtures, tracks."""
    params = {"model_id": _model_ref(model_ref), "n_folds": folds, "n_boot": bootstrap, "seed": seed}
    run_job("analyze_alpha", params, wait=wait, label="analyze alpha")


@analyze_group.command("alpha-catalogue")
@click.option("--model", "model_ref", required=True, help="sVAE model name, or id as N or id:N (its inference "
              "must have run)")
@click.option("--sample", type=click.Choice(P.ALPHA_CATALOGUE_SAMPLES), default="pristine", show_default=True,
              help="the labelled stars the classifier learns the Patil et al. 2023 high-α class from")
@click.option("--features", type=click.Choice(P.ALPHA_CATALOGUE_FEATURES), default="latents", show_default=True,
              help="classifier features: the latent means and widths, or those and the Gaia BP-RP colour (stars "
                   "without a colour get P from a latents-only classifier and are counted)")
@click.option("--seed", type=Spec(P.SEED), default=D.SEED, show_default=True)
@wait_option
def analyze_alpha_catalogue(model_ref, sample, features, seed, wait):
    """P(high-α) for every star the model inferred, labelled or not, calibrated on out-of-fold predictions;
    stored in alpha_probabilities (a rerun replaces the model's rows), with a report: reliability diagram,
    purity and completeness against the threshold, and the high-α candidates at purity >= 0.9."""
    params = {"model_id": _model_ref(model_ref), "sample": sample, "features": features, "seed": seed}
    run_job("analyze_alpha_catalogue", params, wait=wait, label="analyze alpha-catalogue")


@analyze_group.command("reconstruction")
@click.option("--model", "model_ref", required=True, help="sVAE model name, or id as N or id:N")
@click.option("--baseline", "baseline_ref", help="label-dependent baseline (name, N or id:N) to compare "
              "with, on the same stars")
@click.option("--split", type=click.Choice(["test", "validation", "all"]), default="test", show_default=True)
@click.option("--max-stars", type=Spec(P.RECONSTRUCTION["max_stars"]), default=D.RECONSTRUCTION_MAX_STARS,
              show_default=True)
@wait_option
def analyze_reconstruction(model_ref, baseline_ref, split, max_stars, wait):
    """Reconstruction report: per-coefficient z-scores, χ²/dof per band, by Teff, log g and [M/H]."""
    params = {"model_id": _model_ref(model_ref), "split": split, "max_stars": max_stars,
              "baseline_id": _model_ref(baseline_ref, "--baseline", "label_baseline") if baseline_ref else None}
    run_job("analyze_reconstruction", params, wait=wait, label="analyze reconstruction")


# --- models --------------------------------------------------------------------------------------------------
@click.group("model")
def model_group() -> None:
    """Import models."""


@model_group.command("import-published")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False, readable=True),
              help="weight.pt of the authors' release (default: $XPVAE_SHARED/reference/scatter_vae_apogee/weight.pt; "
              "XPVAE_SHARED defaults to the repository's reference/ folder, which holds them)")
@click.option("--norm", type=click.Path(exists=True, dir_okay=False, readable=True),
              help="apogee_norm.npz of the data release (without it the model cannot run on spectra)")
@click.option("--name", default="published-svae", show_default=True, callback=_valid_name,
              help="model name: a letter, then up to 63 letters, digits, '.', '_' or '-'")
@replace_option
def import_published(weights, norm, name, replace):
    """Register the authors' released sVAE (Laroche & Speagle, MIT) as a model. The weights file is read as
    tensors and plain data only: a file holding anything else is refused, never run."""
    refuse_host_artifacts("xpvae model import-published --weights /data/... --norm /data/...")
    from db.models_registry import ModelNameTaken, register_artifact
    from shared.artifact import ModelArtifact
    from shared.settings import get_settings
    settings = get_settings()
    weights = Path(weights) if weights else settings.shared_dir / "reference/scatter_vae_apogee/weight.pt"
    if not weights.exists():
        _die(f"{weights}: not found (pass --weights)", EXIT_NOT_FOUND)
    _check_name_free(name, replace)
    try:
        art = ModelArtifact.from_published(weights, norm)
    except ValueError as exc:          # refused, unreadable or not these weights: one line, no traceback
        _die(str(exc), EXIT_USAGE)
    try:
        reg = register_artifact(_engine(), art, name=name, models_dir=settings.models_dir, replace=replace,
                                summary={**art.training, "source": art.source})
    except ModelNameTaken as exc:
        _die(str(exc), EXIT_USAGE)
    click.echo(f"registered model {reg.model_id} {name!r} from {weights}" + ("" if norm else
               " (no normalisation given: it cannot run on spectra until imported again with --norm "
               "apogee_norm.npz --replace)"))


def register(main: click.Group) -> None:
    for cmd in (ingest_group, train_cmd, train_baseline_cmd, infer_cmd, analyze_group, model_group):
        main.add_command(cmd)
    from simulator.cli import simulate
    main.add_command(simulate)
    from xpvae.demo import demo
    main.add_command(demo)
    from xpvae.fetch import fetch_group
    main.add_command(fetch_group)
    from xpvae.stack import worker
    main.add_command(worker)
