"""How the big per-star tables are partitioned on PostgreSQL: by source_id range, one range per sky region.

A Gaia source_id carries the star's HEALPix level-12 pixel (nested scheme) in its top bits:
``source_id // 2**35`` is that pixel. A level-L pixel is the level-12 pixel ``>> 2*(12-L)``, so the source_ids of
one level-L pixel form one contiguous range, and a range partition per pixel is a sky region.

The layout: the 48 HEALPix level-1 pixels (~860 deg² each), one partition each, in ``xp_spectra``,
``xp_correlations`` and ``inference_results`` alike (so joins on source_id pair partition with partition).
At 220 million spectra that is ~4.6 million stars per partition on average (the Galactic plane holds several
times more than the poles): small enough for one VACUUM / ANALYZE / index build to take minutes, few enough that
the planner's per-partition cost stays negligible, and more partitions than ingest or inference workers
a single server runs. The first partition starts at MINVALUE and the last ends at MAXVALUE, so every bigint has
a home (no DEFAULT partition, which would make later splits scan it). To go finer, a partition is split into
its four level-(L+1) children (``split_partition``). SQLite stores plain tables.
"""
from __future__ import annotations

from typing import Collection, Sequence

import numpy as np

PARTITIONED_TABLES = ("xp_spectra", "xp_correlations", "inference_results")
PARTITION_KEY = "source_id"
HEALPIX_LEVEL12_SHIFT = 35          # source_id >> 35 = HEALPix level-12 pixel (Gaia DR3 documentation)
PARTITION_LEVEL = 1                 # one partition per HEALPix level-1 pixel: 48 partitions
# Loads note the level-6 pixels they wrote (at most 49,152 numbers): exact for partitions of level <= 6, and
# a finer partition is analysed when its level-6 pixel was touched.
TOUCH_LEVEL = 6


def n_pixels(level: int) -> int:
    return 12 * 4 ** level


def pixel_span(level: int) -> int:
    """source_ids per HEALPix level-``level`` pixel."""
    if not 0 <= level <= 12:
        raise ValueError(f"HEALPix level must be 0..12, not {level}")
    return 1 << (HEALPIX_LEVEL12_SHIFT + 2 * (12 - level))


def healpix_pixel(source_id, level: int = PARTITION_LEVEL):
    """The HEALPix (nested) level-``level`` pixel of source id(s)."""
    return np.asarray(source_id, np.int64) >> (HEALPIX_LEVEL12_SHIFT + 2 * (12 - level))


def partition_name(table: str, pixel: int, level: int = PARTITION_LEVEL) -> str:
    width = len(str(n_pixels(level) - 1))
    return f"{table}_l{level}_{pixel:0{width}d}"


def inner_bounds(level: int = PARTITION_LEVEL) -> np.ndarray:
    """The source_ids where one level-``level`` partition ends and the next begins (int64, ascending)."""
    return np.arange(1, n_pixels(level), dtype=np.int64) * pixel_span(level)


def _create_partition(table: str, pixel: int, level: int) -> str:
    """CREATE TABLE … PARTITION OF for one pixel; the first pixel starts at MINVALUE, the last ends at MAXVALUE."""
    span = pixel_span(level)
    lo = "MINVALUE" if pixel == 0 else str(pixel * span)
    hi = "MAXVALUE" if pixel == n_pixels(level) - 1 else str((pixel + 1) * span)
    return f"CREATE TABLE {partition_name(table, pixel, level)} PARTITION OF {table} FOR VALUES FROM ({lo}) TO ({hi})"


def partition_ddl(table: str, level: int = PARTITION_LEVEL) -> list[str]:
    """CREATE TABLE … PARTITION OF statements for every level-``level`` pixel of ``table`` (a partitioned parent)."""
    return [_create_partition(table, p, level) for p in range(n_pixels(level))]


def split_partition(conn, pixel: int, level: int = PARTITION_LEVEL) -> None:
    """Replace the level-``level`` partition ``pixel`` of every partitioned table by its four level-(level+1)
    children, rows kept, in the caller's transaction (PostgreSQL; other sessions' writes to these tables wait).
    The region's rows are held in temporary tables meanwhile: needs their size in free disk."""
    if not 0 <= pixel < n_pixels(level) or level >= 12:
        raise ValueError(f"no HEALPix level-{level} pixel {pixel} to split")
    # referencing tables first: xp_spectra's partition can only go once no correlation row points into it
    for t in ("inference_results", "xp_correlations", "xp_spectra"):
        part = partition_name(t, pixel, level)
        if conn.exec_driver_sql("SELECT to_regclass(%(p)s)", {"p": part}).scalar() is None:
            raise ValueError(f"{t} has no partition {part} (already split, or another layout)")
        conn.exec_driver_sql(f"CREATE TEMP TABLE _split_{t} ON COMMIT DROP AS SELECT * FROM {part}")
        conn.exec_driver_sql(f"ALTER TABLE {t} DETACH PARTITION {part}")
        conn.exec_driver_sql(f"DROP TABLE {part}")
    for t in ("xp_spectra", "xp_correlations", "inference_results"):
        children = range(4 * pixel, 4 * pixel + 4)
        for child in children:
            conn.exec_driver_sql(_create_partition(t, child, level + 1))
        conn.exec_driver_sql(f"INSERT INTO {t} SELECT * FROM _split_{t}")
        conn.exec_driver_sql(f"ANALYZE {', '.join(partition_name(t, c, level + 1) for c in children)}")


def snap_cuts(values: np.ndarray, cuts: Sequence[int], bounds: np.ndarray, tolerance: int
              ) -> list[tuple[int, int | None]]:
    """Move cut positions in the sorted ``values`` onto partition bounds nearby.

    ``cuts``: positions in ``values`` (a cut at i puts values[:i] before it). A cut with a bound whose position
    (its searchsorted index) is within ``tolerance`` positions moves there and carries the bound; others stay
    and carry None. Returns sorted, distinct (position, bound or None), none at 0 or len(values)."""
    values = np.asarray(values, np.int64)
    n = len(values)
    bounds = np.asarray(bounds, np.int64)
    inside = bounds[(bounds > values[0]) & (bounds <= values[-1])] if n else bounds[:0]
    where = np.searchsorted(values, inside)            # the first value >= each bound
    out: dict[int, int | None] = {}
    for c in cuts:
        if len(where):
            j = int(np.argmin(np.abs(where - c)))
            if abs(int(where[j]) - c) <= tolerance:
                out[int(where[j])] = int(inside[j])
                continue
        out.setdefault(int(c), None)
    return [(pos, out[pos]) for pos in sorted(out) if 0 < pos < n]


def table_partition_bounds(conn, table: str = "xp_spectra") -> list[int]:
    """The inner partition bounds of ``table`` as stored (ascending; [] when it is not partitioned or on
    SQLite): a database whose partitions were split finer than PARTITION_LEVEL reports its own bounds."""
    if conn.dialect.name != "postgresql":
        return []
    rows = conn.exec_driver_sql(
        "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(%(t)s)", {"t": table}).scalars().all()
    bounds = set()
    for expr in rows:          # FOR VALUES FROM ('lo') TO ('hi'), or MINVALUE / MAXVALUE
        for part in expr.replace("'", "").replace("(", " ").replace(")", " ").split():
            if part.lstrip("-").isdigit():
                bounds.add(int(part))
    return sorted(bounds)


def touched_pixels(source_id) -> set[int]:
    """The HEALPix level-TOUCH_LEVEL pixels of source ids: what a load notes to analyse only its partitions."""
    return set(np.unique(healpix_pixel(source_id, TOUCH_LEVEL)).tolist())


def _bound(text: str) -> int | None:
    value = text.strip().strip("'")
    return None if value in ("MINVALUE", "MAXVALUE") else int(value)


def leaf_partitions(conn, table: str) -> list[tuple[str, int | None, int | None]]:
    """(name, lo, hi) of every leaf partition of ``table``: rows lo <= source_id < hi, None for MINVALUE or
    MAXVALUE; [] when the table is not partitioned or on SQLite."""
    if conn.dialect.name != "postgresql":
        return []
    rows = conn.exec_driver_sql(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_partition_tree(to_regclass(%(t)s)) t "
        "JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf AND t.level > 0", {"t": table}).all()
    out = []
    for name, expr in rows:         # FOR VALUES FROM ('lo') TO ('hi'), or MINVALUE / MAXVALUE
        lo, hi = expr.split("FROM (", 1)[1].split(") TO (", 1)
        out.append((name, _bound(lo), _bound(hi.rstrip(")"))))
    return sorted(out, key=lambda p: -2 ** 63 if p[1] is None else p[1])


def partitions_touched(conn, table: str, pixels: Collection[int]) -> list[str] | None:
    """The leaf partitions of ``table`` holding any source id of the level-TOUCH_LEVEL ``pixels``; None when
    ``table`` is not partitioned (then the whole table is what a load touched)."""
    leaves = leaf_partitions(conn, table)
    if not leaves:
        return None
    span = pixel_span(TOUCH_LEVEL)
    lows = np.sort(np.asarray(list(pixels), np.int64)) * span
    touched = []
    for name, lo, hi in leaves:
        first = 0 if lo is None else int(np.searchsorted(lows, lo - span, side="right"))   # pixels ending after lo
        if first < len(lows) and (hi is None or lows[first] < hi):
            touched.append(name)
    return touched
