"""Time and peak memory of the XP text reader on a file with one huge line (a hostile or broken download).

Each case writes a CSV of real archive records with one row whose ``bp_coefficients`` field is padded to
the given size, then reads it with ``read_xp`` in a fresh child process, so that the child's peak resident
memory (VmHWM) belongs to this read alone. Printed per size: seconds, peak RSS, the increase over the RSS
after imports, and the outcome (rows loaded, bad rows and the first bad row, or the error).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from shared.settings import get_settings

SRC = "data/gaia_xp/gaiaxpy_tests/XP_CONTINUOUS_RAW_with_missing_BP.csv"

CHILD = r"""
import json, sys, time
from ingest.readers import ReaderError, read_xp
from shared.xp import ReadReport

def rss(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
base = rss("VmRSS:")
rep = ReadReport(sys.argv[1])
t0 = time.perf_counter()
n, error = 0, None
try:
    n = sum(len(b) for b in read_xp(sys.argv[1], report=rep))
except ReaderError as exc:
    error = str(exc)
print(json.dumps({"seconds": time.perf_counter() - t0, "peak": rss("VmHWM:"), "base": base, "rows": n,
                  "bad": len(rep.bad_rows), "first_bad": str(rep.bad_rows[0]) if rep.bad_rows else None,
                  "error": error}))
"""


def build(path: Path, src: Path, line_mb: int, n_rows: int = 20) -> None:
    """n_rows real rows with new source ids; row 10 carries a bp_coefficients text of ~line_mb MB."""
    lines = src.read_bytes().split(b"\n")
    header, rows = lines[0], [ln for ln in lines[1:] if ln.strip()]
    pad = b"1.0, " * (line_mb * (1 << 20) // 5)
    with open(path, "wb") as out:
        out.write(header + b"\n")
        for i in range(n_rows):
            row = rows[i % len(rows)]
            row = b"%d" % (20_000_000_000 + i) + row[row.index(b","):]
            if i == 9:
                row = row.replace(b'"(', b'"(' + pad, 1)
            out.write(row + b"\n")


def measure(path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(quick: bool) -> None:
    src = get_settings().shared_dir / SRC
    sizes = [15, 100] if quick else [15, 25, 100, 200, 400]      # 15 MB: under the 16 MiB cap, parsed
    print("one CSV of 20 real rows, row 10 padded to the size given; read_xp in a fresh process")
    print(f"{'line':>8} {'seconds':>8} {'peak RSS':>9} {'RSS growth':>11}  outcome")
    with tempfile.TemporaryDirectory(prefix="xpvae-bench-longline-") as tmp:
        for mb in sizes:
            path = Path(tmp) / f"long{mb}.csv"
            build(path, src, mb)
            r = measure(path)
            path.unlink()
            outcome = (f"error: {r['error']}" if r["error"] else
                       f"{r['rows']} rows loaded, {r['bad']} bad"
                       + (f" ({r['first_bad'].split(': ', 1)[1][:110]})" if r["bad"] else ""))
            print(f"{mb:>5} MB {r['seconds']:>8.2f} {r['peak'] / 2**20:>6.0f} MB "
                  f"{(r['peak'] - r['base']) / 2**20:>8.0f} MB  {outcome}", flush=True)
