"""Large PostgreSQL reads as parallel streams, each on its own connection and thread.

Over loopback TCP one stream is bound by libpq and the socket (the server alone is 2-3x faster), so a second
stream on another core adds 1.2-1.4x on 2 cores (measured, README). The receiving runs without the GIL
(db/_pgcopy.c). How many streams is the caller's choice (Settings.read_streams, XPVAE_READ_STREAMS).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sqlalchemy.engine import Engine

from db import partitions, spectra_blocks
from db.selection import Selection
from shared.progress import Progress

#: Fewer rows than this are read in one stream: starting threads and connections would cost more than it gains.
PARALLEL_MIN_ROWS = 50_000


def _weighted_bounds(rows: list[tuple[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(source_id, rows below it) from per-table histograms: each histogram's bounds cut its table's rows into
    equal parts, so stacking the tables' histograms gives a cumulative count for the whole."""
    values, weights = [], []
    for text, n_rows in rows:
        ids = np.array([int(v) for v in text.strip("{}").split(",")], np.int64)
        if len(ids) < 2 or n_rows <= 0:
            continue
        values.append(ids[1:])
        weights.append(np.full(len(ids) - 1, n_rows / (len(ids) - 1)))
    if not values:
        return np.zeros(0, np.int64), np.zeros(0)
    v, w = np.concatenate(values), np.concatenate(weights)
    order = np.argsort(v, kind="stable")
    return v[order], np.cumsum(w[order])


def _histogram_splits(engine: Engine, selection: Selection, k: int) -> list[int]:
    """Up to k-1 increasing source_ids cutting the selection's id range into about equal parts, from the
    planner's statistics (no scan): the histogram of xp_spectra.source_id, or where the table is partitioned the
    histograms of its partitions weighted by their row counts (autovacuum and ingest analyse partitions; the
    parent's own statistics cost a sample of every partition and are not kept up). [] without statistics. A
    split near a partition bound moves onto it, so each stream scans partitions of its own."""
    with engine.connect() as conn:
        hist = conn.exec_driver_sql(
            "SELECT st.histogram_bounds::text, greatest(c.reltuples, 0) FROM pg_stats st "
            "JOIN pg_class c ON c.relname = st.tablename AND c.relnamespace = to_regnamespace(st.schemaname) "
            "WHERE st.schemaname = current_schema() AND st.attname = 'source_id' AND NOT st.inherited "
            "AND st.histogram_bounds IS NOT NULL AND (st.tablename = 'xp_spectra' OR c.oid IN "
            "(SELECT relid FROM pg_partition_tree('xp_spectra') WHERE isleaf))").all()
        part_bounds = partitions.table_partition_bounds(conn, "xp_spectra")
    ids, below = _weighted_bounds([(str(text), float(n)) for text, n in hist])
    if not len(ids):
        return []
    lo = selection.source_id_lo if selection.source_id_lo is not None else ids[0]
    hi = selection.source_id_hi if selection.source_id_hi is not None else ids[-1]
    keep = (ids >= lo) & (ids < hi)
    inside, below = ids[keep], below[keep]
    if len(inside) < 2 * k:
        return []
    # the histogram points nearest each even share of the rows inside the range
    targets = below[0] + (below[-1] - below[0]) * np.arange(1, k) / k
    cuts = sorted(set(np.searchsorted(below, targets).clip(1, len(inside) - 1).tolist()))
    snapped = partitions.snap_cuts(inside, cuts, np.asarray(part_bounds, np.int64), len(inside) // (4 * k))
    # part j holds source_id <= split: a partition bound b ends the part before it at b - 1
    return sorted({bound - 1 if bound is not None else int(inside[pos]) for pos, bound in snapped})


def count_parts(engine: Engine, selection: Selection, splits: list[int]) -> list[int]:
    """Stars of the selection in each part: source_id <= splits[0], …, > splits[-1]."""
    below = ", ".join(f"count(*) FILTER (WHERE s.source_id <= {m})" for m in splits)
    with engine.connect() as conn:
        row = conn.exec_driver_sql(
            f"SELECT {below}, count(*) FROM {selection.from_clause()} WHERE {selection.where_clause()}").one()
    cumulative = [int(v) for v in row]
    return [b - a for a, b in zip([0] + cumulative[:-1], cumulative)]


class _Parts:
    """The shared state of one parallel read: the output, each part's row count and offset, set once the count
    (which runs alongside the first blocks) is in."""

    def __init__(self, engine: Engine, selection: Selection, splits: list[int], with_correlations: bool) -> None:
        self.engine, self.selection, self.splits = engine, selection, splits
        self.with_correlations = with_correlations
        self.ready = threading.Event()
        self.rows: list[int] | None = None
        self.offsets: list[int] = []
        self.out: dict[str, np.ndarray] | None = None

    def count(self) -> None:
        try:
            rows = count_parts(self.engine, self.selection, self.splits)
            self.offsets = [sum(rows[:j]) for j in range(len(rows))]
            self.out = spectra_blocks.allocate(sum(rows), self.with_correlations)
            self.rows = rows
        finally:
            self.ready.set()


def read_streams(engine: Engine, selection: Selection, k: int, with_correlations: bool,
                 chunk_rows: int | None, progress: Progress | None) -> dict[str, np.ndarray] | None:
    """Read k parts of the selection on k threads, each with its own connection, straight into their rows
    of one output. One more connection counts the parts meanwhile (each stream has its first block in hand
    before it waits for the count). None when it cannot split, or when a part did not hold the rows counted
    (a concurrent write): the caller then reads in one stream."""
    splits = _histogram_splits(engine, selection, k)
    if not splits:
        return None
    los = [selection.source_id_lo] + [m + 1 for m in splits]
    his: list[int | None] = [*splits, selection.source_id_hi]
    parts_sel = [selection.replace(source_id_lo=lo, source_id_hi=hi) for lo, hi in zip(los, his)]
    shared = _Parts(engine, selection, splits, with_correlations)
    lock = threading.Lock()
    done = [0] * len(parts_sel)

    def stream(j: int) -> bool:
        filled = 0
        for parts in spectra_blocks.iter_blocks(engine, parts_sel[j], with_correlations, chunk_rows, None, None,
                                                gil_free=True):
            shared.ready.wait()
            if shared.rows is None or shared.out is None:
                return False               # the count failed: its exception is raised below
            if filled + len(parts["source_id"]) > shared.rows[j]:
                return False
            filled += spectra_blocks.fill(shared.out, shared.offsets[j] + filled, parts)
            del parts
            if progress:
                with lock:
                    done[j] = filled
                    progress(sum(done), sum(shared.rows), f"read {sum(done)} spectra")
        shared.ready.wait()
        return shared.rows is not None and filled == shared.rows[j]

    with ThreadPoolExecutor(max_workers=len(parts_sel) + 1, thread_name_prefix="xpvae-read") as pool:
        counted = pool.submit(shared.count)
        streams = [pool.submit(stream, j) for j in range(len(parts_sel))]
        ok = [f.result() for f in streams]
        counted.result()
    return shared.out if all(ok) else None
