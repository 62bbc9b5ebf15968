"""XP spectra from CSV / ECSV text (archive and DataLink CSV, DataLink ECSV, gzipped bulk ECSV, flat tables).

The text is read in raw 1 MiB blocks and handled in blocks of ``BLOCK_ROWS`` lines: the fields of a block are
split per line (cheap), then each array column of the whole block is parsed in one vectorised call (see
numbers.py). A row that fails is reported as a BadRow (file, data row, column) and skipped.
"""
from __future__ import annotations

from typing import Any, BinaryIO, Iterator, Sequence

import numpy as np

from ingest.readers.errors import WrongKindError
from ingest.readers.layout import build_reported, layout_of
from ingest.readers.numbers import parse_array_column, parse_float_column, parse_int_column
from ingest.readers.repeats import keep_first
from ingest.readers.textio import FieldError, LongLine, iter_lines, read_header, split_fields
from shared.progress import Progress, report_progress
from shared.streams import ordered_map
from shared.xp import BadRow, ReadReport, XPBatch

BLOCK_ROWS = 256     # rows parsed per vectorised call: ~10 MB of text with correlations, cache-friendly
PARSE_THREADS = 2    # blocks parsed at once (see ordered_map); 1 parses in the caller's thread


class TextColumns:
    """A ColumnSource over the split fields of one block (column-major tuples of bytes)."""

    def __init__(self, columns: Sequence[Sequence[bytes]], index: dict[str, int], n: int):
        self._columns = columns
        self._index = index
        self._n = n
        self.names = set(index)

    def __len__(self) -> int:
        return self._n

    def _col(self, name: str):
        j = self._index.get(name)
        return None if j is None else self._columns[j]

    def ints(self, name, dtype, required=False):
        col = self._col(name)
        return None if col is None else parse_int_column(col, dtype, required=required)

    def floats(self, name, dtype):
        col = self._col(name)
        return None if col is None else parse_float_column(col, dtype)

    def arrays(self, name, length, dtype):
        col = self._col(name)
        return None if col is None else parse_array_column(col, length, dtype)


def _some(names: list[str], k: int = 6) -> str:
    """The first few column names, for a message that says what the file holds instead."""
    return ", ".join(names[:k]) + (f", … ({len(names)} columns)" if len(names) > k else "")


def _broken_quote_column(line: bytes, delim: bytes, names: list[str]) -> str:
    """Best guess of the column whose quoting is broken: the first array text found outside quotes."""
    k = 0
    for j, seg in enumerate(line.split(b'"')):
        if j % 2:
            continue                       # quoted text belongs to the current field
        parts = seg.split(delim)
        for m, part in enumerate(parts):
            if part[:1] in (b"(", b"[") or part[-1:] in (b")", b"]"):
                return names[min(k + m, len(names) - 1)]
        k += len(parts) - 1
    return names[min(k, len(names) - 1)]


def read_text_xp(stream: BinaryIO, file: str, *, correlations: bool = True, chunk_rows: int = 5000,
                 report: ReadReport | None = None, progress: Progress | None = None,
                 prefetch: bool = False) -> Iterator[XPBatch]:
    """Yield batches of at most ``chunk_rows`` good rows from CSV/ECSV text (``prefetch``: read ahead in a
    thread, for compressed streams).

    Raises WrongKindError (naming ``file``) when the header has no XP columns, ReaderError when the stream
    breaks mid-way; the batches yielded before stay valid, and the report says how far it got.
    """
    report = report if report is not None else ReadReport(file)
    lines = iter_lines(stream, file, prefetch=prefetch)
    header = read_header(lines, file)
    names = header.names
    index = {nm: j for j, nm in enumerate(names)}
    layout = layout_of(set(index))
    if layout is None or "source_id" not in index:
        raise WrongKindError(file, "no XP columns: need source_id and bp_/rp_coefficients (or bp_coeff_0…); "
                                   f"found {_some(names)}")
    parse_block = _BlockParser(file, names, index, header.delimiter, layout, correlations)
    pending: list[XPBatch] = []
    n_pending = 0
    # two parse threads: the compiled array parser runs without the GIL, so one block's numbers are parsed
    # while the next block's lines are split
    blocks = _blocks(lines, min(BLOCK_ROWS, chunk_rows))
    for batch, rows, local in ordered_map(parse_block, blocks, workers=PARSE_THREADS):
        report.rows_read += local.rows_read
        report.bad_rows.extend(local.bad_rows)
        keep = keep_first(batch["source_id"], rows, file, report)     # in file order: here, not on a thread
        if not keep.all():
            batch = batch.take(keep)
        pending.append(batch)
        n_pending += len(batch)
        if n_pending >= chunk_rows:
            yield from _flush(pending, chunk_rows, report, final=False)
            n_pending = sum(len(p) for p in pending)
            report_progress(progress, report.rows_read, None, f"{file}: {report.rows_read} rows read")
    yield from _flush(pending, chunk_rows, report, final=True)
    report_progress(progress, report.rows_read, report.rows_read, f"{file}: done")


def _blocks(lines: Iterator, size: int) -> Iterator[tuple[list[bytes], list[int]]]:
    """The non-blank lines in blocks of ``size``, with their 1-based data row numbers."""
    block: list[bytes] = []
    rows: list[int] = []
    row = 0
    for line in lines:
        row += 1
        if not isinstance(line, LongLine) and (not line or line.isspace()):
            continue
        block.append(line)
        rows.append(row)
        if len(block) >= size:
            yield block, rows
            block, rows = [], []
    if block:
        yield block, rows


class _BlockParser:
    """One block of lines → (batch, data row numbers, the block's own report). Runs on a parse thread:
    problems go to a report of its own, merged in file order by the caller."""

    def __init__(self, file: str, names: Sequence[str], index: dict[str, int], delim: str, layout: Any,
                 correlations: bool) -> None:
        self.file, self.names, self.index, self.delim = file, names, index, delim
        self.layout, self.correlations = layout, correlations

    def _fields(self, line: Any, r: int, local: ReadReport) -> list | None:
        """The line's fields, or None with the bad row reported."""
        file, names, ncols = self.file, self.names, len(self.names)
        if isinstance(line, LongLine):
            local.bad_rows.append(BadRow(file, r, LongLine.COLUMN, str(line)))
            return None
        try:
            fields = split_fields(line, self.delim)
        except FieldError as exc:
            local.bad_rows.append(BadRow(file, r, _broken_quote_column(line, self.delim, names),
                                         f"broken quoting: {exc}"))
            return None
        if len(fields) != ncols:
            col = names[len(fields)] if len(fields) < ncols else names[-1]
            local.bad_rows.append(BadRow(file, r, col, f"expected {ncols} columns, found {len(fields)}"))
            return None
        return fields

    def __call__(self, item: tuple[list[bytes], list[int]]) -> tuple[XPBatch, np.ndarray, ReadReport]:
        block, rows = item
        local = ReadReport(self.file)
        good_fields, good_rows = [], []
        for line, r in zip(block, rows):
            fields = self._fields(line, r, local)
            if fields is not None:
                good_fields.append(fields)
                good_rows.append(r)
        local.rows_read = len(block)
        if not good_fields:
            return XPBatch.empty(0, self.correlations), np.zeros(0, np.int64), local
        src = TextColumns(list(zip(*good_fields)), self.index, len(good_fields))
        return *build_reported(src, self.layout, self.correlations, self.file, good_rows, local), local


def _flush(pending: list[XPBatch], chunk_rows: int, report: ReadReport, final: bool) -> Iterator[XPBatch]:
    """Yield full chunks from ``pending`` (in place); with ``final`` also the remainder."""
    merged = XPBatch.concat(pending) if len(pending) > 1 else (pending[0] if pending else None)
    pending.clear()
    if merged is None or not len(merged):
        return
    start = 0
    while len(merged) - start >= chunk_rows:
        out = merged.take(slice(start, start + chunk_rows))
        report.rows_ok += len(out)
        yield out
        start += chunk_rows
    rest = merged.take(slice(start, None)) if start else merged
    if final and len(rest):
        report.rows_ok += len(rest)
        yield rest
    elif len(rest):
        pending.append(rest)
