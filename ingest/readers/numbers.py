"""Vectorised parsing of text columns with a per-row fallback that names what is wrong.

Array texts go through the compiled parser ``_arraytext`` when it was built (``pip install`` builds it where
a C compiler exists; it is optional): one pass over the joined texts, ~35 ns a number against ~80 for the
pure path, correctly rounded. Without it, the pure path joins the array texts of many rows, one number per
line, and parses them with pyarrow's CSV converter (correctly rounded, multi-threaded: ~16 M numbers/s on one
core, ~24 M/s on two, for float32 and float64 alike; ``numpy.fromstring`` manages 14 M/s for float32 but 6 M/s
for 17-digit float64). Only when a block fails do we re-parse row by row to find the culprits, so one bad row
never costs the rest of its block.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

try:
    from ingest.readers._arraytext import parse_rows as _c_parse_rows
except ImportError:          # no C compiler at install time: the pyarrow path below, same results
    _c_parse_rows = None

COMPILED = _c_parse_rows is not None

# Tokens that mean "no value" in the archive CSV (empty), ECSV (nan, empty, null) and astropy output (--).
MISSING_TOKENS = frozenset({b"", b"nan", b"NaN", b"NAN", b"null", b"NULL", b"None", b"--", b"()", b"[]",
                            b'""'})
_MAX_MISSING_LEN = max(len(t) for t in MISSING_TOKENS)
_OPEN = (ord("("), ord("["))
_CLOSE = (ord(")"), ord("]"))

BadMap = dict[int, str]        # row index within the block -> message


def is_missing(v: bytes) -> bool:
    # the length test first: hashing a 15 kB array text just to learn it is not "nan" costs ~10 µs
    return len(v) <= _MAX_MISSING_LEN and v.strip() in MISSING_TOKENS


def _fromstring(text: bytes, dtype) -> np.ndarray | None:
    """All comma-separated numbers in text, or None if any token is not a number."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)   # older numpy warns instead of raising
        try:
            return np.fromstring(text, dtype=dtype, sep=",")
        except (ValueError, DeprecationWarning):
            return None


_ARROW_TYPES = {np.dtype(np.float64): pa.float64(), np.dtype(np.float32): pa.float32()}
_ARROW_READ = pacsv.ReadOptions(column_names=["v"], block_size=1 << 20)
_ARROW_PARSE = pacsv.ParseOptions(ignore_empty_lines=False)


def _arrow_convert(dtype) -> pacsv.ConvertOptions:
    # no null spellings: an empty token must fail the block, not become a silent null
    return pacsv.ConvertOptions(column_types={"v": _ARROW_TYPES[np.dtype(dtype)]}, null_values=[],
                                strings_can_be_null=False, quoted_strings_can_be_null=False)


_ARROW_CONVERT = {dt: _arrow_convert(dt) for dt in _ARROW_TYPES}


def parse_joined(bodies: list[bytes], dtype) -> np.ndarray | None:
    """All numbers of many comma-separated texts, in order; None if any token is not a number."""
    conv = _ARROW_CONVERT.get(np.dtype(dtype))
    if conv is None:
        return _fromstring(b",".join(bodies), dtype)
    # arrow's float converter skips the blank after each comma of the archive's ", " (and still rejects
    # "1 2"), so only the commas need to become line ends
    text = b"\n".join(bodies).replace(b",", b"\n")
    try:
        table = pacsv.read_csv(pa.py_buffer(text), read_options=_ARROW_READ, parse_options=_ARROW_PARSE,
                               convert_options=conv)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    col = table.column(0)
    if col.null_count:
        return None
    return col.to_numpy()


def describe_bad_numbers(body: bytes, length: int) -> str:
    """Why one array text did not parse: its first unparsable token, or its length."""
    tokens = body.split(b",")
    for k, tok in enumerate(tokens):
        t = tok.strip()
        if t in (b"null", b"NULL"):
            continue
        try:
            float(t)
        except ValueError:
            return f"value {k + 1} is not a number: {t[:40].decode('utf-8', 'replace')!r}"
    if len(tokens) != length:
        return f"expected {length} values, found {len(tokens)}"
    return "unparsable numbers"


def parse_array_column(values: Sequence[bytes], length: int, dtype,
                       compiled: bool | None = None) -> tuple[np.ndarray, np.ndarray, BadMap]:
    """Parse texts like ``(1.0, 2E7, …)`` or ``[1.0,2e7,…]`` of exactly ``length`` numbers.

    Returns (array (n, length) with NaN rows where missing, present mask (n,), bad rows). Empty fields,
    ``nan``/``null`` and zero-length arrays are missing (not bad). ``null`` elements inside an array are NaN.
    ``compiled`` picks the engine (default: the compiled one when built); both give identical results.
    """
    if (COMPILED if compiled is None else compiled) and np.dtype(dtype) in _ARROW_TYPES and len(values):
        return _parse_array_column_compiled(values, length, dtype)
    return _parse_array_column_pure(values, length, dtype)


def _parse_array_column_compiled(values: Sequence[bytes], length: int, dtype):
    n = len(values)
    bounds = np.zeros(n + 1, np.int64)
    np.cumsum([len(v) for v in values], out=bounds[1:])
    out = np.empty((n, length), dtype)
    status = np.empty(n, np.int8)
    n_other = _c_parse_rows(b"".join(values), bounds, length, out, status)
    present = status == 0
    bad: BadMap = {}
    if n_other:
        # rows the fast loop would not take (null words, wrong counts, stray characters, …): the pure
        # path decides them and names the fault
        odd = np.flatnonzero(status == 2)
        if len(odd):
            sub_out, sub_present, sub_bad = _parse_array_column_pure([values[i] for i in odd], length, dtype)
            out[odd] = sub_out
            present[odd] = sub_present
            bad = {int(odd[k]): msg for k, msg in sub_bad.items()}
    return out, present, bad


def _parse_array_column_pure(values: Sequence[bytes], length: int, dtype) -> tuple[np.ndarray, np.ndarray, BadMap]:
    n = len(values)
    out = np.full((n, length), np.nan, dtype)
    present = np.zeros(n, bool)
    bad: BadMap = {}
    bodies: list[bytes] = []
    idx: list[int] = []
    commas = length - 1
    for i, v in enumerate(values):
        if is_missing(v):
            continue
        v = v.strip()             # the same object when there is nothing to strip (the usual case)
        if v[0] in _OPEN:
            if v[-1] not in _CLOSE:
                bad[i] = "array text not closed (truncated field?)"
                continue
            v = v[1:-1]
            if not v.strip():
                continue          # () or [ ] : a zero-length array, i.e. a missing band
        c = v.count(b",")
        if c != commas:
            bad[i] = f"expected {length} values, found {c + 1}"
            continue
        bodies.append(v)
        idx.append(i)
    if not bodies:
        return out, present, bad
    vals = parse_joined(bodies, dtype)
    if vals is not None and vals.size == len(bodies) * length:
        out[idx] = vals.reshape(len(bodies), length)
        present[idx] = True
        return out, present, bad
    for body, i in zip(bodies, idx):      # slow path: find the guilty rows
        row = _fromstring(body, dtype)
        if row is None and b"null" in body.lower():
            row = _fromstring(body.lower().replace(b"null", b"nan"), dtype)
        if row is not None and row.size == length:
            out[i] = row
            present[i] = True
        else:
            bad[i] = describe_bad_numbers(body, length)
    return out, present, bad


def parse_float_column(values: Sequence[bytes], dtype=np.float64) -> tuple[np.ndarray, BadMap]:
    """Scalars; missing tokens become NaN."""
    cleaned = [b"nan" if is_missing(v) else v for v in values]
    try:
        with np.errstate(over="ignore"):      # beyond float32 becomes inf, which the readers then refuse
            return np.array(cleaned, dtype=np.bytes_).astype(dtype), {}
    except ValueError:
        pass
    out = np.full(len(values), np.nan, dtype)
    bad: BadMap = {}
    for i, v in enumerate(cleaned):
        try:
            out[i] = float(v)
        except ValueError:
            bad[i] = f"not a number: {v[:40].decode('utf-8', 'replace')!r}"
    return out, bad


def parse_int_column(values: Sequence[bytes], dtype=np.int64, missing: int = -1,
                     required: bool = False) -> tuple[np.ndarray, BadMap]:
    """Integers (exact: source ids exceed 2**53); missing tokens become ``missing`` unless ``required``."""
    bad: BadMap = {}
    cleaned = []
    for i, v in enumerate(values):
        if is_missing(v):
            if required:
                bad[i] = "missing value"
            cleaned.append(b"%d" % missing)
        else:
            cleaned.append(v)
    try:
        wide = np.array(cleaned, dtype=np.bytes_).astype(np.int64)
    except (ValueError, OverflowError):
        wide = np.full(len(values), missing, np.int64)
        for i, v in enumerate(cleaned):
            try:
                wide[i] = int(v)
            except ValueError:
                try:                       # "55.0" from a writer that stored ints as floats
                    f = float(v)
                except ValueError:
                    f = float("nan")
                if f.is_integer() and abs(f) < 2 ** 53:
                    wide[i] = int(f)
                else:
                    bad[i] = f"not an integer: {v[:40].decode('utf-8', 'replace')!r}"
            except OverflowError:
                bad[i] = f"integer out of range: {v[:40].decode('utf-8', 'replace')!r}"
    info = np.iinfo(dtype)
    if info.bits < 64:
        out_of_range = np.flatnonzero((wide < info.min) | (wide > info.max))
        for i in out_of_range:
            bad.setdefault(int(i), f"integer out of range for {np.dtype(dtype).name}: {int(wide[i])}")
        wide = np.where((wide < info.min) | (wide > info.max), missing, wide)
    return wide.astype(dtype), bad
