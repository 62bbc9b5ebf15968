"""Parsing speed of the XP readers on archive CSV / bulk-style gzipped CSV built from real records.

Baseline (same file, same process): astropy ``Table.read`` + per-row ``split`` + ``numpy.array`` of the
tuple strings — the ~750 records/s approach quoted in docs/data-formats.md.
"""
from __future__ import annotations

import gzip
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from ingest.readers import read_xp
from shared.settings import get_settings
from shared.xp import ReadReport

ARRAY_COLUMNS = [f"{b}_{f}" for b in ("bp", "rp")
                 for f in ("coefficients", "coefficient_errors", "coefficient_correlations")]


def build_csv(src: Path, dst: Path, n: int) -> None:
    """Replicate the real records of ``src`` n times in total, each with a new source_id."""
    lines = src.read_bytes().split(b"\n")
    header, rows = lines[0], [ln for ln in lines[1:] if ln.strip()]
    with open(dst, "wb") as out:
        out.write(header + b"\n")
        for i in range(n):
            row = rows[i % len(rows)]
            out.write(b"%d" % (10_000_000_000 + i) + row[row.index(b","):] + b"\n")


def baseline(path: Path) -> int:
    from astropy.table import Table
    t = Table.read(path, format="ascii.csv", fast_reader=True)
    n = 0
    for row in t:
        for c in ARRAY_COLUMNS:
            s = row[c]
            if s and not np.ma.is_masked(s):
                np.array(str(s).strip("()[]").split(","), dtype=np.float64)
        n += 1
    return n


def timed(fn) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = fn()
    return time.perf_counter() - t0, n


def ours(path: Path, correlations: bool) -> int:
    rep = ReadReport(str(path))
    n = sum(len(b) for b in read_xp(path, correlations=correlations, report=rep))
    assert not rep.bad_rows, rep.bad_rows[:3]
    return n


def main(quick: bool) -> None:
    n = 300 if quick else 3000
    src = get_settings().shared_dir / "data/gaia_xp/gaiaxpy_tests/XP_CONTINUOUS_RAW.csv"
    with tempfile.TemporaryDirectory(prefix="xpvae-bench-") as tmp:
        csv = Path(tmp) / "xp.csv"
        build_csv(src, csv, n)
        gz = Path(tmp) / "xp.csv.gz"
        with open(csv, "rb") as fi, gzip.open(gz, "wb", compresslevel=6) as fo:
            fo.write(fi.read())
        mb = csv.stat().st_size / 1e6
        from ingest.readers.gz import ACCELERATED
        from ingest.readers.numbers import COMPILED
        print(f"records: {n}, CSV {mb:.1f} MB, gzip {gz.stat().st_size / 1e6:.1f} MB; compiled array parser: "
              f"{'yes' if COMPILED else 'NO'}; ISA-L gzip: {'yes' if ACCELERATED else 'NO (zlib)'}")
        t_base, nb = timed(lambda: baseline(csv))
        rate_base = nb / t_base
        print(f"baseline astropy Table.read + per-row split: {rate_base:8.0f} records/s ({t_base:.2f} s)")
        for label, path, corr in (("read_xp CSV, with correlations", csv, True),
                                  ("read_xp CSV, no correlations", csv, False),
                                  ("read_xp CSV.gz, with correlations", gz, True),
                                  ("read_xp CSV.gz, no correlations", gz, False)):
            best = min(timed(partial(ours, path, corr))[0] for _ in range(2))
            rate = n / best
            print(f"{label:36s}: {rate:8.0f} records/s ({mb / best:6.1f} MB/s text)  "
                  f"x{rate / rate_base:5.1f} vs baseline")
