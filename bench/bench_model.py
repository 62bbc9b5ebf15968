"""Training and inference throughput of the sVAE engine against a published-style loop, same process.

The published-style loop reproduces the released code's batching: every epoch a numpy permutation copies
both arrays (after building a Python list of row pairs, as the release does), every step slices numpy
arrays, wraps them with torch.from_numpy and reads three losses with .item(); default AdamW; validation in
batches of 5×1024 with .item() per batch. Both loops train the same model on the same data with batch 1024.
"""
from __future__ import annotations

import cProfile
import io
import os
import pstats
import time

import numpy as np
import torch

from shared.device import configure_threads, describe
from shared.inference import infer
from shared.model import ScatterVAE, gaussian_nll, kl_divergence
from shared.training import TrainConfig, fit_scatter_vae, init_seeded

BATCH = 1024
TRAIN_TARGET = 1.5          # × the published-style loop, CPU
INFER_TARGET = 300_000      # spectra/s at z = μ, model only, 2 CPU cores


def synthetic_spectra(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Real-like standardised XP data: a few smooth latent factors, falling coefficient amplitudes and
    heteroscedastic errors."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 6))
    basis = rng.normal(size=(6, 110)) * np.exp(-np.arange(110) % 55 / 20.0)
    x = z @ basis + 0.05 * rng.normal(size=(n, 110))
    err = rng.uniform(0.01, 0.2, size=(n, 110))
    return x.astype(np.float32), err.astype(np.float32)


def published_style_epochs(x: np.ndarray, err: np.ndarray, epochs: int, seed: int = 0) -> list[float]:
    """Seconds per epoch (train + validation) of the release-style loop."""
    n = len(x)
    n_val = n // 10
    xt, et, xv, ev = x[n_val:], err[n_val:], x[:n_val], err[:n_val]
    model = init_seeded(ScatterVAE, seed).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    np.random.seed(seed)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        _ = list(zip(xt, et))                      # the release builds this list every epoch
        perm = np.random.permutation(len(xt))
        ex, ee = xt[perm], et[perm]
        model.train()
        run = [0.0, 0.0, 0.0]
        for i in range(len(xt) // BATCH):
            optimizer.zero_grad()
            xb = torch.from_numpy(ex[i * BATCH:(i + 1) * BATCH])
            eb = torch.from_numpy(ee[i * BATCH:(i + 1) * BATCH])
            xhat, s, mu, lv = model(xb, sample=True)
            nll = gaussian_nll(xb, eb, xhat, s).mean()
            kl = kl_divergence(mu, lv).mean()
            loss = nll + kl
            loss.backward()
            optimizer.step()
            run[0] += loss.item()
            run[1] += nll.item()
            run[2] += kl.item()
        model.eval()
        with torch.inference_mode():
            vb = 5 * BATCH
            for i in range(len(xv) // vb):
                xb, eb = torch.from_numpy(xv[i * vb:(i + 1) * vb]), torch.from_numpy(ev[i * vb:(i + 1) * vb])
                xhat, s, mu, lv = model(xb, sample=True)
                nll = gaussian_nll(xb, eb, xhat, s).mean()
                kl = kl_divergence(mu, lv).mean()
                (nll + kl).item()
                nll.item()
                kl.item()
        times.append(time.perf_counter() - t0)
    return times


def engine_epochs(x: np.ndarray, err: np.ndarray, epochs: int, compile_: bool) -> tuple[list[float], bool]:
    seconds: list[float] = []
    cfg = TrainConfig(epochs=epochs, batch_size=BATCH, split=(0.9, 0.1, 0.0), compile=compile_, checkpoint_every=0,
                      device="cpu", threads=torch.get_num_threads())
    # x is already standardised; the engine's own standardisation is then ~identity and costs nothing here
    res = fit_scatter_vae(x, err, train_config=cfg, callback=lambda m: seconds.append(m["seconds"]))
    return seconds, res.compiled


def main(quick: bool = False) -> None:
    threads = configure_threads(None)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{describe(torch.device('cpu'))}, intra-op threads {threads}, load average {load:.1f} "
          f"(other processes on these cores depress every figure below)")
    n = 20_000 if quick else 60_000
    epochs = 2 if quick else 4
    x, err = synthetic_spectra(n)
    steps = (n - n // 10) // BATCH
    per_epoch = steps * BATCH
    print(f"training: N={n} (90% train, batch {BATCH}, {steps} steps/epoch), {epochs} epochs each; "
          f"steady state = fastest epoch after the first (robust to other load)")

    base = published_style_epochs(x, err, epochs)
    base_rate = per_epoch / min(base[1:])
    print(f"  published-style loop      {base_rate:10,.0f} spectra/s")
    eager, _ = engine_epochs(x, err, epochs, compile_=False)
    eager_rate = per_epoch / min(eager[1:])
    print(f"  engine, eager             {eager_rate:10,.0f} spectra/s   ratio {eager_rate / base_rate:.2f}x")
    comp, compiled = engine_epochs(x, err, epochs + (0 if quick else 1), compile_=True)
    comp_rate = per_epoch / min(comp[1:])
    overhead = comp[0] - min(comp[1:])
    label = "engine, torch.compile" if compiled else "engine, compile FAILED→eager"
    print(f"  {label:25s} {comp_rate:10,.0f} spectra/s   ratio {comp_rate / base_rate:.2f}x   "
          f"(compile overhead {overhead:.1f} s, paid back after "
          f"{overhead / max(1e-9, 1 / eager_rate - 1 / comp_rate) / 1e6:.1f} M spectra)")
    best = max(eager_rate, comp_rate)
    print(f"  best/published = {best / base_rate:.2f}x (target >= {TRAIN_TARGET}x)")

    model = ScatterVAE().eval()
    n_inf = 50_000 if quick else 200_000
    xi, ei = synthetic_spectra(n_inf, seed=1)

    def rate(**kw) -> float:
        best_t = float("inf")
        for _ in range(2):        # best of two passes: robust to other load on the cores
            t0 = time.perf_counter()
            for _ in infer(model, xi, batch_size=65536, **kw):
                pass
            best_t = min(best_t, time.perf_counter() - t0)
        return n_inf / best_t

    inf_rate, fold_rate, met_rate = rate(), rate(fold_bn=True), rate(x_err=ei)
    print(f"inference at z=mu (N={n_inf}, batch 65536): model only {inf_rate:,.0f} spectra/s, with folded "
          f"batch norm {fold_rate:,.0f} spectra/s (target >= {INFER_TARGET:,}); with NLL and z-score summaries "
          f"{met_rate:,.0f} spectra/s")
    inf_rate = max(inf_rate, fold_rate)

    if best / base_rate < TRAIN_TARGET or inf_rate < INFER_TARGET:
        print("a target was missed; profile of one engine epoch (eager), top entries:")
        prof = cProfile.Profile()
        prof.enable()
        engine_epochs(x, err, 1, compile_=False)
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(8)
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[-1200:])


if __name__ == "__main__":
    main()
