"""`xpvae export` in bounded memory: peak RSS and rows/s of exporting N synthetic stars' latents from SQLite
(and PostgreSQL when it is reachable), in chunks of 20,000 rows, each export in a fresh process, for two sizes.
Bounded means the peak barely moves when N grows 4×; the baseline — read the whole view into an astropy Table and
write it — grows with N.

python -m bench export [--quick]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("XPVAE_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from db.engine import create_engine
from db.models_registry import get_model
url, how, fmt, out = sys.argv[1:5]
t0 = time.perf_counter()
engine = create_engine(url)
model = get_model(engine, "bench-export")
if how == "stream":      # XPVAE_DATABASE_URL points the CLI's engine at the same database
    from xpvae.export_cmd import run_export
    n = run_export("latents", model, fmt, Path(out), None, True, 20_000)
else:   # baseline: the whole view in memory, then one astropy write
    import sqlalchemy as sa
    from astropy.table import Table
    from db.export import EXPORTS
    sql, cols = EXPORTS["latents"].build(model, False)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql), {"model_id": model["id"]}).all()
    data = list(zip(*rows))
    t = Table([["" if v is None else v for v in d] if c.kind == "str" else
               [float("nan") if v is None else v for v in d] for d, c in zip(data, cols)], names=[c.name for c in cols])
    t.write(out, format={"fits": "fits", "parquet": "parquet"}[fmt], overwrite=True)
    n = len(t)
print(json.dumps({"rows": n, "seconds": time.perf_counter() - t0,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _fill(url: str, n: int, seed: int = 0) -> None:
    from db import bulk
    from db.engine import create_engine
    from db.migrate import upgrade
    from db.models_registry import register_model
    engine = create_engine(url)
    upgrade(engine)
    mid = register_model(engine, name="bench-export", kind="svae", path="/none.pt", config={"latent_dim": 6}).model_id
    rng = np.random.default_rng(seed)
    for lo in range(0, n, 100_000):
        m = min(100_000, n - lo)
        cols = {"model_id": np.full(m, mid), "source_id": np.arange(lo, lo + m, dtype=np.int64) + 10**15,
                "split": rng.choice(np.array(["train", "test", None], dtype=object), m).tolist()}
        for i in range(1, 7):
            cols[f"z{i}"] = rng.normal(size=m).astype(np.float32)
            cols[f"z{i}_sigma"] = rng.uniform(0, 1, m).astype(np.float32)
        cols["nll"] = rng.normal(size=m).astype(np.float32)
        with engine.begin() as conn:
            bulk.upsert_rows(conn, "inference_results", cols, key=("model_id", "source_id"))
    engine.dispose()


def _run(url: str, how: str, fmt: str, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "XPVAE_DATABASE_URL": url}
    res = subprocess.run([sys.executable, "-c", CHILD, url, how, fmt, str(out)], capture_output=True, text=True,
                         env=env, cwd=REPO, timeout=1800)
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def _pg_url() -> str | None:
    import sqlalchemy as sa
    name = f"xpvae_bench_export_{os.getpid()}"
    try:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError:
        return None
    return sa.engine.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)


def _drop_pg(url: str) -> None:
    import sqlalchemy as sa
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))


def main(quick: bool = False) -> None:
    sizes = (50_000, 200_000) if quick else (100_000, 400_000)     # both several chunks of 20,000 rows
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        backends = [("sqlite", lambda n: f"sqlite:///{tmp / f'x{n}.sqlite'}")]
        pg = None if quick else _pg_url()
        if pg:
            _drop_pg(pg)
            backends.append(("postgresql", lambda n: _pg_url()))
        for backend, make in backends:
            for n in sizes:
                url = make(n)
                _fill(url, n)
                for how, fmt in (("stream", "fits"), ("stream", "parquet"), ("stream", "csv"), ("stream", "votable"),
                                 ("astropy, all in memory", "fits")):
                    r = _run(url, how, fmt, tmp / f"out.{fmt}")
                    print(f"  {backend:<10} {n:>8,} rows  {how:<23} {fmt:<8} peak RSS {r['peak_mib']:7.0f} MiB  "
                          f"{r['rows'] / r['seconds']:9,.0f} rows/s", flush=True)
                if backend == "postgresql":
                    _drop_pg(url)
