"""Recognise a file's format from its first bytes (the extension is only a tie-breaker for plain text)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ingest.readers.errors import ReaderError, UnknownFormatError
from ingest.readers.gz import GZIP_ERRORS, open_gzip

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
FITS_MAGIC = b"SIMPLE  ="
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
BOM = b"\xef\xbb\xbf"

KINDS = ("csv", "ecsv", "fits", "votable", "zip", "hdf5")


@dataclass(frozen=True)
class Sniffed:
    kind: str        # one of KINDS
    gzipped: bool    # the content is wrapped in gzip (bulk *.csv.gz, *.fits.gz)


def kind_of_bytes(head: bytes, name: str = "") -> str | None:
    """The format of uncompressed content starting with ``head``; None if it is not recognisable."""
    if head.startswith(ZIP_MAGICS):
        return "zip"
    if head.startswith(FITS_MAGIC):
        return "fits"
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    text = head[len(BOM):] if head.startswith(BOM) else head
    text = text.lstrip()
    if text.startswith(b"# %ECSV"):
        return "ecsv"
    if text.startswith(b"<?xml") or text.startswith(b"<VOTABLE"):
        return "votable"
    if not head or b"\x00" in head:
        return None
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as exc:   # a cut multi-byte character at the end of head is still text
        if exc.start < len(text) - 4:
            return None
    return "csv"


def sniff(path: str | Path) -> Sniffed:
    """Sniff a file on disk, looking inside gzip. Raises ReaderError naming the file when it is unreadable."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise ReaderError(str(path), f"cannot open: {exc.strerror or exc}") from exc
    gzipped = head.startswith(GZIP_MAGIC)
    if gzipped:
        try:
            with open_gzip(path) as gz:
                head = gz.read(4096)
        except GZIP_ERRORS as exc:
            raise ReaderError(str(path), f"corrupt gzip data: {exc}") from exc
    kind = kind_of_bytes(head, path.name)
    if kind is None:
        raise UnknownFormatError(str(path), "not CSV, ECSV, FITS, VOTable, HDF5 or zip content")
    return Sniffed(kind, gzipped)
