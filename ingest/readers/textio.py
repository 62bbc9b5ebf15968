"""Line-oriented access to CSV/ECSV text: bounded-memory line blocks, the header, quote-aware field splitting.

Rows are numbered from 1 at the first line after the column-name line ("data row"); blank lines keep their
number but are skipped, so data row r is physical line (header lines + r) of the (decompressed) file.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from ingest.readers.errors import ReaderError
from ingest.readers.gz import GZIP_ERRORS
from ingest.readers.sniff import BOM
from shared.streams import read_ahead

READ_BYTES = 1 << 20       # 1 MiB raw reads: amortises calls; a truncated gzip loses at most this much


class FieldError(ValueError):
    """A line whose quoting cannot be split into fields."""


_STREAM_ERRORS = GZIP_ERRORS + (zipfile.BadZipFile,)


def _read_blocks(stream: BinaryIO, read_bytes: int, prefetch: bool) -> Iterator[bytes]:
    """Raw blocks of the stream. With ``prefetch`` a helper thread reads (and, for gzip, inflates: zlib
    releases the GIL) the next block while the caller parses this one; at most 2 blocks wait in memory."""
    blocks = iter(lambda: stream.read(read_bytes), b"")
    return read_ahead(blocks, depth=2) if prefetch else blocks


class LongLine:
    """Stands in for a line longer than the cap: such a line is skipped as it streams past, never held.

    No XP row comes near the cap (a record with correlations is ~50 kB); a longer "line" is a broken download,
    a binary file or a hostile one, and keeping it would cost memory in proportion to it."""
    __slots__ = ("length", "cap")
    COLUMN = "(whole row)"          # what a BadRow names as its column: the line was never split

    def __init__(self, length: int, cap: int):
        self.length = length
        self.cap = cap

    def __str__(self) -> str:
        return (f"line of {self.length:,} bytes is longer than the {self.cap:,}-byte limit of a row: "
                "skipped unread")


MAX_LINE_BYTES = 16 << 20     # 16 MiB: ~300x the longest XP row


def iter_lines(stream: BinaryIO, file: str, read_bytes: int = READ_BYTES, prefetch: bool = False,
               max_line: int = MAX_LINE_BYTES) -> Iterator[bytes | LongLine]:
    """Yield the lines of a binary stream without their line ends (\\n or \\r\\n); a line longer than
    ``max_line`` bytes yields a LongLine instead (memory stays ~``max_line + read_bytes``, time linear).

    ``prefetch`` (use it for compressed streams) overlaps decompression with parsing. A truncated or
    corrupt compressed stream raises ReaderError naming the file and how far it got."""
    carry: list[bytes] = []     # pieces of the current, unfinished line: joined once, when it ends
    carry_len = 0
    over = False                # the current line already passed max_line: its bytes are only counted
    n_lines = 0
    blocks = _read_blocks(stream, read_bytes, prefetch)

    def finish(piece: bytes):
        if over or carry_len + len(piece) > max_line:
            return LongLine(carry_len + len(piece), max_line)
        line = b"".join(carry + [piece]) if carry else piece
        return line[:-1] if line.endswith(b"\r") else line

    while True:
        try:
            data = next(blocks, b"")
        except _STREAM_ERRORS as exc:
            raise ReaderError(file, f"truncated or corrupt compressed data after {n_lines} complete lines: "
                                    f"{exc}") from exc
        if not data:
            break
        pieces = data.split(b"\n")
        last = pieces.pop()
        if pieces:
            yield finish(pieces[0])
            carry, carry_len, over = [], 0, False
            for line in pieces[1:]:
                yield finish(line)
            n_lines += len(pieces)
        carry_len += len(last)
        over = over or carry_len > max_line
        if over:
            carry = []
        elif last:
            carry.append(last)
    if carry_len:
        yield finish(b"")


def split_fields(line: bytes, delim: bytes = b",") -> list[bytes]:
    """Split one CSV line; a quoted field loses its quotes. Doubled quotes inside a field are not used by
    any XP format and are rejected (FieldError) rather than guessed at."""
    if b'"' not in line:
        return line.split(delim)
    segs = line.split(b'"')
    if len(segs) % 2 == 0:
        raise FieldError("unbalanced quotes")
    fields = segs[0].split(delim)
    step = len(delim)
    for j in range(1, len(segs), 2):
        if fields[-1]:
            raise FieldError("a quote inside an unquoted field")
        fields[-1] = segs[j]
        rest = segs[j + 1]
        if rest:
            if not rest.startswith(delim):
                raise FieldError("text right after a closing quote")
            fields.extend(rest[step:].split(delim))
    return fields


@dataclass
class TextHeader:
    names: list[str]          # column names, lower-cased
    delimiter: bytes
    ecsv: bool


_DELIM = re.compile(rb"^#\s*delimiter:\s*['\"]?(.)['\"]?\s*$")


def read_header(lines: Iterator[bytes], file: str) -> TextHeader:
    """Consume the ECSV YAML block (if any) and the column-name line."""
    n = 0
    ecsv = False
    delimiter = None      # ECSV's default is a space, plain CSV's a comma
    for line in lines:
        n += 1
        if isinstance(line, LongLine):
            raise ReaderError(file, f"line {n}: {line.length:,} bytes without a line end before the column "
                                    "names: not a text table (or a broken download)")
        if n == 1 and line.startswith(BOM):
            line = line[len(BOM):]
        if line.startswith(b"#"):
            ecsv = ecsv or line.startswith(b"# %ECSV")
            m = _DELIM.match(line)
            if m:
                delimiter = m.group(1)
            continue
        if not line.strip():
            continue
        if delimiter is None:
            delimiter = b" " if ecsv else b","
        if delimiter == b" ":
            names = [f for f in line.split(b" ") if f]
        else:
            try:
                names = split_fields(line, delimiter)
            except FieldError as exc:
                raise ReaderError(file, f"line {n}: unreadable column-name line ({exc})") from exc
        return TextHeader([nm.strip().strip(b'"').decode("utf-8", "replace").lower() for nm in names],
                          delimiter, ecsv)
    raise ReaderError(file, "no column-name line (empty file?)")
