"""Ingest fanned out over real Celery ingest workers (RabbitMQ + PostgreSQL), with 1 and then 2 workers in one
run: files/s and records/s from submit to the job's end.

The files are bulk-release chunks (``XpContinuousMeanSpectrum_*.csv.gz``, ECSV with correlations, gzip
level 1): a simulated survey's rows (``simulator.survey``, 500 stars) repeated under new source ids, so every
file holds distinct stars. Each run ingests every file into emptied tables, one shard per file (as the
release's ~1 GB files get by default); a small job first warms up the workers. The machine's 1-minute load
average is printed with each figure: the machine is shared, and other work slows every figure.
"""
from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import sqlalchemy as sa

from bench.stackenv import BenchStack, bench_stack

TEMPLATE_STARS = 500


def _write_files(out: Path, n_files: int, per_file: int) -> list[Path]:
    """n_files gzipped ECSV chunks of per_file stars each, source ids 1.. in file order."""
    from simulator.survey import generate
    from simulator.writers import write_xp_ecsv
    base = generate(TEMPLATE_STARS, 5, label_fraction=0.0, with_correlations=True)[0]
    plain = write_xp_ecsv(base, out / "template.csv", compress=False)
    lines = plain.read_text().splitlines(keepends=True)
    plain.unlink()
    n_head = next(i for i, line in enumerate(lines) if not line.startswith("#")) + 1    # comments + names
    head, rows = "".join(lines[:n_head]), [r[r.index(","):] for r in lines[n_head:]]
    paths = []
    for f in range(n_files):
        first = f * per_file + 1
        body = "".join(f"{first + i}{rows[i % len(rows)]}" for i in range(per_file))
        path = out / f"XpContinuousMeanSpectrum_{first:06d}-{first + per_file - 1:06d}.csv.gz"
        path.write_bytes(gzip.compress((head + body).encode(), compresslevel=1))
        paths.append(path)
    return paths


def _ingest(engine, paths: list[Path], stack: BenchStack) -> tuple[float, dict]:
    """One shard per file, as the release's ~1 GB files get by default (small files would share shards)."""
    params = {"source": "gaia-xp", "paths": [str(p) for p in paths], "files_per_shard": 1}
    return stack.run_job(engine, "ingest", params, timeout=1800)


def _cpu(pids: set[int]) -> dict[int, float]:
    """CPU seconds (user + system) each process has used so far; a process gone is left out."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _processes(stack: BenchStack, engine, db_name: str) -> tuple[set[int], set[int]]:
    """(the worker processes: each worker's session, its pool children included; the server backends of the
    bench database)."""
    sessions = {p.pid for p in stack.procs}
    workers = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[3]) in sessions:     # pgrp
                    workers.add(int(d.name))
            except OSError:
                continue
    with engine.connect() as conn:
        server = set(conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d"),
                                  {"d": db_name}).scalars())
    return workers, server


def _used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def _empty(engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE xp_correlations, xp_spectra")


def main(quick: bool) -> None:
    n_files, per_file = (6, 500) if quick else (16, 2000)
    with bench_stack("xpvae_bench_fanout") as (engine, stack, name):
        home = stack.home
        logs = [stack.start_worker(1, "ingest", "INFO")]       # boots while the files are written
        t = time.perf_counter()
        paths = _write_files(home, n_files, per_file)
        (home / "warm").mkdir()
        warm = _write_files(home / "warm", 2, 50)        # a small job per worker count, to warm the workers up
        size = sum(p.stat().st_size for p in paths)
        print(f"{n_files} files x {per_file:,} records with correlations = {n_files * per_file:,} records, "
              f"{size / 2**20:.0f} MiB gzipped ({size / n_files / 2**20:.1f} MiB a file), written in "
              f"{time.perf_counter() - t:.1f} s; cores: {os.cpu_count()}")
        rates = {}
        for workers in (1, 2):
            if workers == 2:
                logs.append(stack.start_worker(1, "ingest", "INFO"))
            for log in logs:
                stack.wait_ready(log)
            _ingest(engine, warm, stack)
            _empty(engine)
            load0 = os.getloadavg()[0]
            workers0, server0 = _processes(stack, engine, name)
            cpu0 = (_cpu(workers0), _cpu(server0))
            secs, job = _ingest(engine, paths, stack)
            workers1, server1 = _processes(stack, engine, name)
            cpu_w, cpu_s = _used(cpu0[0], _cpu(workers0 | workers1)), _used(cpu0[1], _cpu(server0 | server1))
            r = job["result"]
            assert r["rows_loaded"] == n_files * per_file and r["n_shards"] == n_files, r
            rates[workers] = r["rows_loaded"] / secs
            with engine.connect() as conn:
                by_worker = conn.execute(sa.text("SELECT count(DISTINCT worker) FROM job_shards WHERE job_id = :j"),
                                         {"j": job["id"]}).scalar()
            print(f"{workers} ingest worker(s): {n_files} files in {secs:.1f} s = {n_files / secs:.2f} files/s, "
                  f"{rates[workers]:,.0f} records/s ({by_worker} worker(s) took shards); load average "
                  f"{load0:.1f} before, {os.getloadavg()[0]:.1f} after")
            n = r["rows_loaded"]
            print(f"  CPU: workers {cpu_w:.1f} s ({n / cpu_w:,.0f} records per worker CPU-s), PostgreSQL backends "
                  f"{cpu_s:.1f} s ({1000 * cpu_s / n:.3f} ms a record): {n / (cpu_w + cpu_s):,.0f} records per "
                  "CPU-s in all")
        print(f"  2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")
