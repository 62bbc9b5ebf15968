"""Partitioned (48 sky regions) against unpartitioned tables, side by side on PostgreSQL.

Two bench databases: one at the migration before 0003 (plain heaps), one at 0003 (partitioned). The same
synthetic rows go to both, batch by batch alternately (so the shared machine's load drifts hit both alike):
1. coefficients only, N_COEFF rows (default 2,000,000; XPVAE_BENCH_PARTITION_ROWS), plus one inference result
   per star: load rate, client and server CPU per row, table/TOAST and index bytes per star, the ANALYZE ingest
   runs (the partitions a load wrote) against ANALYZE of the tables with their parents, ANALYZE and VACUUM
   seconds, read-back into numpy (first with only the statistics ingest keeps), and one sky region read alone;
2. with correlations, N_CORR rows (default 200,000; XPVAE_BENCH_PARTITION_CORR_ROWS): the same figures;
3. the CSV parser on this machine (records/s on one core), for the full-release plan.
Source ids are spread over the whole sky and each batch is a contiguous id run, as in the bulk release's
files (each holds a range of HEALPix pixels). The rows are random (not simulated spectra): sizes match real
ones because the coefficient blobs are incompressible either way.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from bench.bench_ingest import _replicated_csv
from db.bulk import analyze, upsert_rows
from db.engine import create_engine
from db.migrate import alembic_config, upgrade
from db.partitions import PARTITIONED_TABLES, partitions_touched, pixel_span, touched_pixels
from db.selection import Selection
from db.spectra import read_spectra, write_xp_batch
from shared.settings import get_settings
from shared.xp import BANDS, N_COEFF, N_CORR, XPBatch

ADMIN_URL = os.environ.get("XPVAE_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
BATCH = 50_000
TICK = os.sysconf("SC_CLK_TCK")


def _batch(ids: np.ndarray, rng, correlations: bool) -> XPBatch:
    n = len(ids)
    b = XPBatch.empty(n, with_correlations=correlations)
    c = b.columns
    c["source_id"][:] = ids
    c["solution_id"][:] = 4545469030156206080
    for band in BANDS:
        c[f"{band}_missing"][:] = False
        c[f"{band}_coefficients"][:] = rng.normal(size=(n, N_COEFF))
        c[f"{band}_coefficient_errors"][:] = rng.random((n, N_COEFF), np.float32)
        for f in ("basis_function_id", "degrees_of_freedom", "n_parameters", "n_measurements",
                  "n_rejected_measurements", "n_relevant_bases"):
            c[f"{band}_{f}"][:] = 55
        for f in ("standard_deviation", "chi_squared", "relative_shrinking"):
            c[f"{band}_{f}"][:] = rng.random(n, np.float32)
        if correlations:
            c[f"{band}_coefficient_correlations"][:] = rng.uniform(-0.3, 0.3, (n, N_CORR)).astype(np.float32)
    return b


def _results(ids: np.ndarray, rng) -> dict:
    n = len(ids)
    cols = {"model_id": np.ones(n, np.int32), "source_id": ids, "job_id": np.ones(n, np.int32),
            "split": [None] * n}
    for i in range(1, 7):
        cols[f"z{i}"] = rng.normal(size=n).astype(np.float32)
        cols[f"z{i}_sigma"] = rng.random(n, np.float32)
    for name in ("nll", "zscore_rms", "zscore_rms_scatter", "scatter_mean", "bp_chi2_dof", "rp_chi2_dof",
                 "bp_chi2_dof_scatter", "rp_chi2_dof_scatter"):
        cols[name] = rng.random(n, np.float32)
    return cols


class Layout:
    """One bench database and its running totals."""

    def __init__(self, label: str, revision: str):
        self.label = label
        self.name = f"xpvae_bench_{label}_{os.getpid()}"
        with _admin() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{self.name}"')
        url = sa.engine.make_url(ADMIN_URL).set(database=self.name).render_as_string(hide_password=False)
        self.engine = create_engine(url)
        upgrade(self.engine, revision)
        self.conn = self.engine.connect()
        self.backend = self.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        self.conn.exec_driver_sql("INSERT INTO models (id, name, kind, path) VALUES (1, 'bench', 'svae', '/x')")
        self.conn.commit()
        self.reset()

    def reset(self) -> None:
        self.wall: dict[str, float] = {}
        self.client: dict[str, float] = {}
        self.server: dict[str, float] = {}

    def server_cpu(self) -> float:
        """CPU seconds of this layout's server process so far (same machine: /proc)."""
        fields = Path(f"/proc/{self.backend}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def write(self, what: str, fn) -> None:
        """Run ``fn(conn)`` in one transaction, adding its wall and CPU seconds to the totals of ``what``."""
        s0, c0, t0 = self.server_cpu(), time.process_time(), time.perf_counter()
        with self.conn.begin():
            fn(self.conn)
        for totals, value in ((self.wall, time.perf_counter() - t0), (self.client, time.process_time() - c0),
                              (self.server, self.server_cpu() - s0)):
            totals[what] = totals.get(what, 0.0) + value

    def sizes(self) -> dict[str, tuple[int, int]]:
        """(table bytes incl. TOAST, index bytes) per table, summed over its partitions."""
        out = {}
        for t in PARTITIONED_TABLES:
            out[t] = tuple(int(v) for v in self.conn.exec_driver_sql(
                f"SELECT coalesce(sum(pg_table_size(relid)), 0), coalesce(sum(pg_indexes_size(relid)), 0) "
                f"FROM (SELECT relid FROM pg_partition_tree('{t}') UNION SELECT '{t}'::regclass) r").one())
        self.conn.commit()
        return out

    def ingest_analyze(self, tables: tuple[str, ...], ids: np.ndarray) -> float:
        """Seconds for the ANALYZE ingest runs after loading ``ids`` (db.bulk.analyze: the partitions holding
        them on the partitioned layout, the whole tables on the plain one)."""
        t = time.perf_counter()
        analyze(self.engine, tables, touched_pixels(ids))
        return time.perf_counter() - t

    def maintenance(self, tables: str, vacuum: bool = True) -> tuple[float, float]:
        """Seconds for ANALYZE and for VACUUM of ``tables`` (autocommit: VACUUM refuses transactions)."""
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            t = time.perf_counter()
            c.exec_driver_sql(f"ANALYZE {tables}")
            t_analyze = time.perf_counter() - t
            if not vacuum:
                return t_analyze, 0.0
            t = time.perf_counter()
            c.exec_driver_sql(f"VACUUM {tables}")
            return t_analyze, time.perf_counter() - t

    def truncate(self) -> None:
        self.conn.exec_driver_sql("TRUNCATE xp_correlations, xp_spectra, inference_results")
        self.conn.commit()

    def drop(self) -> None:
        self.conn.close()
        self.engine.dispose()
        with _admin() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _admin():
    return sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT").connect()


def _sky_ids(n: int, rng) -> np.ndarray:
    """n distinct sorted source ids spread over the 48 level-1 pixels (uneven, as the sky is)."""
    weights = rng.gamma(1.0, size=48)
    per = rng.multinomial(n, weights / weights.sum())
    span = pixel_span(1)
    ids = np.concatenate([np.unique(p * span + rng.integers(0, span, k + k // 100 + 8)) for p, k in enumerate(per)])
    rng.shuffle(ids)
    return np.sort(ids[:n])


def _rate(n: int, seconds: float) -> str:
    return f"{n:,} in {seconds:.1f} s = {n / seconds:,.0f}/s"


def _reads(lay: Layout, n: int, correlations: bool, label: str, streams: tuple[int, ...] = (1, 2)) -> None:
    for k in streams:
        c0, t = time.process_time(), time.perf_counter()
        got = read_spectra(lay.engine, Selection.everything(), with_correlations=correlations, streams=k)
        wall, cpu = time.perf_counter() - t, time.process_time() - c0
        assert len(got["source_id"]) == n
        del got
        print(f"  {label}, {k} stream(s): {_rate(n, wall)} (client CPU {cpu:.1f} s)", flush=True)


def _drop_parent_statistics(layouts: list[Layout]) -> None:
    """Forget the parents' statistics the 'before' ANALYZE made, so the next phase's reads see only what ingest
    keeps (a fresh bench database has none)."""
    for lay in layouts:
        lay.conn.exec_driver_sql("DELETE FROM pg_statistic WHERE starelid IN (SELECT oid FROM pg_class "
                                 "WHERE relkind = 'p')")
        lay.conn.commit()


def _load(layouts: list[Layout], ids: np.ndarray, correlations: bool, rng) -> None:
    """The same rows into every layout, batch by batch alternately; totals per layout."""
    n = len(ids)
    for lay in layouts:
        lay.reset()
    t_gen = 0.0
    for lo in range(0, n, BATCH):
        t = time.perf_counter()
        part = ids[lo:lo + BATCH]
        batch = _batch(part, rng, correlations)
        results = None if correlations else _results(part, rng)
        t_gen += time.perf_counter() - t
        for lay in (layouts if (lo // BATCH) % 2 == 0 else layouts[::-1]):
            source = f"XpContinuousMeanSpectrum_{lo}.csv.gz"
            lay.write("spectra", lambda conn, batch=batch, source=source: write_xp_batch(conn, batch, source))
            if results is not None:
                lay.write("inference results", lambda conn, results=results: upsert_rows(
                    conn, "inference_results", results, key=("model_id", "source_id")))
        if lo // BATCH % 10 == 9:
            print(f"  … {lo + BATCH:,} rows loaded", flush=True)
    print(f"  (generating the rows: {t_gen:.1f} s, not counted)")


def _phase(layouts: list[Layout], n: int, correlations: bool, rng) -> None:
    what = "with correlations" if correlations else "coefficients only (+ one inference result per star)"
    print(f"\n{n:,} spectra, {what}; load average {os.getloadavg()[0]:.1f}", flush=True)
    ids = _sky_ids(n, rng)
    _load(layouts, ids, correlations, rng)
    tables = "xp_spectra, xp_correlations" if correlations else "xp_spectra, inference_results"
    for lay in layouts:
        for what, wall in lay.wall.items():
            client, server = lay.client[what], lay.server[what]
            print(f"  {lay.label:11s} load {what}: {_rate(n, wall)}; CPU per 1,000 rows: client "
                  f"{1000 * client / n:.3f} s, server {1000 * server / n:.3f} s "
                  f"(= {n / (client + server):,.0f} rows per CPU-second)")
    loaded = ("xp_spectra", "xp_correlations") if correlations else ("xp_spectra",)
    for lay in layouts:
        # what ingest analyses now (db.bulk.analyze with the loaded sky pixels): after one file-like batch (a
        # contiguous id run) and after the whole load; then what it analysed before (the tables, parents too)
        t_file = lay.ingest_analyze(loaded, ids[-BATCH:])
        t_load = lay.ingest_analyze(loaded, ids)
        t_parent = lay.maintenance(", ".join(loaded), vacuum=False)[0]
        parts = partitions_touched(lay.conn, "xp_spectra", touched_pixels(ids[-BATCH:]))
        lay.conn.commit()
        print(f"  {lay.label:11s} ingest's ANALYZE of {', '.join(loaded)}: after the last {min(BATCH, n):,}-row "
              f"batch ({'the whole table' if parts is None else f'{len(parts)} partitions'}) {t_file:.1f} s, "
              f"after the whole load {t_load:.1f} s; before, ANALYZE {', '.join(loaded)}: {t_parent:.1f} s",
              flush=True)
    _drop_parent_statistics(layouts)
    for lay in layouts:
        # the reads as they run after an ingest today: statistics of the partitions only, none of the parent
        _reads(lay, n, correlations, f"{lay.label:11s} read-back with ingest's statistics", streams=(2,))
    for lay in layouts:
        t_an, t_vac = lay.maintenance(tables)
        sizes = lay.sizes()
        shown = [t for t in PARTITIONED_TABLES if sizes[t][0] > 8192 * 48 * 2 or t == "xp_spectra"]
        text = "; ".join(f"{t} {sizes[t][0] / n:,.0f} B + index {sizes[t][1] / n:,.1f} B per star "
                         f"({(sizes[t][0] + sizes[t][1]) / 1e9:.2f} GB)" for t in shown)
        print(f"  {lay.label:11s} size: {text}")
        print(f"  {lay.label:11s} ANALYZE {tables}: {t_an:.1f} s; VACUUM: {t_vac:.1f} s")
    for lay in layouts:
        _reads(lay, n, correlations, f"{lay.label:11s} read-back")
        # one sky region (HEALPix level-1 pixel 20): the partitioned layout reads one partition
        span = pixel_span(1)
        sel = Selection.everything().replace(source_id_lo=20 * span, source_id_hi=21 * span - 1)
        t = time.perf_counter()
        got = read_spectra(lay.engine, sel, with_correlations=correlations)
        print(f"  {lay.label:11s} one sky region (pixel 20): {_rate(len(got['source_id']), time.perf_counter() - t)}")
    for lay in layouts:
        lay.truncate()


def _parser_rate() -> None:
    from ingest.readers.xp import read_xp
    with tempfile.TemporaryDirectory(prefix="xpvae-bench-") as tmp:
        csv = _replicated_csv(get_settings().shared_dir, 3000, Path(tmp) / "xp.csv")
        for correlations in (True, False):
            best = float("inf")
            for _ in range(2):
                c0 = time.process_time()
                n = sum(len(b) for b in read_xp(csv, correlations=correlations))
                best = min(best, time.process_time() - c0)
            print(f"  parser (read_xp), {'with' if correlations else 'without'} correlations: "
                  f"{n / best:,.0f} records per CPU-second")


def main(quick: bool) -> None:
    n_coeff = int(os.environ.get("XPVAE_BENCH_PARTITION_ROWS", 40_000 if quick else 2_000_000))
    n_corr = int(os.environ.get("XPVAE_BENCH_PARTITION_CORR_ROWS", 8_000 if quick else 200_000))
    rng = np.random.default_rng(16)
    before = ScriptDirectory.from_config(alembic_config()).get_revision("0003").down_revision
    print(f"cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; batches of {BATCH:,} rows, one "
          f"transaction each, written alternately to both layouts")
    layouts = []
    try:
        layouts = [Layout("plain", before), Layout("partitioned", "0003")]
        _phase(layouts, n_coeff, False, rng)
        _phase(layouts, n_corr, True, rng)
    finally:
        for lay in layouts:
            lay.drop()
    print()
    _parser_rate()
