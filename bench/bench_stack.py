"""End-to-end inference through the stack: real RabbitMQ, real Celery inferencer workers, real PostgreSQL.

What it does (everything private to this run, removed at the end even on failure):
1. creates a bench database and a RabbitMQ vhost; seeds N simulated spectra (``simulator.survey``,
   2,000 real simulations replicated under new source ids) with photometry, correlations for the first
   N_CORR of them only (12 kB a star);
2. registers an untrained sVAE (its normalisation fitted to the seed, so the numbers are realistic);
3. starts one Celery inferencer worker with two processes (this machine has two cores; each process runs
   torch with one thread, XPVAE_TORCH_THREADS=1), warms both up with a small job;
4. times an ``infer`` job over all N stars from submit to success, and reports where the shards' time went
   (job_shards.seconds_read / seconds_model / seconds_write, summed over shards = process-seconds);
5. runs the same selection in this one process (``infer_range`` + ``replace_results``) for the ratio;
6. χ² with the full covariance: the N_CORR stars with correlations, in this process, with it, with the
   previous χ² kernel swapped in (the baseline of the same run), and without.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np

from bench.stackenv import bench_stack

SEED_STARS = 2000


def _seed(engine, n: int, n_corr: int) -> None:
    """n + n_corr stars: the seed survey tiled under new source ids 1..n+n_corr; the last n_corr (ids above n)
    with correlations, the first n without (as after ``ingest --no-correlations`` or a catalogue import)."""
    from db.bulk import Nullable, analyze, upsert_rows
    from db.spectra import write_photometry, write_xp_batch
    from simulator.survey import generate
    base, _, _, phot = generate(SEED_STARS, 1, with_correlations=True)
    plain = base.without_correlations()
    step = 20_000
    with engine.begin() as conn:
        for lo in range(0, n + n_corr, step):
            ids = np.arange(lo + 1, min(n + n_corr, lo + step) + 1)
            idx = (ids - 1) % len(base)
            batch = plain.take(idx)
            batch.columns["source_id"][:] = ids
            write_xp_batch(conn, batch, "bench-seed")
            write_photometry(conn, {"source_id": ids, **{k: np.asarray(v)[idx] for k, v in phot.items()
                                                         if k != "source_id"}})
            if lo + step > n:
                keep = ids > n
                upsert_rows(conn, "xp_correlations", {"source_id": ids[keep], **{
                    f"{b}_coefficient_correlations": Nullable(base[f"{b}_coefficient_correlations"][idx[keep]],
                                                              base[f"{b}_missing"][idx[keep]]) for b in ("bp", "rp")}})
    analyze(engine, ("xp_spectra", "xp_correlations", "photometry"))


def _register_model(engine, home: Path) -> int:
    """An untrained sVAE whose normalisation is fitted to the seed (so inputs are standardised as usual)."""
    import torch

    from db.models_registry import register_model
    from db.spectra import read_spectra
    from shared.artifact import ModelArtifact
    from shared.model import ScatterVAE, VAEConfig
    from shared.preprocessing import Normalisation, normalise_by_flux
    data = read_spectra(engine, list(range(1, SEED_STARS + 1)))
    x, _ = normalise_by_flux(data["coefficients"], data["errors"], data["phot_g_mean_flux"])
    x = x[np.isfinite(x).all(axis=1)]
    cfg = VAEConfig()
    torch.manual_seed(0)
    model = ScatterVAE(cfg).eval()
    art = ModelArtifact(kind="svae", config=cfg.to_dict(),
                        normalisation=Normalisation(x.mean(axis=0), x.std(axis=0) + 1e-12),
                        state_dict={k: v.clone() for k, v in model.state_dict().items()},
                        training={"note": "untrained, for the stack benchmark"}, source="bench")
    path = art.save(home / "models" / "bench-svae.pt")
    return register_model(engine, name="bench-svae", kind="svae", path=str(path), config=cfg.to_dict()).model_id


def _shard_split(engine, job_id: int) -> dict[str, float]:
    from db import job_store as jobs_db
    shards = jobs_db.get_shards(engine, job_id)
    return {k: float(sum(s[k] or 0.0 for s in shards)) for k in ("seconds_read", "seconds_model", "seconds_write")}


def _in_process(engine, model_id: int, selection, chi2: bool) -> tuple[float, int, dict]:
    """infer_range + replace_results for one selection in this process (torch's default threads)."""
    from db.results import replace_results
    from inferencer.service import infer_range
    t = time.perf_counter()
    cols, timings = infer_range(engine, model_id, selection, chi2=chi2)
    t_w = time.perf_counter()
    ids = cols["source_id"]
    with engine.begin() as conn:
        replace_results(conn, model_id, int(ids[0]), int(ids[-1]), cols)
    timings["seconds_write"] = time.perf_counter() - t_w
    return time.perf_counter() - t, len(ids), timings


def _previous_chi2_kernel():
    """The χ² of the inferencer before shared.covariance (bench_fullcov's reference: numpy float64 matrices,
    torch.linalg per band and variant) swapped in for one baseline pass — same reads, same writes."""
    from unittest import mock

    from bench.bench_fullcov import _previous_chi2

    def chi2(x, x_err, xhat, scatter, correlations, device):
        out = _previous_chi2(np.asarray(x, np.float64), xhat.cpu().numpy().astype(np.float64),
                             np.asarray(x_err, np.float64), correlations, scatter.cpu().numpy())
        return {k: v * 55.0 for k, v in out.items()}
    return mock.patch("shared.inference._chi2", chi2)


def _split_text(split: dict[str, float]) -> str:
    total = sum(split.values()) or 1.0
    return ", ".join(f"{k[8:]} {v:.2f} s ({100 * v / total:.0f}%)" for k, v in split.items())


def main(quick: bool) -> None:
    from db.selection import Selection
    from db.spectra import count
    n, n_corr = (20_000, 2_000) if quick else (200_000, 20_000)
    with bench_stack("xpvae_bench_stack") as (engine, stack, _):
        stack.start_worker(processes=2, queue="inferencer")           # start early: it boots while we seed
        t = time.perf_counter()
        _seed(engine, n, n_corr)
        print(f"seeded {n:,} stars without correlations + {n_corr:,} with in {time.perf_counter() - t:.1f} s; "
              f"cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}")
        model_id = _register_model(engine, stack.home)

        # warm-up: both worker processes import torch and load the model
        stack.run_job(engine, "infer", {"model_id": model_id, "selection": {"limit": 4000}, "shards": 4}, timeout=300)

        main_sel = Selection(source_id_hi=n)
        secs, job = stack.run_job(engine, "infer", {"model_id": model_id, "selection": main_sel.to_dict()},
                                  timeout=600)
        shards = int(job["result"]["n_shards"])          # the inferencer's default: STARS_PER_SHARD a shard
        done = int(job["result"]["n_stars"])
        assert done == count(engine, main_sel), job["result"]     # stars missing a band are not selected
        split = _shard_split(engine, job["id"])
        rate_stack = done / secs
        print(f"stack, 2 worker processes x 1 torch thread, {shards} shards: {done:,} spectra in {secs:.2f} s "
              f"= {rate_stack:,.0f}/s   (target >= 30,000/s)")
        print(f"  shard time (process-seconds): {_split_text(split)}")

        _in_process(engine, model_id, Selection(limit=2000), chi2=False)      # warm-up: model load, torch
        t_in, n_in, tim = _in_process(engine, model_id, main_sel, chi2=True)
        rate_in = n_in / t_in
        print(f"in-process, one process ({__import__('torch').get_num_threads()} torch threads): {n_in:,} spectra "
              f"in {t_in:.2f} s = {rate_in:,.0f}/s;  {_split_text(tim)}")
        print(f"  ratio stack / in-process: {rate_stack / rate_in:.2f}x")

        sel = Selection(source_id_lo=n + 1)
        for label, chi2, kernel in (("with chi2 (full covariance)", True, contextlib.nullcontext()),
                                    ("with chi2, previous kernel", True, _previous_chi2_kernel()),
                                    ("without chi2", False, contextlib.nullcontext())):
            with kernel:
                t_c, n_c, tim = _in_process(engine, model_id, sel, chi2=chi2)
            print(f"  {n_c:,} stars with correlations, in-process, {label}: {n_c / t_c:,.0f}/s;  {_split_text(tim)}")
        secs_c, job_c = stack.run_job(engine, "infer", {"model_id": model_id, "selection": sel.to_dict(), "shards": 4},
                                      timeout=600)
        print(f"  the same through the stack with chi2: {job_c['result']['n_stars'] / secs_c:,.0f}/s;  "
              f"{_split_text(_shard_split(engine, job_c['id']))}")
