"""Gaia photometry (G flux and G/BP/RP magnitudes) for the sources, from CSV/ECSV/FITS/VOTable."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from ingest.readers.errors import WrongKindError
from ingest.readers.repeats import keep_first
from ingest.readers.tables import ROW, add_note, iter_table_chunks
from shared.xp import (
    G_ZERO_POINT,
    PHOTOMETRY_COLUMNS,
    POSITION_COLUMNS,
    BadRow,
    ReadReport,
    g_flux_from_mag,
    g_mag_from_flux,
)

# Accepted spellings (lower case) of each output column, first match wins.
ALIASES: dict[str, tuple[str, ...]] = {
    "source_id": ("source_id", "gaia_source_id", "dr3_source_id", "gaiaedr3_source_id", "ids"),
    "phot_g_mean_flux": ("phot_g_mean_flux",),
    "phot_g_mean_mag": ("phot_g_mean_mag", "gaiaedr3_phot_g_mean_mag"),
    "phot_bp_mean_mag": ("phot_bp_mean_mag", "gaiaedr3_phot_bp_mean_mag"),
    "phot_rp_mean_mag": ("phot_rp_mean_mag", "gaiaedr3_phot_rp_mean_mag"),
}


# Columns that mark a file as another kind of data (lower case) -> what it is and the command that takes it.
OTHER_KINDS: dict[str, str] = {
    "apogee_id": "an APOGEE labels file (APOGEE_ID column): use `xpvae ingest apogee`",
    "bp_basis_function_id": "Gaia XP spectra (bp_basis_function_id column): use `xpvae ingest gaia-xp`",
    "bp_coeff_0": "Gaia XP spectra (bp_coeff_0 column): use `xpvae ingest gaia-xp`",
}


def _check_kind(file: str, present: set[str], found: dict[str, str | None]) -> None:
    """Refuse tables that are not Gaia photometry: an allStar carries Gaia magnitudes too, but reading it
    as photometry would replace measured G fluxes with values derived from its magnitudes."""
    for name, what in OTHER_KINDS.items():
        if name in present:
            raise WrongKindError(file, f"not a Gaia photometry table but {what}")
    if found["source_id"] is None:
        raise WrongKindError(file, "not a Gaia photometry table: no source_id column")
    if all(found[c] is None for c in PHOTOMETRY_COLUMNS[1:]):
        raise WrongKindError(file, f"not a Gaia photometry table: none of the columns "
                                   f"{', '.join(PHOTOMETRY_COLUMNS[1:])}")


def add_positions(out: dict, chunk: dict) -> dict[int, tuple[str, str]]:
    """Copy ra, dec (degrees) into ``out``; return row -> (column, why) for a finite position off the sky.
    NaN stays "unknown" (stored as NULL)."""
    ra, dec = (np.asarray(chunk[c], np.float64) for c in POSITION_COLUMNS)
    out["ra"], out["dec"] = ra, dec
    problems: dict[int, tuple[str, str]] = {}
    with np.errstate(invalid="ignore"):
        off = {"ra": (ra, (ra < 0) | (ra > 360)), "dec": (dec, np.abs(dec) > 90)}
    for name, (v, bad) in off.items():
        for i in np.flatnonzero(bad):
            problems.setdefault(int(i), (name, f"{name} {float(v[i]):.6g} is off the sky"))
    return problems


def read_photometry(path: str | Path, chunk_rows: int = 100_000,
                    report: ReadReport | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Yield dicts with the PHOTOMETRY_COLUMNS (source_id int64, the rest float64; NaN when unknown), and ra, dec
    (degrees) when the file has both.

    Extra columns are ignored. If only one of G flux / G mag is given the other is derived from it (and a
    note says so); a source without source_id, or with a position off the sky (outside [0, 360] ×
    [-90, 90]), is a BadRow. Raises WrongKindError if the file is not Gaia photometry: no source_id column,
    none of the photometry columns, or the columns of an APOGEE labels file or of XP spectra.
    """
    path = Path(path)
    report = report if report is not None else ReadReport(str(path))
    spec = {alias: ("int" if out == "source_id" else "float") for out, names in ALIASES.items() for alias in names}
    spec.update({name: "str" for name in OTHER_KINDS})     # only their presence matters
    spec.update({c: "float" for c in POSITION_COLUMNS})
    for chunk, present in iter_table_chunks(path, spec, chunk_rows, report):
        found = {out: next((a for a in names if a in present), None) for out, names in ALIASES.items()}
        _check_kind(str(path), present, found)
        n = len(chunk[found["source_id"]])
        out = {c: (chunk[found[c]] if found[c] else np.full(n, np.nan)) for c in PHOTOMETRY_COLUMNS}
        out["source_id"] = out["source_id"].astype(np.int64)
        if found["phot_g_mean_flux"] is None and found["phot_g_mean_mag"] is not None:
            out["phot_g_mean_flux"] = g_flux_from_mag(out["phot_g_mean_mag"])
            add_note(report, f"no phot_g_mean_flux column: G flux derived from {found['phot_g_mean_mag']} "
                             f"(flux = 10^(-0.4 (G - {G_ZERO_POINT}))) for every row")
        elif found["phot_g_mean_mag"] is None and found["phot_g_mean_flux"] is not None:
            out["phot_g_mean_mag"] = g_mag_from_flux(out["phot_g_mean_flux"])
            add_note(report, "no phot_g_mean_mag column: G magnitude derived from phot_g_mean_flux for every row")
        for c in PHOTOMETRY_COLUMNS[1:]:
            if found[c] is None and c not in ("phot_g_mean_flux", "phot_g_mean_mag"):
                add_note(report, f"column {c} absent: filled with NaN")
        problems = unphysical(out, found)
        if all(c in present for c in POSITION_COLUMNS):
            for i, why in add_positions(out, chunk).items():
                problems.setdefault(i, why)
        for i in np.flatnonzero(out["source_id"] <= 0):
            problems[int(i)] = (found["source_id"], "missing or non-positive source_id")
        if problems:
            for i in sorted(problems):
                report.bad_rows.append(BadRow(str(path), int(chunk[ROW][i]), *problems[i]))
            report.rows_ok -= len(problems)
            keep = np.ones(len(out["source_id"]), bool)
            keep[list(problems)] = False
            out = {k: v[keep] for k, v in out.items()}
            rows = chunk[ROW][keep]
        else:
            rows = chunk[ROW]
        first = keep_first(out["source_id"], rows, str(path), report, column=found["source_id"])
        if not first.all():
            report.rows_ok -= int((~first).sum())
            out = {k: v[first] for k, v in out.items()}
        yield out


def unphysical(out: dict[str, np.ndarray], found: dict[str, str | None]) -> dict[int, tuple[str, str]]:
    """Rows whose photometry no star can have: a G flux that is not > 0, or an infinite value (an overflow,
    or a magnitude so far off that its flux overflows). NaN stays "unknown". Returns row -> (column, why),
    the column being the file's own (the magnitude when the flux was derived from it)."""
    problems: dict[int, tuple[str, str]] = {}
    for c in PHOTOMETRY_COLUMNS[1:]:
        v = out[c]
        with np.errstate(invalid="ignore"):
            bad = np.isinf(v) | ((v <= 0) if c == "phot_g_mean_flux" else False)
        source = found.get(c) or (found.get("phot_g_mean_mag") if c == "phot_g_mean_flux" else c)
        for i in np.flatnonzero(bad):
            why = "must be > 0" if np.isfinite(v[i]) else "is not a finite number"
            problems.setdefault(int(i), (source, f"{c} {float(v[i]):.6g} {why}"))
    return problems
