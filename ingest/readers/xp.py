"""``read_xp``: Gaia DR3 XP continuous spectra from any download format, as bounded-size XPBatch chunks.

Formats (sniffed from content, docs/data-formats.md §1): archive / DataLink CSV, ECSV (DataLink and bulk
``XpContinuousMeanSpectrum_*.csv.gz``), FITS, VOTable (TABLEDATA / BINARY2), DataLink zips (one file per
source or a combined file; members are read in name order), flat one-column-per-coefficient tables, and the
published catalogue ``xp_apogee_cat.h5`` (no correlations).

Failure contract: a bad row is reported in the ReadReport and skipped. A file that cannot be read, or breaks
part-way (truncated gzip, corrupt zip member), raises ReaderError naming the file; ``report.error`` is set.
Batches yielded before the error are NOT retracted: the caller treats the file as one unit (the loader wraps
each file in one transaction and rolls it back on ReaderError).
"""
from __future__ import annotations

import glob
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Iterable, Iterator

from ingest.readers.errors import ReaderError, UnknownFormatError
from ingest.readers.gz import open_gzip
from ingest.readers.progress import Progress
from ingest.readers.sniff import kind_of_bytes, sniff
from ingest.readers.xp_table import read_fits_xp, read_votable_xp
from ingest.readers.xp_text import read_text_xp
from shared.xp import ReadReport, XPBatch

XP_SUFFIXES = (".csv", ".csv.gz", ".ecsv", ".ecsv.gz", ".fits", ".fit", ".fits.gz", ".xml", ".xml.gz",
               ".vot", ".votable", ".zip", ".h5", ".hdf5")


def read_xp(path: str | Path, *, correlations: bool = True, chunk_rows: int = 5000,
            report: ReadReport | None = None, progress: Progress = None) -> Iterator[XPBatch]:
    """Yield XPBatch chunks of at most ``chunk_rows`` good rows from one file of any supported format.

    ``correlations=False`` drops the correlation columns before parsing them (≈ 9x less text to parse).
    ``report`` (created if None) collects counts and BadRows; ``progress(done, total, message)`` is called
    after each chunk.
    """
    path = Path(path)
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be >= 1")
    report = report if report is not None else ReadReport(str(path))
    try:
        yield from _read_any(path, correlations, chunk_rows, report, progress)
    except ReaderError as exc:
        report.error = str(exc)
        raise


def _read_any(path: Path, correlations: bool, chunk_rows: int, report: ReadReport,
              progress: Progress) -> Iterator[XPBatch]:
    sniffed = sniff(path)
    file = str(path)
    kw = dict(correlations=correlations, chunk_rows=chunk_rows, report=report, progress=progress)
    if sniffed.kind in ("csv", "ecsv"):
        with (open_gzip(path) if sniffed.gzipped else open(path, "rb")) as stream:
            yield from read_text_xp(stream, file, prefetch=sniffed.gzipped, **kw)
    elif sniffed.kind == "fits":
        yield from read_fits_xp(path, file, **kw)
    elif sniffed.kind == "votable":
        if sniffed.gzipped:
            with open_gzip(path) as stream:
                yield from read_votable_xp(stream, file, **kw)
        else:
            yield from read_votable_xp(str(path), file, **kw)
    elif sniffed.kind == "zip":
        yield from _read_zip(path, **kw)
    elif sniffed.kind == "hdf5":
        from ingest.readers.catalogue import read_catalogue
        for batch, _labels, _phot in read_catalogue(path, chunk_rows=chunk_rows, report=report,
                                                    progress=progress):
            yield batch
    else:  # pragma: no cover - sniff() only returns the kinds above
        raise UnknownFormatError(file, f"unsupported format {sniffed.kind}")


def _read_zip(path: Path, *, correlations: bool, chunk_rows: int, report: ReadReport,
              progress: Progress) -> Iterator[XPBatch]:
    """Members one by one; BadRow.file is ``<zip>::<member>`` and rows are numbered per member."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ReaderError(str(path), f"not a readable zip: {exc}") from exc
    with zf:
        members = sorted((m for m in zf.infolist() if not m.is_dir()), key=lambda m: m.filename)
        for k, m in enumerate(members):
            label = f"{path}::{m.filename}"
            try:
                with zf.open(m) as fh:
                    head = fh.read(4096)
                kind = kind_of_bytes(head, m.filename)
                if kind is None or kind == "zip" or head.startswith(b"\x1f\x8b"):
                    raise UnknownFormatError(label, "zip member is not CSV, ECSV, FITS or VOTable text")
                kw = dict(correlations=correlations, chunk_rows=chunk_rows, report=report)
                if kind in ("csv", "ecsv"):
                    with zf.open(m) as fh:
                        yield from read_text_xp(fh, label, **kw)
                else:   # FITS / VOTable / HDF5 want a seekable file: extract the member first
                    with tempfile.TemporaryDirectory(prefix="xpvae-zip-") as tmp:
                        target = Path(tmp) / Path(m.filename).name
                        with zf.open(m) as src, open(target, "wb") as dst:
                            shutil.copyfileobj(src, dst, 1 << 22)
                        if kind == "fits":
                            yield from read_fits_xp(target, label, **kw)
                        elif kind == "votable":
                            yield from read_votable_xp(str(target), label, **kw)
                        else:
                            raise UnknownFormatError(label, f"{kind} inside a zip is not supported")
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                raise ReaderError(label, f"corrupt zip member: {exc}") from exc
            if progress is not None:
                progress(k + 1, len(members), f"{path}: member {m.filename}")


def _is_xp_file(p: Path) -> bool:
    name = p.name.lower()
    return p.is_file() and not name.startswith(".") and name.endswith(XP_SUFFIXES)


def iter_xp_paths(paths: Iterable[str | Path] | str | Path) -> Iterator[Path]:
    """Expand files, directories (recursively, XP-looking files only) and glob patterns, in sorted order.

    An explicit file is yielded whatever its name (its content is sniffed later). A path or pattern that
    matches nothing raises FileNotFoundError naming it; each file is yielded once.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    seen: set[Path] = set()
    for item in paths:
        text = os.path.expanduser(str(item))
        if any(c in text for c in "*?["):
            found = [Path(p) for p in sorted(glob.glob(text, recursive=True))]
        else:
            found = [Path(text)]
        if not found or not found[0].exists():
            raise FileNotFoundError(f"{item}: no such file, directory or match")
        for p in found:
            if p.is_dir():
                candidates = sorted(q for q in p.rglob("*") if _is_xp_file(q))
            elif p.is_file():
                candidates = [p]
            else:
                continue
            for q in candidates:
                key = q.resolve()
                if key not in seen:
                    seen.add(key)
                    yield q
