"""Rows that repeat a key (source_id) already read from the same file.

The database upsert keeps one row per key, so a repeat would silently replace the first row (or be replaced
by it) and the counts would not add up (read 20, loaded 19, skipped 0). The first row is kept; every repeat
goes to ``ReadReport.duplicates`` (file, row, column, the row it repeats) and is not loaded, so that
rows read = loaded + skipped + duplicates. For a zip the "file" is the zip: members share one index.
"""
from __future__ import annotations

import numpy as np

from shared.xp import BadRow, ReadReport


class FirstRows:
    """Where each key of one file was first read. Sorted runs merged like a binary counter: a block costs
    O(b log n), a file of n keys 16 bytes a key (a Python dict would cost ~10x that)."""

    def __init__(self):
        self._runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []   # (sorted keys, rows, label index)
        self.labels: list[str] = []
        self.top: int | None = None      # the largest key so far: a block above it (sorted files) needs no search

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(found, row, label index) for each key."""
        n = len(keys)
        found, rows, labels = np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(n, np.int32)
        order = np.argsort(keys)
        needles = keys[order]           # sorted needles: numpy's binary search then walks, not jumps (~5x)
        for ks, rs, ls in self._runs:
            pos = np.searchsorted(ks, needles).clip(max=len(ks) - 1)
            hit = (ks[pos] == needles) & ~found[order]
            at = order[hit]
            rows[at], labels[at] = rs[pos[hit]], ls[pos[hit]]
            found[at] = True
        return found, rows, labels

    def add(self, keys: np.ndarray, rows: np.ndarray, label: str) -> None:
        """Record keys not seen before (the caller checked) with their data rows in ``label``."""
        if not len(keys):
            return
        top = int(keys.max())
        self.top = top if self.top is None else max(self.top, top)
        if not self.labels or self.labels[-1] != label:
            self.labels.append(label)
        order = np.argsort(keys, kind="stable")
        run = (keys[order], rows[order], np.full(len(keys), len(self.labels) - 1, np.int32))
        while self._runs and len(self._runs[-1][0]) <= len(run[0]):
            prev = self._runs.pop()
            merged = [np.concatenate((a, b)) for a, b in zip(prev, run)]
            order = np.argsort(merged[0], kind="stable")
            run = tuple(m[order] for m in merged)
        self._runs.append(run)


def keep_first(keys, rows, file: str, report: ReadReport, column: str = "source_id") -> np.ndarray:
    """Keep mask of the rows whose key was not read before from this report's file; repeats are reported
    in ``report.duplicates``. ``rows``: the data-row numbers of ``keys`` in ``file``."""
    keys = np.asarray(keys, np.int64)
    rows = np.asarray(rows, np.int64)
    if report.seen is None:
        report.seen = FirstRows()
    index: FirstRows = report.seen
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    keep = np.zeros(len(keys), bool)
    keep[first] = True
    if index.top is None or (len(keys) and int(keys.min()) > index.top):
        found = np.zeros(len(keys), bool)       # all above every key so far: the usual case of a sorted file
    else:
        found, prior_rows, prior_labels = index.find(keys)
    keep &= ~found
    for i in np.flatnonzero(~keep):
        if found[i]:
            where, row = index.labels[prior_labels[i]], int(prior_rows[i])
        else:
            where, row = file, int(rows[first[inverse[i]]])
        at = f"data row {row}" + ("" if where == file else f" of {where}")
        report.duplicates.append(BadRow(file, int(rows[i]), column, f"repeats {column} {int(keys[i])} of {at}: "
                                                                    "not loaded, the first row is kept"))
    index.add(keys[keep], rows[keep], file)
    return keep
