"""`xpvae demo` / `make demo`: the whole pipeline on a simulated survey, on whatever the settings point at
(by default the embedded SQLite database and in-process jobs): simulate → ingest → train the sVAE and the
label baseline → infer → both analyses → headline numbers, report paths and SQL to paste."""
from __future__ import annotations

import functools
import json
import time

import click

from shared import params as P
from shared.settings import get_settings
from xpvae.jobrun import Spec

SQL_EXAMPLES = [
    ("the verdict per judged sample (1 yes, 0 no): labels + latents vs Teff, log g, [M/H] denoised by the "
     "latents' estimates of them; gain interval and one-sided p",
     "SELECT v.sample, v.value AS verdict, v.ci_lo AS gain_lo, v.ci_hi AS gain_hi, p.value AS p "
     "FROM analysis_statistics v JOIN analysis_statistics p ON p.job_id = v.job_id AND p.sample = v.sample "
     "AND p.statistic = 'balanced_accuracy_diff_p' AND p.subject = v.subject "
     "WHERE v.report = 'alpha' AND v.statistic = 'alpha_verdict' ORDER BY v.sample;"),
    ("latents with labels of the pristine giants",
     "SELECT source_id, z1, z2, z3, teff, logg, m_h, alpha_m, high_alpha FROM latents "
     "WHERE model = '{model}' AND pristine AND giant LIMIT 10;"),
    ("classifier accuracy by feature set, with bootstrap intervals",
     "SELECT sample, subject AS features, value, ci_lo, ci_hi, n FROM analysis_statistics "
     "WHERE report = 'alpha' AND statistic = 'balanced_accuracy' AND bin_var IS NULL ORDER BY sample, value DESC;"),
    ("bimodality of the α coordinate per [M/H] bin",
     "SELECT sample, subject, bin_lo, bin_hi, statistic, value FROM analysis_statistics "
     "WHERE report = 'alpha' AND statistic IN ('dip_p', 'delta_bic') AND bin_var = 'm_h' "
     "ORDER BY sample, subject, bin_lo;"),
    ("the stars the model explains worst (README: Anomalies)",
     "SELECT r.source_id, r.anomaly_score, r.anomaly_p FROM inference_results r JOIN models m ON m.id = r.model_id "
     "WHERE m.name = '{model}' AND r.anomaly_score IS NOT NULL ORDER BY r.anomaly_score DESC LIMIT 10;"),
]


def _step(title: str):
    click.secho(f"\n▶ {title}", bold=True)
    return time.perf_counter()


@click.command("demo")
@click.option("--n-stars", type=int, default=25000, show_default=True, help="size of the simulated survey")
@click.option("--epochs", type=Spec(P.TRAIN["epochs"]), default=150, show_default=True, help="sVAE training epochs")
@click.option("--batch-size", type=Spec(P.TRAIN["batch_size"]), default=256, show_default=True,
              help="sVAE batch size (small batches: enough optimiser steps on a small survey)")
@click.option("--lr", type=Spec(P.TRAIN["lr"]), default=2e-3, show_default=True,
              help="sVAE peak learning rate (one cosine cycle)")
@click.option("--baseline-epochs", type=Spec(P.TRAIN["epochs"]), default=150, show_default=True)
@click.option("--label-fraction", type=float, default=0.3, show_default=True)
@click.option("--alpha-signal", type=float, default=1.0, show_default=True)
@click.option("--mag-max", type=float, default=16.0, show_default=True,
              help="faintest simulated G (APOGEE×XP stars are mostly G ≲ 16)")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU threads for training: batches of 256 through a 67k-parameter network gain little from "
                   "more, and two threads on two busy cores wait on each other")
@click.option("--bootstrap", type=Spec(P.ALPHA["n_boot"]), default=200, show_default=True,
              help="bootstrap resamples for intervals")
@click.option("--seed", type=Spec(P.SEED), default=1, show_default=True)
@click.option("--likelihood", type=click.Choice(["diagonal", "full"]), default="diagonal", show_default=True,
              help="sVAE likelihood: diagonal errors (the published recipe) or each star's full XP covariance "
                   "(several times slower to train; see docs/science-validation.md)")
@click.option("--anomaly-fraction", type=float, default=0.01, show_default=True,
              help="share of simulated stars made anomalous (emission lines, binaries, a corrupted band, a wrong G "
                   "flux), then report how many the anomaly score finds in its top 1 % and 5 %; 0 turns it off")
def demo(n_stars, epochs, batch_size, lr, baseline_epochs, label_fraction, alpha_signal, mag_max, threads, bootstrap,
         seed, likelihood, anomaly_fraction) -> None:
    """Run the whole pipeline on a simulated survey and print where the results are. A re-run with the same
    --seed replaces the demo's models (demo-svae-s<seed>, or demo-svae-s<seed>-full with --likelihood full,
    and demo-baseline-s<seed>) and their results."""
    from db.engine import get_engine
    from db.migrate import upgrade
    from simulator.survey import simulate_survey
    from xpvae.jobrun import run_job as submit
    run_job = functools.partial(submit, show_result=False)      # the demo prints its own digest of each step
    from xpvae.progress import ProgressLine
    settings = get_settings()
    t_start = time.perf_counter()
    click.secho(f"xpvae demo: {n_stars:,} simulated stars, database {settings.database_url}, "
                f"{'in-process jobs' if settings.embedded else 'jobs on ' + settings.broker_url}", bold=True)

    t = _step("1/8 simulate a Gaia XP × APOGEE survey with known truth")
    survey = settings.home / "demo" / (f"survey-n{n_stars}-s{seed}-a{alpha_signal:g}-f{label_fraction:g}-g{mag_max:g}"
                                       + (f"-x{anomaly_fraction:g}" if anomaly_fraction else ""))
    if (survey / "manifest.json").exists():
        click.echo(f"reusing {survey}")
    else:
        bar = ProgressLine("simulate")
        simulate_survey(n_stars, seed, alpha_signal=alpha_signal, label_fraction=label_fraction, out_dir=survey,
                        formats=("csv",), mag_range=(9.0, mag_max), progress=bar,
                        anomaly_fraction=anomaly_fraction)
        bar.close()
    click.echo(f"done in {time.perf_counter() - t:.0f} s → {survey}")

    upgrade(get_engine(settings.database_url))
    t = _step("2/8 ingest XP spectra (archive CSV with correlations), photometry and APOGEE labels")
    xp_files = sorted(str(p) for p in (survey / "xp" / "csv").glob("*.csv"))
    run_job("ingest", {"source": "gaia-xp", "paths": xp_files, "correlations": True}, wait=True, label="ingest xp")
    run_job("ingest", {"source": "photometry", "paths": [str(survey / "photometry.csv")]}, wait=True,
            label="ingest photometry")
    apogee = next(survey.glob("allStar*.fits"))
    run_job("ingest", {"source": "apogee", "paths": [str(apogee)]}, wait=True, label="ingest apogee")
    click.echo(f"done in {time.perf_counter() - t:.0f} s")

    t = _step(f"3/8 train the scatter VAE ({epochs} epochs, batch {batch_size}, lr {lr:g} in one cosine cycle, "
              f"{likelihood} likelihood, no labels; the demo's own settings, not `xpvae train`'s default "
              "--recipe auto)")
    # The demo's own models (named by seed) are replaced on a re-run, with their earlier results.
    train = run_job("train", {"name": f"demo-svae-s{seed}" + ("-full" if likelihood == "full" else ""),
                              "replace": True, "selection": {},
                              "train": {"epochs": epochs, "seed": seed, "checkpoint_every": 20,
                                        "batch_size": batch_size, "lr": lr, "t0": max(epochs, 1),
                                        "threads": threads, "likelihood": likelihood}}, wait=True,
                    label="train")["result"]
    click.echo(f"done in {time.perf_counter() - t:.0f} s")

    t = _step("4/8 train the label-dependent baseline on the good-label stars")
    # The baseline gets the reddening proxy too (docs/science.md §8): without it the simulated extinction dominates
    # its residuals everywhere and hides where it lacks labels (docs/science-validation.md).
    base = run_job("train_baseline", {"name": f"demo-baseline-s{seed}", "replace": True,
                                      "selection": {"quality": "good"},
                                      "model": {"label_names": ["teff", "logg", "m_h", "alpha_m", "sfd_ebv"]},
                                      "train": {"epochs": baseline_epochs, "seed": seed, "lr": 1e-3,
                                                "batch_size": 256, "t0": max(baseline_epochs, 1),
                                                "threads": threads}},
                   wait=True, label="train-baseline")["result"]
    click.echo(f"done in {time.perf_counter() - t:.0f} s")

    t = _step("5/8 infer latents, NLL, z-scores and χ² for every star")
    run_job("infer", {"model_id": train["model_id"], "selection": {}, "shards": 0}, wait=True, label="infer")
    click.echo(f"done in {time.perf_counter() - t:.0f} s")

    t = _step("6/8 reconstruction report: sVAE vs label baseline on held-out stars")
    rec = run_job("analyze_reconstruction", {"model_id": train["model_id"], "baseline_id": base["model_id"],
                                             "split": "test", "max_stars": 20000, "seed": seed},
                  wait=True, label="analyze reconstruction")["result"]
    click.echo(f"done in {time.perf_counter() - t:.0f} s")

    t = _step("7/8 [α/M] analysis: classifiers, bimodality, unsupervised mixtures, tracks")
    alpha = run_job("analyze_alpha", {"model_id": train["model_id"], "n_folds": 5, "n_boot": bootstrap,
                                      "seed": seed}, wait=True, label="analyze alpha")["result"]
    click.echo(f"done in {time.perf_counter() - t:.0f} s")

    t = _step("8/8 P(high-α) for every star: classifier on the pristine labelled stars, calibrated out of fold")
    catalogue = run_job("analyze_alpha_catalogue", {"model_id": train["model_id"], "sample": "pristine",
                                                    "seed": seed}, wait=True,
                        label="analyze alpha-catalogue")["result"]
    truth_cal = _truth_calibration(train["name"], survey, catalogue, settings)
    click.echo(f"done in {time.perf_counter() - t:.0f} s")

    from xpvae.anomaly_recall import stored_recall
    anomalies = stored_recall(get_engine(settings.database_url), train["name"], survey / "truth.parquet")
    summary = {"wall_seconds": round(time.perf_counter() - t_start, 1), "n_stars": n_stars,
               "anomaly_recall": anomalies, "alpha_catalogue_headline": catalogue.get("headline"),
               "alpha_catalogue_simulated_truth": truth_cal,
               "svae": {k: train.get(k) for k in ("name", "test_nll", "test_zscore_std", "test_zscore_mean",
                                                  "epochs_completed", "likelihood", "diagonal_fallback_stars")},
               "baseline": {k: base.get(k) for k in ("name", "test_nll")},
               "alpha_headline": alpha.get("headline"), "reconstruction_headline": rec.get("headline"),
               "reports": [alpha["report"], rec["report"], catalogue["report"]]}
    out = settings.home / "demo" / "summary.json"
    out.write_text(json.dumps(summary, indent=1, default=str))
    _print_summary(summary, train, alpha, rec, catalogue, settings)


def _truth_calibration(model_name: str, survey, catalogue: dict, settings) -> dict:
    """P(high-α) of the never-labelled simulated stars against their true class: summary, and the same figure
    as the held-out one beside the catalogue's report."""
    from analysis.alpha_catalogue import calibration_summary
    from analysis.figures import calibration_curves
    from db.engine import get_engine
    from xpvae.alpha_truth import unlabelled_truth_calibration
    cal = unlabelled_truth_calibration(get_engine(settings.database_url), model_name, survey / "truth.parquet")
    if cal is None:
        return {}
    threshold = (catalogue.get("headline") or {}).get("threshold_purity_0.9")
    path = calibration_curves(cal, settings.home / "demo" / "calibration_simulated_truth.png",
                              what="never-labelled simulated stars (true class)", threshold=threshold)
    out = calibration_summary(cal)
    if threshold is not None:
        out["at_catalogue_threshold"] = dict(zip(("purity", "completeness", "n"), cal.at(threshold)))
    return {**out, "figure": str(path)}


def _print_summary(summary, train, alpha, rec, catalogue, settings) -> None:
    click.secho(f"\n✔ demo finished in {summary['wall_seconds']:.0f} s", bold=True, fg="green")
    click.echo(f"\nheld-out sVAE ({train['name']}): NLL per star {train.get('test_nll', float('nan')):.2f}, "
               f"z-score with scatter: mean {train.get('test_zscore_mean', float('nan')):+.3f}, "
               f"std {train.get('test_zscore_std', float('nan')):.3f} (1 = calibrated)")
    from xpvae.headlines import alpha_lines
    for line in alpha_lines(alpha.get("headline") or {}):
        click.echo(line)
    from xpvae.headlines import catalogue_lines
    for line in catalogue_lines(catalogue.get("headline") or {}, summary.get("alpha_catalogue_simulated_truth")):
        click.echo(line)
    from xpvae.anomaly_recall import recall_lines
    for line in recall_lines(summary.get("anomaly_recall") or {}):
        click.echo(line)
    n_figures = sum(len(r["figures"]) for r in (alpha, rec, catalogue))
    click.echo(f"\nreports:\n  {alpha['report']}\n  {rec['report']}\n  {catalogue['report']}\nfigures: {n_figures} "
               f"PNG files beside them\nsummary: {settings.home / 'demo' / 'summary.json'}")
    truth = summary.get("alpha_catalogue_simulated_truth") or {}
    if truth.get("figure"):
        click.echo(f"P(high-α) against the simulator's true classes: {truth['figure']}")
    db = settings.database_url
    shell = f"sqlite3 {db.removeprefix('sqlite:///')}" if db.startswith("sqlite") else "psql …"
    click.echo(f"\nSQL to paste into `{shell}`:")
    for title, sql in SQL_EXAMPLES:
        click.echo(f"  -- {title}\n  {sql.format(model=train['name'])}")
