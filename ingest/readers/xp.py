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

import io
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

from ingest.readers.errors import ReaderError, UnknownFormatError, WrongKindError
from ingest.readers.gz import open_gzip
from ingest.readers.products import XP_PRODUCT, describe_products, product_of
from ingest.readers.sniff import kind_of_bytes, sniff
from ingest.readers.tables import add_note
from ingest.readers.xp_table import read_fits_xp, read_votable_xp
from ingest.readers.xp_text import read_text_xp
from shared.progress import Progress
from shared.xp import ReadReport, XPBatch

# Zip members up to this size are parsed from memory (a per-source DataLink member is ~50 kB; saves a
# temporary file each, ~20 % of a per-source VOTable member's time); larger ones go through a temporary file.
MEMBER_IN_MEMORY = 64 << 20
XP_SUFFIXES = (".csv", ".csv.gz", ".ecsv", ".ecsv.gz", ".fits", ".fit", ".fits.gz", ".xml", ".xml.gz",
               ".vot", ".votable", ".zip", ".h5", ".hdf5")


def read_xp(path: str | Path, *, correlations: bool = True, chunk_rows: int = 5000,
            report: ReadReport | None = None, progress: Progress | None = None) -> Iterator[XPBatch]:
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
    except WrongKindError as exc:
        product = product_of(path.name)
        if product is not None and product != XP_PRODUCT and not report.other_products:
            exc = WrongKindError(exc.file, f"{exc.message} (its name says DataLink product {product})")
        report.error = str(exc)
        raise exc
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
    """Members one by one; BadRow.file is ``<zip>::<member>`` and rows are numbered per member.

    A DataLink zip may hold several products (docs/data-formats.md §1): members named as another product are
    passed over unread and counted in ``report.other_products``; the others are read, and one that holds no XP
    columns (even if named XP_CONTINUOUS) is passed over with a note. A zip without any XP member raises
    WrongKindError saying what it held."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ReaderError(str(path), f"not a readable zip: {exc}") from exc
    with zf:
        members = sorted((m for m in zf.infolist() if not m.is_dir()), key=lambda m: m.filename)
        n_xp = 0
        for k, m in enumerate(members):
            product = product_of(m.filename)
            if product is not None and product != XP_PRODUCT:
                report.other_products[product] = report.other_products.get(product, 0) + 1
                continue
            label = f"{path}::{m.filename}"
            try:
                yield from _read_member(zf, m, label, correlations=correlations, chunk_rows=chunk_rows,
                                        report=report)
                n_xp += 1
            except WrongKindError as exc:      # raised before any row of the member was yielded
                said = "named XP_CONTINUOUS but it" if product == XP_PRODUCT else "it"
                add_note(report, f"{label}: skipped, {said} holds no XP continuous spectra ({exc.message})")
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                raise ReaderError(label, f"corrupt zip member: {exc}") from exc
            if progress is not None:
                progress(k + 1, len(members), f"{path}: member {m.filename}")
    if not n_xp:
        held = describe_products(report.other_products) if report.other_products else "no DataLink products"
        unread = len(members) - sum(report.other_products.values())
        raise WrongKindError(str(path), f"no XP continuous spectra in this zip: it holds {held}"
                             + (f" and {unread} other member(s) without XP columns" if unread else "")
                             + " (request RETRIEVAL_TYPE=XP_CONTINUOUS, as `xpvae fetch gaia-xp` does)")


def _read_member(zf: zipfile.ZipFile, m: zipfile.ZipInfo, label: str, **kw) -> Iterator[XPBatch]:
    with zf.open(m) as fh:
        head = fh.read(4096)
    kind = kind_of_bytes(head, m.filename)
    if kind is None or kind == "zip" or head.startswith(b"\x1f\x8b"):
        raise UnknownFormatError(label, "zip member is not CSV, ECSV, FITS or VOTable text")
    if kind in ("csv", "ecsv"):
        with zf.open(m) as fh:
            yield from read_text_xp(fh, label, **kw)
        return
    if kind not in ("fits", "votable"):
        raise UnknownFormatError(label, f"{kind} inside a zip is not supported")
    read = read_fits_xp if kind == "fits" else read_votable_xp
    if m.file_size <= MEMBER_IN_MEMORY:    # FITS / VOTable want a seekable file: small ones are read into memory
        yield from read(io.BytesIO(zf.read(m)), label, **kw)
        return
    with tempfile.TemporaryDirectory(prefix="xpvae-zip-") as tmp:
        target = Path(tmp) / "member"
        with zf.open(m) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 22)
        yield from read(target if kind == "fits" else str(target), label, **kw)
