"""Fast text formatting of XP records in the Gaia archive's style, vectorised with pyarrow.

The archive writes floats like Java's ``Float/Double.toString``: the shortest digits that round-trip in the
column's own precision (float32 for errors and correlations, float64 for coefficients), positional in
[1e-3, 1e7) with at least one digit after the point (``1.0``), and ``d.dddE±n`` outside it (``5.273979E-4``).
pyarrow's float→string cast already gives the shortest round-trip digits per dtype in C++; we only patch the
few values that need a trailing ``.0`` or the Java exponent form. A record is ~3,000 numbers, so per-number
Python formatting would cap writing at a few hundred stars per second.
"""
from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _java_exponent(text: str) -> str:
    """'0.0005273979' → '5.273979E-4'; '15000000' → '1.5E7'; '1e-7' → '1.0E-7' (digits kept exactly)."""
    sign, digits, exponent = Decimal(text).as_tuple()
    digits_s = "".join(map(str, digits)).rstrip("0") or "0"
    e10 = len(digits) - 1 + int(exponent)
    mantissa = digits_s[0] + "." + (digits_s[1:] or "0")
    return ("-" if sign else "") + mantissa + "E" + str(e10)


def _java_scientific(text: pa.Array) -> pa.Array:
    """Java exponent form of shortest-digit texts with |x| < 1e-3 or ≥ 1e7, vectorised with regexes for the
    common shapes (``0.000ddd``, ``0.00000ddd``, ``d.ddde-7``); anything else (rare: huge values) per value."""
    out = text
    # pyarrow's own exponent form: '1.5e-7' → '1.5E-7', '1e-7' → '1.0E-7', 'e+' → 'E'.
    out = pc.replace_substring_regex(out, r"^(-?\d)e", r"\1.0e")
    out = pc.replace_substring(pc.replace_substring(out, "e+", "E"), "e", "E")
    # Positional small values: one pattern per leading-zero count (exponents −4 … −9).
    for zeros in range(3, 9):
        out = pc.replace_substring_regex(out, rf"^(-?)0\.{'0' * zeros}([1-9])(\d*)$", rf"\1\2.\3E-{zeros + 1}")
    out = pc.replace_substring(out, ".E", ".0E")
    done = pc.match_substring(out, "E")
    if not pc.all(done).as_py():
        rest = np.flatnonzero(~np.asarray(done))
        fixed = pa.array([_java_exponent(t) for t in pc.take(out, pa.array(rest)).to_pylist()], pa.string())
        out = pc.replace_with_mask(out, pa.array(~np.asarray(done)), fixed)
    return out


def java_floats(values: np.ndarray) -> pa.Array:
    """Flat pyarrow string array of Java-style float texts for a float32 or float64 array (any shape).

    NaN and ±inf become ``NaN``/``Infinity``/``-Infinity`` as in Java; callers blank out missing fields.
    """
    flat = np.ascontiguousarray(values).ravel()
    if flat.dtype not in (np.float32, np.float64):
        flat = flat.astype(np.float64)
    text = pc.cast(pa.array(flat), pa.string())
    finite = np.isfinite(flat)
    mag = np.abs(flat)
    sci = finite & (flat != 0) & ((mag < 1e-3) | (mag >= 1e7))
    integral = finite & ~sci & (np.floor(flat) == flat)
    if integral.any():
        idx = np.flatnonzero(integral)
        patched = pc.binary_join_element_wise(pc.take(text, pa.array(idx)), ".0", "")
        text = pc.replace_with_mask(text, pa.array(integral), patched)
    if sci.any():
        text = pc.replace_with_mask(text, pa.array(sci), _java_scientific(pc.filter(text, pa.array(sci))))
    special = ~finite
    if special.any():
        words = np.where(np.isnan(flat[special]), "NaN", np.where(flat[special] > 0, "Infinity", "-Infinity"))
        text = pc.replace_with_mask(text, pa.array(special), pa.array(words.tolist(), pa.string()))
    return text


def joined_arrays(values: np.ndarray, sep: str, open_: str, close: str, missing: np.ndarray | None = None,
                  quote: bool = True) -> pa.Array:
    """One string per row: ``"(v1, v2, …)"``-style text of the (N, k) array; empty where ``missing``."""
    n, k = values.shape
    flat = java_floats(values)
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int64) if k else np.zeros(n + 1, np.int64))
    lists = pa.LargeListArray.from_arrays(offsets, flat)
    body = pc.binary_join(lists, sep)
    q = '"' if quote else ""
    out = pc.binary_join_element_wise(q + open_, body, close + q, "")
    if missing is not None and missing.any():
        out = pc.if_else(pa.array(missing), pa.scalar("", out.type), out)
    return out


def scalar_field(values: np.ndarray, missing: np.ndarray | None = None, missing_text: str = "") -> pa.Array:
    """Text of a scalar column: ints as digits, floats Java-style; ``missing_text`` where ``missing``."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.integer):
        text = pc.cast(pa.array(values), pa.string())
    else:
        text = java_floats(values)
    if missing is not None and missing.any():
        text = pc.if_else(pa.array(missing), pa.scalar(missing_text, text.type), text)
    return text


def join_columns(columns: list[pa.Array], sep: str = ",") -> pa.Array:
    """Element-wise join of equal-length string columns into lines (without the newline)."""
    return pc.binary_join_element_wise(*columns, sep)


def lines_to_bytes(lines: pa.Array) -> pa.Buffer:
    """All lines, each followed by '\\n', as one buffer (no per-line Python objects; ``file.write`` takes it)."""
    with_nl = pc.binary_join_element_wise(lines, "\n", "")
    large = with_nl.cast(pa.large_string()) if with_nl.type != pa.large_string() else with_nl
    offsets = np.frombuffer(large.buffers()[1], dtype=np.int64)[large.offset: large.offset + len(large) + 1]
    data = large.buffers()[2]
    return data.slice(int(offsets[0]), int(offsets[-1] - offsets[0])) if len(large) else pa.py_buffer(b"")
