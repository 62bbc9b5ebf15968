"""Reading DataLink downloads: what the other products of an `ALL` request cost, per format and structure.

For N simulated sources, two zips are written by the simulator's DataLink writer: XP_CONTINUOUS only, and all six
DR3 products (XP_CONTINUOUS, XP_SAMPLED, MCMC_GSPPHOT, MCMC_MSC, EPOCH_PHOTOMETRY, RVS). Each is read with
``read_xp`` (median of 3 reads). Members of other products are passed over by name, so the mixed zip should cost
about what the XP-only one does; the per-source (INDIVIDUAL) layout costs one file parse per source.
"""
from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from pathlib import Path

ALL = ("XP_CONTINUOUS", "XP_SAMPLED", "MCMC_GSPPHOT", "MCMC_MSC", "EPOCH_PHOTOMETRY", "RVS")


def _read_seconds(path: Path, repeats: int = 3) -> tuple[float, int]:
    from ingest.readers import read_xp
    times, n = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = sum(len(b) for b in read_xp(path))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), n


def main(quick: bool = False) -> None:
    from simulator import generate
    from simulator.writers import write_datalink
    n = 200 if quick else 1000
    batch, *_ = generate(n, seed=7)
    print(f"{n} sources; read_xp, median of 3 reads; rate = XP sources per second")
    print(f"{'structure':<11} {'format':<8} {'zip MB (xp / all)':>18} {'xp only /s':>11} {'all products /s':>16} "
          f"{'all/xp time':>11}")
    with tempfile.TemporaryDirectory(prefix="bench-datalink-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for structure in ("INDIVIDUAL", "COMBINED"):
            for fmt in ("csv", "ecsv", "fits", "votable"):
                xp = write_datalink(batch, Path(tmp) / f"xp-{structure}-{fmt}.zip", fmt, structure, ALL[:1])
                mixed = write_datalink(batch, Path(tmp) / f"all-{structure}-{fmt}.zip", fmt, structure, ALL)
                (t_xp, n_xp), (t_all, n_all) = _read_seconds(xp), _read_seconds(mixed)
                assert n_xp == n_all == n
                print(f"{structure:<11} {fmt:<8} {xp.stat().st_size / 1e6:>8.1f} / {mixed.stat().st_size / 1e6:<7.1f} "
                      f"{n / t_xp:>11,.0f} {n / t_all:>16,.0f} {t_all / t_xp:>11.2f}", flush=True)
