"""Ingest and read-back speed on PostgreSQL (a bench database created and dropped here).

Figures:
1. archive CSV with correlations → database, records/s, against a baseline written here: astropy
   ``Table.read`` + per-row parsing of the array text + SQLAlchemy ``conn.execute(table.insert(), dicts)``;
2. the same file with ``--no-correlations``, and the database write alone for coefficient-only batches;
3. reading a training set back into numpy (spectra/s), PostgreSQL and SQLite.
The CSV is built by replicating the real records of XP_CONTINUOUS_RAW*.csv under new source ids.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from db.bulk import analyze
from db.engine import create_engine
from db.migrate import upgrade
from db.schema import xp_correlations, xp_spectra
from db.selection import Selection
from db.spectra import read_spectra, write_photometry, write_xp_batch
from ingest.load import ingest_gaia_xp
from shared.settings import get_settings
from shared.xp import BANDS, N_COEFF, XPBatch

ADMIN_URL = os.environ.get("XPVAE_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _replicated_csv(shared: Path, n: int, out: Path) -> Path:
    src = shared / "data" / "gaia_xp" / "gaiaxpy_tests" / "XP_CONTINUOUS_RAW_with_missing_BP.csv"
    lines = src.read_text().splitlines(keepends=True)
    rows = lines[1:]
    with open(out, "w") as fh:
        fh.write(lines[0])
        for i in range(n):
            line = rows[i % len(rows)]
            fh.write(f"{10_000 + i}{line[line.index(','):]}")
    return out


def _truncate(engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE xp_correlations, xp_spectra, photometry")


def _parse_tuple(text, dtype) -> bytes | None:
    if text is None or np.ma.is_masked(text) or not str(text).strip():
        return None
    return np.array(str(text).strip().strip('()"').split(","), dtype=dtype).astype(dtype).tobytes()


def baseline_astropy_sqlalchemy(engine, path: Path) -> int:
    """The straightforward way: astropy reads the CSV, Python parses each array, SQLAlchemy inserts dicts."""
    from astropy.table import Table
    table = Table.read(path, format="ascii.csv")
    spectra, corr = [], []
    for row in table:
        rec = {"source_id": int(row["source_id"]), "solution_id": int(row["solution_id"])}
        crec = {"source_id": rec["source_id"]}
        for b in BANDS:
            coeff = _parse_tuple(row[f"{b}_coefficients"], "<f8")
            rec[f"{b}_missing"] = coeff is None
            rec[f"{b}_coefficients"] = coeff
            rec[f"{b}_coefficient_errors"] = _parse_tuple(row[f"{b}_coefficient_errors"], "<f4")
            crec[f"{b}_coefficient_correlations"] = _parse_tuple(row[f"{b}_coefficient_correlations"], "<f4")
            for f in ("basis_function_id", "degrees_of_freedom", "n_parameters", "n_measurements",
                      "n_rejected_measurements", "n_relevant_bases"):
                v = row[f"{b}_{f}"]
                rec[f"{b}_{f}"] = None if np.ma.is_masked(v) else int(v)
            for f in ("standard_deviation", "chi_squared", "relative_shrinking"):
                v = row[f"{b}_{f}"]
                rec[f"{b}_{f}"] = None if np.ma.is_masked(v) else float(v)
        rec["source_file"] = str(path)
        spectra.append(rec)
        corr.append(crec)
    with engine.begin() as conn:
        conn.execute(xp_spectra.insert(), spectra)
        conn.execute(xp_correlations.insert(), corr)
    return len(spectra)


def baseline_write(engine, batches: list[XPBatch]) -> int:
    """The database half of the baseline alone: dicts of bytes + SQLAlchemy executemany insert."""
    n = 0
    with engine.begin() as conn:
        for b in batches:
            spectra, corr = [], []
            for i in range(len(b)):
                rec = {"source_id": int(b["source_id"][i]), "solution_id": int(b["solution_id"][i]),
                       "source_file": "x"}
                crec = {"source_id": rec["source_id"]}
                for band in BANDS:
                    miss = bool(b[f"{band}_missing"][i])
                    rec[f"{band}_missing"] = miss
                    rec[f"{band}_coefficients"] = None if miss else b[f"{band}_coefficients"][i].tobytes()
                    rec[f"{band}_coefficient_errors"] = None if miss else b[f"{band}_coefficient_errors"][i].tobytes()
                    crec[f"{band}_coefficient_correlations"] = (
                        None if miss else b[f"{band}_coefficient_correlations"][i].tobytes())
                spectra.append(rec)
                corr.append(crec)
            conn.execute(xp_spectra.insert(), spectra)
            conn.execute(xp_correlations.insert(), corr)
            n += len(b)
    return n


def _synthetic_batch(lo: int, n: int, rng) -> XPBatch:
    b = XPBatch.empty(n, with_correlations=False)
    b.columns["source_id"][:] = np.arange(lo, lo + n)
    for band in BANDS:
        b.columns[f"{band}_missing"][:] = False
        b.columns[f"{band}_coefficients"][:] = rng.normal(size=(n, N_COEFF))
        b.columns[f"{band}_coefficient_errors"][:] = rng.random((n, N_COEFF), np.float32)
        b.columns[f"{band}_n_relevant_bases"][:] = 40
    return b


def _server_floor(engine, n: int, t_read: float) -> None:
    """The server's own speed on the same query, writing the binary COPY to /dev/null on its side (no client,
    no network): the ceiling for any client. Needs a superuser (or pg_write_server_files)."""
    from db.spectra_blocks import select_list
    select, _ = select_list(True, False)
    sql = Selection().sql(select)
    try:
        with engine.connect() as conn:
            t = time.perf_counter()
            conn.exec_driver_sql(f"COPY ({sql}) TO '/dev/null' WITH (FORMAT binary)")
            t_server = time.perf_counter() - t
            conn.rollback()
    except sa.exc.DBAPIError as exc:
        print(f"server alone (COPY to its /dev/null): not measured ({str(exc.orig).strip()[:80]})")
        return
    print(f"server alone (COPY to its /dev/null): {_rate(n, t_server)}; the last read-back reached "
          f"{100 * t_server / t_read:.0f}% of it")


def _timed_reads(engine, n: int, reps: int = 5) -> list[float]:
    """Seconds for each of ``reps`` reads of the whole training set (each checked complete)."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        got = read_spectra(engine, Selection(), streams=get_settings().read_streams)
        times.append(time.perf_counter() - t)
        assert len(got["source_id"]) == n
    return times


def _read_over_unix_socket(engine, n: int) -> None:
    """The same read through the server's Unix socket, when it is on this machine (what `make up` uses when
    it can): loopback TCP costs more per message than a local socket."""
    sock_dir = os.environ.get("XPVAE_BENCH_PG_SOCKET_DIR", "/var/run/postgresql")
    if not (Path(sock_dir) / ".s.PGSQL.5432").exists():
        print(f"read-back over the Unix socket: not measured (no socket in {sock_dir})")
        return
    url = engine.url.set(host=None, port=None, query={"host": sock_dir})
    local = create_engine(url.render_as_string(hide_password=False))
    try:
        times = _timed_reads(local, n)
        print(f"read-back into numpy, PostgreSQL over its Unix socket, 5 reads: median "
              f"{_rate(n, float(np.median(times)))}, best {n / min(times):,.0f}/s   (target >= 200,000/s)")
    except sa.exc.OperationalError as exc:      # e.g. peer authentication for this OS user
        print(f"read-back over the Unix socket: not measured ({str(exc.orig).strip()[:80]})")
    finally:
        local.dispose()


def _rate(n: int, seconds: float) -> str:
    return f"{n:,} in {seconds:.2f} s = {n / seconds:,.0f}/s"


def main(quick: bool) -> None:
    n_csv, n_base, n_read = (300, 100, 20_000) if quick else (3000, 1000, 200_000)
    name = f"xpvae_bench_{os.getpid()}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = create_engine(sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False))
    try:
        upgrade(engine)
        with tempfile.TemporaryDirectory(prefix="xpvae-bench-") as tmp:
            csv = _replicated_csv(get_settings().shared_dir, n_csv, Path(tmp) / "xp.csv")
            small = _replicated_csv(get_settings().shared_dir, n_base, Path(tmp) / "xp_small.csv")
            print(f"archive CSV with correlations: {n_csv} records, {csv.stat().st_size / 1e6:.0f} MB; "
                  f"cores available: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}")

            from ingest.readers.xp import read_xp
            ingest_gaia_xp(engine, [small])      # warm-up: imports, first connections
            _truncate(engine)
            # best of two for each side: the machine is shared, and the first run of each warms caches
            t_ours, t_again = float("inf"), float("inf")
            for _ in range(2):
                t = time.perf_counter()
                summary = ingest_gaia_xp(engine, [csv])
                t_ours = min(t_ours, time.perf_counter() - t)
                assert summary.files_failed == 0 and summary.rows_loaded == n_csv, summary.to_dict()
                t = time.perf_counter()
                ingest_gaia_xp(engine, [csv])
                t_again = min(t_again, time.perf_counter() - t)
                _truncate(engine)
            t_parse = float("inf")
            for _ in range(2):
                t = time.perf_counter()
                for _b in read_xp(csv):
                    pass
                t_parse = min(t_parse, time.perf_counter() - t)
            from ingest.readers import numbers
            t_pure = float("inf")
            compiled, numbers.COMPILED = numbers.COMPILED, False
            try:
                for _ in range(2):
                    t = time.perf_counter()
                    for _b in read_xp(csv):
                        pass
                    t_pure = min(t_pure, time.perf_counter() - t)
            finally:
                numbers.COMPILED = compiled
            baseline_astropy_sqlalchemy(engine, small)   # warm-up for the baseline too
            _truncate(engine)
            t_base = float("inf")
            for _ in range(2):
                t = time.perf_counter()
                n = baseline_astropy_sqlalchemy(engine, small)
                t_base = min(t_base, time.perf_counter() - t)
                _truncate(engine)
            r_ours, r_base = n_csv / t_ours, n / t_base
            print(f"  ingest (read_xp + COPY, overlapped): {_rate(n_csv, t_ours)}   (target >= 1,000/s per core)")
            print(f"  re-ingest, nothing changes         : {_rate(n_csv, t_again)}")
            print(f"  the parser alone (read_xp)         : {_rate(n_csv, t_parse)}   (ingest = "
                  f"{100 * t_parse / t_ours:.0f}% of its speed)")
            print(f"  the parser, pure (pyarrow) engine  : {_rate(n_csv, t_pure)}   (compiled engine "
                  f"{'built' if compiled else 'NOT BUILT'}: {t_pure / t_parse:.1f}x faster)")
            print(f"  baseline astropy + SA insert       : {_rate(n, t_base)}")
            print(f"  ratio ingest / baseline            : {r_ours / r_base:.1f}x   (target >= 5x)")

            parsed = list(read_xp(csv))
            t = time.perf_counter()
            with engine.begin() as conn:
                for b in parsed:
                    write_xp_batch(conn, b, str(csv))
            t_w = time.perf_counter() - t
            _truncate(engine)
            t = time.perf_counter()
            baseline_write(engine, parsed)
            t_bw = time.perf_counter() - t
            _truncate(engine)
            print(f"  database write only, with correlations: COPY upsert {_rate(n_csv, t_w)}; "
                  f"SQLAlchemy insert {_rate(n_csv, t_bw)}; ratio {t_bw / t_w:.1f}x")

            t = time.perf_counter()
            ingest_gaia_xp(engine, [csv], correlations=False)
            t_nc = time.perf_counter() - t
            print(f"  ingest --no-correlations (same CSV): {_rate(n_csv, t_nc)}")
            _truncate(engine)

        rng = np.random.default_rng(0)
        batches = [_synthetic_batch(1 + i, min(50_000, n_read - i), rng) for i in range(0, n_read, 50_000)]
        t = time.perf_counter()
        with engine.begin() as conn:
            for b in batches:
                write_xp_batch(conn, b, "synthetic")
                write_photometry(conn, {"source_id": b["source_id"], "phot_g_mean_flux": np.ones(len(b))})
        analyze(engine, ("xp_spectra", "photometry"))      # as ingest_* does after loading
        t_write = time.perf_counter() - t
        print(f"coefficients-only write (COPY upsert, spectra + photometry): {_rate(n_read, t_write)}"
              "   (target >= 20,000/s)")
        t = time.perf_counter()
        out = read_spectra(engine, Selection())
        t_first = time.perf_counter() - t
        assert len(out["source_id"]) == n_read
        print(f"read-back into numpy, PostgreSQL, first read after the load (sets hint bits): "
              f"{_rate(n_read, t_first)}")
        # a training run reads long after ingest, once autovacuum has visited the new rows and the load's
        # dirty pages are flushed: do both now rather than race them
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM xp_spectra, photometry")
            conn.exec_driver_sql("CHECKPOINT")
        times = _timed_reads(engine, n_read)
        t_read = float(np.median(times))
        print(f"read-back into numpy, PostgreSQL (loopback TCP), steady state, 5 reads: median "
              f"{_rate(n_read, t_read)}, best {n_read / min(times):,.0f}/s   (target >= 200,000/s)")
        from db.spectra import fast_copy_available
        t = time.perf_counter()
        read_spectra(engine, Selection(), streams=1)
        t_one = time.perf_counter() - t
        print(f"  the same in one stream: {_rate(n_read, t_one)}  (two streams need db/_pgcopy: "
              f"{'built' if fast_copy_available() else 'NOT BUILT'})")
        _server_floor(engine, n_read, t_read)
        _read_over_unix_socket(engine, n_read)

        lite_dir = tempfile.mkdtemp(prefix="xpvae-bench-sqlite-")
        lite = create_engine(f"sqlite:///{lite_dir}/bench.sqlite")
        upgrade(lite)
        with lite.begin() as conn:
            t = time.perf_counter()
            for b in batches:
                write_xp_batch(conn, b, "synthetic")
                write_photometry(conn, {"source_id": b["source_id"], "phot_g_mean_flux": np.ones(len(b))})
            t_lw = time.perf_counter() - t
        t = time.perf_counter()
        out = read_spectra(lite, Selection())
        t_lr = time.perf_counter() - t
        print(f"SQLite write (executemany upsert): {_rate(n_read, t_lw)}; read-back: {_rate(n_read, t_lr)}")
        lite.dispose()
        for f in Path(lite_dir).iterdir():
            f.unlink()
        os.rmdir(lite_dir)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        admin.dispose()
