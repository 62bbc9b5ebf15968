"""Survey simulator speed: spectra with correlated noise in memory, and archive-CSV writing, each against a naive
baseline run in the same process (one thread for numpy/torch, as the targets are per core)."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def _one_thread():
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    from threadpoolctl import threadpool_limits
    return threadpool_limits(1)


def _naive_spectra(stars, templates, error_model, rng) -> None:
    """The obvious per-star loop: SED, coefficients (default model), Cholesky of the star's own correlation, noise."""
    from simulator.spectra import sed_model, sed_to_coefficients
    from simulator.xp_basis import xp_basis
    basis = xp_basis()
    sed = sed_model()
    operator = sed_to_coefficients()
    for i in range(len(stars)):
        f = sed(stars.teff[i:i + 1], stars.logg[i:i + 1], stars.m_h[i:i + 1], stars.alpha_m[i:i + 1],
                stars.ebv[i:i + 1], stars.carbon[i:i + 1])
        c = (f @ operator)[0]
        c *= 10 ** ((basis.zero_points[0] - stars.g_mag[i]) / 2.5) / (c @ basis.passbands[:, 0])
        mags = basis.synthetic_mags(c)[0]
        e = error_model.median_errors(mags[None, 1:])[0]
        for b in range(2):
            r = 0.8 * templates.matrices[b, rng.integers(templates.matrices.shape[1])] + 0.2 * np.eye(55)
            c[b * 55:(b + 1) * 55] += e[b * 55:(b + 1) * 55] * (np.linalg.cholesky(r) @ rng.standard_normal(55))


def _naive_csv(batch, path: Path) -> None:
    """Per-number Python formatting of the same 26 columns."""
    from shared.xp import ARCHIVE_COLUMNS
    with open(path, "w") as f:
        f.write(",".join(ARCHIVE_COLUMNS) + "\n")
        for i in range(len(batch)):
            fields = []
            for name in ARCHIVE_COLUMNS:
                v = batch[name][i]
                if np.ndim(v):
                    fields.append('"(' + ", ".join(str(float(x)) for x in v) + ')"')
                else:
                    fields.append(str(v))
            f.write(",".join(fields) + "\n")


def main(quick: bool = False) -> None:
    from simulator.noise import CorrelationTemplates, stored_error_model
    from simulator.populations import draw_stars
    from simulator.spectra import (
        COEFFICIENT_MODELS,
        DEFAULT_COEFFICIENTS,
        noise_free_coefficients,
        observe,
        sed_to_coefficients,
    )
    from simulator.survey import generate
    from simulator.writers import write_xp_csv
    from simulator.xp_basis import xp_basis

    limits = _one_thread()
    xp_basis()                                  # one-off GaiaXPy XML load (~2 s), not part of the rate
    n = 20000 if quick else 100000
    n_naive = 300 if quick else 1000
    rng = np.random.default_rng(0)
    stars = draw_stars(rng, n)
    templates = CorrelationTemplates.make(0)
    model = stored_error_model()
    observe(rng, noise_free_coefficients(draw_stars(rng, 100)), model, templates, np.arange(100))   # warm-up

    rates = {}
    for coefficients in COEFFICIENT_MODELS:
        t0 = time.perf_counter()
        sed_to_coefficients(coefficients)       # the cached linear operator, built once per process
        setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        for lo in range(0, n, 4096):
            sub = stars.__class__(**{k: v[lo:lo + 4096] for k, v in stars.__dict__.items()})
            observe(rng, noise_free_coefficients(sub, coefficients=coefficients), model, templates,
                    np.arange(len(sub)))
        rates[coefficients] = (n / (time.perf_counter() - t0), setup)
    fast = rates[DEFAULT_COEFFICIENTS][0]
    small = stars.__class__(**{k: v[:n_naive] for k, v in stars.__dict__.items()})
    t0 = time.perf_counter()
    _naive_spectra(small, templates, model, rng)
    naive = n_naive / (time.perf_counter() - t0)
    for coefficients, (rate, setup) in rates.items():
        print(f"spectra + correlated noise, in memory, 1 thread, --coefficients {coefficients}: {rate:,.0f} stars/s "
              f"(n={n}; target ≥ 10,000; operator built once in {setup:.2f} s)")
    print(f"  naive per-star loop (n={n_naive}):              {naive:,.0f} stars/s  → ratio {fast / naive:.1f}x")

    t0 = time.perf_counter()
    generate(8192 if quick else 32768, seed=1, with_correlations=True)
    print("full generate() incl. labels/photometry:         "
          f"{(8192 if quick else 32768) / (time.perf_counter() - t0):,.0f} stars/s")

    n_csv = 1000 if quick else 4000
    n_csv_naive = 100 if quick else 300
    batch = generate(n_csv, seed=2)[0]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = write_xp_csv(batch, Path(tmp) / "fast.csv")
        fast_csv = n_csv / (time.perf_counter() - t0)
        size = path.stat().st_size
        t0 = time.perf_counter()
        _naive_csv(batch.take(slice(0, n_csv_naive)), Path(tmp) / "naive.csv")
        naive_csv = n_csv_naive / (time.perf_counter() - t0)
    print(f"archive CSV with correlations, 1 thread:        {fast_csv:,.0f} stars/s "
          f"({size / n_csv / 1e3:.1f} kB/star; target ≥ 1,000)")
    print(f"  naive per-number str() (n={n_csv_naive}):             {naive_csv:,.0f} stars/s  → ratio "
          f"{fast_csv / naive_csv:.1f}x")
    limits.restore_original_limits()


if __name__ == "__main__":
    main()
