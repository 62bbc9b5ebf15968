"""Inference shards: a selection cut into contiguous source_id ranges of near-equal size, aligned with the
partitions (db/partitions.py) where a bound lies near an even cut."""
from __future__ import annotations

import numpy as np
from sqlalchemy.engine import Engine

from db import partitions
from db.selection import Selection
from db.spectra_read import selected_source_ids


def source_id_quantiles(engine: Engine, selection: Selection | None, n_shards: int) -> list[tuple[int, int, int]]:
    """Split a selection into at most ``n_shards`` contiguous source_id ranges of near-equal size:
    [(lo, hi, n)], inclusive bounds, together covering every selected star exactly once."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, not {n_shards}")
    return quantile_ranges(selected_source_ids(engine, selection), n_shards)


def quantile_ranges(ids: np.ndarray, n_shards: int, bounds: np.ndarray | None = None
                    ) -> list[tuple[int, int, int]]:
    """Sorted ids cut into at most ``n_shards`` contiguous runs of near-equal size: [(lo, hi, n)].

    A cut within a quarter of a shard of a partition bound (default: the sky-region bounds of db/partitions.py)
    moves onto it, so most shards read and replace rows of one partition only; shards stay within ±50 % of
    the even size."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, not {n_shards}")
    ids = np.asarray(ids, np.int64)
    if len(ids) == 0:
        return []
    sizes = [len(p) for p in np.array_split(np.empty(len(ids), np.int8), n_shards)]
    cuts = np.cumsum(sizes)[:-1].tolist()
    bounds = partitions.inner_bounds() if bounds is None else bounds
    snapped = [pos for pos, _ in partitions.snap_cuts(ids, cuts, bounds, len(ids) // (4 * n_shards))]
    return [(int(part[0]), int(part[-1]), int(len(part))) for part in np.split(ids, snapped) if len(part)]
