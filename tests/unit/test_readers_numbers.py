"""The array-text parsers: the compiled one (ingest/readers/_arraytext.c) must give exactly what a correctly
rounded parse gives, and both engines must agree on every row, good or bad.

The reference for float32 is computed here with exact rational arithmetic (fractions), not with another
parser: rounding a decimal to double and then to float ("double rounding") is wrong in rare cases, and those
are exactly the cases the tests construct.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from ingest.readers import numbers
from ingest.readers.numbers import COMPILED, parse_array_column


def test_the_compiled_parser_is_built():
    # `make venv` builds it (it needs a C compiler); without it every reader still works, ~2x slower
    assert COMPILED, "ingest.readers._arraytext is not built: install gcc and re-run `make venv`"


def nearest_float32(text: str) -> np.float32:
    """Correctly rounded (ties to even) float32 of a decimal string, by exact arithmetic."""
    x = Fraction(text)
    if x == 0:
        return np.float32(-0.0 if text.lstrip().startswith("-") else 0.0)
    if abs(x) >= Fraction(float(np.finfo(np.float32).max)) + Fraction(2) ** 103:   # at or past max + half an ulp
        return np.float32(np.inf if x > 0 else -np.inf)
    guess = np.float32(float(x))
    best = None
    with np.errstate(over="ignore"):            # the float next to the largest is inf: skipped below
        neighbours = (np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf)))
    for cand in neighbours:
        if not np.isfinite(cand):
            continue
        d = abs(Fraction(float(cand)) - x)
        key = (d, int(cand.view(np.uint32)) & 1)          # nearer first; on a tie, the even one
        if best is None or key < best[0]:
            best = (key, cand)
    return best[1]


def float32_midpoint_cases(rng, n: int) -> list[str]:
    """Decimals at and next to midpoints between adjacent float32s: where double rounding goes wrong."""
    out = []
    for _ in range(n):
        a = np.float32(rng.uniform(-1, 1) * 10.0 ** rng.integers(-8, 8))
        b = np.nextafter(a, np.float32(np.inf))
        mid = (Fraction(float(a)) + Fraction(float(b))) / 2
        exact = f"{mid.numerator / mid.denominator:.30e}"     # a float repr, rounded: near, not at
        digits = 15 + int(rng.integers(0, 5))
        out.append(f"{float(mid):.{digits}g}")
        out.append(exact)
        # the exact midpoint as a decimal (a dyadic rational has a finite expansion)
        num, den = mid.numerator, mid.denominator
        k = den.bit_length() - 1
        out.append(str(num * 5 ** k) + f"e-{k}")
    return out


def random_decimals(rng, n: int) -> list[str]:
    out = []
    for _ in range(n):
        nd = int(rng.integers(1, 24))
        digits = "".join(str(d) for d in rng.integers(0, 10, nd))
        point = int(rng.integers(0, nd + 1))
        mant = digits[:point] + "." + digits[point:] if rng.random() < 0.8 else digits
        sign = rng.choice(["", "-", "+"], p=[0.5, 0.45, 0.05])
        exp = f"e{int(rng.integers(-40, 36))}" if rng.random() < 0.3 else ""
        tok = f"{sign}{mant}{exp}"
        if tok.strip("+-.e0123456789") == "" and any(c.isdigit() for c in mant):
            out.append(tok)
    return out


def parse(tokens: list[str], dtype, compiled: bool) -> np.ndarray:
    rows = [("(" + ", ".join(tokens[i:i + 5]) + ")").encode() for i in range(0, len(tokens) - len(tokens) % 5, 5)]
    out, present, bad = parse_array_column(rows, 5, dtype, compiled=compiled)
    assert not bad and present.all()
    return out.ravel()


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(20261125)


def test_float32_is_correctly_rounded_including_midpoints(rng):
    """Shortest reprs (what Gaia's CSV holds), 9-digit and 17-digit forms, random decimals with up to 23
    digits and exponents, and decimals at or a hair off float32 midpoints: every value bit-exact."""
    vals = rng.standard_normal(4000).astype(np.float32) * np.float32(10.0) ** rng.integers(-30, 30, 4000)
    tokens = [repr(float(v)) for v in vals] + [str(v) for v in vals] + [f"{v:.9g}" for v in vals]
    tokens += random_decimals(rng, 6000) + float32_midpoint_cases(rng, 1500)
    tokens += ["0", "-0", "0.0", "-0.000", "1e-45", "1.4e-45", "3.4028235e38", "1.17549435e-38", "16777217",
               "16777216.5", "0.1", ".5", "5.", "+7", "1E5", "1e+05", "00000123.4500000"]
    tokens = tokens[:len(tokens) - len(tokens) % 5]
    got = parse(tokens, np.float32, compiled=True)
    want = np.array([nearest_float32(t) for t in tokens], np.float32)
    wrong = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
    assert not len(wrong), [(tokens[i], got[i], want[i]) for i in wrong[:5]]
    # the set holds real traps: values where parsing to double first, then rounding to float, is wrong
    with np.errstate(over="ignore"):           # a few tokens overflow float32 on purpose
        traps = [t for t in tokens if np.float32(float(t)).view(np.uint32) != nearest_float32(t).view(np.uint32)]
    assert len(traps) >= 20, len(traps)


def test_float64_matches_python_float(rng):
    """Python's float() is correctly rounded: the compiled parser must match it bit for bit."""
    vals = rng.standard_normal(5000) * 10.0 ** rng.integers(-300, 300, 5000)
    tokens = [repr(float(v)) for v in vals] + [f"{v:.17g}" for v in vals] + [f"{v:.15e}" for v in vals]
    tokens += random_decimals(rng, 8000)
    # the hard cases first, so that trimming to a multiple of 5 never drops them
    tokens = ["9007199254740993", "1e23", "8.98846567431158e307", "2.2250738585072014e-308", "4.9e-324", "-0",
              "123456789012345678901234567890"] + tokens
    tokens = tokens[:len(tokens) - len(tokens) % 5]
    got = parse(tokens, np.float64, compiled=True)
    want = np.array([float(t) for t in tokens])
    wrong = np.flatnonzero(got.view(np.uint64) != want.view(np.uint64))
    assert not len(wrong), [(tokens[i], got[i], want[i]) for i in wrong[:5]]


ODD_ROWS = [
    b"(1.5, 2, 3)", b"[1.5,2,3]", b"1.5, 2, 3", b"  ( 1.5 ,2 , 3 )  ",      # good, differently spelled
    b"", b"  ", b"()", b"[ ]", b"nan", b"null", b"--", b'""',                 # missing
    b"(1, null, 3)", b"[NaN,2,3]", b"(inf, -inf, 1)",                        # words inside: NaN / inf
    b"(1, 2)", b"(1, 2, 3, 4)", b"(1,, 3)", b"(1, 2, 3", b"1, 2, 3)", b"(1 2, 3, 4)",   # wrong shape
    b"(1, 2x, 3)", b"(0x10, 2, 3)", b"(1e, 2, 3)", b"(-, 2, 3)", b"(., 2, 3)", b"(1, 2, 3)x",
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_engines_agree_on_odd_rows(dtype):
    """Every row shape the readers can meet: same values, same missing mask, same bad rows and messages."""
    pure = parse_array_column(ODD_ROWS, 3, dtype, compiled=False)
    fast = parse_array_column(ODD_ROWS, 3, dtype, compiled=True)
    np.testing.assert_array_equal(fast[0], pure[0])
    np.testing.assert_array_equal(fast[1], pure[1])
    assert fast[2] == pure[2]
    # and the expected reading, so that agreeing on a wrong answer fails too
    assert list(np.flatnonzero(pure[1])) == [0, 1, 2, 3, 12, 13, 14]
    assert sorted(pure[2]) == list(range(15, len(ODD_ROWS)))
    assert math.isnan(pure[0][12, 1]) and pure[0][14, 1] == -np.inf


def test_real_correlations_parse_identically_with_both_engines(shared_dir):
    """The archive CSV of real sources: bit-identical arrays from the compiled and the pyarrow engines."""
    from ingest.readers.textio import iter_lines, read_header, split_fields
    path = shared_dir / "data/gaia_xp/gaiaxpy_tests/XP_CONTINUOUS_RAW_with_missing_BP.csv"
    with open(path, "rb") as fh:
        lines = iter_lines(fh, str(path))
        names = read_header(lines, str(path)).names
        rows = [split_fields(ln) for ln in lines if ln]
    for col, length, dtype in [("bp_coefficient_correlations", 1485, np.float32),
                               ("rp_coefficients", 55, np.float64), ("rp_coefficient_errors", 55, np.float32)]:
        values = [r[names.index(col)] for r in rows]
        fast = parse_array_column(values, length, dtype, compiled=True)
        pure = parse_array_column(values, length, dtype, compiled=False)
        assert fast[1].sum() >= 1 and not fast[2]
        assert np.array_equal(fast[0].view(np.uint8), pure[0].view(np.uint8)), col
        np.testing.assert_array_equal(fast[1], pure[1])


def test_engine_switch_is_honoured(monkeypatch):
    """The readers' tests run on both engines by flipping numbers.COMPILED: prove the flag is what decides."""
    monkeypatch.setattr(numbers, "COMPILED", False)
    seen = []
    real = numbers._parse_array_column_pure
    monkeypatch.setattr(numbers, "_parse_array_column_pure", lambda *a: seen.append(1) or real(*a))
    parse_array_column([b"(1, 2)"], 2, np.float32)
    assert seen == [1]
    monkeypatch.setattr(numbers, "COMPILED", True)
    parse_array_column([b"(1, 2)"], 2, np.float32)
    assert seen == [1]          # the good row never reached the pure path
