"""Calibration and power of the [α/M] verdict (analysis.alpha): many small simulated surveys, each trained
briefly, judged at alpha_signal 0 (the spectra hold no [α/M]: every "yes" is a false positive) and 1 (every
"no" is a miss), on the same stars for both (same seed).

For every sample the report judges it counts the verdicts of the test (e) − (f) and, for comparison, how often
the older gain over the labels alone, (e) − (c), had its 95 % interval above 0. Rates come with 95 %
Clopper–Pearson intervals. Results go to a JSON-lines file, one line per survey and alpha_signal, written as
they come so that a long sweep can be read (and resumed) while it runs:

    python -m bench.bench_alpha_null --surveys 20 --out bench/results/alpha_null.jsonl [--cache DIR]
    python -m bench.bench_alpha_null --summarise bench/results/alpha_null*.jsonl

(Two processes, one per alpha_signal with ``--alpha 0`` / ``--alpha 1`` and their own files, halve the wall
time on two cores. ``--cache`` keeps each survey's latents, so that a changed test statistic can be re-measured
on the same surveys without retraining.)

`python -m bench alpha_null [--quick]` runs a short sweep into a temporary file. Seeds start at 9101: no test
uses them. docs/science-validation.md records the figures.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import beta

SAMPLES = ("pristine", "pristine_cool_giants", "good", "good_cool_giants")
FEATURES = ("labels", "labels_latents", "labels_denoised")
FIRST_SEED = 9101
# Small surveys, brief training, so that 2 × 20 of them fit in about an hour on 2 busy shared cores: 3000 stars at
# G < 16 (the demo's depth, so the good sample's noisier labels are there), every star labelled, 60 epochs of
# batch 256 (≈ 7 s of training), forests of 20 trees (the demo: 100) and 200 bootstrap resamples: the forests
# are the cost, ≈ 25 CPU-seconds per survey at 40 trees.
SIZES = {"n_stars": 3000, "g_max": 16.0, "epochs": 60, "n_boot": 200, "n_trees": 20}
# The CI test's sizes (tests/unit/test_science_alpha.py: 6000 stars at G < 15, 160 epochs, 50 trees, 400
# resamples), to measure how often that test's own assertions hold on seeds it does not use.
CI_SIZES = {"n_stars": 6000, "g_max": 15.0, "epochs": 160, "n_boot": 400, "n_trees": 50}


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of k successes in n trials."""
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def coefficient_model() -> str:
    """The simulator's default coefficient model (simulator.spectra.DEFAULT_COEFFICIENTS), which the sweep uses."""
    from simulator.spectra import DEFAULT_COEFFICIENTS
    return DEFAULT_COEFFICIENTS


def spectra_digest(x: np.ndarray) -> str:
    """A short digest of a survey's normalised spectra: two sweeps with equal digests measured the same surveys,
    whatever changed in the simulator's code between them."""
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float64).tobytes()).hexdigest()[:16]


def survey_latents(seed: int, alpha_signal: float, sizes: dict, cache: Path) -> dict:
    """Simulate, train without labels and infer; the labelled stars' latents, labels and photometry, kept in
    ``cache`` (one .npz per survey and coefficient model) so that the verdict can be re-run on the same latents
    without retraining."""
    model = coefficient_model()
    path = cache / f"s{seed}_a{alpha_signal:g}_n{sizes['n_stars']}_e{sizes['epochs']}_{model}.npz"
    if not path.exists():
        import torch

        from bench.bench_science import _latents, _train
        from simulator.survey import labelled_survey
        cache.mkdir(parents=True, exist_ok=True)
        db = cache / f"labels-{seed}-{alpha_signal:g}.sqlite"
        d = labelled_survey(sizes["n_stars"], seed, alpha_signal=alpha_signal, label_fraction=1.0,
                            g_max=sizes["g_max"], db_path=db)
        db.unlink()
        torch.manual_seed(seed)
        res, _ = _train(d, sizes["epochs"], 256, 2e-3, seed)
        z, ok, sigma = _latents(res, d)
        keep = d["labels"]["labelled"] & ok
        arrays = {f"lab_{k}": np.asarray(v)[keep] for k, v in d["labels"].items() if np.asarray(v).dtype.kind in "fiub"}
        np.savez(path, z=z[keep], sigma=sigma, g=d["phot"]["phot_g_mean_mag"][keep],
                 bp_rp=(d["phot"]["phot_bp_mean_mag"] - d["phot"]["phot_rp_mean_mag"])[keep],
                 digest=spectra_digest(d["x"]), **arrays)
    with np.load(path) as f:
        return {"z": f["z"], "sigma": f["sigma"], "phot": {"phot_g_mean_mag": f["g"], "bp_rp": f["bp_rp"]},
                "labels": {k[4:]: f[k] for k in f.files if k.startswith("lab_")}, "digest": str(f["digest"])}


def one_survey(seed: int, alpha_signal: float, sizes: dict, tmp: Path, cache: Path,
               samples: tuple[str, ...] = SAMPLES) -> dict:
    """The [α/M] analysis of one survey (latents from ``survey_latents``); the per-sample verdicts and gains."""
    from analysis.alpha import KEY_DIFFERENCE, run_alpha_analysis
    t0 = time.perf_counter()
    d = survey_latents(seed, alpha_signal, sizes, cache)
    t1 = time.perf_counter()
    out = run_alpha_analysis(d["z"], d["labels"], d["phot"], out_dir=tmp / f"alpha-{seed}-{alpha_signal:g}",
                             seed=seed, n_boot=sizes["n_boot"], n_trees=sizes["n_trees"], samples=samples,
                             feature_sets=FEATURES, draw_figures=False, classifiers_only=True, n_jobs=1)
    row: dict = {"seed": seed, "alpha_signal": alpha_signal, **sizes, "coefficients": coefficient_model(),
                 "spectra_digest": d["digest"], "latents_s": round(t1 - t0, 1),
                 "wall_s": round(time.perf_counter() - t0, 1), "active_latents": int(np.sum(d["sigma"] < 0.5)),
                 "samples": {}}
    for sample, info in out.headline["samples"].items():
        if info.get("skipped"):
            row["samples"][sample] = {"skipped": info["skipped"]}
            continue
        test = info["alpha_test"]
        old = info["differences_balanced_accuracy"][KEY_DIFFERENCE]
        row["samples"][sample] = {
            "n": info["n"], "gain": test["gain"], "p": test["p_value"],
            "yes": bool(test["p_value"] < test["level"]), "old_gain": old, "old_yes": bool(old[1] > 0),
            "r2": test["latent_estimate_r2"], "weight": test["latent_estimate_weight"]}
    return row


def sweep(out: Path, surveys: int, alpha_signals=(0.0, 1.0), sizes: dict | None = None,
          first_seed: int = FIRST_SEED, cache: Path | None = None, samples: tuple[str, ...] = SAMPLES,
          seeds: list[int] | None = None) -> None:
    """Append one line per (seed, alpha_signal) to ``out``; lines already there are kept and skipped. ``seeds``
    replaces the range of ``surveys`` seeds from ``first_seed``."""
    sizes = sizes or SIZES
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["seed"], r["alpha_signal"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds or range(first_seed, first_seed + surveys):
            for a in alpha_signals:
                if (seed, a) in done:
                    continue
                row = one_survey(seed, a, sizes, Path(tmp), cache or Path(tmp) / "latents", samples)
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                s = row["samples"].get("pristine", {})
                print(f"seed {seed} alpha {a:g}: {row['wall_s']:.0f} s, pristine gain {s.get('gain')} "
                      f"p {s.get('p')} old {s.get('old_gain')}", flush=True)


def summarise(*paths: Path) -> str:
    """Markdown table: rate of 'yes' per sample and alpha_signal, new test and old gain, with 95 % intervals."""
    rows = [json.loads(line) for path in paths for line in Path(path).read_text().splitlines() if line.strip()]
    rows = list({(r["seed"], r["alpha_signal"]): r for r in rows}.values())     # one line per survey
    lines = ["| alpha_signal | sample | surveys | test (e) − (f): 'yes' rate [95 % CP] | median gain (e) − (f) "
             "| old (e) − (c) > 0 rate [95 % CP] | median old gain |", "|---|---|---|---|---|---|---|"]
    for a in sorted({r["alpha_signal"] for r in rows}):
        for sample in SAMPLES:
            got = [r["samples"][sample] for r in rows if r["alpha_signal"] == a
                   and sample in r["samples"] and "gain" in r["samples"][sample]]
            if not got:
                continue
            n, k, k_old = len(got), sum(g["yes"] for g in got), sum(g["old_yes"] for g in got)
            lo, hi = clopper_pearson(k, n)
            lo_o, hi_o = clopper_pearson(k_old, n)
            lines.append(f"| {a:g} | {sample} | {n} | {k}/{n} = {k / n:.2f} [{lo:.2f}, {hi:.2f}] | "
                         f"{np.median([g['gain'][0] for g in got]):+.3f} | {k_old}/{n} = {k_old / n:.2f} "
                         f"[{lo_o:.2f}, {hi_o:.2f}] | {np.median([g['old_gain'][0] for g in got]):+.3f} |")
    models = sorted({r.get("coefficients", "not recorded") for r in rows})
    lines += ["", f"- simulator coefficient model: {', '.join(models)}"]
    for a in sorted({r["alpha_signal"] for r in rows}):
        for sample in SAMPLES:
            p = np.array([r["samples"][sample]["p"] for r in rows if r["alpha_signal"] == a
                          and "p" in r["samples"].get(sample, {})])
            if p.size:
                lines.append(f"- alpha_signal {a:g}, {sample}: {p.size} p-values, mean {p.mean():.2f} (0.5 if "
                             f"uniform), {np.mean(p < 0.1):.2f} below 0.1, smallest {p.min():.3f}")
    return "\n".join(lines)


def dose_table(*paths: Path, seed: int = FIRST_SEED) -> str:
    """Markdown: gain and p of the test, and the old gain, per alpha_signal and sample for one seed."""
    rows = [json.loads(line) for path in paths for line in Path(path).read_text().splitlines() if line.strip()]
    rows = sorted({r["alpha_signal"]: r for r in rows if r["seed"] == seed}.values(), key=lambda r: r["alpha_signal"])
    lines = ["| alpha_signal | sample | stars | test (e) − (f) | p | old (e) − (c) |", "|---|---|---|---|---|---|"]
    for r in rows:
        for sample, g in r["samples"].items():
            if "gain" in g:
                lines.append(f"| {r['alpha_signal']:g} | {sample} | {g['n']} | {g['gain'][0]:+.3f} "
                             f"[{g['gain'][1]:+.3f}, "
                             f"{g['gain'][2]:+.3f}] | {g['p']:.3f} | {g['old_gain'][0]:+.3f} [{g['old_gain'][1]:+.3f}, "
                             f"{g['old_gain'][2]:+.3f}] |")
    return "\n".join(lines)


def main(quick: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "alpha_null.jsonl"
        sweep(out, 2 if quick else 20)
        print(summarise(out))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.bench_alpha_null", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--surveys", type=int, default=20)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--first-seed", type=int, default=FIRST_SEED, help="to split a sweep between processes")
    parser.add_argument("--summarise", type=Path, nargs="+", help="JSON-lines files of sweeps to summarise")
    parser.add_argument("--dose", action="store_true", help="with --summarise: the dose-response table of one seed")
    parser.add_argument("--cache", type=Path, help="folder keeping each survey's latents (reused when there)")
    parser.add_argument("--samples", nargs="+", default=list(SAMPLES), choices=SAMPLES)
    parser.add_argument("--seeds", type=int, nargs="+", help="these seeds instead of --surveys from --first-seed")
    parser.add_argument("--ci-sizes", action="store_true", help="the CI test's survey and training sizes")
    args = parser.parse_args()
    if args.summarise:
        print(dose_table(*args.summarise) if args.dose else summarise(*args.summarise))
    else:
        sweep(args.out, args.surveys, tuple(args.alpha), CI_SIZES if args.ci_sizes else SIZES,
              first_seed=args.first_seed, cache=args.cache, samples=tuple(args.samples), seeds=args.seeds)
