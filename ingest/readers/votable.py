"""VOTable parsing (astropy) plus the check astropy leaves out: every row the file holds was decoded.

astropy decodes a BINARY/BINARY2 stream row by row and stops, silently, at the first row that runs past the
end of the data. A FIELD declared with the wrong datatype or arraysize shifts every later value, so the data
"ends" inside a row and 0 or 1 rows come back from a file holding more — with no warning, whatever ``verify``
says. So while astropy reads the file we measure each TABLE's payload (``_Meter``: the decoded size of a
local base64 STREAM, the number of <TR> of a TABLEDATA) and then require the decoded rows to account for
all of it; otherwise the file fails with ReaderError naming the table and what did not fit.

astropy also follows a STREAM's ``href`` (file://, http://, ftp://) to fetch a table's data, and can read FITS
or Parquet serialisations only that way: a hostile file could pull any local file into the database or make
the ingest contact a host. ``_Guard`` parses the same bytes with expat *before* astropy receives them and
refuses such a file at the first offending element, so astropy never reaches it. Entity declarations are
refused too: a VOTable needs none, and entities could hide markup from a byte-level look.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator
from xml.parsers import expat

import numpy as np

from ingest.readers.errors import ReaderError

# Bytes per element of each VOTable datatype in binary serialisation ("bit" is packed: not measured here).
_SIZES = {"boolean": 1, "unsignedByte": 1, "short": 2, "int": 4, "long": 8, "float": 4, "double": 8,
          "floatComplex": 8, "doubleComplex": 16, "char": 1, "unicodeChar": 2}
_TAG = re.compile(rb"<(TABLE|TR|BINARY2|BINARY|FITS|STREAM)[\s>/]")
_CARRY = 12          # longest partial tag kept between reads ("</STREAM" + slack)
_WS = (b" ", b"\n", b"\r", b"\t")


@dataclass
class TablePayload:
    rows: int = 0                    # <TR> elements (TABLEDATA)
    mode: int | None = None          # 1 BINARY, 2 BINARY2, 0 FITS-in-VOTable
    stream_bytes: int | None = None  # decoded size of the base64 STREAM; None when absent


class _Guard:
    """An expat parser fed each chunk before astropy gets it; raises ReaderError at the first element that
    would make astropy read data from outside the file. Checks are wider than astropy's matching (any
    namespace prefix, any case, ``xlink:href`` as well as ``href``) so nothing astropy follows slips by."""

    _EXTERNAL_ONLY = {"FITS": "FITS", "PARQUET": "Parquet"}   # astropy reads these only through an href

    def __init__(self, file: str):
        self._file = file
        self._parser = expat.ParserCreate()
        self._parser.StartElementHandler = self._start
        self._parser.EntityDeclHandler = self._entity

    def feed(self, data: bytes, final: bool) -> None:
        try:
            self._parser.Parse(data, final)
        except expat.ExpatError as exc:
            raise ReaderError(self._file, f"not a readable VOTable: {exc}") from None

    def _refuse(self, what: str):
        raise ReaderError(self._file, f"{what}: refused, only data inside the file is read (TABLEDATA, or "
                                      "BINARY/BINARY2 with an inline base64 STREAM)")

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        local = name.rpartition(":")[2].upper()
        if local == "STREAM":
            for key, value in attrs.items():
                if key.rpartition(":")[2].lower() == "href":
                    self._refuse(f"line {self._parser.CurrentLineNumber}: <{name} {key}={_shown(value)}> "
                                 "points at data outside the file")
        elif local in self._EXTERNAL_ONLY:
            self._refuse(f"line {self._parser.CurrentLineNumber}: <{name}>: {self._EXTERNAL_ONLY[local]} "
                         "serialisation, whose data astropy fetches from outside the file")

    def _entity(self, name: str, *_details) -> None:
        self._refuse(f"line {self._parser.CurrentLineNumber}: declares the XML entity {name!r} (a VOTable "
                     "needs none)")


def _shown(value: str, limit: int = 120) -> str:
    """An attribute value fit for a one-line message: quoted, escaped, cut."""
    return ascii(value if len(value) <= limit else value[:limit] + "...")


class _Meter:
    """A read function for astropy that passes the bytes through (after ``_Guard`` has seen them) and measures
    each TABLE's payload."""

    def __init__(self, raw: BinaryIO, file: str):
        self._raw = raw
        self._guard = _Guard(file)
        self.tables: list[TablePayload] = []
        self._carry = b""
        self._in_stream = False
        self._chars = 0          # base64 characters of the open STREAM
        self._pad = 0            # its '=' padding

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._guard.feed(data, final=not data)
        self._scan(self._carry + data, final=not data)
        return data

    def _scan(self, buf: bytes, final: bool) -> None:
        pos = 0
        while True:
            if self._in_stream:
                end = buf.find(b"</STREAM", pos)
                stop = end if end >= 0 else (len(buf) if final else max(pos, len(buf) - _CARRY))
                seg = buf[pos:stop]
                self._chars += len(seg) - sum(seg.count(w) for w in _WS)
                self._pad += seg.count(b"=")
                if end < 0:
                    self._carry = buf[stop:]
                    return
                if self.tables:
                    self.tables[-1].stream_bytes = (self._chars - self._pad) * 6 // 8
                self._in_stream, pos = False, end + 2
                continue
            m = _TAG.search(buf, pos)
            if m is None:
                self._carry = b"" if final else buf[max(pos, len(buf) - _CARRY):]
                return
            tag = m.group(1)
            if tag == b"TABLE":
                self.tables.append(TablePayload())
            elif not self.tables:
                pass                     # a tag outside any TABLE (RESOURCE-level INFO etc.): not ours
            elif tag == b"TR":
                self.tables[-1].rows += 1
            elif tag in (b"BINARY2", b"BINARY", b"FITS"):
                self.tables[-1].mode = {b"BINARY2": 2, b"BINARY": 1, b"FITS": 0}[tag]
            else:                        # STREAM: measure its content (an href never gets here: _Guard)
                close = buf.find(b">", m.end() - 1)
                if close < 0:
                    self._carry = b"" if final else buf[m.start():]
                    return
                start_tag = buf[m.start():close]
                if not start_tag.endswith(b"/"):
                    self._in_stream, self._chars, self._pad = True, 0, 0
                pos = close + 1
                continue
            pos = m.end() - 1


def parse_votable(source: str | BinaryIO, file: str) -> tuple[Any, list[TablePayload]]:
    """Parse with astropy (``verify="ignore"``: archive files trip many pedantic warnings); returns the
    VOTableFile and the measured payload of each TABLE, in document order (the order of iter_tables)."""
    from astropy.io.votable import parse

    opened = open(source, "rb") if isinstance(source, str) else None
    try:
        meter = _Meter(opened or source, file)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                vot = parse(meter.read, verify="ignore")
            except ReaderError:
                raise
            except Exception as exc:   # astropy raises many types (ValueError, ExpatError, VOTableSpecError…)
                raise ReaderError(file, f"not a readable VOTable: {exc}") from exc
    except OSError as exc:
        raise ReaderError(file, f"cannot read: {exc}") from exc
    finally:
        if opened is not None:
            opened.close()
    return vot, meter.tables


def tables_checked(vot: Any, payloads: list[TablePayload], file: str) -> Iterator[tuple[Any, Any]]:
    """(table, its array) for each TABLE of the document, after ``check_decoded``."""
    for k, table in enumerate(vot.iter_tables()):
        arr = table.array
        if k < len(payloads):
            check_decoded(table, arr, payloads[k], file, k + 1)
        yield table, arr


def check_decoded(table: Any, arr: Any, payload: TablePayload, file: str, number: int) -> None:
    """Raise ReaderError unless the decoded rows account for the table's whole payload."""
    n = len(arr)
    where = f"VOTable TABLE {number}"
    if payload.rows and payload.rows != n:
        raise ReaderError(file, f"{where} holds {payload.rows} rows (<TR>) but {n} could be decoded: a FIELD "
                                "declaration does not fit the data")
    if payload.stream_bytes is None or payload.mode == 0:
        return
    expected = binary_size(table, arr, payload.mode)
    if expected is None:          # a layout we do not measure (bit fields, text arrays): the weaker test
        if n == 0 and payload.stream_bytes:
            raise ReaderError(file, f"{where}: {payload.stream_bytes:,} bytes of binary data but no row could "
                                    "be decoded: a FIELD's datatype or arraysize does not fit the data")
        return
    if expected != payload.stream_bytes:
        raise ReaderError(file, f"{where}: the {n} rows decoded account for {expected:,} of its "
                                f"{payload.stream_bytes:,} bytes of binary data: a FIELD's datatype or "
                                "arraysize does not fit the data, or the data is cut short")


def binary_size(table: Any, arr: Any, mode: int) -> int | None:
    """Bytes that ``arr``'s rows occupy in BINARY (mode 1) or BINARY2 (mode 2, with a null bitmap per row)
    serialisation under the table's FIELD declarations; None when a field's size cannot be told from the
    decoded values (bit fields, variable-length text, multi-dimensional variable arrays)."""
    fields = list(table.all_fields)
    names = arr.dtype.names or ()
    if len(fields) != len(names):
        return None
    n = len(arr)
    total = n * ((len(fields) + 7) // 8) if mode == 2 else 0
    for f, name in zip(fields, names):
        size = _SIZES.get(f.datatype)
        if size is None:
            return None
        dims = (f.arraysize or "1").split("x")
        if not dims[-1].endswith("*"):
            count = 1
            for d in dims:
                count *= int(d)
            total += n * count * size
            continue
        if len(dims) > 1 or f.datatype in ("char", "unicodeChar"):
            return None
        values = np.ma.getdata(arr[name])       # a null row still holds the elements it was read with
        if any(v is None or np.ndim(v) != 1 for v in values):
            return None
        total += n * 4 + size * sum(len(v) for v in values)
    return total
