"""Writers for every file the simulator produces, in the layouts real users download (docs/data-formats.md §1–4).

| function                | file                                                                       |
|-------------------------|----------------------------------------------------------------------------|
| write_xp_csv            | archive/DataLink CSV: 26 columns, ``"(a, b, …)"`` arrays, empty missing band |
| write_xp_ecsv           | ECSV with JSON arrays ``"[a,b,…]"`` (``gzip=True``: bulk-release chunk)     |
| write_xp_fits           | BINTABLE HDU 1, variable-length PD()/PE() arrays, int16 TNULL −32768         |
| write_xp_votable        | VOTable: one TABLE, ``arraysize="*"`` arrays, BINARY2 (``binary=False``: TABLEDATA) |
| write_other_product     | a DataLink product other than XP_CONTINUOUS (XP_SAMPLED, MCMC_*, EPOCH_PHOTOMETRY, RVS) |
| write_datalink          | a DataLink download: per-source or combined files of several products, zip or folder |
| write_photometry_csv    | source_id, phot_g_mean_flux, phot_g_mean_mag, phot_bp_mean_mag, phot_rp_mean_mag |
| write_allstar_fits      | APOGEE DR17 allStar-like HDU 1 (UPPERCASE names, DR17 dtypes)                |
| write_catalogue_h5      | the published XP×APOGEE catalogue layout (astropy table, ``__astropy_table__``) |
| TruthWriter             | truth.parquet: true labels, population, E(B−V), noise-free coefficients      |
"""
from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shared.xp import ARCHIVE_COLUMNS, BAND_ARRAY_DTYPES, BAND_FIELDS, BAND_SCALAR_DTYPES, BANDS, N_COEFF, XPBatch

from .formatting import join_columns, joined_arrays, lines_to_bytes, scalar_field

BULK_FILE_TEMPLATE = "XpContinuousMeanSpectrum_{hpmin:06d}-{hpmax:06d}.csv.gz"
#: source_id = HEALPix level-12 index × 2^35 + running number; level 8 = level 12 // 4^4.
HEALPIX8_DIVISOR = 2**35 * 4**4

# DR17 allStar names of the in-memory (lower-case, shared.xp.APOGEE_COLUMNS) label keys.
ALLSTAR_NAMES = {
    "apogee_id": "APOGEE_ID", "telescope": "TELESCOPE", "field": "FIELD", "gaia_source_id": "GAIAEDR3_SOURCE_ID",
    "gaia_g_mag": "GAIAEDR3_PHOT_G_MEAN_MAG", "gaia_bp_mag": "GAIAEDR3_PHOT_BP_MEAN_MAG",
    "gaia_rp_mag": "GAIAEDR3_PHOT_RP_MEAN_MAG", "parallax": "GAIAEDR3_PARALLAX",
    "parallax_error": "GAIAEDR3_PARALLAX_ERROR",
    **{k: k.upper() for k in ("teff", "teff_err", "logg", "logg_err", "m_h", "m_h_err", "alpha_m", "alpha_m_err",
                              "fe_h", "fe_h_err", "mg_fe", "mg_fe_err", "snr", "j", "h", "k", "aspcapflag",
                              "starflag", "extratarg", "sfd_ebv")},
}
ALLSTAR_DTYPES = {"GAIAEDR3_SOURCE_ID": np.int64, "ASPCAPFLAG": np.int64, "STARFLAG": np.int64,
                  "EXTRATARG": np.int32}
ALLSTAR_STRING_WIDTHS = {"APOGEE_ID": 18, "TELESCOPE": 6, "FIELD": 16}


def healpix8(source_id: np.ndarray) -> np.ndarray:
    return np.asarray(source_id, np.int64) // HEALPIX8_DIVISOR


def bulk_file_name(source_id: np.ndarray) -> str:
    """Name of the bulk chunk holding these (sorted) sources: ``XpContinuousMeanSpectrum_<hpmin>-<hpmax>.csv.gz``."""
    hp = healpix8(source_id)
    return BULK_FILE_TEMPLATE.format(hpmin=int(hp.min()), hpmax=int(hp.max()))


def _rows(batch: XPBatch, style: str) -> bytes:
    """Data lines of the 26 archive columns. style 'csv': tuple arrays, every missing field empty;
    'ecsv': JSON arrays, missing ints/arrays empty and missing floats ``nan`` (as the archive's ECSV)."""
    if not batch.has_correlations:
        raise ValueError("the archive layouts need coefficient correlations; this batch has none")
    cols = [scalar_field(batch["source_id"]), scalar_field(batch["solution_id"])]
    sep, open_, close = (", ", "(", ")") if style == "csv" else (",", "[", "]")
    for band in BANDS:
        miss = batch[f"{band}_missing"]
        for field in BAND_FIELDS:
            values = batch[f"{band}_{field}"]
            if field in BAND_ARRAY_DTYPES:
                cols.append(joined_arrays(values.astype(BAND_ARRAY_DTYPES[field], copy=False), sep, open_, close,
                                          missing=miss))
            else:
                is_float = np.issubdtype(BAND_SCALAR_DTYPES[field], np.floating)
                text = "nan" if (style == "ecsv" and is_float) else ""
                cols.append(scalar_field(values.astype(BAND_SCALAR_DTYPES[field], copy=False), miss, text))
    return lines_to_bytes(join_columns(cols, ","))


def _open_text(path: Path, compress: bool):
    return gzip.open(path, "wb", compresslevel=6) if compress else open(path, "wb")


def write_xp_csv(batch: XPBatch, path: Path) -> Path:
    """Archive/DataLink CSV (``XP_CONTINUOUS_RAW.csv`` style): header line of the 26 names, then one line per source."""
    path = Path(path)
    with open(path, "wb") as f:
        f.write((",".join(ARCHIVE_COLUMNS) + "\n").encode())
        f.write(_rows(batch, "csv"))
    return path


def _ecsv_header() -> str:
    lines = ["# %ECSV 1.0", "# ---", "# delimiter: ','", "# datatype:"]
    for name in ARCHIVE_COLUMNS:
        field = name[3:] if name[:3] in ("bp_", "rp_") else name
        lines.append(f"# - name: {name}")
        if field in BAND_ARRAY_DTYPES:
            sub = "float64" if BAND_ARRAY_DTYPES[field] == np.float64 else "float32"
            lines += ["#   datatype: string", f"#   subtype: '{sub}[null]'"]
        elif field in BAND_SCALAR_DTYPES:
            lines.append(f"#   datatype: {np.dtype(BAND_SCALAR_DTYPES[field]).name}")
        else:
            lines.append("#   datatype: int64")
    lines.append(",".join(ARCHIVE_COLUMNS))
    return "\n".join(lines) + "\n"


def write_xp_ecsv(batch: XPBatch, path: Path, compress: bool | None = None) -> Path:
    """ECSV with JSON-packed arrays; gzipped when ``compress`` (default: when the name ends in .gz), as the
    bulk release's ``XpContinuousMeanSpectrum_*.csv.gz`` chunks."""
    path = Path(path)
    compress = path.suffix == ".gz" if compress is None else compress
    with _open_text(path, compress) as f:
        f.write(_ecsv_header().encode())
        f.write(_rows(batch, "ecsv"))
    return path


def write_xp_fits(batch: XPBatch, path: Path) -> Path:
    """FITS BINTABLE (HDU 1) with variable-length arrays; a missing band has zero-length arrays and TNULL ints."""
    from astropy.io import fits

    if not batch.has_correlations:
        raise ValueError("the archive layouts need coefficient correlations; this batch has none")
    n = len(batch)
    columns = [fits.Column("source_id", "K", array=batch["source_id"]),
               fits.Column("solution_id", "K", array=batch["solution_id"])]
    empty = {np.float64: np.zeros(0, np.float64), np.float32: np.zeros(0, np.float32)}
    for band in BANDS:
        miss = batch[f"{band}_missing"]
        for field in BAND_FIELDS:
            name = f"{band}_{field}"
            values = batch[name]
            if field in BAND_ARRAY_DTYPES:
                dt = BAND_ARRAY_DTYPES[field]
                code = "D" if dt == np.float64 else "E"
                arr = np.empty(n, dtype=object)
                rows = values.astype(dt, copy=False)
                for i in range(n):
                    arr[i] = empty[dt] if miss[i] else rows[i]
                columns.append(fits.Column(name, f"P{code}({values.shape[1]})", array=arr))
            elif np.issubdtype(BAND_SCALAR_DTYPES[field], np.integer):
                v = np.where(miss, -32768, values).astype(np.int16)
                columns.append(fits.Column(name, "I", null=-32768, array=v))
            else:
                columns.append(fits.Column(name, "E", array=values.astype(np.float32)))
    hdu = fits.BinTableHDU.from_columns(columns)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=False)
    return Path(path)


def write_xp_votable(batch: XPBatch, path: Path, binary: bool = True) -> Path:
    """VOTable as the archive writes it: the 26 columns in one TABLE, arrays ``arraysize="*"`` (a missing band
    is a null array), BINARY2 serialisation by default, TABLEDATA (the ``_plain`` flavour) with ``binary=False``."""
    from astropy.io.votable import from_table
    from astropy.table import MaskedColumn, Table

    if not batch.has_correlations:
        raise ValueError("the archive layouts need coefficient correlations; this batch has none")
    n = len(batch)
    t = Table()
    t["source_id"] = batch["source_id"]
    t["solution_id"] = batch["solution_id"]
    arrays = []
    for band in BANDS:
        miss = batch[f"{band}_missing"]
        for field in BAND_FIELDS:
            name, values = f"{band}_{field}", batch[f"{band}_{field}"]
            if field in BAND_ARRAY_DTYPES:
                rows = values.astype(BAND_ARRAY_DTYPES[field], copy=False)
                col = np.empty(n, dtype=object)
                for i in range(n):     # astropy's variable-length writer wants a masked array per row
                    col[i] = np.ma.masked_array(rows[i], mask=np.zeros(rows.shape[1], bool))
                t[name] = col
                arrays.append((name, miss))
            else:
                dt = BAND_SCALAR_DTYPES[field]
                fill = -32768 if np.issubdtype(dt, np.integer) else np.nan
                t[name] = MaskedColumn(np.where(miss, fill, values).astype(dt), mask=miss)
    vot = from_table(t)
    table = vot.get_first_table()
    for f in table.fields:
        if any(f.name == name for name, _ in arrays):
            f.arraysize = "*"
    for name, miss in arrays:          # a missing band: a zero-length array, as in the archive's files
        column = table.array.data[name]
        for i in np.flatnonzero(miss):
            column[i] = np.ma.masked_array(column[i][:0], mask=np.zeros(0, bool))
    vot.to_xml(str(path), tabledata_format="binary2" if binary else "tabledata")
    return Path(path)


# Columns of the other DataLink products (a subset of the archive's, enough to be recognisably not XP spectra).
OTHER_PRODUCT_COLUMNS: dict[str, dict[str, object]] = {
    "XP_SAMPLED": {"solution_id": np.int64, "flux": (343, np.float32), "flux_error": (343, np.float32)},
    "RVS": {"solution_id": np.int64, "flux": (2401, np.float32), "flux_error": (2401, np.float32)},
    "MCMC_GSPPHOT": {"solution_id": np.int64, "teff": np.float32, "logg": np.float32, "mh": np.float32,
                     "azero": np.float32, "distance": np.float32, "log_pos": np.float32},
    "MCMC_MSC": {"solution_id": np.int64, "teff1": np.float32, "teff2": np.float32, "logg1": np.float32,
                 "logg2": np.float32, "azero": np.float32, "mh": np.float32},
    "EPOCH_PHOTOMETRY": {"solution_id": np.int64, "transit_id": np.int64, "g_transit_time": np.float64,
                         "g_transit_flux": np.float64, "g_transit_mag": np.float64, "rejected_by_photometry": bool},
}
DATALINK_EXTENSIONS = {"csv": "csv", "ecsv": "ecsv", "fits": "fits", "votable": "xml"}


def write_other_product(product: str, source_id: np.ndarray, path: Path, fmt: str, seed: int = 0,
                        rows_per_source: int = 1) -> Path:
    """A file of another DataLink product for these sources, with that product's column names and random values
    (the pipeline never loads them; they must only look like the archive's). ``fmt``: csv, ecsv, fits, votable."""
    from astropy.table import Table

    rng = np.random.default_rng(seed)
    sid = np.repeat(np.asarray(source_id, np.int64), rows_per_source)
    n = len(sid)
    t = Table()
    t["source_id"] = sid
    for name, spec in OTHER_PRODUCT_COLUMNS[product].items():
        if isinstance(spec, tuple):
            length, dt = spec
            values = rng.normal(1.0, 0.1, (n, length)).astype(dt)
            # the archive's CSV packs arrays as quoted tuple text; the other formats hold real arrays
            t[name] = [f"({', '.join(map(str, row))})" for row in values] if fmt == "csv" else values
        elif spec is bool:
            t[name] = rng.random(n) < 0.1
        else:
            t[name] = (np.arange(n) + 1).astype(spec) if np.issubdtype(spec, np.integer) else \
                rng.normal(5000.0, 500.0, n).astype(spec)
    astropy_format = {"csv": "ascii.csv", "ecsv": "ascii.ecsv", "fits": "fits", "votable": "votable"}[fmt]
    t.write(str(path), format=astropy_format)
    return Path(path)


def _write_xp_as(batch: XPBatch, path: Path, fmt: str) -> Path:
    writer = {"csv": write_xp_csv, "ecsv": write_xp_ecsv, "fits": write_xp_fits, "votable": write_xp_votable}[fmt]
    return writer(batch, path)


def write_datalink(batch: XPBatch, out: Path, fmt: str = "votable", structure: str = "INDIVIDUAL",
                   products: tuple[str, ...] = ("XP_CONTINUOUS",), packed: bool = True, seed: int = 0,
                   release: str = "Gaia DR3") -> Path:
    """A DataLink download as the archive writes it (docs/data-formats.md §1): for each product, one file per source
    ``<PRODUCT>-Gaia DR3 <source_id>.<ext>`` (structure INDIVIDUAL) or one ``<PRODUCT>_COMBINED.<ext>``
    (COMBINED) / ``<PRODUCT>_RAW.<ext>`` (RAW), ext csv, ecsv, fits or xml. ``packed``: the zip ``out``; else
    the folder ``out`` (unpacked). XP_CONTINUOUS members hold ``batch`` in the archive layout; other products
    hold stand-in tables (write_other_product). Never overwrites ``out``."""
    import shutil
    import tempfile
    import zipfile

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists")
    if structure not in ("INDIVIDUAL", "COMBINED", "RAW"):
        raise ValueError(f"structure must be INDIVIDUAL, COMBINED or RAW, not {structure!r}")
    ext = DATALINK_EXTENSIONS[fmt]
    with tempfile.TemporaryDirectory(prefix="xpvae-datalink-") as tmp:
        folder = Path(tmp) / "members" if packed else out
        folder.mkdir(parents=True)
        for k, product in enumerate(products):
            parts = ([(f"{product}-{release} {int(s)}", np.array([i])) for i, s in enumerate(batch["source_id"])]
                     if structure == "INDIVIDUAL" else [(f"{product}_{structure}", np.arange(len(batch)))])
            for stem, rows in parts:
                target = folder / f"{stem}.{ext}"
                if product == "XP_CONTINUOUS":
                    _write_xp_as(batch.take(rows), target, fmt)
                else:
                    write_other_product(product, batch["source_id"][rows], target, fmt, seed=seed + k,
                                        rows_per_source=3 if product.startswith(("MCMC", "EPOCH")) else 1)
        if packed:
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
                for member in sorted(folder.iterdir()):
                    zf.write(member, member.name)
            shutil.rmtree(folder)
    return out


def write_photometry_csv(photometry: dict[str, np.ndarray], path: Path, append: bool = False) -> Path:
    """source_id, phot_g_mean_flux, phot_g_mean_mag, phot_bp_mean_mag, phot_rp_mean_mag (archive float style)."""
    from shared.xp import PHOTOMETRY_COLUMNS
    path = Path(path)
    cols = [scalar_field(np.asarray(photometry["source_id"], np.int64)),
            scalar_field(np.asarray(photometry["phot_g_mean_flux"], np.float64))]
    cols += [scalar_field(np.asarray(photometry[c], np.float32), ~np.isfinite(photometry[c]))
             for c in PHOTOMETRY_COLUMNS[2:]]
    with open(path, "ab" if append else "wb") as f:
        if not append:
            f.write((",".join(PHOTOMETRY_COLUMNS) + "\n").encode())
        if len(photometry["source_id"]):
            f.write(lines_to_bytes(join_columns(cols, ",")))
    return path


def allstar_table(labels: dict[str, np.ndarray]):
    """astropy Table with DR17 allStar names and dtypes from the in-memory (lower-case) label dict."""
    from astropy.table import Table
    t = Table()
    for key, name in ALLSTAR_NAMES.items():
        v = np.asarray(labels[key])
        if name in ALLSTAR_STRING_WIDTHS:
            t[name] = v.astype(f"U{ALLSTAR_STRING_WIDTHS[name]}")
        else:
            t[name] = v.astype(ALLSTAR_DTYPES.get(name, np.float32))
    return t


def write_allstar_fits(labels: dict[str, np.ndarray], path: Path) -> Path:
    """APOGEE DR17 allStar-like FITS: labels in HDU 1, NaN for missing values (DR17 convention)."""
    from astropy.io import fits
    hdu = fits.table_to_hdu(allstar_table(labels))
    hdu.header["EXTNAME"] = "ALLSTAR"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=False)
    return Path(path)


def write_catalogue_h5(batch: XPBatch, photometry: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                       actions: dict[str, np.ndarray], path: Path) -> Path:
    """The published XP×APOGEE catalogue layout (docs/data-formats.md §4) for the cross-matched stars.

    ``batch``, ``photometry``, ``actions`` and ``labels`` must be row-aligned (one primary label row per star).
    """
    from astropy.table import Table
    t = Table()
    t["ids"] = np.asarray(batch["source_id"], np.int64)
    t["coeffs"] = batch.coefficients110()
    t["coeff_errs"] = batch.errors110()
    t["phot_g_mean_flux"] = np.asarray(photometry["phot_g_mean_flux"], np.float64)
    keep = ("teff", "teff_err", "logg", "logg_err", "m_h", "m_h_err", "alpha_m", "alpha_m_err", "fe_h", "fe_h_err",
            "mg_fe", "mg_fe_err", "starflag", "aspcapflag", "j", "h", "k", "gaia_g_mag", "gaia_bp_mag", "gaia_rp_mag",
            "parallax", "parallax_error", "sfd_ebv")
    for key in keep:
        name = ALLSTAR_NAMES[key]
        t[name] = np.asarray(labels[key]).astype(ALLSTAR_DTYPES.get(name, np.float32))
    for key in ("Lz", "jz", "jr"):
        t[key] = np.asarray(actions[key], np.float64)
    with warnings.catch_warnings():   # astropy warns whenever the path is its own default name
        warnings.filterwarnings("ignore", message="table path was not set")
        t.write(str(path), format="hdf5", path="__astropy_table__", serialize_meta=True)
    return Path(path)


class TruthWriter:
    """Streams truth rows to Parquet: scalar truth columns plus ``coefficients_true`` (fixed-size list of 110
    float64, BP then RP, at the star's G; noise-free)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._writer: pq.ParquetWriter | None = None

    def write(self, columns: dict[str, np.ndarray], coefficients_true: np.ndarray) -> None:
        arrays = {k: pa.array(np.asarray(v)) for k, v in columns.items()}
        flat = pa.array(np.ascontiguousarray(coefficients_true, np.float64).ravel())
        arrays["coefficients_true"] = pa.FixedSizeListArray.from_arrays(flat, 2 * N_COEFF)
        table = pa.table(arrays)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
