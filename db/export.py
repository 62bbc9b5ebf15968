"""Exportable views: per-model tables streamed out of the database in chunks, with column metadata.

Each export is a SELECT over the model's rows and a list of columns (type, unit, UCD, description); adding an
export is adding one entry to EXPORTS. ``open_export`` runs the view in one read-only transaction (on
PostgreSQL REPEATABLE READ, so the count and the rows agree), first counting the rows and measuring the
longest text of each text column (FITS and VOTable need fixed widths up front), then yielding pyarrow
RecordBatches of at most ``chunk_rows`` rows from a server-side cursor: memory stays bounded for any size.

A user's ``--where`` is a filter on the export's own columns: it is placed in parentheses around nothing but
the view (``SELECT * FROM (view) AS x WHERE (…)``) after ``check_where`` has made sure it cannot leave them.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.schema import LATENT_MAX
from shared import defaults as D


class ExportError(ValueError):
    """A bad export request (unknown export, bad --where, nothing built yet), said in one line."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: str                  # bool | int16 | int32 | int64 | float32 | float64 | str
    unit: str | None = None    # astropy/VOUnit spelling
    ucd: str | None = None
    description: str = ""


ARROW_TYPES = {"bool": pa.bool_(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
               "float32": pa.float32(), "float64": pa.float64(), "str": pa.string()}


@dataclass(frozen=True)
class ExportView:
    """``build(model, has_positions)`` gives the SELECT (bound parameter :model_id) and its columns;
    ``order_by`` is a column of the view. ``missing`` says why the view cannot be exported yet, if so."""
    name: str
    description: str
    build: Callable[[dict, bool], tuple[str, list[Column]]] | None
    order_by: str = "source_id"
    missing: str | None = None


# --- latents -----------------------------------------------------------------------------------------------------
def _latent_dim(model: dict) -> int:
    dim = int((model.get("config") or {}).get("latent_dim") or D.LATENT_DIM)
    return max(1, min(dim, LATENT_MAX))


_LATENT_TAIL = [
    ("nll", "float32", None, "stat.fit.goodness", "negative log-likelihood of the spectrum at z = mu, with errors "
     "and learned scatter (standardised units; lower fits better)"),
    ("zscore_rms", "float32", None, "stat.fit.residual", "RMS over the 110 coefficients of (x - xhat)/sigma"),
    ("zscore_rms_scatter", "float32", None, "stat.fit.residual",
     "RMS over the 110 coefficients of (x - xhat)/sqrt(sigma^2 + scatter^2)"),
    ("scatter_mean", "float32", None, "stat.stdev", "mean learned scatter over the coefficients (standardised)"),
    ("bp_chi2_dof", "float32", None, "stat.fit.chi2", "BP chi^2 per degree of freedom, full covariance"),
    ("rp_chi2_dof", "float32", None, "stat.fit.chi2", "RP chi^2 per degree of freedom, full covariance"),
    ("bp_chi2_dof_scatter", "float32", None, "stat.fit.chi2", "BP chi^2/dof with the learned scatter added"),
    ("rp_chi2_dof_scatter", "float32", None, "stat.fit.chi2", "RP chi^2/dof with the learned scatter added"),
]
_PHOTOMETRY = [
    ("phot_g_mean_mag", "p", "float32", "mag", "phot.mag;em.opt", "Gaia G mean magnitude"),
    ("phot_bp_mean_mag", "p", "float32", "mag", "phot.mag;em.opt.B", "Gaia BP mean magnitude"),
    ("phot_rp_mean_mag", "p", "float32", "mag", "phot.mag;em.opt.R", "Gaia RP mean magnitude"),
]
_LABELS = [
    ("apogee_id", "str", None, "meta.id.cross", "APOGEE DR17 identifier of the cross-matched primary row"),
    ("teff", "float32", "K", "phys.temperature.effective", "APOGEE DR17 effective temperature"),
    ("logg", "float32", "dex", "phys.gravity", "APOGEE DR17 log10 surface gravity (cgs)"),
    ("m_h", "float32", "dex", "phys.abund.Z", "APOGEE DR17 [M/H]"),
    ("alpha_m", "float32", "dex", "phys.abund", "APOGEE DR17 [alpha/M]"),
    ("fe_h", "float32", "dex", "phys.abund.Fe", "APOGEE DR17 [Fe/H]"),
    ("mg_fe", "float32", "dex", "phys.abund", "APOGEE DR17 [Mg/Fe]"),
    ("pristine", "bool", None, "meta.code.qual", "passes the pristine label selection (docs/science.md)"),
    ("good", "bool", None, "meta.code.qual", "passes the good label selection"),
    ("giant", "bool", None, "meta.code.class", "giant by the APOGEE labels"),
    ("cool_giant", "bool", None, "meta.code.class", "giant cooler than 5000 K"),
    ("high_alpha", "bool", None, "meta.code.class", "Patil et al. 2023 high-alpha class (NULL: undecidable)"),
]


def _star_head(alias: str, has_positions: bool) -> tuple[list[Column], list[str]]:
    """The first columns of every per-star export: model, source_id and, when photometry holds any, ra/dec
    (``p`` is the photometry join)."""
    cols = [Column("model", "str", None, "meta.id", "model name"),
            Column("source_id", "int64", None, "meta.id;meta.main", "Gaia DR3 source_id")]
    select = ["m.name AS model", f"{alias}.source_id"]
    if has_positions:
        cols += [Column("ra", "float64", "deg", "pos.eq.ra;meta.main", "right ascension (ICRS, Gaia DR3 epoch)"),
                 Column("dec", "float64", "deg", "pos.eq.dec;meta.main", "declination (ICRS, Gaia DR3 epoch)")]
        select += ["p.ra", "p.dec"]
    return cols, select


def _latents(model: dict, has_positions: bool) -> tuple[str, list[Column]]:
    k = _latent_dim(model)
    cols, select = _star_head("r", has_positions)
    cols.append(Column("split", "str", None, "meta.code", "the model's training split of this star: train, "
                       "validation, test, or NULL when it was not in the training set"))
    select.append("r.split")
    for i in range(1, k + 1):
        cols.append(Column(f"z{i}", "float32", None, "src.var", f"posterior mean of latent {i}"))
        select.append(f"r.z{i}")
    for i in range(1, k + 1):
        cols.append(Column(f"z{i}_sigma", "float32", None, "stat.stdev", f"posterior width of latent {i}"))
        select.append(f"r.z{i}_sigma")
    for name, kind, unit, ucd, desc in _LATENT_TAIL:
        cols.append(Column(name, kind, unit, ucd, desc))
        select.append(f"r.{name}")
    for name, _, kind, unit, ucd, desc in _PHOTOMETRY:
        cols.append(Column(name, kind, unit, ucd, desc))
        select.append(f"p.{name}")
    for name, kind, unit, ucd, desc in _LABELS:
        cols.append(Column(name, kind, unit, ucd, desc))
        select.append(f"a.{name}")
    sql = (f"SELECT {', '.join(select)} FROM inference_results r JOIN models m ON m.id = r.model_id "
           "LEFT JOIN photometry p ON p.source_id = r.source_id "
           "LEFT JOIN apogee_labels a ON a.gaia_source_id = r.source_id AND a.is_primary "
           "WHERE r.model_id = :model_id")
    return sql, cols


# --- statistics --------------------------------------------------------------------------------------------------
_STATISTICS = [
    Column("id", "int64", None, "meta.id;meta.main", "row id in analysis_statistics"),
    Column("job_id", "int64", None, "meta.id", "the analysis job that computed it"),
    Column("report", "str", None, "meta.note", "alpha or reconstruction"),
    Column("sample", "str", None, "meta.note", "the star sample (e.g. pristine, cool_giant)"),
    Column("statistic", "str", None, "meta.note", "what was measured (e.g. balanced_accuracy, dip_p, msz_ratio)"),
    Column("subject", "str", None, "meta.note", "what it was measured on (feature set, coordinate, model pair)"),
    Column("bin_var", "str", None, "meta.note", "the label binned over, NULL for the whole sample"),
    Column("bin_lo", "float64", None, "stat.min", "lower edge of the bin, in the units of bin_var's label"),
    Column("bin_hi", "float64", None, "stat.max", "upper edge of the bin, in the units of bin_var's label"),
    Column("value", "float64", None, "stat.value", "the statistic's value"),
    Column("ci_lo", "float64", None, "stat.error;stat.min", "lower end of the 95 % bootstrap interval"),
    Column("ci_hi", "float64", None, "stat.error;stat.max", "upper end of the 95 % bootstrap interval"),
    Column("n", "int32", None, "meta.number", "stars used"),
]


def _statistics(model: dict, has_positions: bool) -> tuple[str, list[Column]]:
    names = ", ".join(c.name for c in _STATISTICS)
    return f"SELECT {names} FROM analysis_statistics WHERE model_id = :model_id", list(_STATISTICS)


# --- anomaly scores ----------------------------------------------------------------------------------------------
_SCORES = [
    ("anomaly_score", "float32", "stat.fit.goodness", "how badly the model explains the spectrum given its errors "
     "and (capped) learned scatter, both bands: ~N(0,1) for typical stars, larger = worse (README 'Anomalies')"),
    ("anomaly_score_bp", "float32", "stat.fit.goodness", "the anomaly score of the BP band alone"),
    ("anomaly_score_rp", "float32", "stat.fit.goodness", "the anomaly score of the RP band alone"),
    ("anomaly_p", "float64", "stat.probability", "tail probability that a typical star scores at least this "
     "(small = anomalous), both bands"),
    ("anomaly_p_bp", "float64", "stat.probability", "tail probability of the BP score"),
    ("anomaly_p_rp", "float64", "stat.probability", "tail probability of the RP score"),
    ("nll", "float32", "stat.fit.goodness", "negative log-likelihood of the spectrum at z = mu (standardised units)"),
]


def _scores(model: dict, has_positions: bool) -> tuple[str, list[Column]]:
    cols, select = _star_head("r", has_positions)
    for name, kind, ucd, desc in _SCORES:
        cols.append(Column(name, kind, None, ucd, desc))
        select.append(f"r.{name}")
    cols.append(Column("phot_g_mean_mag", "float32", "mag", "phot.mag;em.opt", "Gaia G mean magnitude"))
    select.append("p.phot_g_mean_mag")
    sql = (f"SELECT {', '.join(select)} FROM inference_results r JOIN models m ON m.id = r.model_id "
           "LEFT JOIN photometry p ON p.source_id = r.source_id WHERE r.model_id = :model_id")
    return sql, cols


# --- P(high-α) ---------------------------------------------------------------------------------------------------
def _alpha(model: dict, has_positions: bool) -> tuple[str, list[Column]]:
    cols, select = _star_head("q", has_positions)
    cols += [Column("p_high_alpha", "float64", None, "stat.probability", "calibrated probability that the star "
                    "is high-alpha (Patil et al. 2023 class), from the latents (README 'P(high-alpha) catalogue')"),
             Column("classifier_job_id", "int64", None, "meta.id", "the analyze alpha-catalogue job that fitted "
                    "the classifier (its statistics describe its calibration)"),
             Column("phot_g_mean_mag", "float32", "mag", "phot.mag;em.opt", "Gaia G mean magnitude"),
             Column("high_alpha", "bool", None, "meta.code.class", "APOGEE Patil et al. 2023 class where known "
                    "(NULL: unlabelled or undecidable)")]
    select += ["q.p_high_alpha", "q.job_id AS classifier_job_id", "p.phot_g_mean_mag", "a.high_alpha"]
    sql = (f"SELECT {', '.join(select)} FROM alpha_probabilities q JOIN models m ON m.id = q.model_id "
           "LEFT JOIN photometry p ON p.source_id = q.source_id "
           "LEFT JOIN apogee_labels a ON a.gaia_source_id = q.source_id AND a.is_primary "
           "WHERE q.model_id = :model_id")
    return sql, cols


EXPORTS: dict[str, ExportView] = {
    "latents": ExportView("latents", "latent means and widths, fit quality, photometry and APOGEE labels per star",
                          _latents),
    "statistics": ExportView("statistics", "the model's analysis statistics (one row per statistic × sample × "
                             "subject × bin)", _statistics, order_by="id"),
    "scores": ExportView("scores", "per-star anomaly scores (overall and per band) with their tail probabilities",
                         _scores),
    "alpha": ExportView("alpha", "per-star calibrated P(high-alpha) from `xpvae analyze alpha-catalogue`", _alpha),
}


# --- the user's filter -----------------------------------------------------------------------------------------
FORBIDDEN = {";": "a statement separator ';'", "--": "an SQL comment '--'", "/*": "an SQL comment '/*'",
             "\\": "a backslash", "$": "a '$' (dollar quoting)"}


def _check_balanced(text: str) -> None:
    """Every quote closed, every parenthesis outside quotes matched: the filter cannot leave its parentheses."""
    depth, quote = 0, None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None        # a doubled quote closes and reopens: same state afterwards
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ExportError("--where has a ')' without its '('")
    if quote:
        raise ExportError(f"--where has an unterminated {quote} quote")
    if depth:
        raise ExportError("--where has a '(' without its ')'")


def check_where(text: str) -> str:
    """Return the filter if it is one boolean expression over the export's columns that cannot leave its
    parentheses; raise ExportError naming the problem. Quotes follow standard SQL ('…' and "…", doubled to
    escape), the same on PostgreSQL and SQLite; what could make the two disagree is refused."""
    if not text.strip():
        raise ExportError("--where is empty")
    for token, what in FORBIDDEN.items():
        if token in text:
            raise ExportError(f"--where may not contain {what}: give one boolean expression over the export's columns")
    _check_balanced(text)
    return text


# --- streaming ----------------------------------------------------------------------------------------------------
@dataclass
class ExportPlan:
    columns: list[Column]
    n_rows: int
    text_bytes: dict[str, int]     # longest UTF-8 text per str column (0 when all NULL)
    schema: pa.Schema


def _has_positions(conn) -> bool:
    return bool(conn.execute(sa.text("SELECT 1 FROM photometry WHERE ra IS NOT NULL LIMIT 1")).first())


def _begin_read_only(conn) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
    else:   # SQLite: refuse writes on this connection, and hold one read snapshot for count and rows
        conn.exec_driver_sql("PRAGMA query_only = ON")
        conn.exec_driver_sql("BEGIN")


def _byte_length(conn, col: str) -> str:
    return f"octet_length({col})" if conn.dialect.name == "postgresql" else f"length(CAST({col} AS BLOB))"


def _to_batch(rows: Sequence[Any], plan: ExportPlan) -> pa.RecordBatch:
    cols = list(zip(*rows)) if rows else [()] * len(plan.columns)
    arrays = []
    for c, values in zip(plan.columns, cols):
        if c.kind == "bool":    # SQLite returns 0/1
            arr = pa.array([None if v is None else bool(v) for v in values], pa.bool_())
        else:
            arr = pa.array(values, ARROW_TYPES[c.kind], from_pandas=False)
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=plan.schema)


@contextmanager
def open_export(engine: Engine, export: str, model: dict, where: str | None = None,
                chunk_rows: int = 20_000) -> Iterator[tuple[ExportPlan, Iterator[pa.RecordBatch]]]:
    """(plan, batches) for one export of ``model`` (a models row), inside a read-only transaction that ends
    when the context exits. Raises ExportError for an unknown or not yet available export or a bad filter."""
    view = EXPORTS.get(export)
    if view is None:
        raise ExportError(f"unknown export {export!r}; choose one of {', '.join(EXPORTS)}")
    if view.build is None:
        raise ExportError(f"cannot export {export}: {view.missing}")
    if chunk_rows < 1:
        raise ExportError("chunk_rows must be >= 1")
    # ':' escaped so that SQLAlchemy never reads the user's text as bind parameters (a backslash cannot come
    # from the user: check_where refuses it)
    filt = f" WHERE ({check_where(where).replace(':', chr(92) + ':')})" if where is not None else ""
    with engine.connect() as conn:
        _begin_read_only(conn)
        try:
            inner, columns = view.build(model, _has_positions(conn))
            outer = f"FROM ({inner}) AS x{filt}"
            texts = [c.name for c in columns if c.kind == "str"]
            probe = ", ".join(["COUNT(*)"] + [f"MAX({_byte_length(conn, 'x.' + t)})" for t in texts])
            params = {"model_id": int(model["id"])}
            head = conn.execute(sa.text(f"SELECT {probe} {outer}"), params).one()
            schema = pa.schema([pa.field(c.name, ARROW_TYPES[c.kind]) for c in columns])
            plan = ExportPlan(columns, int(head[0]), {t: int(v or 0) for t, v in zip(texts, head[1:])}, schema)
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(
                sa.text(f"SELECT * {outer} ORDER BY x.{view.order_by}"), params)

            def batches() -> Iterator[pa.RecordBatch]:
                for part in result.partitions(chunk_rows):
                    yield _to_batch(part, plan)
            yield plan, batches()
        finally:
            conn.rollback()
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA query_only = OFF")
