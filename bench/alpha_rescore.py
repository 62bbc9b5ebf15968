"""Re-score the [α/M] verdict on cached survey latents (bench.bench_alpha_null's --cache folders) with several
candidate baselines, without retraining: only the random forests and the bootstrap run.

    python -m bench.alpha_rescore CACHE_DIR --out rows.jsonl [--trees 20] [--boot 200]
    python -m bench.alpha_rescore --summarise rows.jsonl [...]

One JSON line per cached survey (seed, alpha_signal, and per sample and candidate: [gain, p, bootstrap SD]);
lines already in ``--out`` are skipped, so a folder that is still filling can be re-scored again later.
Candidates: "current" (the test with one cross-validation and the bootstrap p), "reseed1/2" (the same with seeds
+1000, +2000: its training noise), "current_b2000" (2000 resamples), "s1" (error scale 1: the weight
σ²/(σ²+τ²)), "cross_s2" (only with ``cross``: label estimates from the latents and the other two labels),
"avg3" (mean gain of the three seeds, bootstrap p) and, in the summary, "avg3_var" (avg3 with the spread of the
three gains added to its variance: analysis.classify.repeated_difference, the statistic the verdict uses).
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

SAMPLES = ("pristine", "pristine_cool_giants")
_NAME = re.compile(r"s(\d+)_a([0-9.]+)_")


def load_cached(path: Path) -> dict:
    """Latents, labels and photometry of one cached survey (the format bench_alpha_null.survey_latents writes)."""
    with np.load(path) as f:
        return {"z": f["z"], "phot": {"phot_g_mean_mag": f["g"], "bp_rp": f["bp_rp"]},
                "labels": {k[4:]: f[k] for k in f.files if k.startswith("lab_")}}


def sample_arrays(d: dict, sample: str) -> tuple[np.ndarray, dict, np.ndarray]:
    """The sample's usable stars as analysis.alpha selects them: latents, labels, high-α class."""
    from analysis.samples import alpha_split, select_samples
    labels, z = d["labels"], np.asarray(d["z"], np.float64)
    split = alpha_split(labels)
    usable = split.valid & np.all(np.isfinite(z), axis=1)
    for k in ("teff", "logg", "m_h"):
        usable &= np.isfinite(np.asarray(labels[k], np.float64))
    idx = np.flatnonzero(select_samples(labels, d["phot"]).masks[sample] & usable)
    return z[idx], {k: np.asarray(v)[idx] for k, v in labels.items()}, split.high[idx]


def _paired(y: np.ndarray, pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]], n_boot: int, seed: int
            ) -> dict[str, list[float]]:
    """Per candidate: [gain, one-sided bootstrap p] of the balanced-accuracy difference (a − b) averaged over its
    list of (scores a, scores b) repeats; every candidate resamples the same stars."""
    from analysis.bootstrap import class_metrics, one_sided_p, resample_indices
    def gain(idx: np.ndarray | None, sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
        yy = y if idx is None else y[idx]
        ca, cb = (sa >= 0.5) == y, (sb >= 0.5) == y
        if idx is not None:
            ca, cb = ca[idx], cb[idx]
        return class_metrics(yy, ca)["balanced_accuracy"] - class_metrics(yy, cb)["balanced_accuracy"]
    draws: dict[str, list[np.ndarray]] = {k: [] for k in pairs}
    for idx in resample_indices(len(y), n_boot, seed):
        for k, reps in pairs.items():
            draws[k].append(np.mean([gain(idx, a, b) for a, b in reps], axis=0))
    return {k: [round(float(np.mean([gain(None, a, b) for a, b in reps])), 5),
                round(one_sided_p(np.concatenate(draws[k])), 5),
                round(float(np.nanstd(np.concatenate(draws[k]))), 5)] for k, reps in pairs.items()}


def candidate_tests(z: np.ndarray, lab: dict, y: np.ndarray, *, seed: int, n_trees: int, n_boot: int,
                    cross: bool = False) -> dict:
    """Gain and p of each candidate statistic on one sample (see the module docstring of the notes)."""
    from analysis.classify import denoised_labels, feature_matrix, fold_ids, latent_label_estimates, out_of_fold_scores
    out: dict = {}
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for rep in range(3):
        s = seed + 1000 * rep
        folds = fold_ids(y, 5, s)
        def fit(X: np.ndarray, folds: np.ndarray = folds, s: int = s) -> np.ndarray:
            return out_of_fold_scores(X, y, folds, n_trees=n_trees, seed=s, n_jobs=1)
        est = latent_label_estimates(z, lab, folds, n_trees=n_trees, seed=s, n_jobs=1)
        e = fit(feature_matrix("labels_latents", z, lab)[0])
        f2 = fit(denoised_labels(lab, est)[0])
        pairs.setdefault("avg3", []).append((e, f2))
        if rep == 0:
            pairs["current"] = [(e, f2)]
            pairs["s1"] = [(e, fit(denoised_labels(lab, est, error_scale=1.0)[0]))]
            if cross:
                est_x = cross_label_estimates(z, lab, folds, n_trees=n_trees, seed=s, n_jobs=1)
                pairs["cross_s2"] = [(e, fit(denoised_labels(lab, est_x)[0]))]
        else:
            pairs[f"reseed{rep}"] = [(e, f2)]
    out.update(_paired(y, pairs, n_boot, seed + 104729))
    out["current_b2000"] = _paired(y, {"c": pairs["current"]}, 2000, seed + 104729)["c"]
    return out


def rescore(path: Path, *, n_trees: int, n_boot: int, samples=SAMPLES) -> dict:
    """Every candidate statistic on every sample of one cached survey."""
    name = _NAME.match(path.name)
    if name is None:
        raise ValueError(f"{path.name}: not a cached survey (s<seed>_a<alpha_signal>_...npz)")
    seed, alpha = (float(v) for v in name.groups())
    d = load_cached(path)
    row: dict = {"seed": int(seed), "alpha_signal": alpha, "file": path.name, "n_trees": n_trees, "n_boot": n_boot,
                 "samples": {}}
    t0 = time.perf_counter()
    for sample in samples:
        z, lab, y = sample_arrays(d, sample)
        row["samples"][sample] = {"n": int(len(y)),
                                  **candidate_tests(z, lab, y, seed=int(seed), n_trees=n_trees, n_boot=n_boot)}
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    return row


def rescore_folder(folder: Path, out: Path, **kw) -> None:
    done = set()
    if out.exists():
        done = {json.loads(line)["file"] for line in out.read_text().splitlines() if line.strip()}
    for path in sorted(folder.glob("s*_a*_*.npz")):
        if path.name in done:
            continue
        row = rescore(path, **kw)
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{path.name}: {row['wall_s']} s", flush=True)


def _p_of(cands: dict, name: str) -> float:
    """The p of a candidate; "avg3_var" adds the spread between the three re-seeded gains to the bootstrap's."""
    if name != "avg3_var":
        return float(cands[name][1])
    from scipy.stats import norm
    reps = [cands[k][0] for k in ("current", "reseed1", "reseed2")]
    mean, boot_sd = cands["avg3"][0], cands["avg3"][2]
    sd = float(np.hypot(boot_sd, np.std(reps, ddof=1) / np.sqrt(len(reps))))
    return float(norm.sf(mean / sd))


def summarise(*paths: Path, level: float = 0.025, candidates: tuple[str, ...] | None = None) -> str:
    """Markdown: per alpha_signal, sample and candidate, the rate of p < level with its 95 % Clopper–Pearson
    interval, and the mean p and share below 0.1 (uniform: 0.5 and 0.1)."""
    from bench.bench_alpha_null import clopper_pearson
    rows = list({(str(path), r["file"]): r for path in paths for line in Path(path).read_text().splitlines()
                 if line.strip() for r in [json.loads(line)]}.values())
    common = set.intersection(*(set(r["samples"][SAMPLES[0]]) for r in rows)) - {"n"}
    names = candidates or tuple(sorted(common)) + ("avg3_var",)
    lines = ["| alpha_signal | sample | statistic | surveys | 'yes' rate [95 % CP] | mean p | p < 0.1 |",
             "|---|---|---|---|---|---|---|"]
    for a in sorted({r["alpha_signal"] for r in rows}):
        for sample in SAMPLES:
            got = [r["samples"][sample] for r in rows if r["alpha_signal"] == a and sample in r["samples"]]
            for name in names:
                p = np.array([_p_of(g, name) for g in got])
                k, n = int(np.sum(p < level)), len(p)
                lo, hi = clopper_pearson(k, n)
                lines.append(f"| {a:g} | {sample} | {name} | {n} | {k}/{n} = {k / n:.2f} [{lo:.2f}, {hi:.2f}] | "
                             f"{p.mean():.2f} | {np.mean(p < 0.1):.2f} |")
    return "\n".join(lines)


def cross_label_estimates(latents: np.ndarray, labels: dict, folds: np.ndarray, *, n_trees: int, seed: int,
                          n_jobs: int = 1) -> np.ndarray:
    """A candidate that did not help (notes): estimates of Teff, log g, [M/H], each from the latents *and the
    other two labels* (never its own), out of fold, weighted as analysis.classify.latent_label_estimates."""
    from sklearn.ensemble import RandomForestRegressor

    from analysis.classify import LABELS, alpha_independence_weights
    T = np.column_stack([np.asarray(labels[k], np.float64) for k in LABELS])
    mu, sd = T.mean(0), T.std(0)
    T = (T - mu) / np.where(sd > 0, sd, 1.0)
    out = np.empty_like(T)
    for k in np.unique(folds):
        test, train = folds == k, np.flatnonzero(folds != k)
        w = alpha_independence_weights(labels, train)
        for i in range(len(LABELS)):
            X = np.column_stack([latents, np.delete(T, i, axis=1)])
            forest = RandomForestRegressor(n_estimators=n_trees, min_samples_leaf=5, max_features=None,
                                           random_state=seed + 31 * (k + 1) + i, n_jobs=n_jobs)
            forest.fit(X[train], T[train, i], sample_weight=w)
            out[test, i] = forest.predict(X[test])
    return out * np.where(sd > 0, sd, 1.0) + mu


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.alpha_rescore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, nargs="?")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--trees", type=int, default=20)
    parser.add_argument("--boot", type=int, default=200)
    parser.add_argument("--summarise", type=Path, nargs="+")
    args = parser.parse_args()
    if args.summarise:
        print(summarise(*args.summarise))
    else:
        rescore_folder(args.folder, args.out, n_trees=args.trees, n_boot=args.boot)
