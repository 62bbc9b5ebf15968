"""Training with the full XP covariance against the diagonal recipe, over several seeds, and χ² inference speed.

1. Per seed: one simulated labelled survey (the simulator draws correlated noise with exactly the correlations it
   writes, docs/simulator.md) and two sVAEs with that seed, the same split and recipe: likelihood 'diagonal' and
   'full'. Cost per epoch (median over epochs, one thread, same process) of each.
2. On the held-out test stars (truth known), for each model: χ²/dof with the full covariance (Σ and Σ + diag ŝ²),
   diagonal z-score calibration, the [α/M] classifier gain of the analysis (labels + latents − labels, paired
   bootstrap), and the recovered scatter ŝ against the true residual scatter: per coefficient,
   RMS over stars of (x_true − x̂) in standardised units, x_true the simulator's noise-free coefficients.
3. Once per run: χ² with the full covariance at inference, model step in-process: the previous implementation
   (numpy float64 matrices, LAPACK per band and variant, kept here as the reference) against the current
   shared.covariance path, same stars, same model, same process — best of three interleaved passes each.

Results go to a JSON-lines file, one line per seed (and one for the χ² speed), written as they come, with the
simulator's coefficient model, the commit and the load average, so that a sweep can be read while it runs and
its simulator state is on record:

    python -m bench.bench_fullcov --seeds 9401 9402 9403 --out bench/results/fullcov_forward.jsonl
    python -m bench.bench_fullcov --summarise bench/results/fullcov_forward.jsonl

`python -m bench fullcov [--quick]` runs the three default seeds (one small one with --quick) into a temporary
file. Seeds from 9401: no test uses them. docs/science-validation.md records the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SAMPLES = ("pristine", "pristine_cool_giants")
FEATURES = ("labels", "labels_latents")
LIKELIHOODS = ("diagonal", "full")
SEEDS = (9401, 9402, 9403)
# 8000 stars at G < 15, every star labelled, 120 epochs of batch 256: the size of the first (one-seed)
# measurement, so the figures compare; ≈ 10–15 min a seed on the 2 shared cores, the full model most of it.
SIZES = {"n_stars": 8000, "g_max": 15.0, "epochs": 120, "n_boot": 200}
QUICK = {"n_stars": 3000, "g_max": 15.0, "epochs": 40, "n_boot": 100}
CHI2_STARS = 40_000                    # the size of the first measurement


def _survey(n: int, seed: int, g_max: float, db: Path) -> dict:
    """The labelled survey plus its correlations (N, 2, 1485): the same seed regenerates the same stars and
    noise with the correlation arrays kept."""
    from simulator.survey import generate, labelled_survey
    d = labelled_survey(n, seed, alpha_signal=1.0, label_fraction=1.0, g_max=g_max, db_path=db)
    batch, _, _, _ = generate(n, seed, alpha_signal=1.0, label_fraction=1.0, mag_range=(9.0, g_max))
    assert np.array_equal(batch["source_id"], d["batch"]["source_id"])
    d["corr"] = np.stack([batch["bp_coefficient_correlations"], batch["rp_coefficient_correlations"]], axis=1)
    return d


def _train(d: dict, likelihood: str, epochs: int, seed: int):
    from shared.model import VAEConfig
    from shared.training import TrainConfig, fit_scatter_vae
    cfg = TrainConfig(epochs=epochs, batch_size=256, lr=2e-3, t0=epochs, seed=seed, threads=1, compile=False,
                      checkpoint_every=0, likelihood=likelihood)
    return fit_scatter_vae(d["x"], d["e"], VAEConfig(), cfg, correlations=d["corr"])


def _interleaved_cost(d: dict, seed: int, rounds: int = 3, epochs: int = 4) -> dict:
    """Median seconds per epoch of each likelihood over short trainings run alternately (diagonal, full, …), so
    that both see the same load on shared cores; the long trainings' medians are minutes apart."""
    secs: dict[str, list[float]] = {lk: [] for lk in LIKELIHOODS}
    for _ in range(rounds):
        for lk in LIKELIHOODS:
            secs[lk] += [m["seconds"] for m in _train(d, lk, epochs, seed).history]
    med = {lk: float(np.median(v)) for lk, v in secs.items()}
    return {**med, "ratio": med["full"] / med["diagonal"], "epochs_each": rounds * epochs}


def _held_out(res, d: dict) -> dict:
    """Standardised test-split arrays and the model's outputs on them (χ² with the full covariance)."""
    from shared.inference import infer_all
    test = res.split["test"]
    norm = res.normalisation
    xs, es = norm.apply(d["x"][test], d["e"][test])
    g = d["phot"]["phot_g_mean_flux"][test][:, None]
    x_true = norm.apply(d["truth"]["coefficients_true"][test] / g)
    corr = {"bp": d["corr"][test, 0], "rp": d["corr"][test, 1]}
    out = infer_all(res.model, xs, es, correlations=corr)
    return {"xs": xs, "es": es, "x_true": x_true, "out": out, "test": test, "corr": corr}


def _figures(h: dict) -> dict:
    """The held-out figures of one model; chi2_truth_*: χ²/dof of the data about the noise-free truth with Σ,
    which checks the simulator's noise against the correlations it writes (≈ 1 when they agree)."""
    from shared.metrics import chi2_bands
    out, xs, es = h["out"], h["xs"], h["es"]
    truth = chi2_bands(xs, h["x_true"], es, h["corr"])
    s = out["scatter"].astype(np.float64)
    z = (xs - out["xhat"]) / np.sqrt(es ** 2 + s ** 2)
    resid_true = h["x_true"] - out["xhat"]
    true_rms = np.sqrt(np.mean(resid_true ** 2, axis=0))       # per coefficient: what ŝ should describe
    s_rms = np.sqrt(np.mean(s ** 2, axis=0))
    ratio = s_rms / true_rms
    f = {"n": len(xs), "z_mean": float(z.mean()), "z_std": float(z.std())}
    for b, sl in (("bp", slice(0, 55)), ("rp", slice(55, 110))):
        f[f"chi2_{b}"] = float(np.nanmedian(out[f"chi2_dof_{b}"]))
        f[f"chi2_truth_{b}"] = float(np.nanmedian(truth[b]))
        f[f"chi2_{b}_scatter"] = float(np.nanmedian(out[f"chi2_dof_{b}_scatter"]))
        f[f"chi2_{b}_scatter_mean"] = float(np.nanmean(out[f"chi2_dof_{b}_scatter"]))
        r = ratio[sl]
        f[f"scatter_ratio_{b}"] = [float(np.median(r)), float(np.percentile(r, 16)), float(np.percentile(r, 84))]
        f[f"scatter_within2_{b}"] = float(np.mean((r > 0.5) & (r < 2)))
    return f


def _alpha(res, d: dict, n_boot: int, seed: int, out_dir: Path) -> dict:
    """Per sample: stars and the paired-bootstrap gain (labels + latents) − labels as (median, 2.5 %, 97.5 %).
    Forests on one process: the same numbers as with more (fixed seeds), without taking the other core."""
    from analysis.alpha import run_alpha_analysis
    from shared.inference import infer_all
    ok = np.isfinite(d["x"]).all(1) & np.isfinite(d["e"]).all(1)
    xs, es = res.normalisation.apply(d["x"][ok], d["e"][ok])
    z = np.full((len(ok), res.model.config.latent_dim), np.nan)
    z[ok] = infer_all(res.model, xs, es, include_reconstructions=False)["latent_mu"]
    keep = d["labels"]["labelled"] & ok
    phot = {"phot_g_mean_mag": d["phot"]["phot_g_mean_mag"][keep],
            "bp_rp": (d["phot"]["phot_bp_mean_mag"] - d["phot"]["phot_rp_mean_mag"])[keep]}
    r = run_alpha_analysis(z[keep], {k: v[keep] for k, v in d["labels"].items()}, phot, out_dir=out_dir, seed=seed,
                           n_boot=n_boot, n_jobs=1, samples=SAMPLES, feature_sets=FEATURES, classifiers_only=True)
    out = {}
    for sample, info in r.headline["samples"].items():
        if info.get("skipped"):
            out[sample] = {"skipped": info["skipped"]}
        else:
            out[sample] = {"n": int(info["n"]),
                           "gain": [float(v) for v in info["differences_balanced_accuracy"]["labels_latents-labels"]]}
    return out


def simulator_state() -> dict:
    """Which simulator the numbers are from: its default coefficient model and the checked-out commit."""
    from simulator.spectra import DEFAULT_COEFFICIENTS

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                                  cwd=Path(__file__).parent).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "unknown"
    return {"coefficients": DEFAULT_COEFFICIENTS, "commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"))}


def measure_seed(seed: int, sizes: dict, tmp: Path) -> dict:
    """Both models on one survey: the record written for the seed."""
    torch.set_num_threads(1)
    rec = {"kind": "seed", "seed": seed, **sizes, "simulator": simulator_state(), "load_start": os.getloadavg()}
    t0 = time.perf_counter()
    d = _survey(sizes["n_stars"], seed, sizes["g_max"], tmp / f"labels-{seed}.sqlite")
    rec["survey_s"] = round(time.perf_counter() - t0, 1)
    rec["models"] = {}
    for likelihood in LIKELIHOODS:
        t0 = time.perf_counter()
        res = _train(d, likelihood, sizes["epochs"], seed)
        secs = [m["seconds"] for m in res.history]
        rec["models"][likelihood] = {
            "epoch_s": float(np.median(secs)), "n_train": int(res.split["train"].size),
            "val_nll": float(res.history[-1]["val_nll"]), "fallback": res.likelihood.get("diagonal_fallback"),
            "figures": _figures(_held_out(res, d)),
            "alpha": _alpha(res, d, sizes["n_boot"], seed, tmp / f"{likelihood}-{seed}"),
            "wall_s": round(time.perf_counter() - t0, 1)}
    rec["epoch_ratio"] = rec["models"]["full"]["epoch_s"] / rec["models"]["diagonal"]["epoch_s"]
    rec["cost_interleaved"] = _interleaved_cost(d, seed)
    rec["load_end"] = os.getloadavg()
    return rec


# ---- χ² inference: the previous implementation, kept as the reference ----------------------------------------

def _previous_chi2(x, xhat, x_err, correlations, scatter):
    """χ²/dof per band as the inferencer computed it before shared.covariance: per band, float64 correlation
    matrices filled in numpy, one LAPACK Cholesky for Σ and one for Σ + diag(ŝ²), a triangular solve each."""
    from shared.xp import N_COEFF, TRIL
    lower = TRIL[0] * N_COEFF + TRIL[1]
    diag = np.arange(N_COEFF) * (N_COEFF + 1)

    def whitened(w, r):
        chol, info = torch.linalg.cholesky_ex(r)
        y = torch.linalg.solve_triangular(chol, w.unsqueeze(-1), upper=False).squeeze(-1)
        q = (y * y).sum(-1)
        q[(info != 0) | ~torch.isfinite(q)] = float("nan")
        return q

    out = {}
    for band, sl in (("bp", slice(0, 55)), ("rp", slice(55, 110))):
        e = torch.as_tensor(x_err[:, sl])
        w = torch.as_tensor(xhat[:, sl] - x[:, sl]) / e
        r = np.zeros((len(x), N_COEFF * N_COEFF))
        r[:, lower] = correlations[band]
        r[:, diag] = 1.0
        r = torch.from_numpy(r).view(-1, N_COEFF, N_COEFF)
        out[band] = (whitened(w, r) / N_COEFF).numpy()
        r.diagonal(dim1=1, dim2=2).add_((torch.as_tensor(np.asarray(scatter, np.float64)[:, sl]) / e) ** 2)
        out[f"{band}_scatter"] = (whitened(w, r) / N_COEFF).numpy()
    return out


def chi2_speed(n: int, threads: int = 1) -> dict:
    """Spectra per second of the model step with the previous χ², the current one and none; the record."""
    from shared.inference import infer
    from shared.model import ScatterVAE
    from shared.preprocessing import Normalisation
    from simulator.survey import generate
    torch.set_num_threads(threads)
    load_start = os.getloadavg()
    batch, _, _, _ = generate(n, 3)
    x, e = batch.coefficients110(), batch.errors110()
    ok = np.isfinite(x).all(1)
    x, e = x[ok], e[ok]
    corr = {b: batch[f"{b}_coefficient_correlations"][ok] for b in ("bp", "rp")}
    norm = Normalisation(x.mean(0), x.std(0))
    xs, es = norm.apply(x, e)
    torch.manual_seed(0)
    model = ScatterVAE().eval()
    batch_size = 8192                      # the inferencer's default

    def before():
        for i in range(0, len(xs), batch_size):
            res = next(infer(model, xs[i:i + batch_size], es[i:i + batch_size], batch_size=batch_size))
            _previous_chi2(xs[i:i + batch_size], res["xhat"], es[i:i + batch_size],
                           {b: c[i:i + batch_size] for b, c in corr.items()}, res["scatter"])

    def after():
        for _ in infer(model, xs, es, correlations=corr, batch_size=batch_size):
            pass

    def plain():
        for _ in infer(model, xs, es, batch_size=batch_size):
            pass

    # the two agree (the reference is the previous code; the current one must give the same numbers)
    res = next(infer(model, xs[:2000], es[:2000], correlations={b: c[:2000] for b, c in corr.items()}))
    ref = _previous_chi2(xs[:2000], res["xhat"], es[:2000], {b: c[:2000] for b, c in corr.items()}, res["scatter"])
    worst = max(np.nanmax(np.abs(res[f"chi2_dof_{k}"] / ref[k] - 1)) for k in ("bp", "rp", "bp_scatter", "rp_scatter"))
    best: dict[str, float] = {}
    for _ in range(3):                      # interleaved, best of three: robust to other load on the cores
        for name, fn in (("before", before), ("after", after), ("plain", plain)):
            t0 = time.perf_counter()
            fn()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    rates = {k: len(xs) / v for k, v in best.items()}
    return {"kind": "chi2_speed", "n": int(len(xs)), "threads": threads, "batch": batch_size, **rates,
            "ratio": rates["after"] / rates["before"], "largest_rel_diff": float(worst),
            "simulator": simulator_state(), "load_start": load_start, "load_end": os.getloadavg()}


def _seed_lines(r: dict) -> list[str]:
    sim = r["simulator"]
    lines = [f"seed {r['seed']} ({sim['coefficients']} simulator @ {sim['commit']}{'+dirty' if sim['dirty'] else ''}; "
             f"{r['n_stars']} stars G<{r['g_max']:g}, {r['epochs']} epochs; load {r['load_start'][0]:.1f} → "
             f"{r['load_end'][0]:.1f}): epoch full {r['models']['full']['epoch_s']:.2f} s vs diagonal "
             f"{r['models']['diagonal']['epoch_s']:.2f} s = {r['epoch_ratio']:.2f}x"
             + (f"; interleaved {r['cost_interleaved']['full']:.2f} s vs {r['cost_interleaved']['diagonal']:.2f} s = "
                f"{r['cost_interleaved']['ratio']:.2f}x" if "cost_interleaved" in r else "")]
    for lk, m in r["models"].items():
        f = m["figures"]
        fb = m["fallback"]
        lines.append(f"  {lk}: held-out {f['n']}; χ²/dof Σ {f['chi2_bp']:.3f}/{f['chi2_rp']:.3f}, Σ+ŝ² "
                     f"{f['chi2_bp_scatter']:.3f}/{f['chi2_rp_scatter']:.3f}; z {f['z_mean']:+.3f} ± {f['z_std']:.3f}; "
                     f"ŝ/true BP {f['scatter_ratio_bp'][0]:.2f} RP {f['scatter_ratio_rp'][0]:.2f}; "
                     + "; ".join(f"{s} {a['gain'][0]:+.3f} [{a['gain'][1]:+.3f}, {a['gain'][2]:+.3f}]"
                                 if "gain" in a else f"{s} skipped" for s, a in m["alpha"].items())
                     + (f"; diagonal fallback {fb['stars']} stars" if fb else ""))
    return lines


def _chi2_line(r: dict) -> str:
    return (f"χ² inference, model step in-process ({r['n']:,} stars with correlations, batch {r['batch']}, "
            f"{r['threads']} torch thread(s), load {r['load_start'][0]:.1f}): previous {r['before']:,.0f}/s, current "
            f"{r['after']:,.0f}/s = {r['ratio']:.2f}x; without χ² {r['plain']:,.0f}/s; largest relative difference "
            f"{r['largest_rel_diff']:.1e}")


def sweep(out: Path, seeds: tuple[int, ...], sizes: dict, chi2_stars: int) -> None:
    """Measure and append one line per record to ``out`` as it comes (χ² speed first, then each seed)."""
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(rec: dict) -> None:
        with out.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")

    if chi2_stars:
        rec = chi2_speed(chi2_stars)
        write(rec)
        print(_chi2_line(rec), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            rec = measure_seed(seed, sizes, Path(tmp))
            write(rec)
            print("\n".join(_seed_lines(rec)), flush=True)


# ---- summary over seeds ---------------------------------------------------------------------------------------

def _rows() -> list[tuple[str, object]]:
    """(label, getter of one number from a model's record) for the summary table."""
    def fig(key, i=None):       # NaN for a figure a record predates
        def get(m):
            v = m["figures"].get(key, float("nan"))
            return v if i is None or not isinstance(v, list) else v[i]
        return get

    def gain(sample):
        return lambda m: m["alpha"][sample]["gain"][0] if "gain" in m["alpha"][sample] else float("nan")
    return [("cost per epoch (s, median)", lambda m: m["epoch_s"]),
            ("χ²/dof of the data about the truth with Σ, BP (median)", fig("chi2_truth_bp")),
            ("χ²/dof of the data about the truth with Σ, RP (median)", fig("chi2_truth_rp")),
            ("χ²/dof with Σ, BP (median)", fig("chi2_bp")), ("χ²/dof with Σ, RP (median)", fig("chi2_rp")),
            ("χ²/dof with Σ + diag ŝ², BP (median)", fig("chi2_bp_scatter")),
            ("χ²/dof with Σ + diag ŝ², RP (median)", fig("chi2_rp_scatter")),
            ("z-score width", fig("z_std")), ("z-score mean", fig("z_mean")),
            ("[α/M] gain, pristine", gain("pristine")),
            ("[α/M] gain, pristine cool giants", gain("pristine_cool_giants")),
            ("RMS ŝ / true residual RMS, BP (median over coefficients)", fig("scatter_ratio_bp", 0)),
            ("RMS ŝ / true residual RMS, RP (median over coefficients)", fig("scatter_ratio_rp", 0))]


def _cell(values: list[float], fmt: str) -> str:
    """Per-seed values joined by ' / ', then their range: '1.50 / 1.52 / 1.51 (1.50 – 1.52)'."""
    v = [x for x in values if np.isfinite(x)]
    if not v:
        return "—"
    each = " / ".join(format(x, fmt) for x in v)
    return each if len(v) == 1 else f"{each} ({format(min(v), fmt)} – {format(max(v), fmt)})"


def summarise(*paths: Path) -> str:
    """Per seed, then a table: per-seed values and their range for diagonal, full, and full − diagonal on the
    same seed."""
    recs = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]
    seeds = [r for r in recs if r["kind"] == "seed"]
    lines = [_chi2_line(r) for r in recs if r["kind"] == "chi2_speed"]
    for r in seeds:
        lines += _seed_lines(r)
    if not seeds:
        return "\n".join(lines)
    lines += ["", f"seeds {' / '.join(str(r['seed']) for r in seeds)} (range)", "",
              "| figure (held-out stars) | diagonal | full | full − diagonal, same seed |", "|---|---|---|---|"]
    for label, get in _rows():
        d = [get(r["models"]["diagonal"]) for r in seeds]
        f = [get(r["models"]["full"]) for r in seeds]
        fmt = ".2f" if label.startswith("cost") else ".3f"
        lines.append(f"| {label} | {_cell(d, fmt)} | {_cell(f, fmt)} | "
                     f"{_cell([b - a for a, b in zip(d, f)], '+' + fmt)} |")
    lines.append(f"| cost per epoch, full / diagonal | | | {_cell([r['epoch_ratio'] for r in seeds], '.2f')} |")
    inter = [r["cost_interleaved"] for r in seeds if "cost_interleaved" in r]
    if inter:
        cells = [_cell([c[k] for c in inter], ".2f") for k in ("diagonal", "full", "ratio")]
        lines.append(f"| cost per epoch, short runs interleaved (s) | {cells[0]} | {cells[1]} | ratio {cells[2]} |")
    return "\n".join(lines)


def main(quick: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fullcov.jsonl"
        sweep(out, SEEDS[:1] if quick else SEEDS, QUICK if quick else SIZES, 5_000 if quick else CHI2_STARS)
        print(summarise(out))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.bench_fullcov", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="*", default=list(SEEDS), help="none: only the χ² speed")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true", help="3000 stars, 40 epochs, 100 bootstrap resamples")
    parser.add_argument("--chi2-stars", type=int, default=CHI2_STARS, help="0: skip the χ² inference speed")
    parser.add_argument("--summarise", type=Path, nargs="+", help="JSON-lines files of runs to summarise")
    args = parser.parse_args()
    if args.summarise:
        print(summarise(*args.summarise))
    elif args.out is None:
        parser.error("--out is required to measure")
    else:
        sweep(args.out, tuple(args.seeds), QUICK if args.quick else SIZES, args.chi2_stars)
